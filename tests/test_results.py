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


def _recorder(folder, notebook, start, count, ready, go):
    rt = Runtime(device=torch.device("cpu"), profile="ci", data_dir=folder, output_dir=folder, seed=0)
    ready.set()
    go.wait(60)   # both processes imported and waiting: they record at the same time
    for i in range(start, start + count):
        results.record(rt, notebook, f"row {i}", value=i)


def test_two_processes_recording_into_one_file_keep_every_row(tmp_path):
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    ready = [context.Event(), context.Event()]
    workers = [context.Process(target=_recorder, args=(tmp_path, "01_x", start, 150, r, go))
               for start, r in zip((0, 150), ready)]
    for w in workers:
        w.start()
    assert all(r.wait(120) for r in ready)
    go.set()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sorted(r["value"] for r in results.read(tmp_path, "01_x")) == list(range(300))


def test_records_are_standard_json_and_keep_integers(tmp_path):
    import json
    import numpy as np
    rt = Runtime(device=torch.device("cpu"), profile="ci", data_dir=tmp_path, output_dir=tmp_path, seed=0)
    row = results.record(rt, "01_x", "odd values", count=np.int64(7), loss=float("nan"), best=float("inf"),
                         worst=np.float32(-np.inf), accuracy=torch.tensor(0.25), sizes=(np.int32(1), 2))
    text = (tmp_path / "results" / "01_x.json").read_text()
    [saved] = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON: {c}"))
    assert saved["count"] == 7 and isinstance(saved["count"], int)
    assert (saved["loss"], saved["best"], saved["worst"]) == ("nan", "inf", "-inf")
    assert saved["accuracy"] == 0.25 and saved["sizes"] == [1, 2] and saved == row
    with pytest.raises(TypeError, match=r"vector: accuracy: a tensor of shape \(3,\) is not one figure"):
        results.record(rt, "01_x", "vector", accuracy=torch.ones(3))


def test_a_damaged_results_file_is_named_and_kept_aside(tmp_path):
    rt = Runtime(device=torch.device("cpu"), profile="ci", data_dir=tmp_path, output_dir=tmp_path, seed=0)
    file = tmp_path / "results" / "01_x.json"
    file.parent.mkdir()
    file.write_text('[{"notebook": "01_x", "experiment": "cut off')
    with pytest.raises(ValueError, match=r"results file .*01_x\.json cannot be read"):
        results.collect(tmp_path)
    with pytest.warns(UserWarning, match=r"kept as 01_x\.json\.damaged-"):
        results.record(rt, "01_x", "after", value=1)
    [kept] = list(file.parent.glob("01_x.json.damaged-*"))
    assert kept.read_text().endswith("cut off") and [r["value"] for r in results.read(tmp_path, "01_x")] == [1]
