import io
import time
import zipfile

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


def test_missing_dataset_without_network_fails_fast_and_clearly(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10
    # nothing listens on port 9 here: a refused connection, as on a machine with no network
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    began = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("cifar10", "test", tmp_path)
    assert time.perf_counter() - began < 10
    message = str(err.value)
    assert "cifar10" in message and str(tmp_path / "cifar10" / "test") in message
    assert "cifar10/{train,test}/<class>" in message and "COURSE_DATA_DIR" in message
    assert "Traceback" not in message and err.value.__cause__ is None


def test_missing_stl10_points_at_the_stand_in_without_using_it(tmp_path):
    (tmp_path / "stl10-standin" / "train").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="folder='stl10-standin'"):
        data.load("stl10", "train", tmp_path, download=False)


def test_half_downloaded_tiny_imagenet_zip_is_reported_not_deleted(tmp_path):
    archive = tmp_path / "tiny-imagenet-200.zip"
    archive.write_bytes(b"PK\3\4 only the first bytes")
    with pytest.raises(data.DatasetNotFoundError, match="fails its MD5 check"):
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
    assert (tmp_path / ".cache" / "cifar10-train.pt").exists()
    again = data.load("cifar10", "train", tmp_path, verbose=False)
    assert torch.equal(first.images, again.images) and again.skipped == first.skipped
    _png(base / "frog" / "1.png", "RGB", (32, 32), value=99)
    changed = data.load("cifar10", "train", tmp_path, verbose=False)
    assert len(changed) == len(first) + 1


def test_cache_survives_a_corrupt_cache_file(tmp_path):
    _messy_folder(tmp_path)
    data.load("cifar10", "train", tmp_path, verbose=False)
    (tmp_path / ".cache" / "cifar10-train.pt").write_bytes(b"cut off mid-write")
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
