"""Greedy layer-wise pretraining of a ResNet's stages as autoencoders (notebook 06).

Bengio et al. (2007) train a deep network one layer at a time: each layer learns to encode (and a
decoder to reconstruct) what the already-trained layers below it produce, with those layers fixed.
Here a "layer" is one stage of the course's ResNet (`STAGES`). The pieces:

- `Frozen`: a module whose parameters *and BatchNorm statistics* stay fixed while the model around
  it trains. `requires_grad_(False)` alone is not enough: in train mode BatchNorm updates its running
  mean and variance from every batch, gradients or not.
- `stage_decoder`: a small convolutional decoder from a stage's output back to its input's shape.
- `StageAutoencoder(below, stage, decoder)`: target = below(x), reconstruction = decoder(stage(target)).
  With `below` empty and `stage` the whole encoder, it is the end-to-end autoencoder.
- `reconstruction_step`: the step for `train.fit` (mean squared error, and the share of the target's
  variance left unexplained, comparable across stages whose activations differ in scale).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import eval_mode

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


class Frozen(nn.Module):
    """`module`, fixed: no parameter gets a gradient and it stays in eval mode (BatchNorm uses and keeps its
    running statistics, Dropout is off) even when the model that holds it is put in train mode.

    The wrapped module's parameters get requires_grad=False (they are the caller's: a module frozen here is
    frozen wherever else it is used, until requires_grad_(True) is called on it)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "Frozen":
        super().train(mode)    # sets `training` on every submodule ...
        self.module.eval()     # ... and this undoes it for the frozen one
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # nothing below needs a gradient: no graph, less memory
            return self.module(x)


def stages_below(model: nn.Module, k: int) -> nn.Sequential:
    """The first k stages of `model` (its own modules, not copies), in order: what stage k reads."""
    if not 0 <= k < len(STAGES):
        raise ValueError(f"k must be a stage number from 0 ({STAGES[0]}) to {len(STAGES) - 1} ({STAGES[-1]}), not {k!r}")
    return nn.Sequential(*[getattr(model, name) for name in STAGES[:k]])


@torch.no_grad()
def stage_shapes(model: nn.Module, size: int) -> dict[str, tuple[int, int, int]]:
    """stage name -> (input channels, output channels, input side / output side), from one forward pass of a
    size×size image in eval mode (the model's mode is restored)."""
    in_channels = next(m for m in model.stem.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.zeros(1, in_channels, size, size, device=next(model.parameters()).device)
    shapes = {}
    with eval_mode(model):
        for name in STAGES:
            y = getattr(model, name)(x)
            if x.shape[-1] % y.shape[-1]:
                raise ValueError(f"{name} maps {x.shape[-1]} px to {y.shape[-1]} px, not a whole factor: use an "
                                 f"input size that every stage divides evenly (a multiple of 32 for the ImageNet stem)")
            shapes[name] = (x.shape[1], y.shape[1], x.shape[-1] // y.shape[-1])
            x = y
    return shapes


def stage_decoder(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """C_in × H/scale × W/scale -> C_out × H × W: per factor 2 of `scale`, nearest-neighbour upsampling and a
    3×3 convolution with BatchNorm and ReLU, then a 3×3 convolution with no activation (a target may be
    negative: a normalised image). Scale 1 gets one hidden convolution too, so a decoder for scale 1, 2 or 4
    has two, two or three convolutions, fewer parameters than the stage it inverts. scale: 1, 2, 4, ... (the
    stem of the ImageNet ResNet shrinks its input 4×)."""
    if scale < 1 or scale & (scale - 1):
        raise ValueError(f"scale must be a power of 2 (1, 2, 4, ...), not {scale!r}")
    hidden = max(in_channels // 2, out_channels)
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(max(scale.bit_length() - 1, 1)):  # scale 1 still gets one hidden convolution
        if scale > 1:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        channels = hidden
    layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


class StageAutoencoder(nn.Module):
    """Trains `stage` as the encoder of an autoencoder on the output of the frozen `below`:
    forward(x) -> (decoder(stage(below(x))), below(x)), the reconstruction and its target."""

    def __init__(self, below: nn.Module, stage: nn.Module, decoder: nn.Module):
        super().__init__()
        self.below = below if isinstance(below, Frozen) else Frozen(below)
        self.stage = stage
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.below(x)
        return self.decoder(self.stage(target)), target


def reconstruction_step(model: nn.Module, batch):
    """Mean squared error between reconstruction and target; `unexplained` is that error over the target's
    variance in the batch (1: no better than predicting the batch's mean value; 0: perfect). The labels of
    the batch, if any, are never read."""
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    reconstruction, target = model(x)
    reconstruction, target = reconstruction.float(), target.float()
    if reconstruction.shape != target.shape:
        raise ValueError(f"the decoder gives {tuple(reconstruction.shape)} for a target of {tuple(target.shape)}")
    loss = F.mse_loss(reconstruction, target)
    return loss, {"unexplained": loss.detach() / target.var().clamp_min(1e-12)}
