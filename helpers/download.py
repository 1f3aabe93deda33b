"""Where the course's datasets come from when they are not on disk, and how they are fetched.

`SOURCES` is the one table of hosts: for each dataset, the Hugging Face Hub mirrors first (parquet
files, or the official archive itself, pinned to a commit and checked by the SHA-256 the Hub
publishes), then the official host (through torchvision, whose MD5 checks stay). `fetch(name, split,
root)` tries them in order:

- a source that does not answer within CONNECT_TIMEOUT seconds, or goes silent for READ_TIMEOUT
  seconds in the middle of a transfer, is passed over for the next;
- a mirror whose measured speed would take longer than SLOW_SOURCE_SECONDS for its file is
  abandoned for the next source, with one line saying so (the last source is never abandoned for
  being slow: there would be nothing left to try);
- a file that fails its checksum is deleted and the next source is tried;
- whatever the source, the split is checked after it arrives (`check_content`): its size, images
  per class, image size, and labels mapped by class name to the dataset's official order.

What was used is printed with the time it took and kept in `ImageData.source` / `.origin`
(`results.record` writes the origin into every result). Offline, or with every source down, the
error names each source tried and why it failed.

Fetching from the Hub is huggingface_hub's job (revision pinning, its cache under
`<data>/huggingface/`, resuming a transfer cut off mid-file); reading parquet is pyarrow's.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import images as _images
from .images import DatasetNotFoundError, ImageData

CONNECT_TIMEOUT = 10        # seconds a host may take to answer a request
READ_TIMEOUT = 30           # seconds a host may stay silent in the middle of a transfer
SLOW_SOURCE_SECONDS = 300   # a mirror projected to need longer than this for a file is left for the next source
CHUNK_BYTES = 1 << 18       # bytes read between two speed checks (huggingface_hub reads 10 MB by default)
RESUME_ATTEMPTS = 6         # a Hub transfer cut off mid-file is tried again this many times (see _hub_file)


class TooSlow(Exception):
    """Raised from the progress bar: the source would take longer than its time limit."""


class ChecksumError(ValueError):
    """A downloaded file that is not the pinned one (SHA-256 or MD5)."""


class ContentError(ValueError):
    """A split that arrived but is not the dataset: wrong size, classes, image size or labels."""


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class HubFile:
    """One file of a dataset repository on the Hub, as the Hub's page for it describes it."""
    path: str
    sha256: str   # the page's "SHA256" (the file's Git LFS object id)


@dataclass(frozen=True)
class HubParquet:
    """A dataset in parquet on the Hugging Face Hub, pinned to one commit.

    splits: the course's split name -> the parquet files that hold it, in order.
    labels: the mirror's class names in the order of its label numbers (its dataset card); they
        are mapped by name onto the official order. The parquet files' own metadata, where
        present, must agree.
    """
    repo: str
    revision: str
    splits: dict
    image_column: str
    label_column: str
    labels: tuple[str, ...]
    read_at: str                    # where the revision, checksums and labels were read
    endpoint: str | None = None     # None: huggingface_hub's own (https://huggingface.co, or $HF_ENDPOINT)
    rows_by_path_stem: bool = False  # rows shuffled, each image's `path` named by its official index

    @property
    def origin(self) -> str:
        return f"hub {self.repo}@{self.revision[:8]}"


@dataclass(frozen=True)
class HubArchive:
    """The official archive itself, copied to the Hugging Face Hub: checked by the Hub's SHA-256
    and by the official MD5, then read as the official download is."""
    repo: str
    revision: str
    file: HubFile
    md5: str
    read_at: str
    endpoint: str | None = None

    @property
    def origin(self) -> str:
        return f"hub {self.repo}@{self.revision[:8]}"


@dataclass(frozen=True)
class OfficialArchive:
    """The dataset's own host, fetched through torchvision and checked by the MD5 it publishes."""
    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def origin(self) -> str:
        return "official " + self.url.split("/")[2]


