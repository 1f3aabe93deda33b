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
    """

    def __init__(self, data: ImageData, *, batch_size: int, device: torch.device | str = "cpu",
                 train: bool = True, crop_padding: int = 4, flip: bool = True, padding_mode: str = "reflect",
                 augmentations: Sequence[Callable] = (), concat_original: bool = False, size: int | None = None,
                 mean=None, std=None, seed: int = 0, drop_last: bool | None = None,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive whole number, not {batch_size!r}")
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
        n = self.epoch_images
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

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

    def __iter__(self):
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        total = self.epoch_images
        order = torch.randperm(total, device=self.device, generator=g) if self.train else torch.arange(n, device=self.device)
        for i in range(len(self)):
            positions = order[i * self.batch_size:(i + 1) * self.batch_size]
            idx = positions % n
            x = self.images[idx]
            if self.train:
                augmented = self.augment(x, generator=g)
                # positions n..2n-1 are the ConcatDataset's second, unaugmented copy
                x = torch.where((positions >= n)[:, None, None, None], x, augmented) if self.concat_original else augmented
            x = augment.normalize(x, self.mean, self.std, dtype=self.dtype)
            if self.size is not None and x.shape[-1] != self.size:
                x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
        self.epoch += 1  # a plain `for` loop over epochs gets a fresh order each time


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
