"""The rehearsal of the full profile (`course rehearse`): its switches, its runner, and (marked `rehearsal`,
deselected by default) every notebook's full profile rehearsed on this machine.

    python -m pytest -m rehearsal          # the seven rehearsals, about 40 minutes on a 2-core CPU
    bash .ci/run -m rehearsal              # the same from a clean clone (it unpacks the whole data pack)
"""
import json
import re
import os
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from helpers import data, images, loader, runtime, train
from helpers.course import rehearse

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def rehearsal(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_REHEARSAL", "2")


def test_pick_takes_the_rehearsal_column_only_in_a_rehearsal_of_the_full_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert runtime.pick(full=30, small=8, ci=2, rehearse=1) == 30
    monkeypatch.setenv("COURSE_REHEARSAL", "2")
    assert runtime.rehearsal_batches() == 2
    assert runtime.pick(full=30, small=8, ci=2, rehearse=1) == 1
    assert runtime.pick(full=None, small=8, ci=2, rehearse=None) is None   # None is a value, not "absent"
    assert runtime.pick(full=(64, 128), small=8, ci=2) == (64, 128)   # no rehearse=: the full profile's
    monkeypatch.setenv("COURSE_PROFILE", "small")
    assert runtime.rehearsal_batches() is None and runtime.pick(full=30, small=8, ci=2, rehearse=1) == 8
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_REHEARSAL", "a few")
    with pytest.raises(ValueError, match="COURSE_REHEARSAL='a few'"):
        runtime.rehearsal_batches()


def test_a_rehearsal_reads_a_few_batches_per_pass_and_keeps_the_epochs_length(tiny_data, rehearsal):
    batches = loader.GpuBatches(tiny_data, batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert len(batches) == 6 and len(list(batches)) == 2   # a schedule built from len() is the full profile's
    evaluation = loader.GpuBatches(tiny_data, batch_size=4, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    torch.manual_seed(0)
    from helpers import models
    model = models.resnet18(num_classes=4, widths=(4, 8, 16, 32), blocks=(1, 1, 1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=3 * len(batches), pct_start=0.25)
    history = train.fit(model, batches, 3, opt, sched, val_batches=evaluation, progress=False)
    assert [r["images"] for r in history] == [8, 8, 8] and all(r["val_count"] == 8 for r in history)
    assert len(train.predict(model, evaluation)) == 8
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tiny_data.images.float() / 255, tiny_data.labels),
                                        batch_size=4)   # a DataLoader is not cut itself: fit and evaluate read 2 batches
    history = train.fit(model, plain, 1, opt, val_batches=plain, progress=False)
    assert len(plain) == 6 and history[0]["images"] == 8 and history[0]["val_count"] == 8


@pytest.mark.parametrize("in_process", [False, True], ids=["kernel", "in-process"])
def test_the_probe_records_every_cells_time_and_memory_and_a_failure(tmp_path, in_process):
    nb = new_notebook(cells=[new_code_cell("x = bytearray(300_000_000)"), new_code_cell("del x"), new_code_cell("\n"),
                             new_code_cell("import time; time.sleep(0.2)"), new_code_cell("1 / 0"),
                             new_code_cell("print('never')")])
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "99_toy.ipynb")
    result = rehearse.rehearse_notebook(folder / "99_toy.ipynb", tmp_path / "out", batches=1, data_dir=None,
                                        timeout=120, limit_gb=12.7, in_process=in_process)
    assert not result["ok"] and ("ZeroDivisionError" in result["error"] or "a cell failed" in result["error"])
    assert result["code_cells"] == 5 and result["ran"] == 4   # it stops at the error (an empty cell is not run)
    assert [c["source"] for c in result["cells"]][2:] == ["import time; time.sleep(0.2)", "1 / 0"]
    cells = result["cells"]
    assert [c["error"] for c in cells] == [False, False, False, True]
    assert cells[0]["host_bytes"] - cells[2]["host_bytes"] > 250_000_000   # the peak is the cell's own
    assert cells[2]["seconds"] >= 0.2
    result = rehearse.rehearse_notebook(folder / "99_toy.ipynb", tmp_path / "out", batches=1, data_dir=None,
                                        timeout=120, limit_gb=0.2, in_process=in_process)
    assert re.match(r"host memory \d\.\d GB in code cell 0, over 0.2 GB; ", result["error"])


def test_offline_data_gives_stl10_its_full_size_from_the_stand_in_and_says_so(tmp_path, monkeypatch):
    from PIL import Image
    source = tmp_path / "data"
    g = torch.Generator().manual_seed(0)

    def image(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (96, 96, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(pixels).save(path)

    for split in ("train", "test"):
        for c in data.STL10_CLASSES:
            image(source / "stl10-standin" / split / c / "0.png")
    for i in range(3):
        image(source / "stl10-standin" / "unlabeled" / f"{i}.png")
    (source / "cifar10").mkdir()
    target = rehearse.offline_data(source, tmp_path / "rehearsal", unlabeled=7)
    assert (target / "cifar10").resolve() == (source / "cifar10").resolve()
    assert len(list((target / "stl10" / "unlabeled").iterdir())) == 7
    assert "NOT STL-10" in data.read_origin(target / "stl10")
    monkeypatch.setattr(images, "decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    unlabeled = data.load("stl10", "unlabeled", target, verbose=False)   # from the cache written for the links
    standin = data.load("stl10", "unlabeled", source, folder="stl10-standin", verbose=False)
    assert torch.equal(unlabeled.images, standin.images[torch.arange(7) % 3]) and (unlabeled.labels == -1).all()
    train = data.load("stl10", "train", target, verbose=False)
    assert len(train) == 10 and data.is_standin(train) and data.is_standin(unlabeled)


def test_the_gpu_checks_run_on_this_machine_too(monkeypatch):
    # (on a GPU they are the point: CUDA's RNG states at a resume, CUDA's nondeterministic kernels)
    result = rehearse.check_resume("cpu")
    assert result["ok"] and result["largest_difference"] == 0.0   # the CPU resumes exactly
    monkeypatch.setattr(torch.optim.SGD, "load_state_dict", lambda self, state: None)   # momentum lost at a resume
    result = rehearse.check_resume("cpu")
    assert not result["ok"] and result["largest_difference"] > 0
    monkeypatch.undo()
    result = rehearse.check_deterministic("cpu")
    assert result["warnings"] == [] and not torch.are_deterministic_algorithms_enabled()   # the switch is put back


# ----------------------------------------------------------------------------- the rehearsals themselves

@pytest.mark.rehearsal
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_full_profile_rehearses_within_colabs_memory(notebook, tmp_path_factory):
    out = Path(os.environ.get("COURSE_REHEARSAL_OUT") or tmp_path_factory.mktemp("rehearsal"))
    data_dir = rehearse.offline_data(runtime.default_data_dir(), out / "data")
    result = rehearse.rehearse_notebook(notebook, out / notebook.stem, batches=1, data_dir=data_dir, timeout=1800,
                                        limit_gb=rehearse.COLAB_VM_GB)
    rehearse.print_report(result)
    (out / f"{notebook.stem}.json").write_text(json.dumps(result, indent=1))
    assert result["ok"], result["error"]
    assert result["ran"] == result["code_cells"]