_CNAK47 = dict(repo="cnak47/cv-datasets", revision="6931f66584bf3a507711a644f6803fa5f419faf1",
               read_at="https://huggingface.co/datasets/cnak47/cv-datasets/commit/6931f66584bf3a507711a644f6803fa5f419faf1")

# Every host the course downloads from, in the order tried. Hub files are pinned to a commit and
# checked by SHA-256; the official archives by the MD5 torchvision (or the host) publishes. The note of
# issue 14 says where each value was read. The official URLs and MD5s equal torchvision's own (tested).
SOURCES: dict[str, tuple] = {
    "cifar10": (
        HubParquet(
            repo="uoft-cs/cifar10", revision="0b2714987fa478483af9968de7c934580d0bb9a2",
            splits={"train": (HubFile("plain_text/train-00000-of-00001.parquet",
                                      "8428b53a88a11ac374111006708df51469e315a22ac6d66470afd9c78d2ae883"),),
                    "test": (HubFile("plain_text/test-00000-of-00001.parquet",
                                     "841389e6f2d64f28bf17310e430aebac20ec3ba611a3c5e231dc93c645ce84de"),)},
            image_column="img", label_column="label", labels=_images.CIFAR10_CLASSES,
            read_at="https://huggingface.co/datasets/uoft-cs/cifar10 (file pages of both files; README dataset_info)"),
        HubArchive(file=HubFile("cifar-10-python.tar.gz",
                                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
                   md5="c58f30108f718f92721af3b95e74349a", **_CNAK47),
        OfficialArchive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    ),
    "stl10": (
        HubParquet(
            repo="tanganke/stl10", revision="5e47e3613d05e2527c82cf36288a5d1f79cba870",
            splits={"train": (HubFile("data/train-00000-of-00001.parquet",
                                      "b450f19e41454731be0bcddc7093fcf9793fe9b64ea795e6ef18ca77f34c353d"),),
                    "test": (HubFile("data/test-00000-of-00001.parquet",
                                     "298b23e983c755dfba2c69dec181340221deb1a5ad6651990c7c5c559fb892be"),)},
            image_column="image", label_column="label", labels=_images.STL10_CLASSES, rows_by_path_stem=True,
            read_at="https://huggingface.co/datasets/tanganke/stl10 (file pages; tree at 5e47e36)"),
        OfficialArchive("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb"),
    ),
    "tiny-imagenet": (
        HubArchive(file=HubFile("tiny-imagenet-200.zip",
                                "6198c8ae015e2b3e007c7841da39ec069199b9aa3bfa943a462022fe5e43c821"),
                   md5="90528d7ca1a48142e341f4ef8d21d0de", **_CNAK47),
        OfficialArchive("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de"),
    ),
}

# Splits that only the official host serves, and why (a mirror without a checksum that could be
# read is not pinned: tests/test_download.py keeps this list from growing unnoticed).
OFFICIAL_ONLY = {
    ("stl10", "unlabeled"): "no SHA-256 for the unlabeled parquet shards of jxie/stl10 (the one Hub copy found) "
                            "could be read, so none is pinned",
}


# ----------------------------------------------------------------------------- progress and speed

def _watched_bar(source: str, limit: float | None, show: bool = True):
    """A tqdm class for huggingface_hub's `tqdm_class`: a progress bar (size, speed, time left) that
    stops the transfer once its measured speed projects more than `limit` seconds for the file."""
    from tqdm.auto import tqdm

    class WatchedBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)   # some huggingface_hub 1.x pass their own bars' `name`: tqdm refuses it
            kwargs["disable"] = kwargs.get("disable") or not show
            kwargs["desc"] = f"{source}: {kwargs.get('desc') or ''}"
            super().__init__(*args, **kwargs)
            self._began, self._done = time.monotonic(), 0
            self._total, self._initial = kwargs.get("total"), kwargs.get("initial") or 0

        def update(self, n=1):
            # counted here: a disabled bar does not count in tqdm
            self._done += n or 0
            elapsed = time.monotonic() - self._began
            if limit is not None and self._total and self._done > 0 and elapsed >= min(5.0, limit / 10):
                projected = elapsed * (self._total - self._initial) / self._done
                if projected > limit:
                    rate = self._done / elapsed
                    raise TooSlow(f"{_size(rate)}/s would take about {projected / 60:.0f} min for "
                                  f"{_size(self._total)} (limit {limit / 60:.0f} min)")
            return super().update(n)

    return WatchedBar


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


