import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data


def _png(path, mode, size=(8, 8), value=128):
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = np.full((size[1], size[0], channels), value, dtype=np.uint8).squeeze(-1 if channels == 1 else None)
    Image.fromarray(arr, mode).save(path)


def _messy_folder(root):
    """cifar10/train with two classes' worth of trouble: a stray file, a grayscale and an RGBA PNG,
    a corrupt JPEG, a hidden file and an odd-sized image."""
    base = root / "cifar10" / "train"
    for cls in data.CIFAR10_CLASSES:
        (base / cls).mkdir(parents=True)
        _png(base / cls / "0.png", "RGB", (32, 32), value=10)
    _png(base / "cat" / "gray.png", "L", (32, 32), value=200)
    _png(base / "cat" / "alpha.png", "RGBA", (32, 32), value=50)
    _png(base / "dog" / "big.png", "RGB", (40, 40), value=70)
    (base / "cat" / "notes.txt").write_text("not an image")
    good = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good, "JPEG")
    (base / "dog" / "broken.jpg").write_bytes(good.getvalue()[:60])  # a truncated download
    (base / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (base / "README.md").write_text("stray file beside the class folders")
    return base


def test_class_folder_reader_keeps_good_images_and_reports_bad_ones(tmp_path, capsys):
    base = _messy_folder(tmp_path)
    ds = data.load("cifar10", "train", tmp_path, cache=False)
    assert ds.images.shape == (13, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.classes == data.CIFAR10_CLASSES
    skipped = {p.split("/")[-1]: why for p, why in ds.skipped}
    assert set(skipped) == {"notes.txt", "broken.jpg", "README.md"}
    assert "not a readable image" in skipped["notes.txt"]
    cat = data.CIFAR10_CLASSES.index("cat")
    cat_images = ds.images[ds.labels == cat]
    assert len(cat_images) == 3
    assert any((img == 200).all() for img in cat_images)  # grayscale became 3 equal channels
    assert any((img == 50).all() for img in cat_images)  # RGBA lost its alpha, kept its colour
    out = capsys.readouterr().out
    assert "skipped 3" in out and "broken.jpg" in out
    assert str(base) in ds.source


def test_a_missing_class_folder_is_named(tmp_path):
    _messy_folder(tmp_path)
    (tmp_path / "cifar10" / "train" / "frog" / "0.png").unlink()
    (tmp_path / "cifar10" / "train" / "frog").rmdir()
    with pytest.raises(data.DatasetNotFoundError, match="missing: \\['frog'\\]"):
        data.load("cifar10", "train", tmp_path, cache=False)


def test_missing_stl10_points_at_the_stand_in_without_using_it(tmp_path):
    (tmp_path / "stl10-standin" / "train").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="folder='stl10-standin'"):
        data.load("stl10", "train", tmp_path, download=False)


def test_half_downloaded_tiny_imagenet_zip_is_reported_not_deleted(tmp_path):
    archive = tmp_path / "tiny-imagenet-200.zip"
    archive.write_bytes(b"PK\3\4 only the first bytes")
    with pytest.raises(data.DatasetNotFoundError, match="fails its checksum"):
        data.load("tiny-imagenet", "val", tmp_path)
    assert archive.exists()


def _tiny_official(root):
    base = root / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # wnids.txt is not sorted; labels follow the sorted ids
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\nn03\tother\n")
    for k, w in enumerate(wnids):
        (base / "train" / w / "images").mkdir(parents=True)
        lines = []
        for i in range(3):
            _png(base / "train" / w / "images" / f"{w}_{i}.JPEG", "RGB", (64, 64), value=10 * k + i)
            lines.append(f"{w}_{i}.JPEG\t{i}\t1\t60\t{50 + i}")
        (base / "train" / w / f"{w}_boxes.txt").write_text("\n".join(lines) + "\n")
    _png(base / "val" / "images" / "val_0.JPEG", "L", (64, 64))  # Tiny ImageNet has grayscale images
    _png(base / "val" / "images" / "val_1.JPEG", "RGB", (64, 64))
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t1\t2\t3\t4\nval_1.JPEG\tn01\t5\t6\t7\t8\n")


def test_tiny_imagenet_official_layout_with_boxes(tmp_path):
    _tiny_official(tmp_path)
    tr = data.load("tiny-imagenet", "train", tmp_path, cache=False)
    assert tr.class_ids == ("n01", "n02") and tr.classes == ("goldfish", "tabby")
    assert tr.images.shape == (6, 3, 64, 64)
    assert tr.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert tr.boxes[1].tolist() == [1, 1, 60, 51]
    va = data.load("tiny-imagenet", "val", tmp_path, cache=False)
    assert va.labels.tolist() == [1, 0]
    assert va.boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_cache_is_used_and_notices_a_changed_source(tmp_path):
    base = _messy_folder(tmp_path)
    first = data.load("cifar10", "train", tmp_path, verbose=False)
    assert (tmp_path / ".cache" / "cifar10_cifar10_train_32px.pt").exists()  # dataset, folder, split, size
    again = data.load("cifar10", "train", tmp_path, verbose=False)
    assert torch.equal(first.images, again.images) and again.skipped == first.skipped
    _png(base / "frog" / "1.png", "RGB", (32, 32), value=99)
    changed = data.load("cifar10", "train", tmp_path, verbose=False)
    assert len(changed) == len(first) + 1


def test_cache_survives_a_corrupt_cache_file(tmp_path):
    _messy_folder(tmp_path)
    data.load("cifar10", "train", tmp_path, verbose=False)
    (tmp_path / ".cache" / "cifar10_cifar10_train_32px.pt").write_bytes(b"cut off mid-write")
    assert len(data.load("cifar10", "train", tmp_path, verbose=False)) == 13


def test_stand_in_is_read_only_when_asked_and_says_so(tmp_path, capsys):
    base = tmp_path / "stl10-standin" / "train"
    for cls in data.STL10_CLASSES:
        (base / cls).mkdir(parents=True)
        _png(base / cls / "0.png", "RGB", (96, 96))
    (tmp_path / "stl10-standin" / "README.txt").write_text("NOT STL-10. A stand-in.\n")
    ds = data.load("stl10", "train", tmp_path, folder="stl10-standin", cache=False)
    out = capsys.readouterr().out
    assert "stl10-standin" in out and "NOT STL-10" in out
    assert ds.classes == data.STL10_CLASSES and "stl10-standin" in ds.source


def test_the_stand_in_label_follows_where_the_images_came_from_not_the_profile(tmp_path, monkeypatch):
    # notebooks 05 and 06 label every figure "stand-in" from data.is_standin of what they loaded: a copy of real
    # STL-10 in class folders is STL-10 under any profile, and a folder made from the stand-in is not
    for profile in ("small", "full"):
        monkeypatch.setenv("COURSE_PROFILE", profile)
        for folder in ("stl10", "stl10-standin"):
            base = tmp_path / folder / "train"
            for cls in data.STL10_CLASSES:
                (base / cls).mkdir(parents=True, exist_ok=True)
                _png(base / cls / "0.png", "RGB", (96, 96))
        real = data.load("stl10", "train", tmp_path, folder="stl10", cache=False, verbose=False)
        standin = data.load("stl10", "train", tmp_path, folder="stl10-standin", cache=False, verbose=False)
        assert not data.is_standin(real) and data.is_standin(standin)
    data.mark_origin(tmp_path / "stl10", "made from the STL-10 stand-in (NOT STL-10) by course rehearse")
    assert data.is_standin(data.load("stl10", "train", tmp_path, folder="stl10", cache=False, verbose=False))
    for notebook in ("05_contrastive_stl10", "06_greedy_pretraining"):
        source = (Path(__file__).parents[1] / "notebooks" / f"{notebook}.ipynb").read_text()
        assert 'STANDIN = data.is_standin(LOADED[\\"train\\"])' in source, notebook


def test_subset_is_balanced_and_deterministic(tiny_data):
    a = data.subset(tiny_data, 2, seed=1)
    b = data.subset(tiny_data, 2, seed=1)
    c = data.subset(tiny_data, 2, seed=2)
    assert a.class_counts().tolist() == [2, 2, 2, 2]
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    with pytest.raises(ValueError, match="has only 6"):
        data.subset(tiny_data, 7)


def test_unknown_names_and_splits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("mnist", "train", tmp_path)
    with pytest.raises(ValueError, match="no split 'val'"):
        data.load("cifar10", "val", tmp_path)


def test_real_cifar10_statistics_match_the_presets(cifar_test):
    """Oracle: the normalisation constants are CIFAR-10's own (checked on the real test split)."""
    assert cifar_test.images.shape == (10000, 3, 32, 32)
    assert cifar_test.class_counts().tolist() == [1000] * 10
    x = cifar_test.images.float() / 255
    mean = x.mean(dim=(0, 2, 3))
    std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1)
    torch.testing.assert_close(mean, torch.tensor(data.STATS["cifar10"][0]), atol=0.01, rtol=0)
    torch.testing.assert_close(std, torch.tensor(data.STATS["cifar10"][1]), atol=0.01, rtol=0)


