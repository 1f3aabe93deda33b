"""helpers.cam: CAM by hand against its definition and against the grad-cam package, the package used
safely, and the localisation and faithfulness metrics against brute-force computation."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from helpers import cam, models


def tiny_model(stem="cifar", classes=5, seed=0):
    torch.manual_seed(seed)
    model = models.resnet18(num_classes=classes, stem=stem, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    for m in model.modules():   # non-trivial BatchNorm statistics, so eval mode is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_the_class_map_averages_to_the_logit():
    model = tiny_model()
    x = torch.randn(6, 3, 32, 32)
    logits, maps = cam.class_activation_maps(model, x)
    assert maps.shape == (6, 5, 4, 4)
    torch.testing.assert_close(maps.mean((2, 3)) + model.head.fc.bias, logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="global average pooling"):
        cam.head_linear(nn.Sequential(nn.Linear(2, 2)))


def test_capture_removes_its_hooks_also_after_an_error():
    model = tiny_model()
    with cam.capture(model, "layer3", "layer4") as out:
        model(torch.randn(1, 3, 32, 32))
    assert out["layer3"].shape == (1, 32, 8, 8) and out["layer4"].shape == (1, 64, 4, 4)
    with pytest.raises(RuntimeError):
        with cam.capture(model, "layer4"):
            model(torch.randn(1, 2, 32, 32))   # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())
    cam.class_activation_maps(model, torch.randn(2, 3, 32, 32))
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["Grad-CAM", "HiResCAM", "XGrad-CAM"])
def test_grad_cam_at_the_last_layer_is_cam_up_to_relu_and_scaling(method):
    """The gradient of a logit with respect to layer4 is w_c / (h·w) everywhere: the same map."""
    model = tiny_model()
    x, targets = torch.randn(8, 3, 32, 32), [0, 1, 2, 3, 4, 0, 1, 2]
    _, maps = cam.class_activation_maps(model, x)
    by_hand = cam.to_image(maps[torch.arange(8), targets], (32, 32))
    package = cam.package_maps(method, model, "layer4", x, targets)
    assert np.abs(by_hand - package).max() < 1e-5
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_at_another_layer_grad_cam_is_not_cam():
    model = tiny_model()
    x, targets = torch.randn(8, 3, 32, 32), [0] * 8
    _, maps = cam.class_activation_maps(model, x)
    by_hand = cam.to_image(maps[:, 0], (32, 32))
    assert np.abs(by_hand - cam.package_maps("Grad-CAM", model, "layer3", x, targets)).max() > 0.1


def test_one_target_for_a_batch_zeroes_the_other_maps_and_is_refused():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = tiny_model()
    x = torch.randn(4, 3, 32, 32)
    with GradCAM(model=model, target_layers=[model.layer3]) as gc:
        maps = gc(input_tensor=x, targets=[ClassifierOutputTarget(1)])     # the seed's call, on a batch
    assert maps[0].max() > 0 and all(maps[i].max() == 0 for i in (1, 2, 3))
    with pytest.raises(ValueError, match="one target per image"):
        cam.package_maps("Grad-CAM", model, "layer3", x, [1])
    per_image = cam.package_maps("Grad-CAM", model, "layer3", x, [1] * 4)
    assert (per_image.reshape(4, -1).max(1) > 0).all()


def test_package_maps_puts_back_training_mode_and_gradients():
    model = tiny_model().train()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    bn = model.layer1[0].bn1.running_mean.clone()
    for method in cam.METHOD_NAMES:
        maps = cam.package_maps(method, model, "layer3", torch.randn(3, 3, 32, 32), [0, 1, 2], batch_size=2)
        assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1 + 1e-6, method
    assert model.training
    assert all(torch.equal(before[n], p.grad) for n, p in model.named_parameters())
    model.layer1.eval()
    cam.package_maps("Grad-CAM", model, "layer3", torch.randn(2, 3, 32, 32), [0, 1])
    assert model.training and not model.layer1.training and model.layer2.training
    with torch.no_grad():                                  # the gradient methods still work inside no_grad
        assert cam.package_maps("Grad-CAM", model, "layer3", torch.randn(2, 3, 32, 32), [0, 1]).shape == (2, 32, 32)
    torch.testing.assert_close(model.layer1[0].bn1.running_mean, bn)   # the package ran it in eval mode


def test_a_class_the_head_does_not_have_is_refused_not_swallowed():
    model = tiny_model(classes=5)
    with pytest.raises(ValueError, match="classes 0 to 4"):
        cam.package_maps("Grad-CAM", model, "layer3", torch.randn(3, 3, 32, 32), [0, 7, 1])


def test_a_one_by_one_map_is_no_localisation():
    model = tiny_model(stem="imagenet")
    x = torch.randn(3, 3, 32, 32)
    _, maps = cam.class_activation_maps(model, x)
    assert maps.shape[-2:] == (1, 1)
    assert (cam.to_image(maps[:, 0], (32, 32)) == 0).all()
    assert (cam.package_maps("Grad-CAM", model, "layer4", x, [0, 1, 2]) == 0).all()


def random_boxes(rng, n, size):
    a = rng.integers(0, size, (n, 2, 2))
    return np.concatenate([a.min(1), a.max(1)], 1)   # (x0, y0, x1, y1)


def test_the_localisation_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    n, size = 40, 20
    maps = rng.random((n, size, size)) ** 4
    maps[3] = 0                                           # a map that says nothing
    boxes = random_boxes(rng, n, size)
    hits, shares = [], []
    for m, (x0, y0, x1, y1) in zip(maps, boxes):
        y, x = divmod(int(m.argmax()), size)
        hits.append(x0 <= x <= x1 and y0 <= y <= y1)
        inside = sum(m[j, i] for j in range(y0, y1 + 1) for i in range(x0, x1 + 1))
        shares.append(inside / m.sum() if m.sum() > 0 else (x1 - x0 + 1) * (y1 - y0 + 1) / size ** 2)
    assert list(cam.pointing_game(maps, boxes)) == hits
    np.testing.assert_allclose(cam.energy_in_box(maps, boxes), shares)
    # tolerance: a peak 3 px right of a box is a hit at 3 px, a miss at 2.9
    point = np.zeros((1, size, size)); point[0, 5, 12] = 1
    assert cam.pointing_game(point, [[2, 2, 9, 9]], 3.0)[0] and not cam.pointing_game(point, [[2, 2, 9, 9]], 2.9)[0]
    corner = np.zeros((1, size, size)); corner[0, 12, 12] = 1      # 3 px right of and 3 px below the box: 4.24 px away
    assert cam.pointing_game(corner, [[2, 2, 9, 9]], 4.25)[0] and not cam.pointing_game(corner, [[2, 2, 9, 9]], 4.2)[0]


def flood_fill_largest(mask):
    seen, best = np.zeros_like(mask), []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, region = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        stack.append((v, u))
        if len(region) > len(best):
            best = region
    ys, xs = zip(*best)
    return [min(xs), min(ys), max(xs), max(ys)]


def test_box_from_map_and_iou_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = rng.random((16, 16)) ** 3
        assert list(cam.box_from_map(m, 0.2)) == flood_fill_largest(m >= 0.2 * m.max())
    assert list(cam.box_from_map(np.zeros((8, 6)))) == [0, 0, 5, 7]
    a, b = random_boxes(rng, 30, 12), random_boxes(rng, 30, 12)
    masks_a, masks_b = cam.box_masks(a, (12, 12)), cam.box_masks(b, (12, 12))
    brute = (masks_a & masks_b).sum((1, 2)) / (masks_a | masks_b).sum((1, 2))
    np.testing.assert_allclose(cam.box_iou(a, b), brute)
    with pytest.raises(ValueError, match="xmax >= xmin"):
        cam.box_iou([[5, 0, 2, 3]], [[0, 0, 1, 1]])


def test_centre_prior_is_a_gaussian_of_sigma_pixels_at_the_centre():
    prior = cam.centre_prior((65, 65), 10.0)
    assert prior[32, 32] == 1 and prior.argmax() == 32 * 65 + 32
    np.testing.assert_allclose(prior[32, 42], np.exp(-0.5))           # one sigma to the right
    np.testing.assert_allclose(prior[22, 22], np.exp(-1.0))           # one sigma along each axis
    even = cam.centre_prior((64, 64), 8.0)
    np.testing.assert_allclose(even, even[::-1, ::-1])
    assert cam.pointing_game(even[None], [[31, 31, 32, 32]])[0] and not cam.pointing_game(even[None], [[33, 33, 40, 40]])[0]


CHECKS = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1   # a ±1 checkerboard


class PatchModel(nn.Module):
    """Class 1's logit is how much the top-left 8×8 patch looks like a checkerboard (which a blur
    removes); class 0's is its negative."""
    def forward(self, x):
        s = (x[:, :, :8, :8] * CHECKS).mean((1, 2, 3)) * 4
        return torch.stack([-s, s], 1)