@contextlib.contextmanager
def _hub_settings() -> Iterator[None]:
    """huggingface_hub's read timeout and chunk size for the duration of a download. Both are module
    settings (the environment variable HF_HUB_DOWNLOAD_TIMEOUT sets the first at import); the chunk is
    how often the speed can be checked. Xet transfers are turned off meanwhile: their progress comes
    from another thread, where a slow source could not be stopped; the Hub serves every file over plain
    HTTPS as well."""
    from huggingface_hub import constants
    wanted = {"HF_HUB_DOWNLOAD_TIMEOUT": READ_TIMEOUT, "DOWNLOAD_CHUNK_SIZE": CHUNK_BYTES, "HF_HUB_DISABLE_XET": True}
    old = {k: getattr(constants, k) for k in wanted if hasattr(constants, k)}
    for k in old:
        setattr(constants, k, wanted[k])
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(constants, k, v)


# ----------------------------------------------------------------------------- Hub files

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _forget(path: Path) -> None:
    """Delete a cached Hub file (the snapshot's link and the blob behind it)."""
    with contextlib.suppress(OSError):
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)


def _hub_file(mirror, file: HubFile, cache: Path, limit: float | None, verbose: bool) -> tuple[Path, int]:
    """The file from the Hub's cache or the Hub, SHA-256 checked; (path, bytes downloaded)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    cached = try_to_load_from_cache(mirror.repo, file.path, cache_dir=str(cache), revision=mirror.revision,
                                    repo_type="dataset")
    if isinstance(cached, str):
        if sha256(Path(cached)) == file.sha256:
            return Path(cached), 0
        _forget(Path(cached))
    # A quick question first: a host that does not answer is passed over within CONNECT_TIMEOUT
    # (huggingface_hub would retry for a minute), and the answer must name the pinned file.
    url = hf_hub_url(mirror.repo, file.path, repo_type="dataset", revision=mirror.revision, endpoint=mirror.endpoint)
    began = time.monotonic()
    try:
        meta = get_hf_file_metadata(url, timeout=CONNECT_TIMEOUT, endpoint=mirror.endpoint)
    finally:
        _images.note_download(time.monotonic() - began)
    if meta.etag and len(meta.etag) == 64 and meta.etag != file.sha256:
        raise ChecksumError(f"the Hub names {file.path} at {mirror.revision[:8]} with SHA-256 {meta.etag}, "
                            f"not the pinned {file.sha256}; not downloaded")
    watch = {}
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:   # huggingface_hub 1.1 and later
        watch["tqdm_class"] = _watched_bar(mirror.origin, limit, show=verbose)
    elif limit is not None and verbose:
        print(f"note: this huggingface_hub ({_hub_version()}) cannot report progress to the course, so a slow "
              f"{mirror.origin} is not abandoned for the next source; `pip install -U huggingface_hub` allows it")
    began = time.monotonic()
    for attempt in range(RESUME_ATTEMPTS + 1):
        try:
            with _hub_settings():
                path = Path(hf_hub_download(mirror.repo, file.path, repo_type="dataset", revision=mirror.revision,
                                            cache_dir=str(cache), endpoint=mirror.endpoint,
                                            etag_timeout=CONNECT_TIMEOUT, **watch))
            break
        except Exception as err:
            # A connection cut mid-file: huggingface_hub 2.x resumes it where it stopped within the call (five
            # times), then gives up and keeps nothing; 1.x keeps the partial file and resumes it on the next
            # call. So it is called again, up to RESUME_ATTEMPTS times. Anything else: the next source.
            if attempt == RESUME_ATTEMPTS or not _cut_off(err):
                raise
            if verbose:
                print(f"{mirror.origin}: the transfer of {file.path} was cut off ({type(err).__name__}); "
                      f"trying again")
        finally:
            _images.note_download(time.monotonic() - began)
            began = time.monotonic()
    got = sha256(path)
    if got != file.sha256:
        _forget(path)
        raise ChecksumError(f"{file.path} has SHA-256 {got}, not the pinned {file.sha256}: a corrupt transfer or "
                            f"a changed file; deleted")
    return path, path.stat().st_size


def _cut_off(err: BaseException) -> bool:
    """A connection closed in the middle of a transfer (httpx, httpx2, requests or urllib3 words)."""
    names = {type(e).__name__ for e in (err, err.__cause__, err.__context__) if e is not None}
    return bool(names & {"RemoteProtocolError", "ReadError", "ChunkedEncodingError", "IncompleteRead", "ProtocolError"})


def _endpoint(mirror) -> str:
    from huggingface_hub import constants
    return mirror.endpoint or constants.ENDPOINT


def _hub_version() -> str:
    import huggingface_hub
    return huggingface_hub.__version__


# ----------------------------------------------------------------------------- parquet

def parquet_labels(path: Path, column: str) -> tuple[str, ...] | None:
    """The class names a parquet file written by 🤗 datasets records for `column`, if any."""
    import pyarrow.parquet as pq
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return None
    feature = json.loads(raw).get("info", {}).get("features", {}).get(column, {})
    names = feature.get("names")
    return tuple(names) if isinstance(names, list) else None


def read_parquet(mirror: HubParquet, split: str, files: list[Path], name: str) -> ImageData:
    """Decode a mirror's parquet files into an ImageData in the official label order."""
    import pyarrow.parquet as pq

    official = _images.OFFICIAL_CLASSES[name]
    labeled = split != "unlabeled"
    mapping = None
    if labeled:
        for f in files:
            own = parquet_labels(f, mirror.label_column)
            if own is not None and own != mirror.labels:
                raise ContentError(f"{f.name} names its classes {_images.short(own)}, the table "
                                   f"{_images.short(mirror.labels)}")
        unknown = [c for c in mirror.labels if c not in official]
        if unknown or len(set(mirror.labels)) != len(official):
            raise ContentError(f"the mirror's classes {_images.short(mirror.labels)} are not the official ones "
                               f"{_images.short(official)} (unknown: {_images.short(unknown)})")
        mapping = np.array([official.index(c) for c in mirror.labels])
    columns = [mirror.image_column] + ([mirror.label_column] if labeled else [])
    cells, marks, where = [], [], []
    for f in files:
        table = pq.read_table(f, columns=columns)
        cells += table.column(mirror.image_column).to_pylist()
        marks += table.column(mirror.label_column).to_pylist() if labeled else [-1] * table.num_rows
        where += [f"{f.name} row {i}" for i in range(table.num_rows)]
    if labeled and not all(isinstance(m, int) and 0 <= m < len(mirror.labels) for m in marks):
        raise ContentError(f"labels outside 0..{len(mirror.labels) - 1}")
    order = range(len(cells))
    if mirror.rows_by_path_stem:   # the official order, from each image's file name
        index = [_path_index(c) for c in cells]
        if sorted(i for i in index if i is not None) != list(range(len(cells))):
            raise ContentError(f"the images' paths do not number them 0..{len(cells) - 1} once each")
        order = np.argsort(index)
    arrays, labels, skipped = [], [], []
    for i in order:
        cell = cells[i]
        raw = cell["bytes"] if isinstance(cell, dict) else cell
        arr, note = _images.decode(io.BytesIO(raw), None)   # not resized: check_content judges the size
        if arr is None:
            skipped.append((where[i], note))
            continue
        arrays.append(arr)
        labels.append(int(mapping[marks[i]]) if labeled else -1)
    if not arrays:
        raise ContentError(f"none of its {len(cells):,} images decodes ({skipped[0][1] if skipped else 'no rows'})")
    return ImageData(images=_images.stack(arrays, files[0].parent), labels=torch.tensor(labels, dtype=torch.int64),
                     classes=official, name=name, split=split, skipped=skipped)


