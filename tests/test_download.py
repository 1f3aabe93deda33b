"""helpers.download on loopback: the Hub mirrors and official hosts of download.SOURCES, played by a
server on 127.0.0.1 (tests/loopback.py) serving fixture files in each source's exact format."""
import hashlib
import io
import json
import pickle
import re
import shutil
import socket
import tarfile
import time
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from helpers import data, download, runtime
from helpers.course import results
from loopback import Loopback

REV = "0123456789abcdef0123456789abcdef01234567"


# ----------------------------------------------------------------------------- fixtures in each source's format

def _images(n, side, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _encoded(arr, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def hub_parquet(images, labels, names, image_column="img", paths=None):
    """A parquet file as 🤗 datasets writes it to the Hub: an image column of {bytes, path} structs
    (PNG bytes, path None unless given), an int64 label column, and the features (class names) in
    the schema's "huggingface" metadata."""
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    paths = paths or [None] * len(images)
    table = pa.table({image_column: pa.array([{"bytes": _encoded(a), "path": p} for a, p in zip(images, paths)],
                                             type=struct),
                      "label": pa.array(labels, type=pa.int64())})
    features = {image_column: {"_type": "Image"}, "label": {"names": list(names), "_type": "ClassLabel"}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def cifar_tarball(images, labels):
    """cifar-10-python.tar.gz in torchvision's layout (only test_batch holds images); with the MD5s
    of its files, which the test puts in torchvision's CIFAR10 class."""
    files = {"test_batch": {"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), "labels": list(labels)},
             "batches.meta": {"label_names": list(data.CIFAR10_CLASSES)}}
    buf, md5 = io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            raw = pickle.dumps(content)
            md5[name] = hashlib.md5(raw).hexdigest()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue(), md5


def tiny_zip(per_class=2, wnids=("n02", "n01")):
    """tiny-imagenet-200.zip as distributed (wnids.txt unsorted, boxes in val_annotations.txt)."""
    buf = io.BytesIO()
    arrays = _images(2 * per_class * len(wnids), 64, seed=5)
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        z.writestr("tiny-imagenet-200/words.txt", "n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\n")
        k, rows = 0, []
        for w in wnids:
            lines = []
            for i in range(per_class):
                z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG", _encoded(arrays[k], "JPEG"))
                lines.append(f"{w}_{i}.JPEG\t{i}\t1\t60\t{50 + i}")
                k += 1
            z.writestr(f"tiny-imagenet-200/train/{w}/{w}_boxes.txt", "\n".join(lines) + "\n")
            for i in range(per_class):
                name = f"val_{len(rows)}.JPEG"
                z.writestr(f"tiny-imagenet-200/val/images/{name}", _encoded(arrays[k], "JPEG"))
                rows.append(f"{name}\t{w}\t{len(rows)}\t2\t30\t40")
                k += 1
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(rows) + "\n")
    return buf.getvalue()


@pytest.fixture
def host():
    server = Loopback()
    yield server
    server.close()


@pytest.fixture
def fast(monkeypatch):
    """Short limits, so that the slow and silent cases take a second, not minutes."""
    monkeypatch.setattr(download, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(download, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(download, "SLOW_SOURCE_SECONDS", 1.0)
    monkeypatch.setattr(download, "CHUNK_BYTES", 4096)


CIFAR = _images(20, 32, seed=1)
CIFAR_LABELS = np.arange(20) % 10        # two images per class, in the official label order


@pytest.fixture
def cifar(monkeypatch):
    """CIFAR-10 "test" as 20 images, two per class: the content check expects exactly that."""
    monkeypatch.setitem(data.SPLIT_SIZES, "cifar10", {"train": 20, "test": 20})
    return CIFAR, CIFAR_LABELS


def parquet_mirror(host, content, *, mode="ok", labels=data.CIFAR10_CLASSES, repo="uoft-cs/cifar10", **options):
    """A HubParquet source for CIFAR-10's test split served by `host` in `mode`."""
    path = "plain_text/test-00000-of-00001.parquet"
    host.serve(host.hub_path(repo, REV, path), content, mode, **options)
    return download.HubParquet(repo=repo, revision=REV, image_column="img", label_column="label", labels=labels,
                               splits={"test": (download.HubFile(path, hashlib.sha256(content).hexdigest()),)},
                               read_at="a test", endpoint=host.url)


def official_cifar(host, monkeypatch, images, labels):
    """The official CIFAR-10 archive on `host`, with torchvision's MD5 lists set to the fixture's."""
    from torchvision.datasets import CIFAR10
    tarball, md5 = cifar_tarball(images, labels)
    monkeypatch.setattr(CIFAR10, "train_list", [])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    url = host.serve("/~kriz/cifar-10-python.tar.gz", tarball)
    return download.OfficialArchive(url, hashlib.md5(tarball).hexdigest())


def use(monkeypatch, name, *sources):
    monkeypatch.setitem(download.SOURCES, name, tuple(sources))


def _gets(host, path_part):
    return [r for r in host.requests if r[0] == "GET" and path_part in r[1]]


# ----------------------------------------------------------------------------- the cases of issue 14

def test_the_fast_path_reads_the_mirror_checks_it_and_says_where_it_came_from(tmp_path, host, cifar, monkeypatch,
                                                                               capsys):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content), download.OfficialArchive(
        "http://127.0.0.1:9/cifar-10-python.tar.gz", "0" * 32))
    monkeypatch.setattr(data, "LOADED", {})
    d = data.load("cifar10", "test", tmp_path)
    assert torch.equal(d.images, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert d.labels.tolist() == labels.tolist() and d.classes == data.CIFAR10_CLASSES
    assert d.origin == "hub uoft-cs/cifar10@01234567"
    assert REV in d.source and "SHA-256 checked" in d.source
    out = capsys.readouterr().out
    assert re.search(r"cifar10 \(test\): from hub uoft-cs/cifar10@01234567 in [\d.]+ s \([\d.]+ kB downloaded\)", out)
    # the split is cached: a second load asks nothing of the host, and keeps its origin
    asked = len(host.requests)
    again = data.load("cifar10", "test", tmp_path)
    assert len(host.requests) == asked and again.origin == d.origin
    # and every result recorded names it
    rt = runtime.setup(profile="ci", output_dir=tmp_path / "out", verbose=False)
    row = results.record(rt, "01_x", "a recipe", test_accuracy=0.5)
    assert row["data_from"] == "cifar10 test: hub uoft-cs/cifar10@01234567"


def test_a_parquet_cached_by_the_hub_library_is_used_offline(tmp_path, host, cifar, monkeypatch):
    """The course's own cache deleted, the host gone: the Hub library's copy is checked and used."""
    images, labels = cifar
    mirror = parquet_mirror(host, hub_parquet(images, labels, data.CIFAR10_CLASSES))
    use(monkeypatch, "cifar10", mirror)
    data.load("cifar10", "test", tmp_path, cache=False)
    host.close()
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist()


def test_a_slow_mirror_is_abandoned_for_the_official_host(tmp_path, host, cifar, fast, monkeypatch, capsys):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    assert len(content) > 30_000   # at 10 kB/s: over 3 s, against a limit of 1 s
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="slow", rate=10_000),
        official_cifar(host, monkeypatch, images, labels))
    began = time.monotonic()
    d = data.load("cifar10", "test", tmp_path, cache=False)
    took = time.monotonic() - began
    assert d.origin == "official 127.0.0.1:" + host.url.rsplit(":", 1)[1]
    assert d.labels.tolist() == labels.tolist()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "failed after" in line]
    assert len(lines) == 1 and "would take about" in lines[0] and "trying official" in lines[0]
    assert took < 3, f"the slow mirror was not abandoned in time ({took:.1f} s)"
    # nothing half-downloaded is left in the Hub library's cache
    assert not [p for p in (tmp_path / "huggingface").rglob("*") if p.is_file() and p.stat().st_size > 1000]


def test_the_last_source_is_never_abandoned_for_being_slow(tmp_path, host, cifar, fast, monkeypatch, capsys):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="slow", rate=len(content) / 2))   # ~2 s
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist() and "failed" not in capsys.readouterr().out


