"""Datasets as in-memory uint8 tensors: CIFAR-10, STL-10 and Tiny ImageNet-200.

`load(name, split)` looks, in order, for
  1. class folders  `root/<folder>/<split>/<class>/*`  (Kaggle copies, your own data, the course's
     offline data pack; STL-10's unlabeled split is `root/<folder>/unlabeled/*`),
  2. Tiny ImageNet's official layout `root/tiny-imagenet-200/` (train/<wnid>/images, val/...),
  3. the official download (torchvision's CIFAR10 and STL10 files, Tiny ImageNet's zip), checked
     against its published MD5.
The first decode writes one tensor file per split under `root/.cache/`; the cache records a
fingerprint of its source (file names, sizes and times) and is rebuilt when that changes.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CACHE_VERSION = 1

# Class lists in each dataset's official label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")

SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test", "unlabeled"),
          "tiny-imagenet": ("train", "val")}
IMAGE_SIZE = {"cifar10": 32, "stl10": 96, "tiny-imagenet": 64}

# Per-channel mean and std of the training split in [0, 1] (the std of all pixels, not the mean of
# per-image stds that some tutorials copy). One place for every normalisation in the course.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says where we looked."""


@dataclass
class ImageData:
    """A whole split in memory. images: N×C×H×W uint8; labels: N int64, -1 where unlabeled."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""
    split: str = ""
    source: str = ""  # where it was read from, for the record
    boxes: torch.Tensor | None = None  # Tiny ImageNet: N×4 (xmin, ymin, xmax, ymax)
    class_ids: tuple[str, ...] | None = None  # Tiny ImageNet: the WordNet ids behind `classes`
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) the reader passed over

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.images.shape))
        return (f"ImageData({self.name}/{self.split}: {shape} uint8, {len(self.classes)} classes, "
                f"from {self.source})")

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))


# ----------------------------------------------------------------------------- reading images

def _decode(path: Path, size: int | None) -> tuple[np.ndarray | None, str]:
    """One file as H×W×3 uint8, or None and why not. Grayscale, palette and RGBA become RGB."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im = im.convert("RGB")
            note = f"converted {mode} to RGB" if mode != "RGB" else ""
            if size is not None and im.size != (size, size):
                note = (note + "; " if note else "") + f"resized {im.size[0]}×{im.size[1]} to {size}×{size}"
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), note
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return None, f"not a readable image ({type(err).__name__}: {err})"


def _decode_all(files: list[Path], size: int | None) -> tuple[list[np.ndarray | None], list[str]]:
    # Serial on purpose: PIL holds the GIL for small JPEGs, so threads were slower (measured), and
    # this runs once per split before the cache takes over.
    results = [_decode(f, size) for f in files]
    return [r[0] for r in results], [r[1] for r in results]


def _listdir(path: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(path) if not e.name.startswith(".")), key=lambda e: e.name)


def _stack(arrays: list[np.ndarray], where: Path) -> torch.Tensor:
    if not arrays:
        raise DatasetNotFoundError(f"no readable images under {where}")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images under {where} differ in size ({sorted(shapes)[:4]}); pass size= to resize them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image_folder(path: str | Path, *, classes: tuple[str, ...] | None = None, size: int | None = None,
                      labeled: bool = True, verbose: bool = True) -> ImageData:
    """Read `path/<class>/*` (or, with labeled=False, every image below `path`).

    Files that are not readable images are skipped and listed in `.skipped`; grayscale and RGBA
    images are converted to RGB; with `size`, odd-sized images are resized to size×size.
    `classes` fixes the label order (the folder must hold exactly these); by default it is the
    sorted folder names.
    """
    path = Path(path)
    skipped: list[tuple[str, str]] = []
    files: list[Path] = []
    labels: list[int] = []
    if labeled:
        folders = [e for e in _listdir(path) if e.is_dir()]
        for e in _listdir(path):
            if not e.is_dir():
                skipped.append((e.path, "a file beside the class folders"))
        names = tuple(e.name for e in folders)
        if classes is None:
            classes = names
        elif set(names) != set(classes):
            raise DatasetNotFoundError(
                f"{path} should hold one folder per class {list(classes)}; it holds {list(names)} "
                f"(missing: {sorted(set(classes) - set(names))}, unexpected: {sorted(set(names) - set(classes))})")
        for label, cls in enumerate(classes):
            for e in _listdir(path / cls):
                files.append(Path(e.path))
                labels.append(label)
    else:
        classes = classes or ()
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
        labels = [-1] * len(files)

    arrays, notes = _decode_all(files, size)
    kept, kept_labels, converted = [], [], 0
    for f, label, arr, note in zip(files, labels, arrays, notes):
        if arr is None:
            skipped.append((str(f), note))
            continue
        converted += bool(note)
        kept.append(arr)
        kept_labels.append(label)
    data = ImageData(images=_stack(kept, path), labels=torch.tensor(kept_labels, dtype=torch.int64),
                     classes=tuple(classes), source=str(path), skipped=skipped)
    if verbose and (skipped or converted):
        print(f"read {len(kept)} images from {path}; converted or resized {converted}; "
              f"skipped {len(skipped)}" + "".join(f"\n  skipped {f}: {why}" for f, why in skipped[:10])
              + (f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""))
    return data


