"""The GPU batch augmentations: identities at zero magnitude, exact geometry, torchvision as the
oracle for every pixel formula, values in range, and independent draws per image."""
from functools import partial

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from helpers import augment, data, loader

AUGMENTATIONS = {  # name -> the augmentation at a clearly visible magnitude
    "crop": partial(augment.random_crop, padding=4),
    "flip": augment.random_flip,
    "rotation": partial(augment.random_rotation, degrees=30),
    "translate": partial(augment.random_translate, fraction=0.2),
    "color_jitter": partial(augment.color_jitter, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "grayscale": partial(augment.random_grayscale, p=0.5),
    "cutout": partial(augment.cutout, size=8),
    "resized_crop": augment.random_resized_crop,
    "blur": partial(augment.random_gaussian_blur, kernel_size=5, p=1.0),
}


def _images(n=64, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_zero_magnitude_is_the_identity():
    x = _images(8)
    assert torch.equal(augment.random_rotation(x, 0), x)
    assert torch.equal(augment.random_translate(x, 0), x)
    assert torch.equal(augment.random_affine(x), x)
    assert torch.equal(augment.color_jitter(x), x)
    assert torch.equal(augment.random_grayscale(x, p=0), x)
    assert torch.equal(augment.cutout(x, 0), x)
    assert torch.equal(augment.random_resized_crop(x, scale=(1, 1), ratio=(1, 1)), x)
    assert torch.equal(augment.random_gaussian_blur(x, kernel_size=5, p=0.0), x)   # the whole image, same size
    zero = torch.zeros(8)
    assert torch.equal(augment.affine(x, zero, zero, zero), x)  # through the sampling grid too


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_values_stay_in_range_and_shapes_are_kept(name):
    x = torch.cat([_images(30), torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)])
    out = AUGMENTATIONS[name](x, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == x.shape  # uint8 cannot leave [0, 255]: no wrap-around either
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_images_in_one_batch_get_different_draws_and_a_seed_repeats(name):
    one = _images(1).repeat(64, 1, 1, 1)
    f = AUGMENTATIONS[name]
    out = f(one, generator=torch.Generator().manual_seed(2))
    distinct = {tuple(img.flatten().tolist()) for img in out}
    assert len(distinct) >= 2 if name in ("flip", "grayscale") else len(distinct) > 20
    assert torch.equal(out, f(one, generator=torch.Generator().manual_seed(2)))


def test_rotation_matches_torchvision_rotate():
    x = _images(4, 32)
    for degrees in (90.0, 30.0, -10.0):
        angle = torch.full((4,), degrees)
        ours = augment.affine(x, angle, torch.zeros(4), torch.zeros(4), interpolation="nearest")
        assert torch.equal(ours, TF.rotate(x, degrees))
        ours = augment.affine(x, angle, torch.zeros(4), torch.zeros(4), interpolation="bilinear")
        reference = TF.rotate(x.float(), degrees, interpolation=TF.InterpolationMode.BILINEAR).round()
        assert (ours.float() - reference).abs().max() <= 1  # float rounding at exact .5 only
    assert torch.equal(augment.affine(x, torch.full((4,), 90.0), torch.zeros(4), torch.zeros(4)),
                       torch.rot90(x, 1, dims=(-2, -1)))


def test_rotation_keeps_angles_within_the_range():
    # a thin vertical bar rotated by at most 10 degrees stays near the vertical axis
    x = torch.zeros(64, 1, 33, 33, dtype=torch.uint8)
    x[:, :, 4:29, 16] = 255
    out = augment.random_rotation(x, 10, generator=torch.Generator().manual_seed(0), interpolation="nearest")
    cols = torch.nonzero(out[:, 0] > 0)[:, 2]
    assert (cols - 16).abs().max() <= 3  # tan(10°)·12 px ≈ 2.1 px


def test_translation_moves_content_by_whole_pixels_and_fills():
    x = _images(2, 8)
    out = augment.affine(x, torch.zeros(2), torch.tensor([2.0, -3.0]), torch.tensor([1.0, 0.0]), fill=7)
    assert torch.equal(out[0, :, 1:, 2:], x[0, :, :-1, :-2]) and (out[0, :, :1] == 7).all() and (out[0, :, :, :2] == 7).all()
    assert torch.equal(out[1, :, :, :-3], x[1, :, :, 3:]) and (out[1, :, :, -3:] == 7).all()
    shifted = augment.random_translate(x.repeat(32, 1, 1, 1), 0.25, generator=torch.Generator().manual_seed(0))
    for img in shifted:  # every output is its image moved by at most 2 px in each direction
        assert any(torch.equal(img, augment.affine(img[None], torch.zeros(1), torch.tensor([float(dx)]),
                                                   torch.tensor([float(dy)]))[0]) for dx in range(-2, 3) for dy in range(-2, 3))


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation", "hue"])
def test_color_adjustments_match_torchvision_per_image(kind):
    x = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    factors = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.45]) if kind == "hue" else torch.tensor([0.0, 0.6, 1.0, 1.3, 2.0])
    reference = getattr(TF, f"adjust_{kind}")
    ours = augment.adjust_colors(x, **{kind: factors})
    expected = torch.stack([reference(x[i], float(factors[i])) for i in range(5)])
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_color_jitter_factors_stay_in_their_ranges():
    gray = torch.full((256, 3, 4, 4), 100, dtype=torch.uint8)  # contrast, saturation and hue leave flat gray alone
    out = augment.color_jitter(gray, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2,
                               generator=torch.Generator().manual_seed(0)).float()
    assert out.min() >= 50 and out.max() <= 150 and out.std(dim=0).max() > 10
    with pytest.raises(ValueError, match="hue"):
        augment.color_jitter(gray, hue=0.7)
    # brightness above 1: factors from [0, 1 + v] as in torchvision, never negative (a sixth of the
    # images would turn black if they were drawn from [1 - v, 1 + v] and clamped)
    bright = augment.color_jitter(gray.repeat(8, 1, 1, 1), brightness=1.5, generator=torch.Generator().manual_seed(1))
    assert (bright.flatten(1).amax(1) == 0).float().mean() < 0.01 and bright.max() >= 240


