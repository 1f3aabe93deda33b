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

import contextlib
import hashlib
import operator
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CACHE_VERSION = 2

# Class lists in each dataset's official label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
OFFICIAL_CLASSES = {"cifar10": CIFAR10_CLASSES, "stl10": STL10_CLASSES}

SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test", "unlabeled"),
          "tiny-imagenet": ("train", "val")}
IMAGE_SIZE = {"cifar10": 32, "stl10": 96, "tiny-imagenet": 64}
# Images per split, known before anything is loaded (a budget printed before the data arrives uses them), for
# the official datasets and, by folder name, the offline data pack's STL-10 stand-in
SPLIT_SIZES = {"cifar10": {"train": 50_000, "test": 10_000},
               "stl10": {"train": 5_000, "test": 8_000, "unlabeled": 100_000},
               "tiny-imagenet": {"train": 100_000, "val": 10_000},
               "stl10-standin": {"train": 5_000, "test": 8_000, "unlabeled": 10_000}}

# Per-channel mean and std of the training split in [0, 1] (the std of all pixels, not the mean of
# per-image stds that some tutorials copy). One place for every normalisation in the course.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I"}  # PIL's modes for 16-bit (and 32-bit) grayscale


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
    source: str = ""  # where it was read from, in full
    origin: str = ""  # the same in a few words, for every result recorded (results.record)
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

def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 8 bits (value / 257): convert("RGB") clips every value above 255,
    which turns a whole 16-bit image white."""
    arr = np.asarray(im, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(arr / 257), 0, 255).astype(np.uint8))


def _decode(path, size: int | None) -> tuple[np.ndarray | None, str]:
    """One file (a path, or the bytes of one in a file object) as H×W×3 uint8, or None and why not.
    Grayscale (8 or 16 bits), palette and RGBA become RGB."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im = (_to_8bit(im) if mode in SIXTEEN_BIT_MODES else im).convert("RGB")
            note = f"converted {mode} to RGB" if mode != "RGB" else ""
            if size is not None and im.size != (size, size):
                note = (note + "; " if note else "") + f"resized {im.size[0]}×{im.size[1]} to {size}×{size}"
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), note
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(path, Path) and path.is_symlink() and not path.exists():
            return None, "broken link"
        return None, f"not a readable image ({type(err).__name__}: {err})"


def _decode_all(files: list[Path], size: int | None) -> tuple[list[np.ndarray | None], list[str]]:
    # Serial on purpose: PIL holds the GIL for small JPEGs, so threads were slower (measured), and
    # this runs once per split before the cache takes over.
    results = [_decode(f, size) for f in files]
    return [r[0] for r in results], [r[1] for r in results]


def _listdir(path: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(path) if not e.name.startswith(".")), key=lambda e: e.name)


def _short(names) -> str:
    """A list for a message: the first ten names, then how many in all."""
    names = list(names)
    return str(names) if len(names) <= 10 else str(names[:10])[:-1] + f", ... ({len(names)} in all)]"


def _class_list(path: Path, names: tuple[str, ...], classes: tuple[str, ...] | None, allow_missing: bool,
                verbose: bool) -> tuple[str, ...]:
    """The label order: `classes` when given (checked against the folders found), else `names`."""
    if classes is None:
        return names
    missing = [c for c in classes if c not in names]
    unexpected = [n for n in names if n not in classes]
    if unexpected or (missing and not allow_missing):
        raise DatasetNotFoundError(
            f"{path} should hold one folder per class {_short(classes)}; it holds {_short(names)} "
            f"(missing: {_short(missing)}, unexpected: {_short(unexpected)}). Remove or rename the "
            f"unexpected folders, or copy the missing ones in.")
    if missing and verbose:
        print(f"note: {path} has no folder for {len(missing)} of its {len(classes)} classes: {_short(missing)}; "
              f"labels still follow the full class list")
    return classes


def _empty_folder(folder: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"the class folder {folder} is empty; an interrupted copy or extraction is the likely cause. "
        f"Delete {folder.parent} and copy or extract the dataset again.")