# ----------------------------------------------------------------------------- Tiny ImageNet layout

def _tiny_names(base: Path, wnids: tuple[str, ...]) -> tuple[str, ...]:
    words = {}
    if (base / "words.txt").exists():
        for line in (base / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return tuple(words.get(w, w) for w in wnids)


def _read_tiny_official(base: Path, split: str, verbose: bool) -> ImageData:
    """Tiny ImageNet as distributed. Labels follow the sorted WordNet ids (ImageFolder's order)."""
    wnids = tuple(sorted((base / "wnids.txt").read_text().split()))
    index = {w: i for i, w in enumerate(wnids)}
    files, labels, boxes = [], [], []
    if split == "train":
        for w in wnids:
            box_file = base / "train" / w / f"{w}_boxes.txt"
            box_of = {}
            if box_file.exists():
                for line in box_file.read_text().splitlines():
                    name, *xyxy = line.split()
                    box_of[name] = [int(v) for v in xyxy]
            for e in _listdir(base / "train" / w / "images"):
                files.append(Path(e.path))
                labels.append(index[w])
                boxes.append(box_of.get(e.name, [-1, -1, -1, -1]))
    else:
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            name, w, *xyxy = line.split()
            files.append(base / "val" / "images" / name)
            labels.append(index[w])
            boxes.append([int(v) for v in xyxy])
    arrays, notes = _decode_all(files, IMAGE_SIZE["tiny-imagenet"])
    keep = [i for i, a in enumerate(arrays) if a is not None]
    skipped = [(str(files[i]), notes[i]) for i, a in enumerate(arrays) if a is None]
    if verbose and skipped:
        print(f"skipped {len(skipped)} unreadable files under {base}, e.g. {skipped[0]}")
    return ImageData(images=_stack([arrays[i] for i in keep], base), name="tiny-imagenet", split=split,
                     labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64),
                     classes=_tiny_names(base, wnids), class_ids=wnids, source=str(base),
                     boxes=torch.tensor([boxes[i] for i in keep], dtype=torch.int64), skipped=skipped)


# ----------------------------------------------------------------------------- official downloads

def _no_download(name: str, split: str, root: Path, searched: list[Path], reason: str) -> DatasetNotFoundError:
    layout = {"cifar10": "cifar10/{train,test}/<class>/*.png|jpg",
              "stl10": "stl10/{train,test}/<class>/*, stl10/unlabeled/*",
              "tiny-imagenet": "tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images,val/...} "
                               "or tiny-imagenet/{train,val}/<wnid>/*"}[name]
    hint = ""
    standin = root / "stl10-standin"
    if name == "stl10" and standin.is_dir():
        hint = (f"\nA stand-in (not STL-10) is at {standin}: load('stl10', {split!r}, folder='stl10-standin') "
                "reads it, and says so.")
    return DatasetNotFoundError(
        f"{name} ({split}) is not on disk and could not be downloaded: {reason}\n"
        f"Looked in: {', '.join(map(str, searched))}\n"
        f"Expected layout under the data folder: {layout}\n"
        f"Set COURSE_DATA_DIR (or pass root=) to the folder that holds it, or connect to the internet "
        f"to download it.{hint}")


def _download_official(name: str, split: str, root: Path, searched: list[Path]):
    """The official files via torchvision (CIFAR-10, STL-10) or the Tiny ImageNet zip."""
    import urllib.error
    from torchvision.datasets import CIFAR10, STL10
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    try:
        if name == "cifar10":
            ds = CIFAR10(str(root), train=(split == "train"), download=True)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            return images, torch.tensor(ds.targets, dtype=torch.int64), CIFAR10_CLASSES, root / "cifar-10-batches-py"
        if name == "stl10":
            ds = STL10(str(root), split=split, download=True)
            labels = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
            return torch.from_numpy(ds.data), labels, STL10_CLASSES, root / "stl10_binary"
        archive = root / "tiny-imagenet-200.zip"
        if archive.exists() and not check_integrity(str(archive), TINY_IMAGENET_MD5):
            raise DatasetNotFoundError(
                f"{archive} fails its MD5 check (an interrupted download?). Delete it and load again to "
                f"download it anew, or unpack a good copy to {root / 'tiny-imagenet-200'}.")
        if not archive.exists():
            download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
        elif not (root / "tiny-imagenet-200" / "wnids.txt").exists():
            with zipfile.ZipFile(archive) as z:
                z.extractall(root)
        return None
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        if isinstance(err, DatasetNotFoundError):
            raise
        raise _no_download(name, split, root, searched, f"{type(err).__name__}: {err}") from None


# ----------------------------------------------------------------------------- cache

