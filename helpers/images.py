"""Image files on disk and what is known about the course's datasets before any is loaded.

The lowest layer of the data code: `ImageData` (a whole split in memory), the datasets' class lists,
splits and sizes, decoding an image file into 8-bit RGB whatever its mode, reading class folders and
Tiny ImageNet's official layout (checked before anything is decoded), the error that says where a
dataset was looked for, the marks that say where an extracted folder came from, and the seconds this
process spent downloading. `helpers.download` (the hosts) and `helpers.data` (`load`, the cache,
subsets) both build on it; it imports neither.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

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


def decode(path, size: int | None) -> tuple[np.ndarray | None, str]:
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
    except Image.DecompressionBombError as err:   # PIL refuses it before decoding: skipped, named, the load goes on
        return None, f"larger than PIL's safety limit for one image ({err}); a decompression bomb, or not a dataset image"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(path, Path) and path.is_symlink() and not path.exists():
            return None, "broken link"
        return None, f"not a readable image ({type(err).__name__}: {err})"


def _decode_all(files: list[Path], size: int | None) -> tuple[list[np.ndarray | None], list[str]]:
    # Serial on purpose: PIL holds the GIL for small JPEGs, so threads were slower (measured), and
    # this runs once per split before the cache takes over.
    results = [decode(f, size) for f in files]
    return [r[0] for r in results], [r[1] for r in results]


def _listdir(path: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(path) if not e.name.startswith(".")), key=lambda e: e.name)


def short(names) -> str:
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
            f"{path} should hold one folder per class {short(classes)}; it holds {short(names)} "
            f"(missing: {short(missing)}, unexpected: {short(unexpected)}). Remove or rename the "
            f"unexpected folders, or copy the missing ones in.")
    if missing and verbose:
        print(f"note: {path} has no folder for {len(missing)} of its {len(classes)} classes: {short(missing)}; "
              f"labels still follow the full class list")
    return classes


def _empty_folder(folder: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"the class folder {folder} is empty; an interrupted copy or extraction is the likely cause. "
        f"Delete {folder.parent} and copy or extract the dataset again.")


def stack(arrays: list[np.ndarray], where: Path) -> torch.Tensor:
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
    data = ImageData(images=stack(kept, path), labels=torch.tensor(kept_labels, dtype=torch.int64),
                     classes=tuple(classes), source=str(path), skipped=skipped)
    if verbose and (skipped or converted):
        print(f"read {len(kept)} images from {path}; converted or resized {converted}; "
              f"skipped {len(skipped)}" + "".join(f"\n  skipped {f}: {why}" for f, why in skipped[:10])
              + (f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""))
    return data


# ----------------------------------------------------------------------------- Tiny ImageNet layout

def tiny_names(base: Path, wnids: tuple[str, ...]) -> tuple[str, ...]:
    words = {}
    if (base / "words.txt").exists():
        for line in (base / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return tuple(words.get(w, w) for w in wnids)


def _tiny_wnids(base: Path) -> tuple[str, ...]:
    return tuple(sorted((base / "wnids.txt").read_text().split()))


def tiny_class_ids(root: Path, folder: str) -> tuple[str, ...] | None:
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


def check_tiny_official(base: Path, split: str) -> None:
    """Refuse a half-extracted archive before decoding: it would be cached as a small split."""
    wnids = _tiny_wnids(base)
    problems = (_tiny_train_problems if split == "train" else _tiny_val_problems)(base, wnids)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DatasetNotFoundError(
            f"Tiny ImageNet's {split} split at {base} is incomplete: {'; '.join(problems[:3])}{more}.\n"
            f"The archive was probably extracted only in part: delete {base} and extract "
            f"tiny-imagenet-200.zip again (or, with internet, delete it and load again to download it).")


def read_tiny_official(base: Path, split: str, verbose: bool) -> ImageData:
    """Tiny ImageNet as distributed (checked by check_tiny_official). Labels follow the sorted
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
    return ImageData(images=stack([arrays[i] for i in keep], base), name="tiny-imagenet", split=split,
                     labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64),
                     classes=tiny_names(base, wnids), class_ids=wnids, source=str(base),
                     boxes=torch.tensor([boxes[i] for i in keep], dtype=torch.int64), skipped=skipped)


# ----------------------------------------------------------------------------- official downloads

def not_found(name: str, split: str, root: Path, searched: list[Path], reason: str) -> DatasetNotFoundError:
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


ORIGIN_MARK = ".course-origin"   # in a folder extracted from a download: where the archive came from


def mark_origin(folder: Path, origin: str) -> None:
    (folder / ORIGIN_MARK).write_text(origin + "\n")


def read_origin(folder: Path) -> str | None:
    mark = folder / ORIGIN_MARK
    return mark.read_text().strip() or None if mark.is_file() else None


# Seconds this process spent transferring datasets from a host (the download module adds to it).
_DOWNLOADING = {"seconds": 0.0}


def note_download(seconds: float) -> None:
    _DOWNLOADING["seconds"] += seconds


def download_seconds() -> float:
    """Seconds this process spent downloading datasets: the transfers alone, not the extraction or decoding
    after them (a budget reports them apart, since they depend on the network, not on the notebook)."""
    return _DOWNLOADING["seconds"]
