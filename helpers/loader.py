"""Two ways to feed a model: the GPU-resident batch loader, and a plain Dataset for PIL pipelines.

`GpuBatches` keeps the whole uint8 split on the device (CIFAR-10's 50,000 training images are
150 MB) and builds each batch with a few tensor ops: no worker processes, no PIL, no host-to-device
copies per step. On Colab's 2 CPU cores that is the difference between a GPU that waits for JPEG
decoding and one that trains. `TransformDataset` is the classic per-image pipeline, kept for
the seed reports' recipes and for comparing the two.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from . import augment
from .data import STATS, ImageData
from .runtime import rehearsal_batches


class GpuBatches:
    """Iterate (images, labels) batches of `data` on `device`, augmented per image.

    One pass of `for x, y in batches` is one epoch. The order and the augmentation draws of epoch
    e depend only on (seed, e): call `set_epoch(e)` (the training loop does) to get that epoch
    again, e.g. when resuming. Yields float images normalised with (mean, std), B×C×H×W.

    Training batches are cropped (`crop_padding`), flipped, then passed through `augmentations`,
    each a callable `f(uint8 images, generator=g) -> uint8 images` such as
    `partial(augment.random_rotation, degrees=10)`, in order. `concat_original` reproduces
    `ConcatDataset([augmented, original])`: each epoch holds every image twice, once augmented and
    once as it is, shuffled together. `size` resizes the normalised batch (bilinear) to size×size,
    e.g. 32 px CIFAR images up to the resolution a pretrained network saw.

    `views=2` yields (first view, second view, labels) per training batch: every image augmented twice,
    independently (SimCLR's pairs of views; the labels may be -1, unused). Train only.

    `per_class=K` makes every training batch a PK batch (Hermans et al. 2017): P = batch_size // K
    distinct classes drawn at random, K images of each, so that every image has K - 1 positives and
    (P - 1)·K negatives in its batch. A batch-hard triplet loss needs it: in a uniformly random batch
    of 128 from 200 classes about half the images have no other image of their class. Each class
    hands out its images in a shuffled order, starting a new shuffle when it runs out, so the images of
    a class are seen equally often, give or take one per epoch. Classes are drawn uniformly: with classes
    of unequal size, the images of a small class are seen more often than those of a large one. An epoch
    is still len(data) // batch_size batches.
    """

    def __init__(self, data: ImageData, *, batch_size: int, device: torch.device | str = "cpu",
                 train: bool = True, crop_padding: int = 4, flip: bool = True, padding_mode: str = "reflect",
                 augmentations: Sequence[Callable] = (), concat_original: bool = False, size: int | None = None,
                 mean=None, std=None, seed: int = 0, drop_last: bool | None = None,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32, per_class: int | None = None,
                 views: int = 1):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}")
        if views not in (1, 2):
            raise ValueError(f"views must be 1 (one augmented image per image) or 2 (two independent views), not {views!r}")
        if views == 2 and (not train or concat_original):
            raise ValueError(f"views=2 draws two augmented views of each image of {data.name}/{data.split}: it needs "
                             f"train=True (evaluation images are not augmented) and no concat_original")
        if per_class is not None:
            _check_pk(data, batch_size, per_class, train=train, concat_original=concat_original, drop_last=drop_last)
        if mean is None or std is None:
            if data.name not in STATS:
                raise ValueError(f"no normalisation statistics for {data.name!r}; pass mean= and std=")
            mean, std = STATS[data.name]
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.train = train  # shuffle and augment; evaluation batches are neither
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.padding_mode = padding_mode
        self.augmentations = tuple(augmentations) if train else ()
        self.concat_original = concat_original and train
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.dtype = dtype
        self.per_class = per_class
        self.views = views
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {self.epoch_images} images of {data.name}/{data.split} "
                f"per epoch, and training drops the last incomplete batch, so an epoch would have no step: use "
                f"batch_size <= {self.epoch_images}")

    def __fingerprint__(self) -> dict:
        """What decides the batches (for a run's identity): the data and every setting, not the epoch counter."""
        return {k: v for k, v in vars(self).items() if k != "epoch"}

    @property
    def epoch_images(self) -> int:
        """Images in one epoch before batching: twice the split with `concat_original`."""
        return len(self.labels) * (2 if self.concat_original else 1)

    def __len__(self) -> int:
        """Batches in one epoch. (In a rehearsal of the full profile a pass yields only the first few,
        `runtime.rehearsal_batches`; the length stays the epoch's, so that a schedule built from it is the
        full profile's.)"""
        n = self.epoch_images
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _passes(self) -> int:
        """The batches one pass yields: all of them, or a rehearsal's few."""
        cap = rehearsal_batches()
        return len(self) if cap is None else min(len(self), cap)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else self.epoch_images

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """This loader's training augmentations, in order, on a uint8 batch (also a way to look at them)."""
        if self.crop_padding:
            x = augment.random_crop(x, self.crop_padding, generator=generator, padding_mode=self.padding_mode)
        if self.flip:
            x = augment.random_flip(x, generator=generator)
        for f in self.augmentations:
            x = f(x, generator=generator)
        return x

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_generator(self) -> torch.Generator:
        """The generator of this epoch's order and augmentation draws: a function of (seed, epoch) only."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)

    def _pk_order(self, g: torch.Generator) -> torch.Tensor:
        """The epoch's image positions, batch after batch, each batch P classes × K images (see the class doc)."""
        k = self.per_class
        p = self.batch_size // k
        classes = torch.unique(self.labels)
        pools = [torch.nonzero(self.labels == c).flatten() for c in classes.tolist()]
        queues = [pool[torch.randperm(len(pool), device=self.device, generator=g)] for pool in pools]
        heads = [0] * len(pools)
        order = []
        for _ in range(len(self)):
            for c in torch.randperm(len(pools), device=self.device, generator=g)[:p].tolist():
                if heads[c] + k > len(queues[c]):   # this class ran out: a new shuffle of all its images; a
                    queues[c] = pools[c][torch.randperm(len(pools[c]), device=self.device, generator=g)]
                    heads[c] = 0                    # short tail is skipped, so no image comes twice in a batch
                chunk = queues[c][heads[c]:heads[c] + k]
                order.append(chunk)
                heads[c] += k
        return torch.cat(order)

    def __iter__(self):
        g = self._epoch_generator()
        n = len(self.labels)
        total = self.epoch_images
        if not self.train:
            order = torch.arange(n, device=self.device)
        elif self.per_class:
            order = self._pk_order(g)
        else:
            order = torch.randperm(total, device=self.device, generator=g)
        for i in range(self._passes()):
            positions = order[i * self.batch_size:(i + 1) * self.batch_size]
            idx = positions % n
            x = self.images[idx]
            if self.views == 2:
                yield self._finish(self.augment(x, generator=g)), self._finish(self.augment(x, generator=g)), self.labels[idx]
                continue
            if self.train:
                augmented = self.augment(x, generator=g)
                # positions n..2n-1 are the ConcatDataset's second, unaugmented copy
                x = torch.where((positions >= n)[:, None, None, None], x, augmented) if self.concat_original else augmented
            yield self._finish(x), self.labels[idx]
        self.epoch += 1  # a plain `for` loop over epochs gets a fresh order each time

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images to the model's input: normalised, resized to `size`, in the memory layout asked for."""
        x = augment.normalize(x, self.mean, self.std, dtype=self.dtype)
        if self.size is not None and x.shape[-1] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _check_pk(data: ImageData, batch_size: int, per_class, *, train: bool, concat_original: bool,
              drop_last: bool | None) -> None:
    """Refuse PK settings that cannot give P distinct classes × K distinct images per batch."""
    where = f"{data.name}/{data.split}"
    if not isinstance(per_class, int) or per_class < 2:
        raise ValueError(f"per_class (K images of each class per batch) must be a whole number of at least 2, so "
                         f"that every image has a positive in its batch, not {per_class!r}")
    if not train:
        raise ValueError(f"per_class applies to training batches, and these batches of {where} have train=False "
                         f"(evaluation goes through the data in order): drop per_class, or use train=True")
    if concat_original:
        raise ValueError(f"per_class and concat_original cannot be combined for {where}: choose one way to build an "
                         f"epoch (drop concat_original for PK batches)")
    if drop_last is False:
        raise ValueError(f"per_class needs drop_last for {where}: a short last batch would not be P classes × K "
                         f"images; leave drop_last unset (training drops it) or pass True")
    if batch_size % per_class:
        raise ValueError(f"batch_size {batch_size} is not a multiple of per_class {per_class}: a PK batch is P classes × "
                         f"K images; use batch_size = P × {per_class}, e.g. {max(2, batch_size // per_class) * per_class}")
    if (data.labels < 0).any():
        raise ValueError(f"{where} has {int((data.labels < 0).sum())} unlabeled images (label -1): PK batches need a "
                         f"class for every image; keep the labelled ones, e.g. data.take(d, torch.nonzero(d.labels >= 0)"
                         f".flatten())")
    counts = torch.bincount(data.labels)
    present = counts[counts > 0]
    p = batch_size // per_class
    if p < 2:
        raise ValueError(f"batch_size {batch_size} with per_class {per_class} gives one class per batch: no image "
                         f"would have a negative; use at least two classes, batch_size >= {2 * per_class}")
    if p > len(present):
        raise ValueError(f"batch_size {batch_size} / per_class {per_class} asks for {p} classes per batch, but {where} "
                         f"has {len(present)}; lower batch_size to at most {len(present) * per_class} or raise per_class")
    if per_class > int(present.min()):
        small = int(torch.nonzero(counts == present.min())[0])
        raise ValueError(f"per_class {per_class} is more than the {int(present.min())} images of class "
                         f"{data.classes[small]!r} in {where}: a batch would repeat an image; lower per_class")


def balanced_pairs(labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A partner for every image, half of them of its own class: the pairs of a pairwise contrastive loss.

    Exactly n // 2 anchors, chosen at random, get another image of their class (uniformly, never
    themselves); the others get an image of another class (uniformly over those images). Returns
    (partner, similar): n indices into `labels`, and n booleans, True where the pair shares a class.
    Drawn at random, a partner has the anchor's class with probability (n_c - 1)/(n - 1): 1 pair in
    10 with 10 balanced classes, so a loss on random pairs mostly pushes apart.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype in (torch.bool,) or labels.is_floating_point():
        raise ValueError(f"labels must be one whole-number class per image, not {labels.dtype} of shape {tuple(labels.shape)}")
    if (labels < 0).any():
        raise ValueError(f"{int((labels < 0).sum())} of the {len(labels)} labels are negative (unlabeled images): "
                         f"pairs by class need a class for every image; keep the labelled ones")
    n = len(labels)
    counts = torch.bincount(labels)
    present = counts[counts > 0]
    if len(present) < 2:
        raise ValueError(f"the {n} images have {len(present)} class(es): a dissimilar pair needs at least two")
    if int(present.min()) < 2:
        lone = torch.nonzero(counts == 1).flatten().tolist()
        raise ValueError(f"class(es) {lone[:8]} have a single image: a similar pair needs two of a class; drop them "
                         f"or add images")
    device = labels.device
    order = torch.argsort(labels, stable=True)                 # image indices, class by class
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=device)               # where each image sits in that order
    start = (torch.cumsum(counts, 0) - counts)[labels]         # where the anchor's class begins in it
    size = counts[labels]
    similar = torch.zeros(n, dtype=torch.bool, device=device)
    similar[torch.randperm(n, device=device, generator=generator)[:n // 2]] = True
    u = torch.rand(n, device=device, generator=generator)
    # a similar partner: one of the size - 1 other places of the anchor's class, the anchor's own skipped
    same = start + torch.minimum((u * (size - 1)).long(), size - 2)
    same = same + (same >= rank).long()
    # a dissimilar partner: one of the n - size places outside the class, those after it shifted past it
    other = torch.minimum((u * (n - size)).long(), n - size - 1)
    other = torch.where(other < start, other, other + size)
    return order[torch.where(similar, same, other)], similar


class PairBatches(GpuBatches):
    """Batches of image pairs for a pairwise contrastive loss: (first images, second images, similar).

    Each epoch shuffles the images into batches of anchors (a last incomplete batch is dropped, as in
    training); `pairs(labels, generator)` gives each image a partner and whether the two share a class
    (default: `balanced_pairs`, half similar), drawn afresh every epoch. Both
    images of a pair are augmented independently, as GpuBatches augments (crop, flip, `augmentations`).
    Takes GpuBatches' keyword arguments; training batches only, one view, no PK or ConcatDataset.
    """

    def __init__(self, data: ImageData, *, batch_size: int, pairs: Callable = balanced_pairs, **kwargs):
        for key, allowed in (("train", True), ("views", 1), ("per_class", None), ("concat_original", False)):
            if key in kwargs and kwargs[key] != allowed:
                raise ValueError(f"PairBatches draws training pairs of {data.name}/{data.split}: {key}={kwargs[key]!r} "
                                 f"does not apply (leave it out)")
        if (data.labels < 0).any():
            raise ValueError(f"{data.name}/{data.split} has {int((data.labels < 0).sum())} unlabeled images (label -1): "
                             f"pairs by class need a class for every image")
        super().__init__(data, batch_size=batch_size, **kwargs)
        self.pairs = pairs

    def __iter__(self):
        g = self._epoch_generator()
        order = torch.randperm(len(self.labels), device=self.device, generator=g)
        partner, similar = self.pairs(self.labels, g)
        for i in range(self._passes()):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            first = self._finish(self.augment(self.images[idx], generator=g))
            second = self._finish(self.augment(self.images[partner[idx]], generator=g))
            yield first, second, similar[idx]
        self.epoch += 1


class TransformDataset(torch.utils.data.Dataset):
    """A per-image view of an ImageData for torchvision transforms: item i is (transform(PIL image), label)."""

    def __init__(self, data: ImageData, transform=None):
        self.data = data
        self.transform = transform

    def __fingerprint__(self) -> dict:
        return {"images": self.data.images, "labels": self.data.labels, "transform": self.transform}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.data.images[i].permute(1, 2, 0).numpy())
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[i])
