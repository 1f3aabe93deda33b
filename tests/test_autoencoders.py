"""Greedy layer-wise pretraining's pieces: freezing that holds, decoders of the right shape, the step."""
import pytest
import torch
from torch import nn

from helpers import autoencoders, checks, data, loader, models, train


def _net(seed=0, in_channels=3):
    torch.manual_seed(seed)
    return models.resnet18(num_classes=4, stem="imagenet", in_channels=in_channels, widths=(8, 16, 32, 64))


def _buffers(module):
    return {k: v.clone() for k, v in module.named_buffers()}


def _smooth_images(n=32, size=32, seed=0):
    # images with structure an autoencoder can learn (random noise has none to compress)
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) * 2 - 1


def test_frozen_keeps_weights_and_batchnorm_statistics_while_the_model_around_it_trains():
    net = _net()
    frozen = autoencoders.Frozen(net.stem)
    head = nn.Conv2d(8, 8, 1)
    model = nn.Sequential(frozen, head).train()
    weights, stats = checks.snapshot(net.stem), _buffers(net.stem)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for seed in range(3):
        x = _smooth_images(8, seed=seed) * 3 + 1   # batches whose statistics differ from the running ones
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not net.stem.training and model.training
    assert all(not p.requires_grad for p in net.stem.parameters())
    checks.did_not_move(weights, net.stem, what="frozen stem")
    assert all(torch.equal(stats[k], v) for k, v in net.stem.named_buffers())
    assert not torch.equal(head.weight, nn.Conv2d(8, 8, 1).weight)


def test_requires_grad_alone_lets_batchnorm_statistics_move():
    # what Frozen is for: the check above would fail without it
    net = _net()
    net.stem.requires_grad_(False)
    stats = _buffers(net.stem)
    net.train()
    net.stem(_smooth_images(8) * 3 + 1)
    assert not torch.equal(stats["bn.running_mean"], net.stem.bn.running_mean)


def test_frozen_computes_what_the_module_computes_in_eval_mode_without_a_graph():
    net = _net()
    x = _smooth_images(4)
    expected = net.eval().layer1(net.stem(x))
    frozen = autoencoders.Frozen(nn.Sequential(net.stem, net.layer1)).train()
    y = frozen(x)
    assert torch.equal(y, expected) and not y.requires_grad


def test_stage_shapes_of_the_imagenet_stem():
    shapes = autoencoders.stage_shapes(_net(), 64)
    assert shapes == {"stem": (3, 8, 4), "layer1": (8, 8, 1), "layer2": (8, 16, 2), "layer3": (16, 32, 2),
                      "layer4": (32, 64, 2)}
    assert autoencoders.stage_shapes(_net(in_channels=1), 64)["stem"] == (1, 8, 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        autoencoders.stage_shapes(_net(), 48)


def test_each_stage_decoder_gives_back_its_stage_input_shape():
    net = _net().eval()
    x = _smooth_images(2, size=64)
    for k, (name, (c_in, c_out, scale)) in enumerate(autoencoders.stage_shapes(net, 64).items()):
        target = autoencoders.stages_below(net, k)(x)
        decoder = autoencoders.stage_decoder(c_out, c_in, scale)
        assert decoder(getattr(net, name)(target)).shape == target.shape, name
        assert models.count_params(decoder) < models.count_params(getattr(net, name)) + 2000, name
    with pytest.raises(ValueError, match="power of 2"):
        autoencoders.stage_decoder(8, 3, 3)


def test_stages_below_are_the_models_own_modules():
    net = _net()
    below = autoencoders.stages_below(net, 2)
    assert below[0] is net.stem and below[1] is net.layer1
    assert len(autoencoders.stages_below(net, 0)) == 0
    with pytest.raises(ValueError, match="stage number"):
        autoencoders.stages_below(net, 5)


def test_reconstruction_step_reads_the_share_left_unexplained():
    target = _smooth_images(4)

    class Mean(nn.Module):   # predicts the batch's mean value everywhere: unexplained = 1 (population variance)
        def forward(self, x):
            return torch.full_like(x, float(x.mean())), x
    loss, metrics = autoencoders.reconstruction_step(Mean(), (target, torch.zeros(4)))
    n = target.numel()
    assert float(metrics["unexplained"]) == pytest.approx((n - 1) / n, rel=1e-5)
    assert float(loss) == pytest.approx(float(target.var(unbiased=False)), rel=1e-5)

    class Wrong(nn.Module):
        def forward(self, x):
            return x[..., 1:], x
    with pytest.raises(ValueError, match="decoder gives"):
        autoencoders.reconstruction_step(Wrong(), target)


def _pool(images):
    u8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return data.ImageData(images=u8, labels=torch.full((len(u8),), -1), classes=("x",), name="toy", split="unlabeled")


def test_greedy_stage_training_through_fit_lowers_the_loss_and_moves_only_the_stage():
    net = _net()
    batches = loader.GpuBatches(_pool(_smooth_images(32, size=64)), batch_size=8, crop_padding=0, flip=False,
                                mean=(0.5,) * 3, std=(0.5,) * 3)
    shapes = autoencoders.stage_shapes(net, 64)
    # stage 0 (the stem) reconstructs the image
    torch.manual_seed(0)
    stem_ae = autoencoders.StageAutoencoder(nn.Identity(), net.stem, autoencoders.stage_decoder(8, 3, 4))
    history = train.fit(stem_ae, batches, 8, torch.optim.Adam(stem_ae.parameters(), lr=3e-3),
                        step=autoencoders.reconstruction_step, progress=False)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["unexplained"] < 0.5
    # stage 1 (layer1) on the frozen stem's codes: the stem's weights and statistics stay as they are
    below = autoencoders.stages_below(net, 1)
    weights, stats, layer1 = checks.snapshot(net.stem), _buffers(net.stem), checks.snapshot(net.layer1)
    c_in, c_out, scale = shapes["layer1"]
    ae = autoencoders.StageAutoencoder(below, net.layer1, autoencoders.stage_decoder(c_out, c_in, scale))
    trainable = [p for p in ae.parameters() if p.requires_grad]
    assert len(trainable) == len(list(net.layer1.parameters())) + len(list(ae.decoder.parameters()))
    history = train.fit(ae, batches, 4, torch.optim.Adam(trainable, lr=3e-3), step=autoencoders.reconstruction_step,
                        progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    checks.did_not_move(weights, net.stem, what="the frozen stem")
    assert all(torch.equal(stats[k], v) for k, v in net.stem.named_buffers())
    assert checks.moved(layer1, net.layer1, what="layer1") > 0
