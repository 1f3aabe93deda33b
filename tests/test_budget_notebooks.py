"""Every notebook's full profile is estimated at 60 minutes or less on a T4, by its own budget cell.

The budget cell (tagged `budget`) builds a `budget.Plan` of everything the profile does that takes time
(training, forward passes that only evaluate or explain, work on the CPU) and sets ESTIMATE; this test
executes each notebook at the full profile up to that cell, with the device timing of training steps
switched off (a full-size step on this CPU would only cost time), and reads ESTIMATE. It runs on the full
profile's data: every dataset at its full size (the whole data pack, and STL-10's 100,000 unlabeled
images made of the stand-in's, as a rehearsal has them), so that the counts are the full profile's.
"""
import json
import re
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
T4_LIMIT_MINUTES = 60

NO_TIMING = '''
from helpers.course import budget as _budget
_report = _budget.Plan.report
_budget.Plan.report = lambda self, device, **kwargs: _report(self, device, **{**kwargs, "measure": False})
'''
READ = ('import json; print("ESTIMATE=" + json.dumps({k: ESTIMATE[k] for k in ("pflop", "t4_minutes", "train_minutes", '
        '"inference_minutes", "host_minutes")}))')


def budget_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "budget" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'budget'"
    return tagged[0]


@pytest.fixture(scope="module")
def full_data(tmp_path_factory):
    """The data a full profile loads, at full size (see the module docstring)."""
    from helpers import runtime
    from helpers.course import rehearse
    return rehearse.offline_data(runtime.default_data_dir(), tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_full_profile_fits_one_colab_session_on_a_t4(notebook, tmp_path, monkeypatch, full_data):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.delenv("COURSE_REHEARSAL", raising=False)
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_DATA_DIR", str(full_data))
    nb = nbformat.read(notebook, as_version=4)
    index = budget_cell(nb)
    first_training = next(i for i, c in enumerate(nb.cells)
                          if c.cell_type == "code" and re.search(r"\btrain\.fit\(|pretrain_tiny_imagenet\(", c.source))
    assert index < first_training, "the budget is printed before the first training cell"
    nb.cells = [new_code_cell(NO_TIMING)] + nb.cells[: index + 1] + [new_code_cell(READ)]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    estimate = json.loads(printed.split("ESTIMATE=", 1)[1])
    assert 0 < estimate["t4_minutes"] <= T4_LIMIT_MINUTES, f"{notebook.name}: {estimate}"
    # every part counted: training, the forward passes that only evaluate, and the CPU's work (at least the data)
    assert estimate["train_minutes"] > 0 and estimate["inference_minutes"] > 0 and estimate["host_minutes"] > 0
    # on the full profile's data: Tiny ImageNet's 500 training images per class, STL-10's 100,000 unlabeled
    from helpers import data
    tiny = len(data.load("tiny-imagenet", "train", full_data, verbose=False))
    assert tiny == data.SPLIT_SIZES["tiny-imagenet"]["train"], f"the data pack is partial ({tiny} Tiny ImageNet images)"
