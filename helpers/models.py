"""ResNet-18 and its relatives, with named parts: stem, layer1..layer4, head.

One factory covers every model of the course's sources: the CIFAR stem (3×3 conv, stride 1, no
max-pool) that keeps 32×32 inputs at 32×32 into layer1, torchvision's ImageNet stem (7×7 stride-2
conv and a max-pool, 32×32 shrinks to 8×8 before layer1), narrower or shallower variants, and
dropout inside the blocks. Parameter names inside the stages match torchvision's, so its
ImageNet weights load directly.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from . import download
from .images import note_download


RESNET18_WIDTHS = (64, 128, 256, 512)   # channels per stage of the real ResNet-18 (He et al. 2016)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a shortcut (He et al. 2016, https://arxiv.org/abs/1512.03385)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # between the convs (WRN-style)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:  # 1×1 projection when the shape changes
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """stem → layer1..layer4 → head. `features(x)` gives layer4's maps (for CAM), `embed(x)` the pooled vector."""

    def __init__(self, *, num_classes: int, stem: str, in_channels: int, widths, blocks, dropout: float):
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                bn=nn.BatchNorm2d(widths[0]), relu=nn.ReLU(inplace=True)))
        elif stem == "imagenet":
            self.stem = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                bn=nn.BatchNorm2d(widths[0]), relu=nn.ReLU(inplace=True),
                maxpool=nn.MaxPool2d(3, 2, 1)))
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', not {stem!r}")
        channels = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(channels, width, stride, dropout)]
            layer += [BasicBlock(width, width, 1, dropout) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            channels = width
        self.head = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(channels, num_classes)))
        self.num_features = channels
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.flatten(self.head.pool(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _from_torchvision_names(state: dict) -> dict:
    """torchvision's resnet keys (conv1, bn1, fc) to ours (stem.conv, stem.bn, head.fc)."""
    renamed = {}
    for key, value in state.items():
        for old, new in (("conv1.", "stem.conv."), ("bn1.", "stem.bn."), ("fc.", "head.fc.")):
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """A block in which every module of `model` is in eval mode (BatchNorm's running statistics, no dropout);
    after it each module is back in its own mode, so a part frozen in eval mode stays frozen."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def imagenet_state_dict() -> dict:
    from torchvision.models import ResNet18_Weights
    weights = ResNet18_Weights.IMAGENET1K_V1
    downloading = not (Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]).exists()
    began = time.monotonic()
    try:
        with download.socket_timeout(download.READ_TIMEOUT):   # a server that never answers must not hang the notebook
            return weights.get_state_dict(progress=True)
    except Exception as err:  # URLError, socket errors, a partial file: all mean "not available here"
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"could not get torchvision's ImageNet ResNet-18 weights ({weights.url}) into {hub}: "
            f"{type(err).__name__}: {err}\nOffline, copy that file into {hub}, or pass weights=<path to a "
            f"state-dict checkpoint>, such as the Tiny ImageNet ResNet-18 the course trains itself.") from None
    finally:
        if downloading:   # (a budget reports downloads apart from the work: data.download_seconds)
            note_download(time.monotonic() - began)


def load_weights(model: ResNet, source: str | Path | dict, *, new: tuple[str, ...] = ("head.",),
                 verbose: bool = True) -> list[str]:
    """Load a state dict (ours or torchvision's names) into `model`.

    source: "imagenet", a path to a checkpoint (a state dict, or a training checkpoint holding one
    under "model"), or a state dict. new: name prefixes that may stay as initialised (by default the
    head, which differs when the number of classes does). Every other tensor must load: weights of
    another architecture raise ValueError naming what did not match, instead of training on quietly
    from scratch. Returns the names that were not loaded.
    """
    if isinstance(source, dict):
        state = source
    elif str(source) == "imagenet":
        state = imagenet_state_dict()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; train one first or pass weights='imagenet' on Colab")
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = _from_torchvision_names(state.get("model", state))
    own = model.state_dict()
    conv = "stem.conv.weight"
    if conv in state and conv in own and state[conv].shape[1] != own[conv].shape[1] and own[conv].shape[1] == 1:
        state[conv] = state[conv].sum(dim=1, keepdim=True)  # RGB filters to one grayscale channel
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(loadable))
    refused = [k for k in missing if not k.startswith(tuple(new))]
    if refused:
        where = source if not isinstance(source, dict) else "the state dict"
        detail = [f"{k}: ours {tuple(own[k].shape)}, theirs "
                  + (str(tuple(state[k].shape)) if k in state else "absent") for k in refused[:6]]
        raise ValueError(
            f"{where} does not fit this model: {len(refused)} of its {len(own)} tensors outside {list(new)} would "
            f"stay as initialised ({'; '.join(detail)}{'; ...' if len(refused) > 6 else ''}). It holds "
            f"{len(state)} tensors, {len(set(state) - set(own))} of them with names this model lacks. Build the "
            f"model the weights were trained for (stem, widths, blocks, in_channels), or pass new=(...) to "
            f"allow more parts to start from scratch.")
    model.load_state_dict(loadable, strict=False)
    if verbose:
        print(f"loaded {len(loadable)} of {len(own)} tensors from {source if not isinstance(source, dict) else 'a state dict'}"
              + (f"; left as initialised: {', '.join(missing)}" if missing else ""))
    return missing


def resnet18(num_classes: int = 10, stem: str = "cifar", in_channels: int = 3,
             widths: tuple[int, ...] = RESNET18_WIDTHS, blocks: tuple[int, ...] = (2, 2, 2, 2),
             dropout: float = 0.0, weights: str | Path | None = None) -> ResNet:
    """A ResNet-18 (or a narrower/shallower cousin) with addressable parts.

    weights: None (random init), "imagenet" (torchvision's IMAGENET1K_V1; needs the internet or
    torch's hub cache) or a path to a state-dict checkpoint. The head is re-initialised when its
    shape differs (another number of classes).
    """
    if len(widths) != 4 or len(blocks) != 4:
        raise ValueError("widths and blocks give one value per stage (four stages)")
    model = ResNet(num_classes=num_classes, stem=stem, in_channels=in_channels, widths=tuple(widths),
                   blocks=tuple(blocks), dropout=dropout)
    if weights is not None:
        load_weights(model, weights)
    return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def summary(model: nn.Module, input_size=(1, 3, 32, 32), depth: int = 2, **kwargs):
    """A per-layer table (torchinfo): output shape and parameters of each named part."""
    import torchinfo
    kwargs.setdefault("col_names", ("output_size", "num_params"))
    kwargs.setdefault("row_settings", ("var_names",))
    return torchinfo.summary(model, input_size=input_size, depth=depth, device="cpu", verbose=0, **kwargs)
