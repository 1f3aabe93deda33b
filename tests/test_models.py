import time

import pytest
import torch
import torchvision

from helpers import models


@pytest.mark.parametrize("kwargs, expected", [
    (dict(stem="cifar"), 11_173_962),
    (dict(stem="imagenet"), 11_181_642),  # report 002: torchvision resnet18 on CIFAR-10
    (dict(stem="imagenet", in_channels=1, num_classes=200), 11_272_840),  # report 001: grayscale Tiny ImageNet
    (dict(stem="cifar", widths=(42, 84, 168, 336), dropout=0.15), 4_815_940),  # report 004 "ResNet18"
    (dict(stem="cifar", blocks=(1, 1, 1, 1)), 4_903_242),  # report 004 "ResNetLarge"
])
def test_parameter_counts_match_the_seed_reports(kwargs, expected):
    assert models.count_params(models.resnet18(**kwargs)) == expected


def test_imagenet_stem_is_torchvision_resnet18():
    assert models.count_params(models.resnet18(stem="imagenet", num_classes=1000)) == \
        models.count_params(torchvision.models.resnet18())


@pytest.mark.parametrize("stem, size, final", [
    ("cifar", 32, 4), ("cifar", 64, 8), ("cifar", 96, 12),
    ("imagenet", 32, 1), ("imagenet", 64, 2), ("imagenet", 96, 3),
])
def test_forward_shapes(stem, size, final):
    model = models.resnet18(num_classes=7, stem=stem).eval()
    x = torch.randn(2, 3, size, size)
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, 512, final, final)
    assert model.embed(x).shape == (2, 512)


def test_named_parts_are_reachable():
    model = models.resnet18()
    for name in ("stem", "layer1", "layer2", "layer3", "layer4", "head"):
        assert isinstance(getattr(model, name), torch.nn.Module)
    assert model.head.fc.out_features == 10
    with pytest.raises(ValueError, match="stem"):
        models.resnet18(stem="vgg")


def test_torchvision_weights_load_exactly_and_head_is_replaced():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()  # 1000 classes
    ours = models.resnet18(stem="imagenet", num_classes=1000).eval()
    assert models.load_weights(ours, tv.state_dict(), verbose=False) == []
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), tv(x))
    ten = models.resnet18(stem="imagenet", num_classes=10)
    missing = models.load_weights(ten, tv.state_dict(), verbose=False)
    assert missing == ["head.fc.bias", "head.fc.weight"]
    torch.testing.assert_close(ten.layer3[0].conv1.weight, tv.layer3[0].conv1.weight)


def test_rgb_weights_into_a_grayscale_stem_sum_the_channels():
    tv = torchvision.models.resnet18()
    gray = models.resnet18(stem="imagenet", in_channels=1, num_classes=200)
    models.load_weights(gray, tv.state_dict(), verbose=False)
    torch.testing.assert_close(gray.stem.conv.weight, tv.conv1.weight.sum(dim=1, keepdim=True))


def test_unrelated_weights_are_refused_with_what_did_not_match():
    narrow = models.resnet18(widths=(8, 16, 32, 64))
    full = models.resnet18()
    before = full.stem.conv.weight.clone()
    with pytest.raises(ValueError, match=r"does not fit this model: 100 of its 122 tensors.*layer1.0.bn1.bias: ours "
                                         r"\(64,\), theirs \(8,\)"):
        models.load_weights(full, narrow.state_dict(), verbose=False)
    with pytest.raises(ValueError, match="absent"):
        models.load_weights(full, {"unrelated.weight": torch.zeros(3)}, verbose=False)
    assert torch.equal(full.stem.conv.weight, before)  # nothing was loaded
    # a new stem as well as a new head, when asked for
    gray = models.resnet18(in_channels=3, stem="cifar", num_classes=5)
    missing = models.load_weights(gray, models.resnet18(stem="imagenet").state_dict(), new=("head.", "stem."), verbose=False)
    assert missing == ["head.fc.bias", "head.fc.weight", "stem.conv.weight"]


def test_checkpoint_path_loads(tmp_path):
    src = models.resnet18(widths=(8, 16, 32, 64))
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    dst = models.resnet18(widths=(8, 16, 32, 64), weights=tmp_path / "ckpt.pt")
    torch.testing.assert_close(dst.stem.conv.weight, src.stem.conv.weight)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        models.resnet18(weights=tmp_path / "absent.pt")


def test_imagenet_weights_offline_fail_fast_and_clearly(monkeypatch, tmp_path):
    from torchvision.models import ResNet18_Weights
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    # nothing listens on port 9 of this machine: a refused connection, as on a machine with no network
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", "http://127.0.0.1:9/resnet18-f37072fd.pth")
    began = time.perf_counter()
    with pytest.raises(RuntimeError, match="(?s)ImageNet ResNet-18 weights.*Offline.*weights=<path"):
        models.resnet18(weights="imagenet")
    assert time.perf_counter() - began < 10


def test_summary_lists_the_stages():
    text = str(models.summary(models.resnet18(), input_size=(1, 3, 32, 32), depth=1))
    assert "layer4" in text and "11,173,962" in text



# Operations whose backward PyTorch lists as having no deterministic CUDA version (torch.use_deterministic_algorithms'
# docstring): with DETERMINISTIC = True they would warn at every step. nn.AdaptiveAvgPool2d is on the list, but
# pooling to 1×1 is computed as a mean (ATen's adaptive_avg_pool2d), whose backward is a broadcast: deterministic.
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_no_backward_of_the_networks_lacks_a_deterministic_version_on_a_gpu(stem):
    from helpers import autoencoders
    net = models.resnet18(stem=stem, widths=(8, 16, 32, 64))
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    seen, stack = set(), [net(x).sum().grad_fn]
    for decoder in (autoencoders.stage_decoder(16, 3, s) for s in (1, 2, 4)):
        stack.append(decoder(torch.randn(2, 16, 8, 8, requires_grad=True)).sum().grad_fn)
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack += [f for f, _ in fn.next_functions]
    names = {type(fn).__name__ for fn in seen}
    assert "MeanBackward1" in names   # the head's pooling
    nondeterministic = {"AdaptiveAvgPool2DBackward0", "AdaptiveMaxPool2DBackward0", "UpsampleBilinear2DBackward0",
                        "UpsampleBicubic2DBackward0", "ReflectionPad2DBackward0", "GridSampler2DBackward0",
                        "AvgPool3DBackward0"}
    assert not names & nondeterministic, names & nondeterministic