def test_real_stl10_stand_in_and_tiny_imagenet(data_dir):
    """Oracle: the data pack's documented sizes, class order and boxes."""
    stl = data.load("stl10", "train", data_dir, folder="stl10-standin", verbose=False)
    assert stl.images.shape == (5000, 3, 96, 96) and stl.classes == data.STL10_CLASSES
    assert stl.class_counts().tolist() == [500] * 10
    unlabeled = data.load("stl10", "unlabeled", data_dir, folder="stl10-standin", verbose=False)
    assert len(unlabeled) == 10000 and (unlabeled.labels == -1).all()
    test = data.load("stl10", "test", data_dir, folder="stl10-standin", verbose=False)
    loaded = {"train": len(stl), "test": len(test), "unlabeled": len(unlabeled)}
    assert loaded == data.SPLIT_SIZES["stl10-standin"]          # what a budget assumes before loading
    val = data.load("tiny-imagenet", "val", data_dir, verbose=False)
    assert val.images.shape == (10000, 3, 64, 64) and len(val.classes) == 200
    assert val.class_counts().tolist() == [50] * 200
    assert list(val.class_ids) == sorted(val.class_ids) and val.classes[val.class_ids.index("n01443537")] == "goldfish"
    assert val.boxes.shape == (10000, 4) and val.boxes.min() >= 0 and val.boxes.max() <= 63
    assert (val.boxes[:, 2] >= val.boxes[:, 0]).all() and (val.boxes[:, 3] >= val.boxes[:, 1]).all()