def test_a_host_that_accepts_and_never_answers_is_passed_over(tmp_path, host, cifar, fast, monkeypatch, capsys):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    silent = parquet_mirror(host, content, mode="silent")
    good = parquet_mirror(host, content, repo="other/cifar10")
    use(monkeypatch, "cifar10", silent, good)
    began = time.monotonic()
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert time.monotonic() - began < 4
    assert d.origin == "hub other/cifar10@01234567"
    out = capsys.readouterr().out
    assert "hub uoft-cs/cifar10@01234567 failed after" in out and "no answer within the time limit" in out


def test_a_host_that_answers_and_then_stalls_is_passed_over_after_its_retries(tmp_path, host, cifar, fast,
                                                                              monkeypatch, capsys):
    """The quick question is answered, the transfer never starts: huggingface_hub tries it six times
    (READ_TIMEOUT each, a second apart); then the next source. The README states this bound."""
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="silent_get"),
        parquet_mirror(host, content, repo="other/cifar10"))
    began = time.monotonic()
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert time.monotonic() - began < 6 * download.READ_TIMEOUT + 6 + 3
    assert d.origin == "hub other/cifar10@01234567" and "no answer within the time limit" in capsys.readouterr().out


@pytest.mark.parametrize("status", [500, 404])
def test_an_http_error_sends_the_load_to_the_next_source(tmp_path, host, cifar, monkeypatch, capsys, status):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="error", status=status),
        parquet_mirror(host, content, repo="other/cifar10"))
    began = time.monotonic()
    assert data.load("cifar10", "test", tmp_path, cache=False).origin == "hub other/cifar10@01234567"
    assert time.monotonic() - began < 5
    assert f"{status}" in capsys.readouterr().out


