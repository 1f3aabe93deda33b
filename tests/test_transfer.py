"""Pretrained weights: the course's Tiny ImageNet ResNet-18 is trained once, reused, loadable, and
used in place of ImageNet weights (saying so) when those cannot be downloaded."""
import re

import pytest
import torch

from helpers import models, train, transfer

RECIPE = dict(epochs=1, per_class=1, val_per_class=1, image_size=16, batch_size=100, peak_lr=0.01, progress=False)


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    return out, transfer.pretrain_tiny_imagenet(data_dir=data_dir, output_dir=out, device="cpu", **RECIPE)


def test_tiny_imagenet_pretraining_saves_a_loadable_resnet18(pretrained):
    out, weights = pretrained
    files = [f.name for f in out.iterdir()]
    assert len(files) == 1 and re.fullmatch(r"tiny-imagenet-resnet18-[0-9a-f]{12}\.pt", files[0]), files
    assert "optimizer" not in torch.load(out / files[0], weights_only=True)  # finished: weights and history only
    assert len(weights.classes) == 200 and weights.details["train_images"] == 200 and weights.image_size == 16
    assert weights.classes[0] == "goldfish"  # names from words.txt, in wnids.txt order
    model = models.resnet18(num_classes=10, stem="imagenet")
    missing = models.load_weights(model, weights.state_dict, verbose=False)
    assert missing == ["head.fc.bias", "head.fc.weight"]
    torch.testing.assert_close(model.layer4[1].conv2.weight, weights.state_dict["layer4.1.conv2.weight"])


def test_a_finished_pretraining_is_reused_not_repeated(pretrained, data_dir, monkeypatch):
    out, weights = pretrained
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = transfer.pretrain_tiny_imagenet(data_dir=data_dir, output_dir=out, device="cpu", **RECIPE)
    assert again.details == weights.details and again.classes == weights.classes
    for key, value in weights.state_dict.items():
        torch.testing.assert_close(again.state_dict[key], value)


def test_a_changed_recipe_pretrains_anew_beside_the_old_one(pretrained, data_dir, monkeypatch):
    out, weights = pretrained
    epochs_trained = []
    real = train.train_one_epoch
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: epochs_trained.append(1) or real(*a, **k))
    changed = transfer.pretrain_tiny_imagenet(data_dir=data_dir, output_dir=out, device="cpu",
                                              **{**RECIPE, "weight_decay": 1e-3})
    assert epochs_trained == [1] and len(list(out.iterdir())) == 2
    assert not torch.equal(changed.state_dict["head.fc.weight"], weights.state_dict["head.fc.weight"])


def test_falls_back_to_tiny_imagenet_when_imagenet_weights_cannot_be_had(pretrained, data_dir, monkeypatch, capsys):
    out, _ = pretrained

    def offline():
        raise RuntimeError("could not get torchvision's ImageNet ResNet-18 weights: URLError\nmore")
    monkeypatch.setattr(models, "imagenet_state_dict", offline)
    weights = transfer.pretrained_weights("imagenet", data_dir=data_dir, output_dir=out, device="cpu", **RECIPE)
    printed = capsys.readouterr().out
    assert "ImageNet weights are not available here" in printed and "Tiny ImageNet" in weights.name
    assert "pretrained weights: Pretrained(Tiny ImageNet-200" in printed
    with pytest.raises(ValueError, match="prefer"):
        transfer.pretrained_weights("cifar")


def test_imagenet_weights_when_available(monkeypatch):
    import torchvision
    state = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(models, "imagenet_state_dict", lambda: state)
    weights = transfer.pretrained_weights("imagenet")
    assert weights.image_size == 224 and len(weights.classes) == 1000 and weights.mean == (0.485, 0.456, 0.406)
    assert weights.state_dict is state


def test_a_narrow_pretraining_says_its_widths_and_loads_only_into_the_same_widths(pretrained, data_dir):
    out, full = pretrained
    narrow = transfer.pretrain_tiny_imagenet(data_dir=data_dir, output_dir=out, device="cpu",
                                             **{**RECIPE, "widths": (8, 16, 32, 64)})
    assert full.widths == models.RESNET18_WIDTHS and narrow.widths == (8, 16, 32, 64)
    assert "widths 8-16-32-64" in repr(narrow) and "widths" not in repr(full)
    assert narrow.state_dict["layer4.1.conv2.weight"].shape[0] == 64
    models.load_weights(models.resnet18(num_classes=10, stem="imagenet", widths=narrow.widths), narrow.state_dict,
                        verbose=False)
    with pytest.raises(ValueError, match="does not fit this model"):
        models.load_weights(models.resnet18(num_classes=10, stem="imagenet"), narrow.state_dict, verbose=False)