def test_holdout_splits_per_class_without_overlap(tiny_data):
    rest, held = data.holdout(tiny_data, 2, seed=1)
    assert held.class_counts().tolist() == [2, 2, 2, 2] and rest.class_counts().tolist() == [4, 4, 4, 4]
    flat = lambda d: {tuple(img.flatten().tolist()) for img in d.images}  # noqa: E731
    assert not flat(rest) & flat(held) and flat(rest) | flat(held) == flat(tiny_data)
    assert torch.equal(held.images, data.subset(tiny_data, 2, seed=1).images)  # the same draw as subset()
    assert held.split == "train (held out)" and rest.split == "train"
    with pytest.raises(ValueError, match="only 6"):
        data.holdout(tiny_data, 7)


# ----------------------------------------------------------------------------- odd files and folders

def test_a_full_disk_while_caching_still_returns_the_data(tmp_path, monkeypatch, capsys):
    _messy_folder(tmp_path)

    def full_disk(obj, f, *args, **kwargs):  # what torch.save does on a full disk
        open(f, "wb").write(b"PK\3\4 cut off")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    ds = data.load("cifar10", "train", tmp_path)
    assert len(ds) == 13
    assert "could not write the cache" in capsys.readouterr().out
    assert list((tmp_path / ".cache").iterdir()) == []  # no temporary file left behind


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path, capsys):
    (tmp_path / "set" / "a").mkdir(parents=True)
    gradient = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(gradient).save(tmp_path / "set" / "a" / "deep.png")
    assert Image.open(tmp_path / "set" / "a" / "deep.png").mode in ("I;16", "I;16B", "I")  # 16 bits on disk
    ds = data.read_image_folder(tmp_path / "set")
    expected = torch.from_numpy(np.rint(gradient / 257).astype(np.uint8))
    assert all(torch.equal(ds.images[0, c], expected) for c in range(3))
    assert "converted or resized 1" in capsys.readouterr().out