def test_a_file_the_hub_names_with_another_checksum_is_not_downloaded(tmp_path, host, cifar, monkeypatch):
    images, labels = cifar
    mirror = parquet_mirror(host, hub_parquet(images, labels, data.CIFAR10_CLASSES))
    pinned = {"test": (download.HubFile(mirror.splits["test"][0].path, "ab" * 32),)}
    use(monkeypatch, "cifar10", download.HubParquet(**{**mirror.__dict__, "splits": pinned}))
    with pytest.raises(data.DatasetNotFoundError, match="not the pinned abab"):
        data.load("cifar10", "test", tmp_path)
    assert not _gets(host, ".parquet")


def test_a_corrupt_file_in_the_hub_cache_is_replaced(tmp_path, host, cifar, monkeypatch):
    images, labels = cifar
    use(monkeypatch, "cifar10", parquet_mirror(host, hub_parquet(images, labels, data.CIFAR10_CLASSES)))
    data.load("cifar10", "test", tmp_path, cache=False)
    blob = next(p for p in (tmp_path / "huggingface").rglob("*") if p.is_file() and "blobs" in p.parts)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")   # damaged on disk
    assert data.load("cifar10", "test", tmp_path, cache=False).labels.tolist() == labels.tolist()
    assert len(_gets(host, ".parquet")) == 2   # downloaded again, not read damaged


def test_a_corrupt_file_is_rejected_by_its_checksum_and_not_kept(tmp_path, host, cifar, monkeypatch, capsys):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    corrupt = parquet_mirror(host, content, mode="corrupt")
    use(monkeypatch, "cifar10", corrupt)
    with pytest.raises(data.DatasetNotFoundError, match="SHA-256") as err:
        data.load("cifar10", "test", tmp_path)
    assert "hub uoft-cs/cifar10@01234567" in str(err.value) and "deleted" in str(err.value)
    assert not [p for p in (tmp_path / "huggingface").rglob("*.parquet")]   # no bad copy stays cached
    # the host mended, the next load downloads it anew and succeeds
    host.serve(host.hub_path("uoft-cs/cifar10", REV, "plain_text/test-00000-of-00001.parquet"), content)
    assert data.load("cifar10", "test", tmp_path).labels.tolist() == labels.tolist()


def test_a_transfer_cut_off_is_resumed_where_it_stopped(tmp_path, host, cifar, fast, monkeypatch):
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="cut"))
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist()
    gets = _gets(host, "test-00000-of-00001.parquet")
    assert len(gets) == 2 and gets[0][2] is None
    # the second request asks only for the rest: from the last whole chunk written before the cut
    start = int(re.fullmatch(r"bytes=(\d+)-", gets[1][2]).group(1))
    assert len(content) // 2 - download.CHUNK_BYTES < start <= len(content) // 2