def _path_index(cell) -> int | None:
    path = cell.get("path") if isinstance(cell, dict) else None
    stem = Path(path).stem if path else ""
    return int(stem) if stem.isdigit() else None


# ----------------------------------------------------------------------------- content checks

def check_content(d: ImageData, name: str, split: str) -> None:
    """Raise ContentError unless `d` is the whole split as the dataset defines it."""
    size, side = _images.SPLIT_SIZES[name][split], _images.IMAGE_SIZE[name]
    problems = []
    if len(d) != size:
        problems.append(f"{len(d):,} images where the split has {size:,}")
    if tuple(d.images.shape[1:]) != (3, side, side) or d.images.dtype != torch.uint8:
        problems.append(f"images of {tuple(d.images.shape[1:])} {d.images.dtype}, not (3, {side}, {side}) uint8")
    if split == "unlabeled":
        if (d.labels != -1).any():
            problems.append("labels in the unlabeled split")
    else:
        official = _images.OFFICIAL_CLASSES.get(name)
        if official is not None and tuple(d.classes) != official:
            problems.append(f"classes {_images.short(d.classes)}, not the official order {_images.short(official)}")
        counts = torch.bincount(d.labels.clamp(min=0), minlength=len(d.classes))
        per = size // max(len(d.classes), 1)
        off = [(d.classes[i], int(n)) for i, n in enumerate(counts) if n != per]
        if (d.labels < 0).any() or off:
            problems.append(f"images per class {_images.short(off)} where every class has {per}")
    if problems:
        raise ContentError(f"{name} ({split}) is not the dataset: " + "; ".join(problems))