def test_grayscale_is_torchvisions_luma_in_every_channel():
    x = _images(6)
    out = augment.random_grayscale(x, p=1.0)
    assert torch.equal(out, TF.rgb_to_grayscale(x.float(), 3).round().to(torch.uint8))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_cutout_blanks_one_clipped_square_per_image():
    white = torch.full((200, 3, 16, 16), 255, dtype=torch.uint8)
    out = augment.cutout(white, 6, generator=torch.Generator().manual_seed(0))
    holes = out[:, 0] == 0
    assert torch.equal(holes[:, None].expand_as(out), out == 0)  # all channels together
    for hole in holes:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 6 and 1 <= len(cols) <= 6 and hole.sum() == len(rows) * len(cols)  # a rectangle
    sizes = holes.sum(dim=(1, 2))
    assert sizes.max() == 36 and sizes.min() < 36  # whole squares inside, clipped ones at the edges


def _toy(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous() * 10 + 5
    return data.ImageData(images=images, labels=torch.arange(n), classes=tuple("abcdefghij")[:n], name="toy")


def test_loader_applies_extra_augmentations_in_training_only():
    invert = lambda x, generator=None: 255 - x  # noqa: E731
    kwargs = dict(batch_size=10, crop_padding=0, flip=False, augmentations=[invert], mean=(0,) * 3, std=(1 / 255,) * 3)
    x, y = next(iter(loader.GpuBatches(_toy(), **kwargs)))
    torch.testing.assert_close(x[:, 0, 0, 0], 255 - (y * 10 + 5).float())
    x, y = next(iter(loader.GpuBatches(_toy(), train=False, **kwargs)))
    torch.testing.assert_close(x[:, 0, 0, 0], (y * 10 + 5).float())


def test_concat_original_holds_each_image_once_augmented_and_once_as_is():
    invert = lambda x, generator=None: 255 - x  # noqa: E731
    b = loader.GpuBatches(_toy(), batch_size=4, crop_padding=0, flip=False, augmentations=[invert],
                          concat_original=True, mean=(0,) * 3, std=(1 / 255,) * 3, drop_last=False)
    assert b.epoch_images == 20 and len(b) == 5
    seen = [(int(label), round(float(value))) for x, y in b for label, value in zip(y, x[:, 0, 0, 0])]
    assert len(seen) == 20
    assert sorted(seen) == sorted([(i, i * 10 + 5) for i in range(10)] + [(i, 250 - i * 10) for i in range(10)])
    first = [tuple(y.tolist()) for _, y in b]
    assert first != [tuple(range(4 * i, 4 * i + 4)) for i in range(5)]  # shuffled together


def test_loader_resizes_to_the_requested_size():
    b = loader.GpuBatches(_toy(), batch_size=5, train=False, size=12, mean=(0,) * 3, std=(1,) * 3)
    x, _ = next(iter(b))
    assert x.shape == (5, 3, 12, 12)
    torch.testing.assert_close(x[:, :, 5, 5], x[:, :, 0, 0])  # flat images stay flat


# ----------------------------------------------------------------------------- random resized crop

def test_resized_crop_matches_torchvision_pixel_for_pixel():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (40, 3, 24, 20), dtype=torch.uint8, generator=g)
    boxes = torch.cat([augment.resized_crop_boxes(24, 20, 36, generator=g),
                       torch.tensor([[0, 0, 24, 20], [3, 2, 5, 7], [10, 5, 1, 1], [0, 0, 2, 20]])])   # whole, small, 1×1, a strip
    for size in (16, 32):   # down and up
        ours = augment.resized_crop(x, boxes, size)
        for i, (top, left, h, w) in enumerate(boxes.tolist()):
            # torchvision's float kernel, rounded: the same numbers exactly
            reference = TF.resized_crop(x[i].float(), top, left, h, w, [size, size], antialias=False)
            assert torch.equal(ours[i], reference.round().clamp(0, 255).to(torch.uint8)), (i, size)
            # its uint8 kernel works in fixed point: within 1
            uint8 = TF.resized_crop(x[i], top, left, h, w, [size, size], antialias=False)
            assert int((uint8.int() - ours[i].int()).abs().max()) <= 1


