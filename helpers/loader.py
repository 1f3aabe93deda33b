"""Two ways to feed a model: the GPU-resident batch loader, and a plain Dataset for PIL pipelines.

`GpuBatches` keeps the whole uint8 split on the device (CIFAR-10's 50,000 training images are
150 MB) and builds each batch with a few tensor ops: no worker processes, no PIL, no host-to-device
copies per step. On Colab's 2 CPU cores that is the difference between a GPU that waits for JPEG
decoding and one that trains. `TransformDataset` is the classic per-image pipeline, kept for
the seed reports' recipes and for comparing the two.
"""
from __future__ import annotations

import math

import torch
from PIL import Image

from . import augment
from .data import STATS, ImageData


class GpuBatches:
    """Iterate (images, labels) batches of `data` on `device`, augmented per image.

    One pass of `for x, y in batches` is one epoch. The order and the augmentation draws of epoch
    e depend only on (seed, e): call `set_epoch(e)` (the training loop does) to get that epoch
    again, e.g. when resuming. Yields float images normalised with (mean, std), B×C×H×W.
    """

    def __init__(self, data: ImageData, *, batch_size: int, device: torch.device | str = "cpu",
                 train: bool = True, crop_padding: int = 4, flip: bool = True, padding_mode: str = "reflect",
                 mean=None, std=None, seed: int = 0, drop_last: bool | None = None,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32):
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
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.dtype = dtype
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, device=self.device, generator=g) if self.train else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.crop_padding:
                x = augment.random_crop(x, self.crop_padding, generator=g, padding_mode=self.padding_mode)
            if self.flip:
                x = augment.random_flip(x, generator=g)
            x = augment.normalize(x, self.mean, self.std, dtype=self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
        self.epoch += 1  # a plain `for` loop over epochs gets a fresh order each time


class TransformDataset(torch.utils.data.Dataset):
    """A per-image view of an ImageData for torchvision transforms: item i is (transform(PIL image), label)."""

    def __init__(self, data: ImageData, transform=None):
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.data.images[i].permute(1, 2, 0).numpy())
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[i])
