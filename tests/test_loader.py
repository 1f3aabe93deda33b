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