def test_an_empty_class_folder_is_named(tmp_path):
    base = _messy_folder(tmp_path)
    (base / "frog" / "0.png").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="interrupted copy or extraction") as err:
        data.load("cifar10", "train", tmp_path)
    assert f"{base / 'frog'} is empty" in str(err.value) and f"Delete {base}" in str(err.value)


def test_a_broken_link_is_skipped_and_fingerprinted(tmp_path):
    base = _messy_folder(tmp_path)
    os.symlink(tmp_path / "gone.png", base / "cat" / "link.png")
    ds = data.load("cifar10", "train", tmp_path, verbose=False)
    assert len(ds) == 13 and (str(base / "cat" / "link.png"), "broken link") in ds.skipped
    _png(tmp_path / "gone.png", "RGB", (32, 32))  # the link works now: the cache notices
    assert len(data.load("cifar10", "train", tmp_path, verbose=False)) == 14


# ----------------------------------------------------------------------------- Tiny ImageNet

def test_tiny_imagenet_class_folders_keep_the_training_labels(tmp_path, capsys):
    for split, wnids in (("train", ["n01", "n02", "n03"]), ("val", ["n01", "n03"])):
        for k, w in enumerate(wnids):
            (tmp_path / "tiny-imagenet" / split / w).mkdir(parents=True)
            _png(tmp_path / "tiny-imagenet" / split / w / "0.png", "RGB", (64, 64), value=10 * k)
    va = data.load("tiny-imagenet", "val", tmp_path, cache=False)
    assert va.class_ids == ("n01", "n02", "n03") and len(va.classes) == 3
    assert va.labels.tolist() == [0, 2]  # n03 keeps its training label
    assert "n02" in capsys.readouterr().out
    (tmp_path / "tiny-imagenet" / "val" / "n09").mkdir()
    _png(tmp_path / "tiny-imagenet" / "val" / "n09" / "0.png", "RGB", (64, 64))
    with pytest.raises(data.DatasetNotFoundError, match=r"unexpected: \['n09'\]"):
        data.load("tiny-imagenet", "val", tmp_path, cache=False)


