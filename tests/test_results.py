import errno
from pathlib import Path

import pytest
import torch

from helpers.course import results
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


def test_a_runs_summary_is_built_from_its_records_alone(tmp_path, monkeypatch):
    from helpers import checks
    monkeypatch.setattr(checks, "COMPARISONS", {})
    rt = Runtime(device=torch.device("cpu"), profile="small", data_dir=tmp_path, output_dir=tmp_path, seed=0)
    results.record(rt, "01_x", "recipe a", test_accuracy=0.6123, epochs=3, s_per_epoch=2.5)
    checks.direction("a beats b", [0.60, 0.61], [0.50, 0.51], n=10_000, verbose=False)
    checks.direction("c beats d", [0.50, 0.51], [0.52, 0.53], n=10_000, verbose=False)
    checks.direction("c beats d", [0.50, 0.51], [0.49, 0.50], n=10_000, verbose=False)   # run again: replaces
    page = results.run_summary(rt, "01_x")
    text = page._repr_markdown_()
    rows = results.read(tmp_path, "01_x")
    assert [r["experiment"] for r in rows] == ["recipe a", "comparison: a beats b", "comparison: c beats d"]
    assert "- a beats b: 60.50% against 50.50%, margin +10.00 points, 10.0× the spread of 1.00 points" in text
    assert "**shown**" in text and "**not asserted: within noise (margin < 3× spread); holds**" in text
    assert "| recipe a | 61.23% | 3 |" in text              # the figures, without the machine's timings
    assert "s_per_epoch" not in text and "profile: small" in text.split("\n")[0]
    assert text == results.summary(rows)                   # the page is the records' page, nothing else
    with pytest.raises(FileNotFoundError, match="02_y has recorded nothing"):
        results.read(tmp_path, "02_y")
