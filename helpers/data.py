"""Datasets as in-memory uint8 tensors: CIFAR-10, STL-10 and Tiny ImageNet-200.

`load(name, split)` looks, in order, for
  1. class folders  `root/<folder>/<split>/<class>/*`  (Kaggle copies, your own data, the course's
     offline data pack; STL-10's unlabeled split is `root/<folder>/unlabeled/*`),
  2. Tiny ImageNet's official layout `root/tiny-imagenet-200/` (train/<wnid>/images, val/...),
  3. a download (`helpers.download`): copies on the Hugging Face Hub (parquet, or the official
     archive itself), pinned and checked by SHA-256, then the official host (torchvision's CIFAR10 and STL10 files, Tiny ImageNet's zip),
     checked by MD5; slow or silent hosts are passed over, and the split is checked when it arrives.
The first decode writes one tensor file per split under `root/.cache/`, named after the dataset,
the folder it came from, the split and the image size; the cache records a fingerprint of its
source (file names, sizes and times) and is rebuilt when that changes or its content is not what
load() wrote.
"""
from __future__ import annotations

import errno
import hashlib
import operator
import os
from dataclasses import replace
from pathlib import Path

import torch

from . import download as _download
from .files import write_atomic
from .images import (CIFAR10_CLASSES, IMAGE_SIZE, OFFICIAL_CLASSES, SPLIT_SIZES, SPLITS, STL10_CLASSES,  # noqa: F401
                     DatasetNotFoundError, ImageData, check_tiny_official, download_seconds, mark_origin,
                     not_found, note_download, read_image_folder, read_origin, read_tiny_official, short,
                     tiny_class_ids, tiny_names)

CACHE_VERSION = 2


# Per-channel mean and std of the training split in [0, 1] (the std of all pixels, not the mean of
# per-image stds that some tutorials copy). One place for every normalisation in the course.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}



# ----------------------------------------------------------------------------- cache

def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of every file below `path` (about 0.2 s for 50,000)."""
    h = hashlib.sha1()
    visited: set[tuple[int, int]] = set()

    def line(text: str) -> None:   # a name that is not UTF-8 (a zip made on Windows) is hashed by its bytes
        h.update(text.encode("utf-8", "surrogateescape"))

    def walk(folder: str, prefix: str) -> None:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in visited:   # a link back up the tree: counted once, never followed round
            line(f"{prefix}:link loop\n")
            return
        visited.add((st.st_dev, st.st_ino))
        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                walk(e.path, prefix + e.name + "/")
                continue
            try:
                st = e.stat()
                line(f"{prefix}{e.name}:{st.st_size}:{st.st_mtime_ns}\n")
            except OSError:  # a broken link or a link loop (the reader skips it), or a file deleted meanwhile
                line(f"{prefix}{e.name}:broken link\n")

    walk(str(path), "")
    return h.hexdigest()


def _cache_file(root: Path, name: str, source: str, split: str) -> Path:
    # Dataset and size in the name: a folder read as another dataset (another size) has its own file.
    return root / ".cache" / f"{name}_{source}_{split}_{IMAGE_SIZE[name]}px.pt"


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _well_formed(blob: dict, size: int) -> bool:
    """What load() relies on, with the right types: anything else is rebuilt, never a crash."""
    images, labels, boxes = blob.get("images"), blob.get("labels"), blob.get("boxes")
    return (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and tuple(images.shape[1:]) == (3, size, size)
            and isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.shape == (len(images),)
            and (boxes is None or isinstance(boxes, torch.Tensor) and boxes.shape == (len(images), 4))
            and _strings(blob.get("classes")) and _strings(blob.get("class_ids", []))
            and isinstance(blob.get("source"), str) and isinstance(blob.get("origin", ""), str)
            and isinstance(blob.get("skipped", []), list) and all(_strings(s) for s in blob.get("skipped", [])))


def _read_cache(file: Path, header: dict) -> dict | None:
    """The cached split, or None when it is missing, stale, another dataset's, or not what we wrote."""
    if not file.exists():
        return None
    try:
        blob = torch.load(file, weights_only=True, mmap=True)  # mmap: no copy until used
    except Exception:  # a cut-off write or an older format: rebuild it
        return None
    # type first: a tensor where a string belongs must not be compared as one
    if not isinstance(blob, dict) or any(type(blob.get(k)) is not type(v) or blob[k] != v
                                         for k, v in header.items()):
        return None
    return blob if _well_formed(blob, header["size"]) else None