def test_a_mirror_with_another_class_order_comes_out_identical(tmp_path, host, cifar, monkeypatch):
    images, labels = cifar
    order = [3, 7, 0, 9, 1, 5, 2, 8, 6, 4]        # the mirror's label k is official class order[k]
    names = [data.CIFAR10_CLASSES[i] for i in order]
    theirs = np.array([order.index(c) for c in labels])
    use(monkeypatch, "cifar10", parquet_mirror(host, hub_parquet(images, theirs, names), labels=tuple(names)))
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.classes == data.CIFAR10_CLASSES and d.labels.tolist() == labels.tolist()
    assert torch.equal(d.images, torch.from_numpy(images).permute(0, 3, 1, 2))


def test_a_transfer_cut_off_again_and_again_is_tried_again(tmp_path, host, cifar, monkeypatch, capsys):
    """Cut off six times in a row: huggingface_hub gives up after its own five resumes, the course tries
    once more, and the file arrives whole."""
    images, labels = cifar
    content = hub_parquet(images, labels, data.CIFAR10_CLASSES)
    use(monkeypatch, "cifar10", parquet_mirror(host, content, mode="cut", times=6))
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist() and "was cut off (RemoteProtocolError); trying again" in \
        capsys.readouterr().out
    assert len(_gets(host, ".parquet")) == 7


def test_a_cut_off_official_download_resumes_where_it_stopped(tmp_path, host, cifar, monkeypatch, capsys):
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)
    content = host.files["/~kriz/cifar-10-python.tar.gz"][0]
    host.serve("/~kriz/cifar-10-python.tar.gz", content, "cut", times=2)
    use(monkeypatch, "cifar10", official)
    d = data.load("cifar10", "test", tmp_path)
    assert d.labels.tolist() == labels.tolist()
    gets = _gets(host, "cifar-10-python")
    # cut at half, then at half of the rest, then the last quarter: each request asks only for what is missing
    assert [r[2] for r in gets] == [None, f"bytes={len(content) // 2}-",
                                    f"bytes={len(content) // 2 + (len(content) - len(content) // 2) // 2}-"]
    assert "asking for the rest" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))


def test_an_official_download_that_stalls_resumes_and_one_cut_off_by_a_disconnect_goes_on_next_time(
        tmp_path, host, cifar, fast, monkeypatch):
    # STL-10's unlabeled images come from the official host alone, 2.6 GB: a stall used to end the load, and the
    # next load started from zero. Now the bytes received are kept, and the rest is asked for.
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)
    content = host.files["/~kriz/cifar-10-python.tar.gz"][0]
    host.serve("/~kriz/cifar-10-python.tar.gz", content, "stall", times=1)
    use(monkeypatch, "cifar10", official)
    assert data.load("cifar10", "test", tmp_path).labels.tolist() == labels.tolist()
    assert [r[2] for r in _gets(host, "cifar-10-python")] == [None, f"bytes={len(content) // 2}-"]
    # a session that disconnected mid-transfer left a partial file: the next load asks only for the rest
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    shutil.rmtree(tmp_path / "cifar-10-batches-py")
    shutil.rmtree(tmp_path / ".cache")
    (tmp_path / "cifar-10-python.tar.gz.partial").write_bytes(content[:1000])
    host.requests.clear()
    host.serve("/~kriz/cifar-10-python.tar.gz", content)
    assert data.load("cifar10", "test", tmp_path).labels.tolist() == labels.tolist()
    assert [r[2] for r in _gets(host, "cifar-10-python")] == ["bytes=1000-"]


def test_an_official_host_that_does_not_answer_the_first_request_is_asked_again(tmp_path, host, cifar, fast,
                                                                              monkeypatch):
    # the official host is the last source (STL-10's unlabeled split has no other): one lost first request
    # must not end the load; a host that never answers is asked twice, then named (the test above)
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)
    host.serve("/~kriz/cifar-10-python.tar.gz", host.files["/~kriz/cifar-10-python.tar.gz"][0], "silent_first")
    use(monkeypatch, "cifar10", official)
    assert data.load("cifar10", "test", tmp_path).labels.tolist() == labels.tolist()
    assert [r[2] for r in _gets(host, "cifar-10-python")] == [None, None]