# ----------------------------------------------------------------------------- official hosts

@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """A timeout for every socket opened meanwhile: torchvision's download_url takes none, and a
    server that accepts and never answers would hang the notebook forever."""
    import socket
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _extracted_folder(name: str, root: Path) -> Path:
    return root / ("tiny-imagenet-200" if name == "tiny-imagenet" else _torchvision_class(name).base_folder)


def _torchvision_class(name: str):
    from torchvision.datasets import CIFAR10, STL10
    return {"cifar10": CIFAR10, "stl10": STL10}.get(name)


def extracted_ok(name: str, root: Path) -> bool:
    """torchvision's own check of its extracted files (its _check_integrity, without an instance)."""
    from torchvision.datasets.utils import check_integrity
    cls = _torchvision_class(name)
    if cls is None:
        return False
    return all(check_integrity(str(root / cls.base_folder / f), md5) for f, md5 in cls.train_list + cls.test_list)


def check_archive(archive: Path, md5: str) -> None:
    """A half-written archive is named here: torchvision would try to download it again and, offline,
    say only that the dataset is missing. (fetch() reads torchvision's extracted files before it gets
    here: a broken archive beside good extracted files does not matter.)"""
    from torchvision.datasets.utils import check_integrity
    if archive.exists() and not check_integrity(str(archive), md5):
        raise DatasetNotFoundError(
            f"{archive} fails its checksum (MD5): an interrupted download? Delete it and load again to "
            f"download it anew, or put a good copy in its place.")


def read_torchvision(name: str, split: str, root: Path) -> ImageData:
    """CIFAR-10 or STL-10 from torchvision's extracted files (checked by torchvision's MD5s)."""
    cls = _torchvision_class(name)
    if name == "cifar10":
        ds = cls(str(root), train=(split == "train"), download=False)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.int64)
    else:
        ds = cls(str(root), split=split, download=False)
        images, labels = torch.from_numpy(ds.data), torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
    return ImageData(images, labels, _images.OFFICIAL_CLASSES[name], name=name, split=split,
                     source=str(root / cls.base_folder))


