"""Shared fixtures. Tests that read real images use COURSE_DATA_DIR (CI unpacks the data pack there)."""
import dataclasses

import pytest
import torch

from helpers import data, download

CLOSED = "http://127.0.0.1:9"
REAL_SOURCES = download.SOURCES   # nothing listens on port 9 here: a refused connection, as offline


def on_host(source, host: str):
    """`source` of download.SOURCES served from `host` instead of its real one."""
    if isinstance(source, download.OfficialArchive):
        return dataclasses.replace(source, url=f"{host}/{source.filename}")
    return dataclasses.replace(source, endpoint=host)


@pytest.fixture
def real_sources():
    """download.SOURCES as the code has it (the hosts' real addresses), for tests of its form."""
    return REAL_SOURCES


@pytest.fixture(autouse=True)
def no_real_hosts(monkeypatch):
    """No test reaches a real dataset host: every source in the table points at a closed port on
    127.0.0.1 (a test that serves files replaces the table again)."""
    monkeypatch.setattr(download, "SOURCES", {name: tuple(on_host(s, CLOSED) for s in sources)
                                              for name, sources in download.SOURCES.items()})
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