def test_a_corrupt_official_download_is_deleted_and_named(tmp_path, host, cifar, monkeypatch):
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)
    host.serve("/~kriz/cifar-10-python.tar.gz", host.files["/~kriz/cifar-10-python.tar.gz"][0], "corrupt")
    use(monkeypatch, "cifar10", official)
    with pytest.raises(data.DatasetNotFoundError, match="fails its MD5"):
        data.load("cifar10", "test", tmp_path)
    assert not list(tmp_path.glob("cifar-10-python.tar.gz*"))   # neither the archive nor a partial file is kept


def test_stl10s_unlabeled_split_goes_to_the_official_host_only(tmp_path, host, monkeypatch):
    path = "data/train-00000-of-00001.parquet"
    host.serve(host.hub_path("tanganke/stl10", REV, path), b"unused")
    mirror = download.HubParquet(repo="tanganke/stl10", revision=REV, image_column="image", label_column="label",
                                 labels=data.STL10_CLASSES, splits={"train": (download.HubFile(path, "0" * 64),)},
                                 read_at="a test", endpoint=host.url)
    use(monkeypatch, "stl10", mirror, download.OfficialArchive("http://127.0.0.1:9/stl10_binary.tar.gz", "0" * 32))
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("stl10", "unlabeled", tmp_path)
    assert host.requests == [] and "hub tanganke" not in str(err.value) and "official 127.0.0.1:9" in str(err.value)


@pytest.mark.parametrize("complete", [True, False])
def test_a_mirror_with_shuffled_rows_is_put_back_in_the_official_order(tmp_path, host, monkeypatch, complete):
    """tanganke/stl10's rows are shuffled; each image's path names its official index."""
    monkeypatch.setitem(data.SPLIT_SIZES, "stl10", {"train": 20, "test": 20, "unlabeled": 20})
    images, labels = _images(20, 96, seed=3), np.arange(20) % 10
    shuffle = np.random.default_rng(0).permutation(20)
    paths = [f"{i}.png" for i in shuffle]
    if not complete:
        paths[0] = paths[1]   # one index twice, one missing
    path = "data/test-00000-of-00001.parquet"
    content = hub_parquet(images[shuffle], labels[shuffle], data.STL10_CLASSES, image_column="image", paths=paths)
    host.serve(host.hub_path("tanganke/stl10", REV, path), content)
    use(monkeypatch, "stl10", download.HubParquet(
        repo="tanganke/stl10", revision=REV, image_column="image", label_column="label", labels=data.STL10_CLASSES,
        splits={"test": (download.HubFile(path, hashlib.sha256(content).hexdigest()),)}, rows_by_path_stem=True,
        read_at="a test", endpoint=host.url))
    if not complete:
        with pytest.raises(data.DatasetNotFoundError, match="do not number them 0..19 once each"):
            data.load("stl10", "test", tmp_path)
        return
    d = data.load("stl10", "test", tmp_path)
    assert torch.equal(d.images, torch.from_numpy(images).permute(0, 3, 1, 2)) and d.labels.tolist() == labels.tolist()