def _download_resumable(url: str, archive: Path, md5: str, verbose: bool) -> int:
    """`url` into `archive`, resumed where it stopped: the bytes received so far are kept in
    `<archive>.partial`, a transfer that stalls (READ_TIMEOUT) or is cut off asks the host for the rest
    (an HTTP Range request) up to RESUME_ATTEMPTS times, and a load started after a disconnect goes on from
    the partial file. A host that ignores ranges sends the whole file again. The finished file must pass
    the official MD5 (a failing one is deleted) before it takes the archive's name. Returns the bytes
    downloaded by this call."""
    import http.client
    import urllib.error
    import urllib.request

    partial = archive.with_name(archive.name + ".partial")
    fetched, tries, last = 0, 0, -1
    bar = _watched_bar(f"official {url.split('/')[2]}", None, show=verbose)
    progress = None
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with socket_timeout(READ_TIMEOUT), urllib.request.urlopen(request, timeout=READ_TIMEOUT) as response:
                if have and response.status != 206:   # ranges ignored: the whole file comes again
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length else None
                if progress is None:
                    progress = bar(total=total, initial=have, unit="B", unit_scale=True, desc=archive.name)
                with open(partial, "ab" if have else "wb") as f:
                    for block in iter(lambda: response.read1(CHUNK_BYTES), b""):   # what has come, not a whole chunk
                        f.write(block)
                        fetched += len(block)
                        progress.update(len(block))
                if total is not None and partial.stat().st_size < total:
                    raise ConnectionError(f"the host closed the connection after {_size(partial.stat().st_size)} "
                                          f"of {_size(total)}")
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:   # nothing left to send: the partial file is whole
                break
            raise
        except (OSError, http.client.HTTPException) as err:   # a stall (socket timeout), a cut connection: the rest
            got = partial.stat().st_size if partial.exists() else 0
            tries = 1 if got > last else tries + 1   # RESUME_ATTEMPTS tries in a row without a byte more: give up
            last = got
            if tries > (RESUME_ATTEMPTS if got else 1):   # a host that never sent a byte: asked twice, not seven times
                raise
            if verbose:
                print(f"\n{archive.name}: the transfer stopped after {_size(got)} ({_why(err)}); asking for the rest")
    if progress is not None:
        progress.close()
    from torchvision.datasets.utils import check_integrity
    if not check_integrity(str(partial), md5):
        partial.unlink(missing_ok=True)
        raise ChecksumError(f"{archive.name} from {url} fails its MD5 {md5}: a corrupt transfer; deleted")
    os.replace(partial, archive)
    return fetched


def _from_official(source: OfficialArchive, name: str, split: str, root: Path) -> tuple[ImageData | None, int]:
    """The archive from the official host, checked and extracted; the split read from it (Tiny
    ImageNet: None, fetch() reads the extracted layout). The download resumes where an earlier one stopped
    (`_download_resumable`); an archive that was there before and fails its MD5 is named, not deleted."""
    from torchvision.datasets.utils import extract_archive
    root.mkdir(parents=True, exist_ok=True)
    archive = root / source.filename
    existed = archive.exists()
    check_archive(archive, source.md5)
    fetched = 0
    if not existed:
        began = time.monotonic()
        try:
            fetched = _download_resumable(source.url, archive, source.md5, verbose=True)
        finally:
            _images.note_download(time.monotonic() - began)
    extract_archive(str(archive), str(root))
    _images.mark_origin(_extracted_folder(name, root), source.origin)
    return (None if name == "tiny-imagenet" else read_torchvision(name, split, root)), fetched


# ----------------------------------------------------------------------------- trying the sources

def _from_hub(mirror: HubParquet, name: str, split: str, root: Path, limit: float | None,
              verbose: bool) -> tuple[ImageData, int]:
    files = mirror.splits[split]
    paths, fetched = [], 0
    for f in files:
        path, n = _hub_file(mirror, f, root / "huggingface", limit, verbose)
        paths.append(path)
        fetched += n
    d = read_parquet(mirror, split, paths, name)
    d.source = f"{_endpoint(mirror)}/datasets/{mirror.repo} at {mirror.revision} ({', '.join(f.path for f in files)}; SHA-256 checked)"
    return d, fetched


