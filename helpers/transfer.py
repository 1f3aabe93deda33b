"""Pretrained weights for transfer learning: torchvision's ImageNet ResNet-18, or one the course
trains itself on Tiny ImageNet-200.

ImageNet weights need the internet (or torch's hub cache). Where they cannot be had (an offline
machine, CI), `pretrain_tiny_imagenet` trains the same architecture (ImageNet stem, 11 M
parameters) on Tiny ImageNet-200, a 64×64, 200-class subset of ImageNet: a real, ImageNet-derived
source task, so that "pretrained against scratch" is still an honest comparison, only a weaker one.
`pretrained_weights` returns whichever it used, with the normalisation and input size the source
task trained at, and prints which it is. The fine-tuning itself (what to freeze, which learning
rate for which part) is the lesson, and lives in notebook 03.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import data as datasets
from . import models, train
from .loader import GpuBatches


@dataclass
class Pretrained:
    """A state dict for `models.resnet18(stem="imagenet", widths=widths)` and what it was trained on."""
    name: str
    state_dict: dict
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int  # the input resolution of the source task
    classes: tuple[str, ...]  # the source task's class names
    details: dict = field(default_factory=dict)
    widths: tuple[int, ...] = models.RESNET18_WIDTHS  # channels per stage (the real ResNet-18's by default)

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.details.items())
        width = "" if self.widths == models.RESNET18_WIDTHS else f", widths {'-'.join(map(str, self.widths))}"
        return (f"Pretrained({self.name}, {len(self.classes)} source classes, {self.image_size} px{width}"
                f"{', ' + extra if extra else ''})")


def imagenet_weights() -> Pretrained:
    """torchvision's IMAGENET1K_V1 ResNet-18 (69.76% top-1 on ImageNet); raises RuntimeError offline."""
    from torchvision.models import ResNet18_Weights
    weights = ResNet18_Weights.IMAGENET1K_V1
    mean, std = datasets.STATS["imagenet"]
    return Pretrained(name="ImageNet-1k (torchvision IMAGENET1K_V1)", state_dict=models.imagenet_state_dict(),
                      mean=mean, std=std, image_size=224, classes=tuple(weights.meta["categories"]),
                      details={"imagenet_top1": weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100})


def pretrain_tiny_imagenet(*, data_dir: str | Path, output_dir: str | Path, device: torch.device | str,
                           epochs: int = 30, per_class: int | None = None, val_per_class: int | None = None,
                           image_size: int = 64, batch_size: int = 256, peak_lr: float = 0.2,
                           weight_decay: float = 5e-4, label_smoothing: float = 0.1, seed: int = 0,
                           widths: tuple[int, ...] = models.RESNET18_WIDTHS, amp: bool = True,
                           progress: bool = True) -> Pretrained:
    """Train a 200-class ResNet-18 (ImageNet stem) on Tiny ImageNet's training split, or reuse it.

    per_class / val_per_class: training and validation images per class (None: all 500 / 50).
    image_size: 64 is Tiny ImageNet's own; a smaller size trains faster (the `ci` profile uses 32).
    widths: channels per stage; narrower than the real ResNet-18's for a CPU (the `small` profile).
    The run is saved as `output_dir/tiny-imagenet-resnet18-<hash of the recipe>.pt`; a later call with
    the same recipe loads it instead of training again (`seconds` is then the time the training
    took when it ran), and a run cut off mid-way resumes from its last finished epoch. Recipe: SGD
    with Nesterov momentum 0.9 (constant), a one-cycle learning-rate schedule, random crops (8 px
    padding at 64 px) and flips, label smoothing.
    """
    device = torch.device(device)
    train_split = datasets.load("tiny-imagenet", "train", data_dir)
    val_split = datasets.load("tiny-imagenet", "val", data_dir)
    if per_class:
        train_split = datasets.subset(train_split, per_class, seed)
    if val_per_class:
        val_split = datasets.subset(val_split, val_per_class, seed)
    # crops and flips at Tiny ImageNet's 64 px, then the resize to image_size
    train_batches = GpuBatches(train_split, batch_size=min(batch_size, len(train_split)), device=device,
                               crop_padding=8, size=image_size, seed=seed)
    val_batches = GpuBatches(val_split, batch_size=1000, device=device, train=False, size=image_size)

    torch.manual_seed(seed)
    model = models.resnet18(num_classes=len(train_split.classes), stem="imagenet", widths=widths).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak_lr, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak_lr, pct_start=0.25, cycle_momentum=False,
                                                    total_steps=epochs * len(train_batches))
    # The checkpoint's name carries a hash of the whole recipe (data, model, optimizer, seed, precision):
    # a finished pretraining with the same recipe is loaded, not trained again; a cut-off one resumes.
    history = train.fit(model, train_batches, epochs, optimizer, scheduler, val_batches=val_batches,
                        label_smoothing=label_smoothing, amp=amp, progress=progress,
                        checkpoint=Path(output_dir) / "tiny-imagenet-resnet18.pt")
    details = {"epochs": epochs, "train_images": len(train_split), "val_images": len(val_split),
               "val_top1": round(history[-1]["val_top1"], 4), "val_top5": round(history[-1]["val_top5"], 4),
               "seconds": round(sum(r["seconds"] for r in history), 1)}
    print(f"the course's Tiny ImageNet ResNet-18: {details}")
    mean, std = datasets.STATS["tiny-imagenet"]
    return Pretrained(name="Tiny ImageNet-200 (trained by the course)", state_dict=model.state_dict(), mean=mean,
                      std=std, image_size=image_size, classes=tuple(train_split.classes), details=details,
                      widths=tuple(widths))


def pretrained_weights(prefer: str = "imagenet", **tiny_imagenet) -> Pretrained:
    """ImageNet weights when `prefer="imagenet"` and they can be had, else the course's Tiny ImageNet
    ResNet-18 (`pretrain_tiny_imagenet(**tiny_imagenet)`). Prints which one it returns."""
    if prefer not in ("imagenet", "tiny-imagenet"):
        raise ValueError(f"prefer must be 'imagenet' or 'tiny-imagenet', not {prefer!r}")
    if prefer == "imagenet":
        try:
            weights = imagenet_weights()
        except RuntimeError as err:
            print(f"ImageNet weights are not available here ({str(err).splitlines()[0]}).\n"
                  "Falling back to a ResNet-18 that the course pretrains on Tiny ImageNet-200.")
        else:
            print(f"pretrained weights: {weights}")
            return weights
    weights = pretrain_tiny_imagenet(**tiny_imagenet)
    print(f"pretrained weights: {weights}")
    return weights
