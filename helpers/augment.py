"""Batch augmentations on uint8 image tensors, drawn per image, on whatever device the batch is on.

torchvision's v2 transforms applied to a batch tensor draw one random crop for the whole batch;
these draw one per image, like a per-sample DataLoader pipeline, but in a handful of tensor ops
(the airbench approach). Every function takes and returns uint8 B×C×H×W and a `torch.Generator`
on the batch's device, so that a seeded run repeats exactly. Each mirrors a torchvision transform
(named in its docstring); the tests check them against torchvision's kernels.
"""
from __future__ import annotations

import math

import torch


def _gather(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Per image b, the pixels at rows[b] (h row indices) × cols[b] (w column indices): B×C×h×w."""
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


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
    rows = dy[:, None] + torch.arange(H, device=images.device)  # B×H
    cols = dx[:, None] + torch.arange(W, device=images.device)  # B×W
    return _gather(padded, rows, cols)


def random_flip(images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror left-right each image with probability p."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


# ----------------------------------------------------------------------------- geometry

def affine(images: torch.Tensor, angle: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor,
           fill: int = 0, interpolation: str = "bilinear") -> torch.Tensor:
    """Rotate image i by angle[i] degrees counter-clockwise about its centre (torchvision's `rotate`),
    then move its content by (shift_x[i], shift_y[i]) pixels right and down. Uncovered pixels get `fill`."""
    B, C, H, W = images.shape
    radians = torch.deg2rad(torch.as_tensor(angle, dtype=torch.float32, device=images.device))
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps each output position to the input position it samples, in [-1, 1] units
    # per axis: the inverse rotation, with the aspect ratio folded in so that non-square images
    # rotate rigidly, and the inverse shift.
    theta = torch.stack([
        torch.stack([cos, -sin * H / W, -2 * torch.as_tensor(shift_x, device=images.device) / W], dim=1),
        torch.stack([sin * W / H, cos, -2 * torch.as_tensor(shift_y, device=images.device) / H], dim=1)], dim=1)
    grid = torch.nn.functional.affine_grid(theta.float(), (B, C, H, W), align_corners=False)
    x = images.float() - fill  # so that zero padding outside the image becomes `fill` again
    out = torch.nn.functional.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    return (out + fill).round().clamp(0, 255).to(images.dtype)


def random_affine(images: torch.Tensor, *, degrees: float = 0.0, translate: float = 0.0,
                  generator: torch.Generator | None = None, fill: int = 0,
                  interpolation: str = "bilinear") -> torch.Tensor:
    """Per image: a rotation by an angle uniform in [-degrees, degrees], and a shift by a whole number
    of pixels uniform in [-translate·W, translate·W] (and ·H), like torchvision's
    RandomAffine(degrees, translate=(translate, translate)). Corners that come from outside get `fill`."""
    if degrees < 0 or not 0 <= translate <= 1:
        raise ValueError(f"need degrees >= 0 and 0 <= translate <= 1, got degrees={degrees}, translate={translate}")
    if degrees == 0 and translate == 0:
        return images
    B, _, H, W = images.shape
    dev = images.device
    angle = (torch.rand(B, device=dev, generator=generator) * 2 - 1) * degrees
    max_dx, max_dy = round(translate * W), round(translate * H)
    shift_x = torch.randint(-max_dx, max_dx + 1, (B,), device=dev, generator=generator).float()
    shift_y = torch.randint(-max_dy, max_dy + 1, (B,), device=dev, generator=generator).float()
    return affine(images, angle, shift_x, shift_y, fill, interpolation)


def random_rotation(images: torch.Tensor, degrees: float, generator: torch.Generator | None = None,
                    fill: int = 0, interpolation: str = "bilinear") -> torch.Tensor:
    """Rotate each image by an angle uniform in [-degrees, degrees] (torchvision's RandomRotation)."""
    return random_affine(images, degrees=degrees, generator=generator, fill=fill, interpolation=interpolation)


def random_translate(images: torch.Tensor, fraction: float, generator: torch.Generator | None = None,
                     fill: int = 0) -> torch.Tensor:
    """Shift each image by up to `fraction` of its width and height, in whole pixels."""
    return random_affine(images, translate=fraction, generator=generator, fill=fill, interpolation="nearest")


def cutout(images: torch.Tensor, size: int, generator: torch.Generator | None = None, fill: int = 0) -> torch.Tensor:
    """Blank a size×size square at a centre drawn uniformly over each image; the square may run off
    the edge, so less than size² pixels are hidden near borders (DeVries & Taylor 2017,
    https://arxiv.org/abs/1708.04552)."""
    if size == 0:
        return images
    B, _, H, W = images.shape
    dev = images.device
    cy = torch.randint(0, H, (B, 1, 1), device=dev, generator=generator)
    cx = torch.randint(0, W, (B, 1, 1), device=dev, generator=generator)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(H, device=dev).view(1, H, 1)
    cols = torch.arange(W, device=dev).view(1, 1, W)
    hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)  # B×H×W
    return images.masked_fill(hole[:, None], fill)


def resized_crop_boxes(height: int, width: int, n: int, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                       generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n boxes (top, left, h, w) drawn as torchvision's `RandomResizedCrop.get_params` draws one: an area
    of `scale` × the image's and an aspect ratio uniform in log(`ratio`), tried 10 times; the first try
    that fits the image is kept, and where none fits, the central crop of the largest box whose aspect
    is within `ratio`. Returns an n×4 long tensor."""
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"scale and ratio are (low, high) with 0 < low <= high, not scale={scale}, ratio={ratio}")
    tries = 10
    area = height * width * torch.empty(n, tries, device=device).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n, tries, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().round().long()
    h = (area / aspect).sqrt().round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), 0)
    rows = torch.arange(n, device=device)
    h, w, found = h[rows, first], w[rows, first], fits.any(1)
    in_ratio = width / height   # the fallback: torchvision's central crop
    if in_ratio < ratio[0]:
        fh, fw = int(round(width / ratio[0])), width
    elif in_ratio > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fh, fw = height, width
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    u = torch.rand(n, 2, device=device, generator=generator)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - fh) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - fw) // 2)
    return torch.stack([top, left, h, w], dim=1)


def _source_index(start: torch.Tensor, length: torch.Tensor, size: int):
    """Bilinear sampling positions of `size` outputs over [start, start + length) per image, as
    torch's interpolate(align_corners=False) computes them: (lower index, upper index, weight of upper)."""
    out = torch.arange(size, device=start.device, dtype=torch.float32)
    src = ((out[None] + 0.5) * (length[:, None].float() / size) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=(length - 1)[:, None])
    high = (low + 1).clamp(max=(length - 1)[:, None])
    return start[:, None] + low, start[:, None] + high, src - low.float()


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut box i = (top, left, h, w) out of image i and resize it to size×size, bilinear without
    antialiasing (torchvision's `resized_crop(..., antialias=False)`), uint8 in and out."""
    y0, y1, wy = _source_index(boxes[:, 0], boxes[:, 2], size)
    x0, x1, wx = _source_index(boxes[:, 1], boxes[:, 3], size)
    x = images.float()
    wy, wx = wy[:, None, :, None], wx[:, None, None, :]
    top = _gather(x, y0, x0) * (1 - wx) + _gather(x, y0, x1) * wx
    bottom = _gather(x, y1, x0) * (1 - wx) + _gather(x, y1, x1) * wx
    return (top * (1 - wy) + bottom * wy).round().clamp(0, 255).to(images.dtype)


def random_resized_crop(images: torch.Tensor, size: int | None = None, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's RandomResizedCrop (bilinear, no antialiasing) with a box drawn per image: SimCLR's
    first augmentation. size: the output side (default: the input's height)."""
    B, _, H, W = images.shape
    boxes = resized_crop_boxes(H, W, B, scale=scale, ratio=ratio, generator=generator, device=images.device)
    return resized_crop(images, boxes, size or H)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur image i with a Gaussian of standard deviation sigma[i] pixels over kernel_size × kernel_size
    (odd), reflecting at the borders: torchvision's `gaussian_blur` with one sigma per image."""
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be an odd whole number, not {kernel_size}")
    B, C, H, W = images.shape
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, device=images.device)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.float()[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(C, dim=0)   # (B·C)×k, one per channel
    pad = kernel_size // 2
    x = torch.nn.functional.pad(images.float().reshape(1, B * C, H, W), (pad, pad, pad, pad), mode="reflect")
    x = torch.nn.functional.conv2d(x, kernel[:, None, None, :], groups=B * C)   # along rows
    x = torch.nn.functional.conv2d(x, kernel[:, None, :, None], groups=B * C)   # along columns
    return x.reshape(B, C, H, W).round().clamp(0, 255).to(images.dtype)


def random_gaussian_blur(images: torch.Tensor, kernel_size: int, sigma=(0.1, 2.0), p: float = 0.5,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's GaussianBlur(kernel_size, sigma) applied to a share p of the images, sigma drawn
    uniformly per image (SimCLR blurs with p = 0.5 and a kernel of about a tenth of the image side)."""
    if not 0 <= p <= 1 or not 0 < sigma[0] <= sigma[1]:
        raise ValueError(f"random_gaussian_blur needs p in [0, 1] and 0 < sigma low <= high, not p={p}, sigma={sigma}")
    B = images.shape[0]
    s = sigma[0] + torch.rand(B, device=images.device, generator=generator) * (sigma[1] - sigma[0])
    apply = torch.rand(B, device=images.device, generator=generator) < p
    if not apply.any():
        return images
    return torch.where(apply[:, None, None, None], gaussian_blur(images, s, kernel_size), images)


# ----------------------------------------------------------------------------- colour

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision and PIL use


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """B×3×H×W float to its luma, B×1×H×W."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def random_grayscale(images: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each image by its luma (in all three channels) with probability p."""
    pick = torch.rand(images.shape[0], device=images.device, generator=generator) < p
    gray = grayscale(images.float()).round().clamp(0, 255).to(images.dtype).expand_as(images)
    return torch.where(pick[:, None, None, None], gray, images)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    value = x.amax(dim=1)
    chroma = value - x.amin(dim=1)
    gray = chroma == 0
    saturation = chroma / torch.where(value == 0, torch.ones_like(value), value)
    c = torch.where(gray, torch.ones_like(chroma), chroma)
    # hue in sixths of a turn, measured from the channel that is largest
    hue = torch.where(value == r, (g - b) / c,
                      torch.where(value == g, 2 + (b - r) / c, 4 + (r - g) / c))
    hue = torch.where(gray, torch.zeros_like(hue), hue)
    return torch.stack([(hue / 6) % 1.0, saturation, value], dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = x.unbind(dim=1)
    h6 = hue * 6
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long() % 6
    p = value * (1 - saturation)
    q = value * (1 - saturation * f)
    t = value * (1 - saturation * (1 - f))
    # (r, g, b) for each of the six sectors of the hue circle
    table = torch.stack([torch.stack(c, dim=0) for c in (
        (value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q))], dim=0)
    pick = sector[None, None].expand(1, 3, *sector.shape)
    return table.gather(0, pick)[0].movedim(0, 1)


def adjust_colors(x: torch.Tensor, brightness=None, contrast=None, saturation=None, hue=None) -> torch.Tensor:
    """torchvision's adjust_brightness, _contrast, _saturation and _hue, in that order, with one factor
    per image. x: B×3×H×W float in [0, 1]; each factor a tensor of B values (None: leave it)."""
    def per_image(v):
        return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)

    if brightness is not None:
        x = (x * per_image(brightness)).clamp(0, 1)
    if contrast is not None:
        mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        f = per_image(contrast)
        x = (f * x + (1 - f) * mean).clamp(0, 1)
    if saturation is not None:
        f = per_image(saturation)
        x = (f * x + (1 - f) * grayscale(x)).clamp(0, 1)
    if hue is not None:
        hsv = _rgb_to_hsv(x)
        hsv = torch.cat([(hsv[:, :1] + per_image(hue)) % 1.0, hsv[:, 1:]], dim=1)
        x = _hsv_to_rgb(hsv)
    return x


def color_jitter(images: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, generator: torch.Generator | None = None, p: float = 1.0) -> torch.Tensor:
    """torchvision's ColorJitter drawn per image: brightness, contrast and saturation factors uniform
    in [max(0, 1 - v), 1 + v], a hue shift uniform in [-hue, hue] of a turn. Unlike torchvision, the four
    are applied in a fixed order (one random order per batch would not be per image). p: the share of
    images jittered at all, as `RandomApply([ColorJitter(...)], p)` (SimCLR: 0.8); the rest are unchanged."""
    if not 0 <= hue <= 0.5 or min(brightness, contrast, saturation) < 0:
        raise ValueError(f"color_jitter needs brightness, contrast and saturation >= 0 and hue in [0, 0.5]; got "
                         f"{brightness}, {contrast}, {saturation} and {hue}")
    if not 0 <= p <= 1:
        raise ValueError(f"color_jitter's p is a probability in [0, 1], not {p}")
    B = images.shape[0]

    def factors(v, low, high):
        if v == 0:
            return None
        return low + torch.rand(B, device=images.device, generator=generator) * (high - low)

    # like torchvision, a factor never drops below 0 (brightness 1.5 draws from [0, 2.5])
    draws = dict(brightness=factors(brightness, max(0.0, 1 - brightness), 1 + brightness),
                 contrast=factors(contrast, max(0.0, 1 - contrast), 1 + contrast),
                 saturation=factors(saturation, max(0.0, 1 - saturation), 1 + saturation),
                 hue=factors(hue, -hue, hue))
    if all(v is None for v in draws.values()) or p == 0:
        return images
    x = (adjust_colors(images.float() / 255, **draws) * 255).round().clamp(0, 255).to(images.dtype)
    if p == 1:
        return x
    apply = torch.rand(B, device=images.device, generator=generator) < p
    return torch.where(apply[:, None, None, None], x, images)


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