def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of every file below `path` (about 0.2 s for 50,000)."""
    h = hashlib.sha1()

    def walk(folder: str, prefix: str) -> None:
        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            if e.is_dir():
                walk(e.path, prefix + e.name + "/")
            else:
                st = e.stat()
                h.update(f"{prefix}{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())

    walk(str(path), "")
    return h.hexdigest()


def _cache_file(root: Path, folder: str, split: str) -> Path:
    return root / ".cache" / f"{folder}-{split}.pt"


def _read_cache(file: Path, fingerprint: str) -> dict | None:
    if not file.exists():
        return None
    try:
        blob = torch.load(file, weights_only=True, mmap=True)  # mmap: no copy until used
    except Exception:  # a cut-off write or an older format: rebuild it
        return None
    if blob.get("version") != CACHE_VERSION or blob.get("fingerprint") != fingerprint:
        return None
    return blob


def _write_cache(file: Path, blob: dict) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, file)  # atomic: a reader never sees half a cache
    except OSError as err:
        print(f"note: could not write the cache {file} ({err}); the next load decodes again")


# ----------------------------------------------------------------------------- public API

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
    official = {"cifar10": CIFAR10_CLASSES, "stl10": STL10_CLASSES}.get(name)
    size = IMAGE_SIZE[name]
    if folder != name and verbose:
        print(f"reading {name} ({split}) from {root / folder}, not from {root / name}")
        readme = root / folder / "README.txt"
        if readme.exists():
            print("  its README says: " + readme.read_text().strip().splitlines()[0])

    # 1. class folders
    class_dir = root / folder / split
    tiny_dir = root / "tiny-imagenet-200"
    searched = [class_dir] + ([tiny_dir] if name == "tiny-imagenet" else [])
    if class_dir.is_dir():
        source_dir, reader = class_dir, "folders"
    elif name == "tiny-imagenet" and (tiny_dir / "wnids.txt").exists():
        source_dir, reader = tiny_dir / ("train" if split == "train" else "val"), "tiny"
    else:
        source_dir, reader = None, "download"

    if reader == "download":
        if not download:
            raise _no_download(name, split, root, searched, "downloading is switched off (download=False)")
        if name == "tiny-imagenet":
            _download_official(name, split, root, searched)
            return load(name, split, root, download=False, cache=cache, verbose=verbose)
        fingerprint = f"official-{name}-{split}"
        file = _cache_file(root, name + "-official", split)
        blob = _read_cache(file, fingerprint) if cache else None
        if blob is None:
            images, labels, classes, where = _download_official(name, split, root, searched)
            blob = {"version": CACHE_VERSION, "fingerprint": fingerprint, "images": images,
                    "labels": labels, "classes": list(classes), "source": str(where)}
            if cache:
                _write_cache(file, blob)
    else:
        fingerprint = _fingerprint(source_dir)
        file = _cache_file(root, folder, split)
        blob = _read_cache(file, fingerprint) if cache else None
        if blob is None:
            if verbose:
                print(f"decoding {name} ({split}) from {source_dir} (once; later loads read {file})")
            if reader == "tiny":
                data = _read_tiny_official(tiny_dir, split, verbose)
            else:
                # CIFAR-10 and STL-10 in their official order; Tiny ImageNet's WordNet ids sorted
                data = read_image_folder(class_dir, classes=official, size=size,
                                         labeled=(split != "unlabeled"), verbose=verbose)
                if name == "tiny-imagenet":
                    data.class_ids = data.classes
                    data.classes = _tiny_names(tiny_dir, data.classes)
            blob = {"version": CACHE_VERSION, "fingerprint": fingerprint, "images": data.images,
                    "labels": data.labels, "classes": list(official if split == "unlabeled" else data.classes),
                    "source": data.source, "skipped": [list(s) for s in data.skipped]}
            if data.boxes is not None:
                blob["boxes"] = data.boxes
            if data.class_ids is not None:
                blob["class_ids"] = list(data.class_ids)
            if cache:
                _write_cache(file, blob)
    return ImageData(images=blob["images"], labels=blob["labels"], classes=tuple(blob["classes"]),
                     name=name, split=split, source=blob["source"], boxes=blob.get("boxes"),
                     class_ids=tuple(blob["class_ids"]) if "class_ids" in blob else None,
                     skipped=[tuple(s) for s in blob.get("skipped", [])])


def _per_class_index(data: ImageData, per_class: int, seed: int) -> torch.Tensor:
    """Sorted positions of `per_class` images of every class, drawn without replacement."""
    if (data.labels < 0).any():
        raise ValueError(f"{data.name}/{data.split} is unlabeled; subset() and holdout() draw per class")
    counts = data.class_counts()
    if per_class > int(counts.min()):
        small = int(counts.argmin())
        raise ValueError(f"asked for {per_class} images per class, but class {data.classes[small]!r} "
                         f"of {data.name}/{data.split} has only {int(counts[small])}")
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
    held = _per_class_index(data, per_class, seed)
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[held] = False
    rest = take(data, torch.nonzero(keep).flatten())
    return rest, replace(take(data, held), split=f"{data.split} (held out)")


def take(data: ImageData, index: torch.Tensor) -> ImageData:
    """The images at `index` (a tensor of positions), keeping the class list and provenance."""
    return replace(data, images=data.images[index], labels=data.labels[index],
                   boxes=None if data.boxes is None else data.boxes[index], skipped=list(data.skipped))