def test_deletion_and_insertion_reward_the_map_that_points_at_the_evidence():
    x = torch.zeros(4, 3, 16, 16)
    x[:, :, :8, :8] = CHECKS                               # evidence for class 1 in the top-left patch
    right = torch.zeros(4, 16, 16); right[:, :8, :8] = 1
    wrong = 1 - right
    good = cam.deletion_insertion(PatchModel(), x, right.numpy(), [1] * 4, steps=8, sigma=2.0)
    bad = cam.deletion_insertion(PatchModel(), x, wrong.numpy(), [1] * 4, steps=8, sigma=2.0)
    assert (good["deletion_auc"] < bad["deletion_auc"]).all() and (good["insertion_auc"] > bad["insertion_auc"]).all()
    model_p = torch.softmax(PatchModel()(x), 1)[:, 1].numpy()
    np.testing.assert_allclose(good["deletion"][:, 0], model_p, rtol=1e-6)     # nothing removed yet
    np.testing.assert_allclose(good["insertion"][:, -1], model_p, rtol=1e-6)   # everything put back
    np.testing.assert_allclose(good["deletion"][:, -1], good["insertion"][:, 0], rtol=1e-6)   # all blurred
    step = 1 / 8
    np.testing.assert_allclose(good["deletion_auc"], np.trapezoid(good["deletion"], dx=step, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="one map per image"):
        cam.deletion_insertion(PatchModel(), x, right[:2].numpy(), [1] * 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cam.deletion_insertion(PatchModel(), x, 2 * right.numpy(), [1] * 4)


def test_a_flat_map_removes_pixels_in_a_fixed_random_order_not_from_a_corner():
    class FirstRowModel(nn.Module):   # class 1's logit: the mean of the image's first row, which a corner-first order removes first
        def forward(self, x):
            s = x[:, :, 0, :].mean((1, 2)) * 10
            return torch.stack([-s, s], 1)
    x = torch.zeros(64, 3, 16, 16)
    x[:, :, 0, :] = 1.0
    flat = np.zeros((64, 16, 16), np.float32)
    curves = cam.deletion_insertion(FirstRowModel(), x, flat, [1] * 64, steps=16, sigma=0.5)
    # a sixteenth of the pixels removed: row-major order would blur exactly the first row; a random order about 1/16 of it
    p = torch.softmax(FirstRowModel()(x), 1)[0, 1].item()
    assert curves["deletion"][0, 1] > 0.5 + (p - 0.5) * 0.5
    again = cam.deletion_insertion(FirstRowModel(), x, flat, [1] * 64, steps=16, sigma=0.5)
    np.testing.assert_array_equal(curves["deletion"], again["deletion"])            # the order is fixed by the seed


def test_deletion_insertion_puts_back_every_modules_mode():
    model = tiny_model().train()
    model.layer1.eval()                                   # e.g. frozen BatchNorm while fine-tuning
    cam.deletion_insertion(model, torch.randn(2, 3, 32, 32), np.random.default_rng(0).random((2, 32, 32)), [0, 1], steps=2)
    assert model.training and not model.layer1.training and model.layer2.training


def test_randomise_from_top_touches_only_the_named_stages_of_a_copy():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    scrambled = cam.randomise_from_top(model, ["head", "layer4"])
    assert torch.equal(torch.rand(3), expected)          # the caller's random state is untouched
    again = cam.randomise_from_top(model, ["head", "layer4"])
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in scrambled.state_dict().items())   # seeded
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # the original is untouched
    after = scrambled.state_dict()
    for k, v in before.items():
        changed = not torch.equal(v, after[k])
        top = k.startswith(("head", "layer4")) and ("conv" in k or "fc" in k or "downsample.0" in k) and "weight" in k
        if top:
            assert changed, k
        elif not k.startswith(("head", "layer4")):
            assert not changed, k
        if "bn" in k or "running" in k or "downsample.1" in k:
            assert not changed, k


def test_localisation_summarises_the_scores():
    maps = np.zeros((4, 8, 8))
    maps[0, 2:4, 2:4] = 1                                  # on the box
    maps[1, 6:8, 6:8] = 1                                  # off it
    maps[3] = 0.5                                          # flat
    boxes = np.array([[1, 1, 4, 4]] * 4)
    s = cam.localisation(maps, boxes)
    assert s["pointing"] == 0.25                           # map 0 only: the flat maps point at (0, 0), outside the box
    assert s["flat"] == 0.5                                # maps 2 (zeros) and 3
    np.testing.assert_allclose(s["iou"], np.mean(cam.box_iou(np.stack([cam.box_from_map(m) for m in maps]), boxes)))
    assert s["iou50"] == np.mean(cam.box_iou(np.stack([cam.box_from_map(m) for m in maps]), boxes) >= 0.5)


def test_rank_correlation_is_spearmans():
    rng = np.random.default_rng(2)
    a, b = rng.random((5, 6, 6)), rng.random((5, 6, 6))
    b[1] = a[1] * 2 + 1
    a[2, :3] = 0.5                                       # ties
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(cam.rank_correlation(a, b), expected)
    assert np.isnan(cam.rank_correlation(np.ones((1, 3, 3)), a[:1, :3, :3]))[0]


@pytest.mark.parametrize("method", ["Grad-CAM", "Grad-CAM++", "Score-CAM", "Eigen-CAM", "Layer-CAM"])
def test_package_maps_under_mixed_precision_give_float_maps_close_to_fp32(method, monkeypatch):
    # On a GPU the maps are made under autocast (bf16 on Ampere and newer, fp16 on a T4): the package would turn
    # bf16 activations into NumPy (which has none) and scale fp16 maps with an epsilon that is 0 in fp16. The
    # CPU's bf16 autocast stands in for the GPU's.
    from helpers import train
    torch.manual_seed(0)
    net = models.resnet18(num_classes=5, stem="cifar", widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)).eval()
    x = torch.randn(4, 3, 32, 32)
    exact = cam.package_maps(method, net, "layer3", x, [0, 1, 2, 3], amp=False)
    monkeypatch.setattr(train, "autocast_dtype", lambda device, amp: torch.bfloat16 if amp else None)
    mixed = cam.package_maps(method, net, "layer3", x, [0, 1, 2, 3])
    assert mixed.dtype == np.float32 and np.isfinite(mixed).all() and mixed.min() >= 0 and mixed.max() <= 1 + 1e-6
    assert np.corrcoef(mixed.ravel(), exact.ravel())[0, 1] > 0.9   # bf16 keeps 8 bits: the same map, roughly
    assert all(h == {} for h in (net.layer3._forward_hooks,))   # the float hook is removed
