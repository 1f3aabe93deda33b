"""Shared fixtures. Tests that read real images use COURSE_DATA_DIR (CI unpacks the data pack there)."""
import pytest
import torch

from helpers import data
from helpers.runtime import default_data_dir


@pytest.fixture(scope="session")
def data_dir():
    return default_data_dir()


@pytest.fixture(scope="session")
def cifar_test(data_dir):
    return data.load("cifar10", "test", data_dir, verbose=False)


@pytest.fixture
def tiny_data():
    """A 4-class, 6-images-per-class ImageData of random 16×16 images."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(4).repeat_interleave(6)
    return data.ImageData(images=images, labels=labels, classes=("a", "b", "c", "d"), name="toy", split="train")
