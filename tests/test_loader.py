import pytest
import torch
import torchvision.transforms as T

from helpers import augment, data, loader


def _same_image_dataset(n=64, size=16):
    g = torch.Generator().manual_seed(0)
    one = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=g)
    return data.ImageData(images=one.repeat(n, 1, 1, 1), labels=torch.zeros(n, dtype=torch.int64),
                          classes=("only",), name="toy", split="train")


def test_images_in_one_batch_get_different_crops_and_flips():
    ds = _same_image_dataset()
    x, _ = next(iter(loader.GpuBatches(ds, batch_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)))
    distinct = {tuple(img.flatten().tolist()) for img in x}
    assert len(distinct) > 20  # identical inputs, per-image draws: many different outputs


def test_output_dtype_range_and_normalisation():
    ds = _same_image_dataset(8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x, y = next(iter(loader.GpuBatches(ds, batch_size=8, train=False, mean=mean, std=std)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (8, 3, 16, 16)
    expected = (ds.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert torch.equal(augment.denormalize(x, mean, std), ds.images)


def test_same_seed_same_batches_and_epochs_differ(tiny_data):
    def batches(seed, epoch):
        b = loader.GpuBatches(tiny_data, batch_size=8, seed=seed, mean=(0.5,) * 3, std=(0.5,) * 3)
        b.set_epoch(epoch)
        return [x for x, _ in b]
    assert all(torch.equal(a, b) for a, b in zip(batches(3, 0), batches(3, 0)))
    assert not torch.equal(batches(3, 0)[0], batches(3, 1)[0])
    assert not torch.equal(batches(3, 0)[0], batches(4, 0)[0])


def test_plain_iteration_advances_the_epoch(tiny_data):
    b = loader.GpuBatches(tiny_data, batch_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    first = [y for _, y in b]
    second = [y for _, y in b]
    assert b.epoch == 2 and not all(torch.equal(p, q) for p, q in zip(first, second))


def test_every_image_once_per_epoch_and_batch_counts(tiny_data):
    b = loader.GpuBatches(tiny_data, batch_size=5, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert len(b) == 4 and b.num_images == 20  # training drops the last partial batch
    ev = loader.GpuBatches(tiny_data, batch_size=5, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    labels = torch.cat([y for _, y in ev])
    assert len(ev) == 5 and torch.equal(labels, tiny_data.labels)  # evaluation: all, in order


def test_channels_last_and_missing_statistics(tiny_data):
    x, _ = next(iter(loader.GpuBatches(tiny_data, batch_size=4, channels_last=True, mean=(0.5,) * 3, std=(0.5,) * 3)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="no normalisation statistics"):
        loader.GpuBatches(tiny_data, batch_size=4)


def test_zero_padding_crop_is_the_identity_and_values_stay_in_range():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment.random_crop(x, 0), x)
    for mode in ("reflect", "zeros"):
        out = augment.random_crop(x, 3, torch.Generator().manual_seed(0), padding_mode=mode)
        assert out.shape == x.shape and out.dtype == torch.uint8


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.uint8).view(2, 1, 5, 5)
    out = augment.random_crop(x, 2, torch.Generator().manual_seed(1), padding_mode="zeros")
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):  # each output equals some 5×5 window of its own padded image
        windows = padded[i, 0].unfold(0, 5, 1).unfold(1, 5, 1).reshape(-1, 5, 5)
        assert any(torch.equal(out[i, 0], w) for w in windows)


def test_flip_mirrors_exactly():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    assert torch.equal(augment.random_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(augment.random_flip(x, p=0.0), x)


def test_transform_dataset_feeds_torchvision_pipelines(tiny_data):
    ds = loader.TransformDataset(tiny_data, T.Compose([T.RandomCrop(16, padding=2), T.ToTensor()]))
    img, label = ds[7]
    assert img.shape == (3, 16, 16) and 0 <= img.min() and img.max() <= 1 and label == 1
    raw, _ = loader.TransformDataset(tiny_data, T.PILToTensor())[3]
    assert torch.equal(raw, tiny_data.images[3])


# ----------------------------------------------------------------------------- PK batches (per_class=K)

def _numbered(counts):
    """Images whose single pixel value is their index, `counts[c]` of class c (at most 256 in all)."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    return data.ImageData(images=images, labels=labels, classes=tuple("abcdefghij"[:len(counts)]), name="toy", split="train")


def _pk(ds, **kwargs):
    return loader.GpuBatches(ds, crop_padding=0, flip=False, mean=(0.0,) * 3, std=(1 / 255,) * 3, **kwargs)


def _indices(x):
    return x[:, 0, 0, 0].round().long()


def test_pk_batches_are_p_distinct_classes_times_k_distinct_images():
    ds = _numbered([8, 5, 12, 7, 16, 8])   # 5 and 7: a class runs out mid-shuffle and starts a new one
    batches = _pk(ds, batch_size=12, per_class=4, seed=1)
    assert len(batches) == len(ds) // 12
    for epoch in range(3):
        for x, y in batches:
            idx = _indices(x)
            assert torch.equal(ds.labels[idx], y)                    # the labels belong to the images
            assert len(torch.unique(idx)) == 12                      # no image twice in a batch
            classes, counts = torch.unique(y, return_counts=True)
            assert len(classes) == 3 and (counts == 4).all()         # P = 3 classes × K = 4 images
            assert all(torch.equal(y[i * 4:(i + 1) * 4], y[i * 4].repeat(4)) for i in range(3))


def test_pk_batches_visit_every_image_of_a_class_equally_often():
    ds = _numbered([8, 12, 16, 8, 20])   # every count a multiple of K: a class's shuffle is used up exactly
    batches = _pk(ds, batch_size=8, per_class=4, seed=0)
    total = torch.zeros(len(ds), dtype=torch.long)
    for _ in range(6):   # within an epoch, the images of a class are seen equally often, give or take one
        seen = sum(torch.bincount(_indices(x), minlength=len(ds)) for x, _ in batches)
        for c in range(5):
            mine = seen[ds.labels == c]
            assert mine.max() - mine.min() <= 1, (c, mine.tolist())
        total += seen
    assert total.min() >= 1
    # a uniformly shuffled loader over the same data gives many batches with a class seen once
    plain = _pk(ds, batch_size=8, seed=0)
    lonely = sum(int((torch.unique(y, return_counts=True)[1] == 1).any()) for _, y in plain)
    assert lonely > 0


def test_pk_batches_are_reproducible_per_seed_and_epoch():
    ds = _numbered([8] * 6)

    def epoch(seed, e):
        b = _pk(ds, batch_size=8, per_class=2, seed=seed)
        b.set_epoch(e)
        return torch.cat([_indices(x) for x, _ in b])
    assert torch.equal(epoch(0, 1), epoch(0, 1))
    assert not torch.equal(epoch(0, 0), epoch(0, 1)) and not torch.equal(epoch(0, 1), epoch(5, 1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=8, per_class=1), "at least 2"),
    (dict(batch_size=10, per_class=4), "not a multiple of per_class"),
    (dict(batch_size=4, per_class=4), "one class per batch"),
    (dict(batch_size=28, per_class=4), "asks for 7 classes per batch, but toy/train has 3; lower batch_size to at most 12"),
    (dict(batch_size=12, per_class=6), "more than the 5 images of class 'b'"),
    (dict(batch_size=8, per_class=4, train=False), "train=False"),
    (dict(batch_size=8, per_class=4, concat_original=True), "cannot be combined"),
    (dict(batch_size=8, per_class=4, drop_last=False), "needs drop_last"),
])
def test_pk_settings_that_cannot_work_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _pk(_numbered([8, 5, 8]), **kwargs)


# ----------------------------------------------------------------------------- two views per image (views=2)

def test_two_views_are_independent_augmentations_of_the_same_images_and_a_seed_repeats():
    from functools import partial
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    unlabeled = data.ImageData(images=images, labels=torch.full((24,), -1), classes=(), name="toy", split="unlabeled")
    pipeline = [partial(augment.random_resized_crop, scale=(0.2, 1.0)), partial(augment.color_jitter, brightness=0.4, p=0.8)]
    kwargs = dict(batch_size=8, views=2, crop_padding=0, augmentations=pipeline, mean=(0.5,) * 3, std=(0.25,) * 3, seed=3)
    batches = loader.GpuBatches(unlabeled, **kwargs)
    epoch = list(batches)
    assert len(epoch) == 3 and all(len(b) == 3 for b in epoch)
    for v1, v2, y in epoch:
        assert v1.shape == v2.shape == (8, 3, 16, 16) and (y == -1).all()
        assert all(not torch.equal(a, b) for a, b in zip(v1, v2))         # two different views of each image
    # each view is the loader's own augmentation of the same image: undo the normalisation and compare
    # with the images drawn in that order from the epoch's generator
    again = loader.GpuBatches(unlabeled, **kwargs)
    again.set_epoch(0)
    for (v1, v2, _), (w1, w2, _) in zip(epoch, again):
        assert torch.equal(v1, w1) and torch.equal(v2, w2)              # same seed and epoch, same views
    other = loader.GpuBatches(unlabeled, **{**kwargs, "seed": 4})
    assert not torch.equal(next(iter(other))[0], epoch[0][0])
    # the first batch by hand: the epoch's generator shuffles, then augments the batch once per view
    g = torch.Generator().manual_seed(3 * 1_000_003 + 0)
    x = images[torch.randperm(24, generator=g)[:8]]
    by_hand = batches.augment(x, generator=g), batches.augment(x, generator=g)
    for view, expected in zip(epoch[0][:2], by_hand):
        assert torch.equal(augment.denormalize(view, (0.5,) * 3, (0.25,) * 3), expected)
    with pytest.raises(ValueError, match="views=2 .* needs train=True"):
        loader.GpuBatches(unlabeled, batch_size=8, views=2, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    with pytest.raises(ValueError, match="views must be 1"):
        loader.GpuBatches(unlabeled, batch_size=8, views=3, mean=(0.5,) * 3, std=(0.25,) * 3)


# ----------------------------------------------------------------------------- balanced pairs (notebook 05)

def test_balanced_pairs_give_half_similar_pairs_with_the_right_flags_and_never_the_anchor():
    labels = torch.tensor([0] * 7 + [1] * 2 + [2] * 5 + [3] * 3)      # unequal classes, unsorted below
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    for seed in range(20):
        partner, similar = loader.balanced_pairs(labels, torch.Generator().manual_seed(seed))
        assert partner.shape == similar.shape == labels.shape and similar.dtype == torch.bool
        assert int(similar.sum()) == len(labels) // 2
        assert torch.equal(labels[partner] == labels, similar)          # the flag says what the pair is
        assert (partner != torch.arange(len(labels))).all()             # never the anchor itself
    a = loader.balanced_pairs(labels, torch.Generator().manual_seed(5))
    b = loader.balanced_pairs(labels, torch.Generator().manual_seed(5))
    c = loader.balanced_pairs(labels, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_balanced_pairs_draw_each_possible_partner_equally_often():
    # classes of 4, 3 and 5 images: over many draws, anchor 0's similar partners are spread evenly over
    # the 3 others of its class, and its dissimilar ones over the 8 images of the other classes
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    same, other = torch.zeros(12), torch.zeros(12)
    g = torch.Generator().manual_seed(0)
    for _ in range(6000):
        partner, similar = loader.balanced_pairs(labels, g)
        (same if similar[0] else other)[partner[0]] += 1
    assert same[0] == 0 and same[4:].sum() == 0 and other[:4].sum() == 0
    for counts, places in ((same[1:4], 3), (other[4:], 8)):
        expected = counts.sum() / places                                  # about 1,000 and 375
        assert ((counts - expected).abs() < 5 * expected.sqrt()).all(), counts   # 5 SDs of a count


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([0, 0, 0]), "1 class"),
    (torch.tensor([0, 0, 1]), "single image"),
    (torch.tensor([0, 1, -1, 1, 0]), "negative"),
    (torch.tensor([0.0, 1.0, 0.0, 1.0]), "whole-number"),
])
def test_balanced_pairs_refuse_labels_that_cannot_pair(labels, message):
    with pytest.raises(ValueError, match=message):
        loader.balanced_pairs(labels)


def test_pair_batches_hold_each_anchor_once_per_epoch_with_its_partner_and_repeat_by_seed(tiny_data):
    # images numbered by their first pixel, no augmentation: each pair can be read back
    images = torch.arange(24, dtype=torch.uint8).view(24, 1, 1, 1).expand(24, 3, 4, 4).contiguous()
    numbered = data.ImageData(images=images, labels=tiny_data.labels, classes=tiny_data.classes, name="toy", split="train")
    kwargs = dict(batch_size=6, crop_padding=0, flip=False, mean=(0.0,) * 3, std=(1 / 255,) * 3, seed=2)
    batches = loader.PairBatches(numbered, **kwargs)
    epoch = list(batches)
    assert len(epoch) == 4
    anchors = torch.cat([first[:, 0, 0, 0] for first, _, _ in epoch]).round().long()
    partners = torch.cat([second[:, 0, 0, 0] for _, second, _ in epoch]).round().long()
    similar = torch.cat([s for _, _, s in epoch])
    assert sorted(anchors.tolist()) == list(range(24))                   # every image an anchor once
    assert torch.equal(numbered.labels[anchors] == numbered.labels[partners], similar)
    assert (anchors != partners).all() and int(similar.sum()) == 12
    again = loader.PairBatches(numbered, **kwargs)
    again.set_epoch(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch, again))
    later = list(batches)                                                # the next epoch draws new pairs
    assert not torch.equal(torch.cat([f for f, _, _ in later]), torch.cat([f for f, _, _ in epoch]))


def test_pair_batches_augment_both_images_and_refuse_what_does_not_apply(tiny_data):
    from functools import partial
    pipeline = [partial(augment.color_jitter, brightness=0.5)]
    first, second, _ = next(iter(loader.PairBatches(tiny_data, batch_size=8, augmentations=pipeline,
                                                    mean=(0.5,) * 3, std=(0.25,) * 3)))
    assert first.shape == second.shape == (8, 3, 16, 16)
    same = loader.PairBatches(tiny_data, batch_size=8, augmentations=pipeline, mean=(0.5,) * 3, std=(0.25,) * 3,
                              pairs=lambda labels, g: (torch.arange(len(labels)), torch.ones(len(labels), dtype=torch.bool)))
    a, b, s = next(iter(same))
    assert s.all() and not torch.equal(a, b)                             # one image, two independent augmentations
    for bad in (dict(train=False), dict(views=2), dict(per_class=2), dict(concat_original=True)):
        with pytest.raises(ValueError, match="does not apply"):
            loader.PairBatches(tiny_data, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, **bad)
    unlabeled = data.ImageData(images=tiny_data.images, labels=torch.full((24,), -1), classes=(), name="toy", split="unlabeled")
    with pytest.raises(ValueError, match="unlabeled"):
        loader.PairBatches(unlabeled, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