def _stack(arrays: list[np.ndarray], where: Path) -> torch.Tensor:
    if not arrays:
        raise DatasetNotFoundError(f"no readable images under {where}")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images under {where} differ in size ({sorted(shapes)[:4]}); pass size= to resize them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image_folder(path: str | Path, *, classes: tuple[str, ...] | None = None, size: int | None = None,
                      labeled: bool = True, allow_missing: bool = False, verbose: bool = True) -> ImageData:
    """Read `path/<class>/*` (or, with labeled=False, every image below `path`).

    Files that are not readable images (broken links included) are skipped and listed in
    `.skipped`; grayscale and RGBA images are converted to RGB; with `size`, odd-sized images are
    resized to size×size. `classes` fixes the label order (the folder must hold exactly these, or,
    with allow_missing, some of them); by default it is the sorted folder names. An empty class
    folder is an error: it is almost always an interrupted copy.
    """
    path = Path(path)
    skipped: list[tuple[str, str]] = []
    files: list[Path] = []
    labels: list[int] = []
    if labeled:
        names = tuple(e.name for e in _listdir(path) if e.is_dir())
        skipped += [(e.path, "a file beside the class folders") for e in _listdir(path) if not e.is_dir()]
        classes = _class_list(path, names, classes, allow_missing, verbose)
        for label, cls in enumerate(classes):
            entries = _listdir(path / cls) if cls in names else []
            if cls in names and not entries:
                raise _empty_folder(path / cls)
            files += [Path(e.path) for e in entries]
            labels += [label] * len(entries)
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


def _tiny_wnids(base: Path) -> tuple[str, ...]:
    return tuple(sorted((base / "wnids.txt").read_text().split()))


def _tiny_class_ids(root: Path, folder: str) -> tuple[str, ...] | None:
    """Tiny ImageNet's official label order for class folders: the sorted WordNet ids of
    tiny-imagenet-200/wnids.txt, else of the training split's folders. A val split's own folder
    names would shift every label after a class it lacks."""
    if (root / "tiny-imagenet-200" / "wnids.txt").exists():
        return _tiny_wnids(root / "tiny-imagenet-200")
    train = root / folder / "train"
    return tuple(e.name for e in _listdir(train) if e.is_dir()) if train.is_dir() else None


def _tiny_val_rows(base: Path) -> list[list[str]]:
    """val_annotations.txt as rows [file, wnid, xmin, ymin, xmax, ymax]."""
    text = (base / "val" / "val_annotations.txt").read_text()
    return [line.split() for line in text.splitlines() if line.strip()]


def _tiny_train_problems(base: Path, wnids: tuple[str, ...]) -> list[str]:
    # Every class holds the same number of training images (500 in the official zip; 125, 250, 375
    # or 500 in the course's data pack), so fewer in any class means an extraction cut short.
    folders = {w: base / "train" / w / "images" for w in wnids}
    counts = {w: len(_listdir(f)) if f.is_dir() else 0 for w, f in folders.items()}
    most = max(counts.values(), default=0)
    if most == 0:
        return [f"no training images under {base / 'train'}"]
    return [f"{folders[w]} {f'holds {n} images' if n else 'is missing or empty'} where other classes hold {most}"
            for w, n in counts.items() if n < most]


def _tiny_val_problems(base: Path, wnids: tuple[str, ...]) -> list[str]:
    ann = base / "val" / "val_annotations.txt"
    if not ann.exists():
        return [f"{ann} is missing"]
    images = base / "val" / "images"
    present = set(os.listdir(images)) if images.is_dir() else set()  # one listing, not 10,000 stat calls
    problems = []
    for i, row in enumerate(_tiny_val_rows(base), 1):
        if len(row) != 6 or row[1] not in wnids:
            problems.append(f"line {i} of {ann} is cut off or names a class not in wnids.txt: {' '.join(row)!r}")
        elif row[0] not in present:
            problems.append(f"{base / 'val' / 'images' / row[0]} (line {i} of {ann}) is missing")
    return problems


def _check_tiny_official(base: Path, split: str) -> None:
    """Refuse a half-extracted archive before decoding: it would be cached as a small split."""
    wnids = _tiny_wnids(base)
    problems = (_tiny_train_problems if split == "train" else _tiny_val_problems)(base, wnids)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DatasetNotFoundError(
            f"Tiny ImageNet's {split} split at {base} is incomplete: {'; '.join(problems[:3])}{more}.\n"
            f"The archive was probably extracted only in part: delete {base} and extract "
            f"tiny-imagenet-200.zip again (or, with internet, delete it and load again to download it).")


