"""Class activation maps, and how to measure them against real object boxes.

* `capture` and `class_activation_maps`: CAM by hand (Zhou et al. 2016) for a network that ends in
  global average pooling and one linear layer: the map of class c is Σ_k w_ck A_k, and its spatial
  mean plus the bias is class c's logit. Hooks are removed when the block ends, error or not.
* `package_maps`: the grad-cam package's methods (Grad-CAM, Grad-CAM++, Score-CAM, Eigen-CAM,
  Layer-CAM) used safely: one target per image, checked against the number of classes (with one
  target for a batch the gradient methods silently return zeros for every image but the first),
  inside `with` (hooks released), every module's training mode and the gradients put back.
* `to_image`: the package's own post-processing (ReLU, min-max, bilinear resize, min-max again), so
  that a map made by hand and one made by the package can be compared number for number.
* Localisation against a box (inclusive pixel coordinates, Tiny ImageNet's convention):
  `pointing_game`, `energy_in_box`, `box_from_map` (the CAM paper's 20%-of-max threshold and largest
  connected component) and `box_iou`; `centre_prior`, the baseline that knows nothing of the image.
* Faithfulness: `deletion_insertion`, after Petsiuk et al. (2018): the target's probability as the
  most salient pixels are blurred away (deletion, lower area is better) or put back into a blurred
  image (insertion, higher is better). Petsiuk et al. delete to black and insert into a blur; here
  both use the blur, so that deletion does not add the sharp edges of black holes.
* The sanity check of Adebayo et al. (2018): `randomise_from_top` re-draws the weights of the top
  stages of a copy of the network, and `rank_correlation` says how much a map changed.
"""
from __future__ import annotations

import copy
import functools
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import eval_mode

METHOD_NAMES = ("Grad-CAM", "Grad-CAM++", "Score-CAM", "Eigen-CAM", "Layer-CAM")


# ----------------------------------------------------------------------------- CAM by hand

@contextmanager
def capture(model: nn.Module, *layers: str):
    """Within the block, `out[name]` holds the output of `model.<name>` of the last forward pass.
    The hooks are removed when the block ends, also when it ends in an error."""
    out, handles = {}, []
    try:
        for name in layers:
            module = model.get_submodule(name)
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: out.__setitem__(name, o.detach())))
        yield out
    finally:
        for h in handles:
            h.remove()


def head_linear(model: nn.Module) -> nn.Linear:
    """The linear layer after global average pooling (the course's ResNets: `head.fc`)."""
    head = getattr(model, "head", None)
    if not isinstance(getattr(head, "pool", None), nn.AdaptiveAvgPool2d) or not isinstance(getattr(head, "fc", None), nn.Linear):
        raise ValueError("CAM needs a head of global average pooling then one linear layer (head.pool, head.fc); "
                         f"this model's head is {head}")
    return head.fc


@torch.no_grad()
def class_activation_maps(model: nn.Module, images: torch.Tensor, *, layer: str = "layer4"):
    """(logits, maps) with maps[b, c] = Σ_k fc.weight[c, k] · A[b, k] for every class c, where A is
    `layer`'s output (the last one: its pooled mean is what the linear layer reads). No gradients."""
    fc = head_linear(model)
    with capture(model, layer) as out:
        logits = model(images)
    maps = torch.einsum("bkhw,ck->bchw", out[layer].float(), fc.weight.float())
    return logits, maps


def to_image(maps, size: tuple[int, int]) -> np.ndarray:
    """The grad-cam package's post-processing of (B, h, w) maps: ReLU, min-max per map, bilinear
    resize to `size` (H, W), min-max again. A constant map (e.g. 1×1) comes out all zeros."""
    m = torch.as_tensor(np.asarray(maps), dtype=torch.float32).clamp_min(0)
    m = _minmax(m)
    m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(m).numpy()


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo = flat.min(1).values[:, None, None]
    m = m - lo
    return m / (1e-7 + m.flatten(1).max(1).values[:, None, None])


