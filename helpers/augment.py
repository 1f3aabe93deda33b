"""Batch augmentations on uint8 image tensors, drawn per image, on whatever device the batch is on.

torchvision's v2 transforms applied to a batch tensor draw one random crop for the whole batch;
these draw one per image, like a per-sample DataLoader pipeline, but in a handful of tensor ops
(the airbench approach). Every function takes a `torch.Generator` on the batch's device so that
a seeded run repeats exactly.
"""
from __future__ import annotations

import torch


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None,
                padding_mode: str = "reflect") -> torch.Tensor:
    """Pad by `padding` on each side, then crop back to H×W at an offset drawn per image.

    images: B×C×H×W. padding_mode: "reflect" (airbench) or "zeros" (torchvision's RandomCrop).
    """
    if padding == 0:
        return images
    B, C, H, W = images.shape
    if padding_mode == "zeros":
        padded = torch.nn.functional.pad(images, (padding,) * 4)
    elif padding_mode == "reflect":
        # reflect padding is not implemented for uint8 on every device: pad as float, round back.
        padded = torch.nn.functional.pad(images.float(), (padding,) * 4, mode="reflect").to(images.dtype)
    else:
        raise ValueError(f"padding_mode must be 'reflect' or 'zeros', not {padding_mode!r}")
    dy = torch.randint(0, 2 * padding + 1, (B,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (B,), device=images.device, generator=generator)
    rows = (dy[:, None] + torch.arange(H, device=images.device))[:, :, None]  # B×H×1
    cols = (dx[:, None] + torch.arange(W, device=images.device))[:, None, :]  # B×1×W
    batch = torch.arange(B, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # gather, back to B×C×H×W


def random_flip(images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror left-right each image with probability p."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalize(images: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 in [0, 255] to float, minus the dataset mean, over its std (per channel)."""
    mean = torch.as_tensor(mean, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - mean) / std


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """The inverse of `normalize`, back to uint8 (for showing a batch)."""
    mean = torch.as_tensor(mean, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, device=images.device).view(1, -1, 1, 1)
    return ((images.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