def test_resized_crop_boxes_are_drawn_like_torchvisions():
    import torchvision.transforms.v2 as T
    g = torch.Generator().manual_seed(4)
    boxes = augment.resized_crop_boxes(64, 48, 4000, generator=g).float()
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 48).all()
    area, aspect = h * w / (64 * 48), w / h
    assert area.min() >= 0.06 and (aspect >= 0.7).all() and (aspect <= 1.45).all()   # 8%-100%, 3/4-4/3 (after rounding)
    torch.manual_seed(4)
    theirs = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(3, 64, 48), (0.08, 1.0), (3 / 4, 4 / 3))
                           for _ in range(4000)]).float()
    their_area = theirs[:, 2] * theirs[:, 3] / (64 * 48)
    assert abs(float(area.mean() - their_area.mean())) < 0.02          # standard error about 0.004
    assert abs(float(aspect.mean() - (theirs[:, 3] / theirs[:, 2]).mean())) < 0.02
    assert abs(float((top / (64 - h + 1)).mean()) - 0.5) < 0.03       # positions uniform over what fits


def test_resized_crop_boxes_fall_back_to_torchvisions_central_crop():
    # an area larger than the image never fits: torchvision then takes the central crop of the
    # largest box whose aspect ratio is allowed
    wide = augment.resized_crop_boxes(10, 40, 5, scale=(1.5, 2.0), generator=torch.Generator().manual_seed(0))
    assert wide.tolist() == [[0, 13, 10, 13]] * 5             # h = 10, w = round(10 × 4/3) = 13, centred
    square = augment.resized_crop_boxes(16, 16, 3, scale=(1.5, 2.0))
    assert square.tolist() == [[0, 0, 16, 16]] * 3
    with pytest.raises(ValueError, match="scale and ratio are"):
        augment.resized_crop_boxes(16, 16, 3, scale=(0.5, 0.1))


def test_color_jitter_with_p_changes_about_that_share_of_images_and_leaves_the_rest():
    x = _images(2000, size=4)
    out = augment.color_jitter(x, brightness=0.5, contrast=0.5, p=0.8, generator=torch.Generator().manual_seed(5))
    changed = (out != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.8) < 0.03                              # 3 standard errors: about 0.027
    # each image is either left as it was or jittered exactly as with p = 1 (the same draws come first)
    full = augment.color_jitter(x, brightness=0.5, contrast=0.5, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(o, a) or torch.equal(o, f) for o, a, f in zip(out, x, full))
    assert torch.equal(augment.color_jitter(x, brightness=0.5, p=0.0), x)
    with pytest.raises(ValueError, match="probability in \\[0, 1\\]"):
        augment.color_jitter(x, brightness=0.5, p=1.5)


# ----------------------------------------------------------------------------- Gaussian blur

@pytest.mark.parametrize("kernel_size", [3, 5, 9])
def test_gaussian_blur_matches_torchvision_per_image(kernel_size):
    g = torch.Generator().manual_seed(8)
    x = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8, generator=g)
    sigma = 0.1 + 1.9 * torch.rand(12, generator=g)
    ours = augment.gaussian_blur(x, sigma, kernel_size)
    reference = torch.stack([TF.gaussian_blur(x[i].float(), [kernel_size] * 2, [float(sigma[i])] * 2)
                             for i in range(12)]).round().clamp(0, 255).to(torch.uint8)
    uint8 = torch.stack([TF.gaussian_blur(x[i], [kernel_size] * 2, [float(sigma[i])] * 2) for i in range(12)])
    # one separable pass against torchvision's 2-D kernel: the sums differ in the last float bits, so a
    # value at x.5 may round the other way
    assert int((ours.int() - reference.int()).abs().max()) <= 1 and (ours == reference).float().mean() > 0.999
    assert int((ours.int() - uint8.int()).abs().max()) <= 1
    with pytest.raises(ValueError, match="odd"):
        augment.gaussian_blur(x, sigma, 4)


def test_random_gaussian_blur_blurs_a_share_p_with_a_sigma_drawn_per_image():
    x = _images(2000, size=8)
    out = augment.random_gaussian_blur(x, kernel_size=3, p=0.5, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)                              # the same draws, in the same order
    sigma = 0.1 + torch.rand(2000, generator=g) * 1.9
    apply = torch.rand(2000, generator=g) < 0.5
    assert torch.equal(out[apply], augment.gaussian_blur(x[apply], sigma[apply], 3))   # blurred with its own sigma
    assert torch.equal(out[~apply], x[~apply])                        # the others untouched
    assert abs(float(apply.float().mean()) - 0.5) < 0.034             # a share p of them: 3 standard errors
    assert float((out != x).flatten(1).any(1).float().mean()) > 0.4   # most blurs change an image (a tiny sigma may not)
    with pytest.raises(ValueError, match="p in \\[0, 1\\]"):
        augment.random_gaussian_blur(x, kernel_size=3, p=2.0)