def resize(maps, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (B, h, w) maps to (B, H, W), values kept (no normalisation)."""
    m = torch.as_tensor(np.asarray(maps), dtype=torch.float32)
    return F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


# ----------------------------------------------------------------------------- the grad-cam package

def package_method(name: str):
    import pytorch_grad_cam as pgc
    classes = {"Grad-CAM": pgc.GradCAM, "Grad-CAM++": pgc.GradCAMPlusPlus, "Score-CAM": pgc.ScoreCAM,
               "Eigen-CAM": pgc.EigenCAM, "Layer-CAM": pgc.LayerCAM, "HiResCAM": pgc.HiResCAM,
               "XGrad-CAM": pgc.XGradCAM}
    if name not in classes:
        raise ValueError(f"unknown CAM method {name!r}: choose one of {sorted(classes)}")
    return classes[name]


@contextmanager
def _quiet_score_cam():
    """Score-CAM draws a progress bar per image; silence it for the block."""
    import tqdm
    import pytorch_grad_cam.score_cam as score_cam
    saved = score_cam.tqdm
    score_cam.tqdm = type("quiet_tqdm", (), {"tqdm": staticmethod(functools.partial(tqdm.tqdm, disable=True))})
    try:
        yield
    finally:
        score_cam.tqdm = saved


def _autocast(images: torch.Tensor, amp: bool):
    """Mixed precision for a block on CUDA (bf16 where the GPU has it, else fp16), as training and evaluation
    use; nothing on the CPU. Score-CAM's forward pass per channel is most of a notebook's map-making time."""
    from .train import autocast_dtype
    dtype = autocast_dtype(images.device, amp)
    return torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None)


def package_maps(method: str, model: nn.Module, layer: str, images: torch.Tensor, targets,
                 *, batch_size: int = 128, score_batch: int = 128, amp: bool = True) -> np.ndarray:
    """`method`'s maps (B, H, W) in [0, 1] at the input's size for class targets[b] of image b
    (Eigen-CAM ignores the class: it is the first principal component of the layer's activations).

    One target per image is required: grad-cam pairs targets with outputs with `zip`, so a single
    target for a batch explains image 0 and returns all-zero maps for the others (Score-CAM fails
    instead). Targets must be classes of the model's head: the package swallows the IndexError an
    unknown class raises. batch_size: images per call; score_batch: Score-CAM's masked images per
    forward pass. amp: under autocast on a GPU (amp=False: in fp32, for a comparison to 1e-4). The package
    puts the model in eval mode and leaves gradients in its parameters; every module's mode and the
    gradients are put back."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    targets = [int(t) for t in targets]
    if len(targets) != len(images):
        raise ValueError(f"package_maps needs one target per image: {len(images)} images, {len(targets)} targets "
                         "(grad-cam zips targets with outputs and would leave the other maps at zero)")
    try:
        classes = head_linear(model).out_features
    except ValueError:   # another kind of head: the package's own error stands
        classes = None
    if classes is not None and not all(0 <= t < classes for t in targets):
        raise ValueError(f"package_maps: targets must be classes 0 to {classes - 1} of this model's head, got "
                         f"{sorted({t for t in targets if not 0 <= t < classes})[:5]}")
    cls = package_method(method)
    grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    maps = []
    target = model.get_submodule(layer)
    # under autocast the layer gives half-precision maps; the package turns them into NumPy arrays (which have
    # no bfloat16) and scales them with an epsilon of 1e-7 (0 in float16): it is handed float32
    as_float = target.register_forward_hook(lambda module, args, output: output.float())
    try:
        with eval_mode(model), torch.enable_grad(), _quiet_score_cam(), _autocast(images, amp), \
                cls(model=model, target_layers=[target]) as cam:
            cam.batch_size = score_batch
            for i in range(0, len(images), batch_size):
                chunk = [ClassifierOutputTarget(t) for t in targets[i:i + batch_size]]
                maps.append(cam(input_tensor=images[i:i + batch_size], targets=chunk))
    finally:
        as_float.remove()
        for n, p in model.named_parameters():
            p.grad = grads[n]
    out = np.concatenate(maps).astype(np.float32) if maps else np.zeros((0,) + tuple(images.shape[-2:]), np.float32)
    if len(out) != len(images):   # the package's `with` prints and swallows an IndexError raised inside it
        raise RuntimeError(f"{method} returned {len(out)} maps for {len(images)} images (an error inside grad-cam)")
    return out


# ----------------------------------------------------------------------------- localisation

def _boxes(boxes, size: tuple[int, int] | None = None) -> np.ndarray:
    """(N, 4) integer boxes, checked: xmax >= xmin, ymax >= ymin, and (with `size`, the maps' (H, W)) inside the
    map. A box outside the map, or the "no box" marker -1, would score as a miss without a word."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise ValueError("a box is (xmin, ymin, xmax, ymax) with xmax >= xmin and ymax >= ymin")
    if size is not None:
        h, w = size
        outside = (b[:, :2] < 0).any(1) | (b[:, 2] >= w) | (b[:, 3] >= h)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"{int(outside.sum())} of the {len(b)} boxes lie outside the {w}×{h} maps (the first: "
                             f"image {i}, box {b[i].tolist()}). Scale the boxes to the maps' size, and leave out "
                             f"images without a box (-1)")
    return b


def _finite_maps(maps, what: str = "maps") -> np.ndarray:
    m = np.asarray(maps)
    bad = ~np.isfinite(m.reshape(len(m), -1)).all(1) if m.size else np.zeros(0, dtype=bool)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of the {len(m)} {what} hold NaN or an infinity (the first: image "
                         f"{int(np.flatnonzero(bad)[0])}): a map of a non-finite gradient or activation scores nothing")
    return m


def box_masks(boxes, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) booleans: inside each box (inclusive pixel coordinates)."""
    b = _boxes(boxes, size)
    ys, xs = np.arange(size[0])[None, :, None], np.arange(size[1])[None, None, :]
    return ((xs >= b[:, 0, None, None]) & (xs <= b[:, 2, None, None]) &
            (ys >= b[:, 1, None, None]) & (ys <= b[:, 3, None, None]))


def peak(maps) -> np.ndarray:
    """(N, 2) (x, y) of each map's maximum; ties go to the first in row-major order, so a flat map
    points at (0, 0) (`localisation` reports the share of flat maps beside the scores)."""
    m = np.asarray(maps)
    flat = m.reshape(len(m), -1).argmax(1)
    return np.stack([flat % m.shape[2], flat // m.shape[2]], 1)


def pointing_game(maps, boxes, tolerance: float = 0.0) -> np.ndarray:
    """(N,) booleans: the map's maximum lies within `tolerance` pixels (Euclidean) of the box
    (Zhang et al. 2016 use 15 px at 224; scale it with the image)."""
    maps = _finite_maps(maps)
    b, (x, y) = _boxes(boxes, maps.shape[1:]), peak(maps).T
    dx = np.maximum(np.maximum(b[:, 0] - x, x - b[:, 2]), 0)
    dy = np.maximum(np.maximum(b[:, 1] - y, y - b[:, 3]), 0)
    return np.hypot(dx, dy) <= tolerance


def energy_in_box(maps, boxes) -> np.ndarray:
    """(N,) share of each (non-negative) map's sum that falls inside the box. A map that is zero
    everywhere says nothing: it counts as spread evenly (the box's share of the image)."""
    m = np.clip(np.asarray(maps, dtype=np.float64), 0, None)
    inside = box_masks(boxes, m.shape[1:])
    total = m.sum((1, 2))
    share = (m * inside).sum((1, 2)) / np.where(total > 0, total, 1)
    return np.where(total > 0, share, inside.mean((1, 2)))


def box_from_map(cam_map, threshold: float = 0.2) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) of the largest 8-connected region at or above `threshold` × the
    map's maximum (the CAM paper's protocol); the whole image for a map that is zero everywhere."""
    from scipy import ndimage
    m = np.asarray(cam_map, dtype=np.float64)
    top = m.max()
    if top <= 0:
        return np.array([0, 0, m.shape[1] - 1, m.shape[0] - 1])
    labels, n = ndimage.label(m >= threshold * top, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == 1 + int(sizes.argmax()))
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])


def box_iou(a, b) -> np.ndarray:
    """(N,) intersection over union of boxes in inclusive pixel coordinates."""
    a, b = _boxes(a), _boxes(b)
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)
    return inter / (area(a) + area(b) - inter)


def centre_prior(size: tuple[int, int], sigma: float) -> np.ndarray:
    """(H, W) Gaussian blob of standard deviation `sigma` pixels, centred on the image's centre
    ((H-1)/2, (W-1)/2): 1 there for an odd size; for an even size four pixels share a maximum below 1."""
    ys, xs = np.arange(size[0]) - (size[0] - 1) / 2, np.arange(size[1]) - (size[1] - 1) / 2
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma ** 2))


def localisation(maps, boxes, *, tolerance: float = 0.0, threshold: float = 0.2) -> dict:
    """Pointing-game accuracy, mean energy in the box, mean box IoU and the share of IoU ≥ 0.5, for
    maps (N, H, W) at the boxes' resolution."""
    maps = _finite_maps(maps)
    _boxes(boxes, maps.shape[1:])
    found = np.stack([box_from_map(m, threshold) for m in maps])
    iou = box_iou(found, boxes)
    return {"pointing": float(pointing_game(maps, boxes, tolerance).mean()),
            "energy": float(energy_in_box(maps, boxes).mean()),
            "iou": float(iou.mean()), "iou50": float((iou >= 0.5).mean()),
            "flat": float((maps.reshape(len(maps), -1).max(1) <= maps.reshape(len(maps), -1).min(1)).mean())}


# ----------------------------------------------------------------------------- faithfulness

def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of (normalised) images: what 'removed' pixels become."""
    from torchvision.transforms.functional import gaussian_blur
    k = 2 * int(3 * sigma) + 1
    return gaussian_blur(images, [k, k], [sigma, sigma])


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, maps, targets, *, steps: int = 8,
                       sigma: float | None = None, seed: int = 0, batch_size: int = 256, amp: bool = True) -> dict:
    """Deletion and insertion curves, after Petsiuk et al. (2018): the softmax probability of each
    image's target as the fraction k/steps of its pixels, most salient first, is replaced by a blurred
    copy (deletion) or taken from the image into the blurred copy (insertion). `maps` are in [0, 1]
    (as `package_maps` and `to_image` give them); ties in a map are broken in one fixed random order,
    so a flat map removes pixels at random rather than from a corner.
    Returns {"deletion": (N, steps+1), "insertion": (N, steps+1)} probabilities and their areas
    under the curve (trapezoid over the removed fraction, "deletion_auc", "insertion_auc": (N,)).
    The model runs in eval mode, in chunks of batch_size images (under autocast on a GPU unless amp=False),
    and gets its modes back after."""
    n, _, h, w = images.shape
    maps = torch.as_tensor(np.asarray(maps), dtype=torch.float32)
    if maps.shape != (n, h, w):
        raise ValueError(f"deletion_insertion needs one map per image at the input's size {(n, h, w)}, got {tuple(maps.shape)}")
    _finite_maps(maps.numpy())
    if n and (maps.min() < 0 or maps.max() > 1 + 1e-5):
        raise ValueError("deletion_insertion needs maps scaled to [0, 1] (its tie-breaking jitter is 1e-6)")
    device = images.device
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    jitter = torch.rand(h * w, generator=torch.Generator().manual_seed(seed)) * 1e-6
    order = torch.argsort(maps.reshape(n, -1) * (1 - 1e-6) + jitter, dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(n, -1).contiguous())
    rank = rank.reshape(n, 1, h, w).to(device)
    curves = {"deletion": [], "insertion": []}
    with eval_mode(model):
        for i in range(0, n, batch_size):
            x, r, t = images[i:i + batch_size], rank[i:i + batch_size], targets[i:i + batch_size].to(device)
            base = blurred(x, sigma if sigma is not None else w / 8)
            for name, (inside, outside) in (("deletion", (base, x)), ("insertion", (x, base))):
                probs = []
                for k in range(steps + 1):
                    top = r < round(k / steps * h * w)          # the most salient k/steps of the pixels
                    with _autocast(x, amp):
                        logits = model(torch.where(top, inside, outside))
                    p = torch.softmax(logits.float(), 1)
                    probs.append(p[torch.arange(len(x), device=device), t])
                curves[name].append(torch.stack(probs, 1).cpu())
    out = {name: torch.cat(c).numpy() for name, c in curves.items()}
    for name in ("deletion", "insertion"):
        c = out[name]
        out[f"{name}_auc"] = ((c[:, 1:] + c[:, :-1]) / 2).mean(1)
    return out


# ----------------------------------------------------------------------------- the sanity check

def randomise_from_top(model: nn.Module, stages: list[str], *, seed: int = 0) -> nn.Module:
    """A copy of `model` whose convolutions and linear layers in `stages` get fresh random weights
    (their own initialisation, seeded); BatchNorm layers keep theirs (Adebayo et al. 2018 cascade:
    pass the top stage, then the top two, ...). The original model is not touched."""
    copied = copy.deepcopy(model)
    cuda = [p.device for p in copied.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=cuda):   # the caller's random state is left as it was
        torch.manual_seed(seed)
        for stage in stages:
            for m in copied.get_submodule(stage).modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.reset_parameters()
    return copied


def rank_correlation(a, b) -> np.ndarray:
    """(N,) Spearman rank correlation between map a[i] and map b[i] (ties get their mean rank).
    A map that is constant correlates with nothing: nan."""
    from scipy.stats import rankdata
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), np.nan)
