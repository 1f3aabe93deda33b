import errno
from pathlib import Path

import pytest
import torch

from helpers import results
from helpers.runtime import Runtime


class _FullDisk:
    """A file opened for writing whose write stops halfway with ENOSPC, as on a full disk."""

    def __init__(self, file):
        self.file = file

    def write(self, text):
        self.file.write(text[: len(text) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_keeps_the_rows_recorded_before(tmp_path, monkeypatch):
    rt = Runtime(device=torch.device("cpu"), profile="ci", data_dir=tmp_path, output_dir=tmp_path, seed=0)
    results.record(rt, "01_x", "recipe a", test_accuracy=0.5)
    results.record(rt, "01_x", "recipe b", test_accuracy=0.6)
    real_open = Path.open

    def full_disk_open(self, mode="r", *args, **kwargs):  # Path.write_text opens through Path.open too
        file = real_open(self, mode, *args, **kwargs)
        return _FullDisk(file) if "w" in mode else file

    monkeypatch.setattr(Path, "open", full_disk_open)
    with pytest.raises(OSError, match="earlier rows are intact") as err:
        results.record(rt, "01_x", "recipe c", test_accuracy=0.7)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC and str(tmp_path / "results" / "01_x.json") in str(err.value)
    assert [r["experiment"] for r in results.collect(tmp_path)] == ["recipe a", "recipe b"]
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["01_x.json"]  # no temporary file left