@pytest.mark.parametrize("problem, message", [
    ("names", "names its classes"),                 # the file's own class names disagree with the table
    ("unknown", "are not the official ones"),       # a class the dataset does not have
    ("short", "images per class"),                  # a class short of images
    ("size", "images of (3, 32, 32) torch.uint8, not (3, 24, 24)"),   # another size: refused, not resized
    ("label", "labels outside 0..9"),               # a label number the class list does not have
])
def test_a_mirror_that_is_not_the_dataset_fails_loudly(tmp_path, host, cifar, monkeypatch, capsys, problem, message):
    images, labels = cifar
    names, table = list(data.CIFAR10_CLASSES), data.CIFAR10_CLASSES
    if problem == "names":
        names = names[1:] + names[:1]
    if problem == "unknown":
        names = table = tuple(["kangaroo"] + names[1:])
    if problem == "short":
        labels = labels.copy()
        labels[0] = 1
    if problem == "size":
        monkeypatch.setitem(data.IMAGE_SIZE, "cifar10", 24)
    if problem == "label":
        labels = labels.copy()
        labels[0] = 10
    good = parquet_mirror(host, hub_parquet(images, CIFAR_LABELS, data.CIFAR10_CLASSES), repo="other/cifar10")
    use(monkeypatch, "cifar10", parquet_mirror(host, hub_parquet(images, labels, names), labels=tuple(table)), good)
    if problem == "size":   # (no source can deliver images of this size)
        with pytest.raises(data.DatasetNotFoundError) as err:
            data.load("cifar10", "test", tmp_path, cache=False)
        assert message in str(err.value)
        return
    d = data.load("cifar10", "test", tmp_path, cache=False)   # refused loudly, and the next source used
    out = capsys.readouterr().out
    assert message in out and "trying hub other/cifar10" in out and d.origin == "hub other/cifar10@01234567"


def test_with_every_source_down_the_error_names_each_and_comes_within_seconds(tmp_path):
    began = time.monotonic()   # the autouse fixture points every source at a closed port
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("cifar10", "test", tmp_path)
    assert time.monotonic() - began < 10
    message = str(err.value)
    for source in download.SOURCES["cifar10"]:
        assert source.origin in message
    assert "every source failed" in message and message.count("Connection refused") == len(download.SOURCES["cifar10"])
    assert str(tmp_path / "cifar10" / "test") in message and "COURSE_DATA_DIR" in message
    assert "Traceback" not in message and err.value.__cause__ is None


def test_a_silent_official_host_times_out_with_a_clear_message(tmp_path, host, cifar, fast, monkeypatch):
    use(monkeypatch, "cifar10", download.OfficialArchive(host.serve("/cifar-10-python.tar.gz", b"x", "silent"),
                                                         "0" * 32))
    before = socket.getdefaulttimeout()
    began = time.monotonic()
    with pytest.raises(data.DatasetNotFoundError, match="no answer within the time limit"):
        data.load("cifar10", "test", tmp_path)
    assert time.monotonic() - began < 5
    assert len(_gets(host, "cifar-10-python")) == 2   # asked twice, then named
    assert socket.getdefaulttimeout() == before   # the process-wide default is restored


def test_tiny_imagenet_comes_from_the_archive_on_the_hub_with_its_boxes(tmp_path, host, monkeypatch, capsys):
    archive = tiny_zip()
    monkeypatch.setitem(data.SPLIT_SIZES, "tiny-imagenet", {"train": 4, "val": 4})
    path = "tiny-imagenet-200.zip"
    host.serve(host.hub_path("cnak47/cv-datasets", REV, path), archive)
    mirror = download.HubArchive(repo="cnak47/cv-datasets", revision=REV, read_at="a test", endpoint=host.url,
                                 file=download.HubFile(path, hashlib.sha256(archive).hexdigest()),
                                 md5=hashlib.md5(archive).hexdigest())
    use(monkeypatch, "tiny-imagenet", mirror)
    va = data.load("tiny-imagenet", "val", tmp_path)
    assert va.class_ids == ("n01", "n02") and va.classes == ("goldfish", "tabby")
    assert va.labels.tolist() == [1, 1, 0, 0]               # by WordNet id, sorted
    assert va.boxes.tolist() == [[0, 2, 30, 40], [1, 2, 30, 40], [2, 2, 30, 40], [3, 2, 30, 40]]
    assert va.origin == "hub cnak47/cv-datasets@01234567"
    tr = data.load("tiny-imagenet", "train", tmp_path)        # extracted once: read from disk
    assert len(_gets(host, path)) == 1 and tr.labels.tolist() == [0, 0, 1, 1]
    assert tr.boxes.tolist() == [[0, 1, 60, 50], [1, 1, 60, 51], [0, 1, 60, 50], [1, 1, 60, 51]]
    assert tr.origin == va.origin == data.load("tiny-imagenet", "val", tmp_path).origin   # also from the cache