def _write_cache(file: Path, blob: dict) -> None:
    # two notebooks decoding one split at once never share a temporary file, and a reader never sees half a cache
    try:
        write_atomic(file, lambda tmp: torch.save(blob, tmp))
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        read_only = isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        print(f"note: could not write the cache {file} ({err}); the data was read fine, but the next load "
              f"decodes it again. " + (f"{file.parent.parent} is not writable (read-only): set COURSE_DATA_DIR to a "
                                      f"folder you can write, or make this one writable, to let the cache be written."
                                      if read_only else "Free some disk space to let the cache be written."))


# ----------------------------------------------------------------------------- public API

def _read_folders(name: str, split: str, root: Path, folder: str, verbose: bool) -> ImageData:
    """Class folders root/folder/split, labelled in the dataset's official class order."""
    classes = OFFICIAL_CLASSES.get(name) or (tiny_class_ids(root, folder) if name == "tiny-imagenet" else None)
    data = read_image_folder(root / folder / split, classes=classes, size=IMAGE_SIZE[name],
                             labeled=(split != "unlabeled"), allow_missing=(name == "tiny-imagenet"),
                             verbose=verbose)
    if name == "tiny-imagenet":
        data.class_ids, data.classes = data.classes, tiny_names(root / "tiny-imagenet-200", data.classes)
    return data


def _to_blob(data: ImageData) -> dict:
    blob = {"images": data.images, "labels": data.labels, "classes": list(data.classes),
            "source": data.source, "origin": data.origin, "skipped": [list(s) for s in data.skipped]}
    if data.boxes is not None:
        blob["boxes"] = data.boxes
    if data.class_ids is not None:
        blob["class_ids"] = list(data.class_ids)
    return blob