def _read_tiny_official(base: Path, split: str, verbose: bool) -> ImageData:
    """Tiny ImageNet as distributed (checked by _check_tiny_official). Labels follow the sorted
    WordNet ids (ImageFolder's order)."""
    wnids = _tiny_wnids(base)
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
        for name, w, *xyxy in _tiny_val_rows(base):
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


# ----------------------------------------------------------------------------- cache

def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of every file below `path` (about 0.2 s for 50,000)."""
    h = hashlib.sha1()

    def walk(folder: str, prefix: str) -> None:
        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            if e.is_dir():
                walk(e.path, prefix + e.name + "/")
                continue
            try:
                st = e.stat()
                h.update(f"{prefix}{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:  # a broken link (the reader skips it), or a file deleted meanwhile
                h.update(f"{prefix}{e.name}:broken link\n".encode())

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
    # Unique per process and call: two notebooks decoding one split at once never share a temporary
    # file; os.replace means a reader never sees half a cache.
    tmp = file.with_name(f".{file.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, tmp)
        os.replace(tmp, file)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        print(f"note: could not write the cache {file} ({err}); the data was read fine, but the next load "
              f"decodes it again. Free some disk space to let the cache be written.")


# ----------------------------------------------------------------------------- public API

def _read_folders(name: str, split: str, root: Path, folder: str, verbose: bool) -> ImageData:
    """Class folders root/folder/split, labelled in the dataset's official class order."""
    classes = OFFICIAL_CLASSES.get(name) or (_tiny_class_ids(root, folder) if name == "tiny-imagenet" else None)
    data = read_image_folder(root / folder / split, classes=classes, size=IMAGE_SIZE[name],
                             labeled=(split != "unlabeled"), allow_missing=(name == "tiny-imagenet"),
                             verbose=verbose)
    if name == "tiny-imagenet":
        data.class_ids, data.classes = data.classes, _tiny_names(root / "tiny-imagenet-200", data.classes)
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
        _check_tiny_official(tiny_dir, split)
        reader, source, source_dir = "tiny", "official", tiny_dir / ("train" if split == "train" else "val")
    elif not download:
        raise _no_download(name, split, root, searched, "downloading is switched off (download=False)")
    else:  # 3. a download: the Hub's mirrors, then the official host (helpers.download)
        reader, source, source_dir = "download", "download", None

    header = {"version": CACHE_VERSION, "name": name, "folder": source, "split": split, "size": IMAGE_SIZE[name],
              "fingerprint": f"download-{name}-{split}" if source_dir is None else _fingerprint(source_dir)}
    file = _cache_file(root, name, source, split)
    blob = _read_cache(file, header) if cache else None
    if blob is None:
        if reader == "download":
            from . import download as _download
            data, origin = _download.fetch(name, split, root, searched, verbose=verbose)
            data.origin = origin
            if name == "tiny-imagenet":  # its archive is now extracted: cached as 2., which later loads read
                source_dir = tiny_dir / ("train" if split == "train" else "val")
                header = {**header, "folder": "official", "fingerprint": _fingerprint(source_dir)}
                file = _cache_file(root, name, "official", split)
        else:
            if verbose:
                print(f"decoding {name} ({split}) from {source_dir} (once; later loads read {file})")
            data = (_read_tiny_official(tiny_dir, split, verbose) if reader == "tiny"
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


ORIGIN_MARK = ".course-origin"   # in a folder extracted from a download: where the archive came from


def mark_origin(folder: Path, origin: str) -> None:
    (folder / ORIGIN_MARK).write_text(origin + "\n")


def read_origin(folder: Path) -> str | None:
    mark = folder / ORIGIN_MARK
    return mark.read_text().strip() or None if mark.is_file() else None


def is_standin(d: ImageData) -> bool:
    """Whether `d` came from the offline STL-10 stand-in (data pack folder `stl10-standin`, or a folder marked
    as made from it): its figures are not STL-10's, and every label must say so."""
    return "stl10-standin" in d.origin or "stand-in" in d.origin.lower()


# Seconds this process spent transferring datasets from a host (the download module adds to it).
_DOWNLOADING = {"seconds": 0.0}


def note_download(seconds: float) -> None:
    _DOWNLOADING["seconds"] += seconds


def download_seconds() -> float:
    """Seconds this process spent downloading datasets: the transfers alone, not the extraction or decoding
    after them (a budget reports them apart, since they depend on the network, not on the notebook)."""
    return _DOWNLOADING["seconds"]


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
                         f"{len(data.classes) - 1}: {_short(data.classes)}")
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