def _from_hub_archive(mirror: HubArchive, name: str, split: str, root: Path, limit: float | None,
                      verbose: bool) -> tuple[ImageData | None, int]:
    """The official archive from the Hub, extracted as the official download would be."""
    from torchvision.datasets.utils import check_integrity, extract_archive
    path, fetched = _hub_file(mirror, mirror.file, root / "huggingface", limit, verbose)
    if not check_integrity(str(path), mirror.md5):   # the same file as the official host's, or not used
        _forget(path)
        raise ChecksumError(f"{mirror.file.path} passes its SHA-256 but not the official MD5 {mirror.md5}; deleted")
    extract_archive(str(path), str(root))
    _images.mark_origin(_extracted_folder(name, root), mirror.origin)
    if name == "tiny-imagenet":
        return None, fetched
    d = read_torchvision(name, split, root)
    d.source = (f"{_endpoint(mirror)}/datasets/{mirror.repo} at {mirror.revision} "
                f"({mirror.file.path}; SHA-256 and MD5 checked), extracted to {d.source}")
    return d, fetched


def _why(err: BaseException) -> str:
    """One line for a source that failed."""
    text = " ".join(str(err).split())
    if isinstance(err, (TooSlow, ChecksumError, ContentError, DatasetNotFoundError)):
        return text
    timed_out = isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError) \
        or "timeout" in type(err).__name__.lower() or "timed out" in text.lower()
    if timed_out:
        return f"no answer within the time limit ({type(err).__name__})"
    return f"{type(err).__name__}: {text}"[:300]


def fetch(name: str, split: str, root: Path, searched: list[Path], *, verbose: bool = True) -> tuple[ImageData, str]:
    """The split from the first source that delivers it whole and checked, and that source's origin
    (see the module docstring)."""
    if name != "tiny-imagenet" and extracted_ok(name, root):   # an archive extracted earlier
        origin = _images.read_origin(_extracted_folder(name, root)) or "official archive (extracted earlier)"
        return _checked(read_torchvision(name, split, root), name, split), origin
    sources = [s for s in SOURCES[name] if not isinstance(s, HubParquet) or split in s.splits]
    tiny_there = (root / "tiny-imagenet-200").exists()   # a folder of the user's is never removed
    tried = []
    for k, source in enumerate(sources):
        last = k == len(sources) - 1
        began = time.monotonic()
        try:
            limit = None if last else SLOW_SOURCE_SECONDS
            if isinstance(source, HubParquet):
                d, fetched = _from_hub(source, name, split, root, limit, verbose)
            elif isinstance(source, HubArchive):
                d, fetched = _from_hub_archive(source, name, split, root, limit, verbose)
            else:
                d, fetched = _from_official(source, name, split, root)
            if d is None:   # Tiny ImageNet's archive, extracted under root
                d = _read_extracted_tiny(root, split, verbose)
            _checked(d, name, split)
        except Exception as err:   # any failure of one source sends us to the next; each is named at the end
            if name == "tiny-imagenet" and not tiny_there:
                # what this source extracted is not kept: the next load would read it as a folder on disk
                shutil.rmtree(root / "tiny-imagenet-200", ignore_errors=True)
            tried.append(f"{source.origin}: {_why(err)}")
            if verbose:
                after = "" if last else f"; trying {sources[k + 1].origin}"
                print(f"{name} ({split}): {source.origin} failed after {time.monotonic() - began:.1f} s: "
                      f"{_why(err)}{after}")
            continue
        if verbose:
            got = f"{_size(fetched)} downloaded" if fetched else "nothing downloaded (cached)"
            print(f"{name} ({split}): from {source.origin} in {time.monotonic() - began:.1f} s ({got})")
        return d, source.origin
    raise _images.not_found(name, split, root, searched, "every source failed:\n  " + "\n  ".join(tried))


def _read_extracted_tiny(root: Path, split: str, verbose: bool) -> ImageData:
    base = root / "tiny-imagenet-200"
    _images.check_tiny_official(base, split)
    return _images.read_tiny_official(base, split, verbose)


def _checked(d: ImageData, name: str, split: str) -> ImageData:
    check_content(d, name, split)
    return d