def load(name: str, split: str, root: str | Path | None = None, *, folder: str | None = None,
         download: bool = True, cache: bool = True, verbose: bool = True) -> ImageData:
    """Load a whole split into memory (see the module docstring for where it looks).

    name: "cifar10", "stl10" or "tiny-imagenet"; split: see SPLITS.
    root: the data folder (default: COURSE_DATA_DIR, else the repository's data/).
    folder: read class folders from `root/<folder>` instead of `root/<name>`; this is how a copy
        under another name is used, e.g. the offline STL-10 stand-in:
        `load("stl10", "train", folder="stl10-standin")`. It is printed, never silent.
    """
    if name not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(SPLITS)}")
    if split not in SPLITS[name]:
        raise ValueError(f"{name} has no split {split!r}; it has {SPLITS[name]}")
    if root is None:
        from .runtime import default_data_dir
        root = default_data_dir()
    root = Path(root).expanduser().resolve()
    folder = folder or name
    if folder != name and verbose:
        print(f"reading {name} ({split}) from {root / folder}, not from {root / name}")
        readme = root / folder / "README.txt"
        if readme.exists():
            print("  its README says: " + readme.read_text().strip().splitlines()[0])

    class_dir, tiny_dir = root / folder / split, root / "tiny-imagenet-200"
    searched = [class_dir] + ([tiny_dir] if name == "tiny-imagenet" else [])
    if class_dir.is_dir():  # 1. class folders
        reader, source, source_dir = "folders", folder, class_dir
    elif name == "tiny-imagenet" and (tiny_dir / "wnids.txt").exists():  # 2. Tiny ImageNet's own layout
        check_tiny_official(tiny_dir, split)
        reader, source, source_dir = "tiny", "official", tiny_dir / ("train" if split == "train" else "val")
    elif not download:
        raise not_found(name, split, root, searched, "downloading is switched off (download=False)")
    else:  # 3. a download: the Hub's mirrors, then the official host (helpers.download)
        reader, source, source_dir = "download", "download", None

    header = {"version": CACHE_VERSION, "name": name, "folder": source, "split": split, "size": IMAGE_SIZE[name],
              "fingerprint": f"download-{name}-{split}" if source_dir is None else _fingerprint(source_dir)}
    file = _cache_file(root, name, source, split)
    blob = _read_cache(file, header) if cache else None
    if blob is None:
        if reader == "download":
            data, origin = _download.fetch(name, split, root, searched, verbose=verbose)
            data.origin = origin
            if name == "tiny-imagenet":  # its archive is now extracted: cached as 2., which later loads read
                source_dir = tiny_dir / ("train" if split == "train" else "val")
                header = {**header, "folder": "official", "fingerprint": _fingerprint(source_dir)}
                file = _cache_file(root, name, "official", split)
        else:
            if verbose:
                print(f"decoding {name} ({split}) from {source_dir} (once; later loads read {file})")
            data = (read_tiny_official(tiny_dir, split, verbose) if reader == "tiny"
                    else _read_folders(name, split, root, folder, verbose))
        blob = {**header, **_to_blob(data)}
        if cache:
            _write_cache(file, blob)
    # a download is remembered by its cache (Tiny ImageNet's archive also when read again from the folder
    # it was extracted to); a folder on disk says so itself, also in caches written before origins were kept
    if reader == "folders":   # a folder marked with where it came from (a download, a rehearsal's stand-in) says so
        local = read_origin(root / folder) or f"local folder {folder}"
    elif reader == "tiny":
        local = read_origin(tiny_dir) or "local folder tiny-imagenet-200"
    else:
        local = None
    origin = blob.get("origin") or local or blob["source"]
    LOADED[(name, split)] = origin
    return ImageData(images=blob["images"], labels=blob["labels"], classes=tuple(blob["classes"]),
                     name=name, split=split, source=blob["source"], origin=origin, boxes=blob.get("boxes"),
                     class_ids=tuple(blob["class_ids"]) if "class_ids" in blob else None,
                     skipped=[tuple(s) for s in blob.get("skipped", [])])


def write_cache(d: ImageData, root: str | Path, name: str, folder: str, split: str) -> Path:
    """Write `d` as load()'s cache of the class folders `root/folder/split`, as if it had decoded them: for a
    folder whose images are known already (a rehearsal's copy of the stand-in, linked from files decoded
    before). The cache records the folder's fingerprint, so a later change to the folder rebuilds it."""
    root = Path(root).expanduser().resolve()
    source_dir = root / folder / split
    if not source_dir.is_dir():
        raise FileNotFoundError(f"write_cache: {source_dir} is not a folder of images")
    header = {"version": CACHE_VERSION, "name": name, "folder": folder, "split": split, "size": IMAGE_SIZE[name],
              "fingerprint": _fingerprint(source_dir)}
    file = _cache_file(root, name, folder, split)
    _write_cache(file, {**header, **_to_blob(d)})
    return file


def is_standin(d: ImageData) -> bool:
    """Whether `d` came from the offline STL-10 stand-in (data pack folder `stl10-standin`, or a folder marked
    as made from it): its figures are not STL-10's, and every label must say so."""
    return "stl10-standin" in d.origin or "stand-in" in d.origin.lower()


# Where each split loaded in this process came from: results.record writes it into every result.
LOADED: dict[tuple[str, str], str] = {}


def provenance() -> str:
    """The data this process loaded, by origin: 'cifar10 train+test: hub uoft-cs/cifar10@0b271498'."""
    by_origin: dict[tuple[str, str], list[str]] = {}
    for (name, split), origin in LOADED.items():
        by_origin.setdefault((name, origin), []).append(split)
    return "; ".join(f"{name} {'+'.join(splits)}: {origin}" for (name, origin), splits in by_origin.items())