def _tiny_official_jpegs(root, per_class=2):
    """Tiny ImageNet's official layout, 3 classes of `per_class` 64×64 JPEGs, 3 val images."""
    base = root / "tiny-imagenet-200"
    wnids = ["n01", "n02", "n03"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, w in enumerate(wnids):
        (base / "train" / w / "images").mkdir(parents=True)
        for i in range(per_class):
            image = Image.fromarray(np.full((64, 64, 3), 40 * k, np.uint8))
            image.save(base / "train" / w / "images" / f"{w}_{i}.JPEG")
        Image.fromarray(np.full((64, 64, 3), 40 * k, np.uint8)).save(base / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_a_complete_tiny_imagenet_layout_loads(tmp_path):
    _tiny_official_jpegs(tmp_path)
    assert data.load("tiny-imagenet", "train", tmp_path).labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.load("tiny-imagenet", "val", tmp_path).labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("cut, named", [
    ("one image", "n02/images holds 1 images where other classes hold 2"),
    ("a class", "n03/images is missing or empty where other classes hold 2"),
    ("a val image", "val_1.JPEG (line 2"),
    ("an annotation line", "line 3 of"),
])
def test_a_half_extracted_tiny_imagenet_is_refused_and_not_cached(tmp_path, cut, named):
    base = _tiny_official_jpegs(tmp_path)
    split = "train"
    if cut == "one image":
        (base / "train" / "n02" / "images" / "n02_1.JPEG").unlink()
    elif cut == "a class":
        shutil.rmtree(base / "train" / "n03" / "images")
    elif cut == "a val image":
        split = "val"
        (base / "val" / "images" / "val_1.JPEG").unlink()
    else:
        split = "val"
        ann = base / "val" / "val_annotations.txt"
        ann.write_text(ann.read_text()[:-12])  # cut off mid-line
    with pytest.raises(data.DatasetNotFoundError, match="extracted only in part") as err:
        data.load("tiny-imagenet", split, tmp_path)
    assert named in str(err.value) and f"delete {base}" in str(err.value)
    assert not (tmp_path / ".cache").exists()


# ----------------------------------------------------------------------------- cache contents

def test_the_cache_keeps_datasets_and_sizes_apart(tmp_path):
    _messy_folder(tmp_path)
    data.load("cifar10", "train", tmp_path, verbose=False)
    as_tiny = data.load("tiny-imagenet", "train", tmp_path, folder="cifar10", verbose=False)
    assert as_tiny.images.shape[1:] == (3, 64, 64)
    # a CIFAR-10 cache under Tiny ImageNet's name is caught by what the file says inside
    cache = tmp_path / ".cache"
    shutil.copy(cache / "cifar10_cifar10_train_32px.pt", cache / "tiny-imagenet_cifar10_train_64px.pt")
    assert data.load("tiny-imagenet", "train", tmp_path, folder="cifar10", verbose=False).images.shape[-1] == 64


def test_a_second_load_reads_the_cache(tmp_path, capsys):
    _messy_folder(tmp_path)
    _tiny_official_jpegs(tmp_path)
    for name, split in (("cifar10", "train"), ("tiny-imagenet", "train"), ("tiny-imagenet", "val")):
        first = data.load(name, split, tmp_path)
        assert "decoding" in capsys.readouterr().out
        again = data.load(name, split, tmp_path)
        assert "decoding" not in capsys.readouterr().out and torch.equal(again.images, first.images)


@pytest.mark.parametrize("bad", ["a tensor", "no labels", "classes as a tensor", "float images"])
def test_a_cache_file_of_the_wrong_structure_is_rebuilt(tmp_path, bad):
    _messy_folder(tmp_path)
    first = data.load("cifar10", "train", tmp_path, verbose=False)
    [file] = (tmp_path / ".cache").iterdir()  # the path the loader uses
    blob = torch.load(file, weights_only=True)
    torch.save({"a tensor": torch.zeros(3),
                "no labels": {k: v for k, v in blob.items() if k != "labels"},
                "classes as a tensor": {**blob, "classes": torch.zeros(10)},
                "float images": {**blob, "images": blob["images"].float()}}[bad], file)
    again = data.load("cifar10", "train", tmp_path, verbose=False)
    assert again.classes == data.CIFAR10_CLASSES and again.images.dtype == torch.uint8
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


# ----------------------------------------------------------------------------- subset and holdout

def test_subset_and_holdout_refuse_counts_that_leave_nothing(tiny_data):
    for per_class in (0, -1):
        with pytest.raises(ValueError, match=rf"asked for {per_class} images per class of toy/train;.* 1"):
            data.subset(tiny_data, per_class)
        with pytest.raises(ValueError, match="at least 1"):
            data.holdout(tiny_data, per_class)
    uneven = data.take(tiny_data, torch.arange(1, 24))  # class 'a' has 5 images, the others 6
    with pytest.raises(ValueError, match="class 'a' of toy/train has only 5; hold out at most 4"):
        data.holdout(uneven, 5)
    rest, held = data.holdout(uneven, 4)
    assert rest.class_counts().tolist() == [1, 2, 2, 2]
    assert len(data.subset(uneven, 5)) == 20  # subset may take every image of a class


def test_select_classes_relabels_in_the_order_given_and_refuses_unknown_names():
    images = torch.arange(12, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 1, 1).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, -1])
    d = data.ImageData(images=images, labels=labels, classes=("a", "b", "c", "d"), name="toy", split="train",
                       class_ids=("n0", "n1", "n2", "n3"))
    picked = data.select_classes(d, ["c", 0])
    assert picked.classes == ("c", "a") and picked.class_ids == ("n2", "n0")
    assert picked.images[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 10]          # order of the split kept
    assert picked.labels.tolist() == [1, 0, 1, 0, 1, 0]                       # c -> 0, a -> 1
    with pytest.raises(ValueError, match="toy/train has no class 'e'"):
        data.select_classes(d, ["a", "e"])
    only_d = data.select_classes(d, ["d"])          # the unlabeled image (-1) is never taken for a class
    assert only_d.images[:, 0, 0, 0].tolist() == [3, 7] and only_d.labels.tolist() == [0, 0]
    assert data.select_classes(d, [np.int64(1), torch.tensor(2)]).classes == ("b", "c")   # NumPy and tensor integers
    with pytest.raises(ValueError, match="'a' of toy/train is asked for twice"):
        data.select_classes(d, ["a", 0])
    for bad in ([True], [4], [-1], [1.0]):
        with pytest.raises(ValueError, match="toy/train has no class"):
            data.select_classes(d, bad)
    with pytest.raises(ValueError, match="no class asked for"):
        data.select_classes(d, iter([]))