def test_cifar10s_official_archive_on_the_hub_is_read_as_torchvision_reads_it(tmp_path, host, cifar, monkeypatch):
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)   # (sets torchvision's MD5 lists)
    tarball = host.files["/~kriz/cifar-10-python.tar.gz"][0]
    path = "cifar-10-python.tar.gz"
    host.serve(host.hub_path("cnak47/cv-datasets", REV, path), tarball)
    mirror = download.HubArchive(repo="cnak47/cv-datasets", revision=REV, read_at="a test", endpoint=host.url,
                                 file=download.HubFile(path, hashlib.sha256(tarball).hexdigest()), md5=official.md5)
    use(monkeypatch, "cifar10", mirror, official)
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist() and d.origin == "hub cnak47/cv-datasets@01234567"
    again = data.load("cifar10", "test", tmp_path, cache=False)   # from the extracted files, same origin
    assert again.origin == d.origin and len(_gets(host, path)) == 1 and not _gets(host, "/~kriz/")


def test_a_tiny_imagenet_archive_that_is_not_the_dataset_is_refused_and_removed(tmp_path, host, monkeypatch):
    archive = tiny_zip(per_class=3)   # 3 images per class where the split should hold 2
    monkeypatch.setitem(data.SPLIT_SIZES, "tiny-imagenet", {"train": 4, "val": 4})
    path = "tiny-imagenet-200.zip"
    host.serve(host.hub_path("cnak47/cv-datasets", REV, path), archive)
    use(monkeypatch, "tiny-imagenet", download.HubArchive(
        repo="cnak47/cv-datasets", revision=REV, read_at="a test", endpoint=host.url,
        file=download.HubFile(path, hashlib.sha256(archive).hexdigest()), md5=hashlib.md5(archive).hexdigest()))
    with pytest.raises(data.DatasetNotFoundError, match="6 images where the split has 4"):
        data.load("tiny-imagenet", "val", tmp_path)
    assert not (tmp_path / "tiny-imagenet-200").exists()   # not left to be read as a folder next time


def test_an_archive_on_the_hub_must_also_pass_the_official_md5(tmp_path, host, monkeypatch):
    archive = tiny_zip()
    path = "tiny-imagenet-200.zip"
    host.serve(host.hub_path("cnak47/cv-datasets", REV, path), archive)
    mirror = download.HubArchive(repo="cnak47/cv-datasets", revision=REV, read_at="a test", endpoint=host.url,
                                 file=download.HubFile(path, hashlib.sha256(archive).hexdigest()), md5="0" * 32)
    use(monkeypatch, "tiny-imagenet", mirror)
    with pytest.raises(data.DatasetNotFoundError, match="not the official MD5"):
        data.load("tiny-imagenet", "val", tmp_path)
    assert not (tmp_path / "tiny-imagenet-200").exists()


# ----------------------------------------------------------------------------- the official archives on disk

@pytest.mark.parametrize("name, dataset_class", [("cifar10", "CIFAR10"), ("stl10", "STL10")])
def test_a_half_downloaded_torchvision_archive_is_named(tmp_path, name, dataset_class):
    import torchvision.datasets
    cls = getattr(torchvision.datasets, dataset_class)
    archive = tmp_path / cls.filename
    archive.write_bytes(b"\x1f\x8b\x08 only the first bytes")
    with pytest.raises(data.DatasetNotFoundError, match="fails its checksum") as err:
        data.load(name, "test", tmp_path)
    assert str(archive) in str(err.value) and "Delete it and load again" in str(err.value)
    assert archive.exists()


def test_extracted_official_files_are_read_without_asking_any_host(tmp_path, host, cifar, monkeypatch):
    """torchvision's extracted CIFAR-10 files pass their check: no source is tried, and a broken
    archive beside them does not matter."""
    images, labels = cifar
    official = official_cifar(host, monkeypatch, images, labels)
    with tarfile.open(fileobj=io.BytesIO(host.files["/~kriz/cifar-10-python.tar.gz"][0])) as tar:
        tar.extractall(tmp_path, filter="data")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08 only the first bytes")
    use(monkeypatch, "cifar10", official)
    d = data.load("cifar10", "test", tmp_path, cache=False)
    assert d.labels.tolist() == labels.tolist() and host.requests == []


# ----------------------------------------------------------------------------- the table and the parts