def _per_class_index(data: ImageData, per_class: int, seed: int, *, leave_one: bool = False) -> torch.Tensor:
    """Sorted positions of `per_class` images of every class, drawn without replacement.
    leave_one: at least one image of every class must stay undrawn (holdout's training part)."""
    where = f"{data.name}/{data.split}"
    if (data.labels < 0).any():
        raise ValueError(f"{where} is unlabeled; subset() and holdout() draw per class")
    if per_class < 1:
        raise ValueError(f"asked for {per_class} images per class of {where}; ask for at least 1")
    counts = data.class_counts()
    small, have = int(counts.argmin()), int(counts.min())
    if per_class > have or (leave_one and per_class == have):
        most = f"; hold out at most {have - 1}" if leave_one else ""
        left = " and to leave at least one for training" if leave_one else ""
        raise ValueError(f"asked for {per_class} images per class{left}, but class {data.classes[small]!r} "
                         f"of {where} has only {have}{most}")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.sort(torch.cat(picks)).values


def subset(data: ImageData, per_class: int, seed: int = 0) -> ImageData:
    """`per_class` images of every class, drawn without replacement; the same seed, the same subset."""
    return take(data, _per_class_index(data, per_class, seed))


def holdout(data: ImageData, per_class: int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Split off `per_class` images of every class for validation: (the rest, the held-out part).

    Tune hyperparameters on the held-out part, never on the test split: a test accuracy that chose
    its own learning rate is an optimistic estimate.
    """
    held = _per_class_index(data, per_class, seed, leave_one=True)
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[held] = False
    rest = take(data, torch.nonzero(keep).flatten())
    return rest, replace(take(data, held), split=f"{data.split} (held out)")


def take(data: ImageData, index: torch.Tensor) -> ImageData:
    """The images at `index` (a tensor of positions), keeping the class list and provenance."""
    return replace(data, images=data.images[index], labels=data.labels[index],
                   boxes=None if data.boxes is None else data.boxes[index], skipped=list(data.skipped))


def select_classes(data: ImageData, classes) -> ImageData:
    """The images of `classes` only (names, or positions in data.classes), relabelled 0..len(classes)-1
    in the order given. The same selection on two splits gives them the same labels."""
    where = f"{data.name}/{data.split}"
    classes = list(classes)
    if not classes:
        raise ValueError(f"no class asked for from {where}: pass names or positions in its class list")

    def position(c):
        if isinstance(c, str):
            return data.classes.index(c) if c in data.classes else None
        if isinstance(c, bool):
            return None
        try:
            i = operator.index(c)   # ints, and NumPy or tensor integers
        except TypeError:
            return None
        return i if 0 <= i < len(data.classes) else None

    wanted = [position(c) for c in classes]
    unknown = [c for c, i in zip(classes, wanted) if i is None]
    if unknown:
        raise ValueError(f"{where} has no class {unknown[0]!r}; it has {len(data.classes)}, named or numbered 0.."
                         f"{len(data.classes) - 1}: {short(data.classes)}")
    twice = sorted({data.classes[i] for i in wanted if wanted.count(i) > 1})
    if twice:
        raise ValueError(f"{twice[0]!r} of {where} is asked for twice in {classes} (by name or position): name each "
                         f"class once")
    mapping = torch.full((len(data.classes),), -1, dtype=torch.long)
    mapping[torch.tensor(wanted, dtype=torch.long)] = torch.arange(len(wanted))
    index = torch.nonzero(mapping[data.labels.clamp(min=0)].ge(0) & data.labels.ge(0)).flatten()
    picked = take(data, index)
    return replace(picked, labels=mapping[picked.labels], classes=tuple(data.classes[c] for c in wanted),
                   class_ids=None if data.class_ids is None else tuple(data.class_ids[c] for c in wanted))