# ----------------------------------------------------------------------------- odd files (issue 29's probe)

def test_a_decompression_bomb_is_skipped_and_named_and_the_rest_loads(tmp_path, monkeypatch):
    base = _messy_folder(tmp_path)
    _png(base / "cat" / "bomb.png", "L", (300, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)   # 300×300 is more than twice this: PIL refuses it
    ds = data.load("cifar10", "train", tmp_path, verbose=False)
    assert len(ds) == 13
    [(where, why)] = [s for s in ds.skipped if s[0].endswith("bomb.png")]
    assert "decompression bomb" in why


def test_a_file_name_that_is_not_utf8_is_read_and_fingerprinted(tmp_path):
    base = _messy_folder(tmp_path)
    name = os.fsdecode(b"caf\xe9.png")   # Latin-1, as a zip made on Windows leaves it
    _png(base / "cat" / name, "RGB", (32, 32))
    assert len(data.load("cifar10", "train", tmp_path, verbose=False)) == 14


def test_a_link_loop_in_the_data_folder_does_not_stop_the_load(tmp_path):
    base = _messy_folder(tmp_path)
    os.symlink(base / "cat", base / "cat" / "again")   # a folder linked inside itself
    ds = data.load("cifar10", "train", tmp_path, verbose=False)
    assert len(ds) == 13 and any(where.endswith("again") for where, _ in ds.skipped)


def test_a_read_only_data_folder_is_told_so_not_to_free_disk_space(tmp_path, monkeypatch, capsys):
    _messy_folder(tmp_path)
    real = data.write_atomic

    def read_only(path, content):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(data, "write_atomic", read_only)
    assert len(data.load("cifar10", "train", tmp_path)) == 13
    out = capsys.readouterr().out
    assert "is not writable (read-only): set COURSE_DATA_DIR" in out and "Free some disk space" not in out
    monkeypatch.setattr(data, "write_atomic", real)