def test_the_table_pins_every_mirror_and_ends_with_the_official_host(real_sources):
    from torchvision.datasets import CIFAR10, STL10
    real = real_sources
    assert set(real) == set(data.SPLITS)
    served = set()
    for name, sources in real.items():
        *mirrors, official = sources
        assert isinstance(official, download.OfficialArchive) and re.fullmatch(r"[0-9a-f]{32}", official.md5)
        assert mirrors and all(isinstance(m, (download.HubParquet, download.HubArchive)) for m in mirrors)
        for m in mirrors:
            assert re.fullmatch(r"[0-9a-f]{40}", m.revision), m
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", m.repo) and m.read_at
            files = [f for fs in m.splits.values() for f in fs] if isinstance(m, download.HubParquet) else [m.file]
            for f in files:
                assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f
            if isinstance(m, download.HubParquet):
                assert set(m.splits) <= set(data.SPLITS[name]) and sorted(m.labels) == sorted(
                    data.OFFICIAL_CLASSES[name])
                served |= {(name, s) for s in m.splits}
            else:
                assert m.md5 == official.md5   # the official archive itself
                served |= {(name, s) for s in data.SPLITS[name]}
    every = {(name, s) for name, splits in data.SPLITS.items() for s in splits}
    assert every - served == set(download.OFFICIAL_ONLY) == {("stl10", "unlabeled")}
    # the official hosts as torchvision knows them
    assert (real["cifar10"][-1].url, real["cifar10"][-1].md5) == (CIFAR10.url, CIFAR10.tgz_md5)
    assert (real["stl10"][-1].url, real["stl10"][-1].md5) == (STL10.url, STL10.tgz_md5)


def test_the_speed_watch_stops_a_slow_transfer_and_lets_a_fast_one_finish(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(download.time, "monotonic", lambda: clock[0])
    bar = download._watched_bar("a source", limit=60)(total=100_000_000, disable=True)   # disabled bars count too
    clock[0] = 1.0
    bar.update(100_000)            # 1,000 s at this rate, but the first 5 s are not judged
    clock[0] = 10.0
    bar.update(19_900_000)         # 20 MB in 10 s: 50 s for the file
    clock[0] = 12.0
    bar.update(1_000_000)          # 21 MB in 12 s: 57 s
    clock[0] = 20.0
    with pytest.raises(download.TooSlow, match="1.1 MB/s would take about 2 min for 100.0 MB"):
        bar.update(1_000_000)      # 22 MB in 20 s: 91 s, over the minute allowed
    unwatched = download._watched_bar("the last source", limit=None)(total=100_000_000, disable=True)
    clock[0] = 1000.0
    unwatched.update(1)            # the last source is never stopped


def test_the_bar_takes_what_older_huggingface_hubs_pass_it():
    bar = download._watched_bar("a source", limit=60)(unit="B", unit_scale=True, total=10, initial=0, desc="file",
                                                      disable=False, name="huggingface_hub.http_get")
    bar.update(10)
    bar.close()
    quiet = download._watched_bar("a source", limit=60, show=False)(total=10, desc="file")
    assert quiet.disable


def test_huggingface_hub_settings_are_put_back():
    from huggingface_hub import constants
    before = (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.DOWNLOAD_CHUNK_SIZE, constants.HF_HUB_DISABLE_XET)
    with pytest.raises(RuntimeError):
        with download._hub_settings():
            assert constants.DOWNLOAD_CHUNK_SIZE == download.CHUNK_BYTES and constants.HF_HUB_DISABLE_XET
            raise RuntimeError
    assert (constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.DOWNLOAD_CHUNK_SIZE, constants.HF_HUB_DISABLE_XET) == before


@pytest.mark.data
@pytest.mark.parametrize("name, split", [("cifar10", "train"), ("cifar10", "test"), ("tiny-imagenet", "val")])
def test_the_content_check_accepts_the_real_datasets(data_dir, name, split):
    """The checks every download must pass, on the real images of the data pack (CIFAR-10 re-encoded as
    JPEG; Tiny ImageNet's validation split as distributed): sizes and counts are the datasets' own."""
    download.check_content(data.load(name, split, data_dir, verbose=False), name, split)
