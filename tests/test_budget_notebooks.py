"""Every notebook's full profile is estimated at 60 minutes or less on a T4, by its own budget cell.

The budget cell (tagged `budget`) builds a `budget.Plan` of every training run of the profile and
sets ESTIMATE; this test executes each notebook at the full profile up to that cell, with the
device timing switched off (a full-size step on this CPU would only cost time), and reads ESTIMATE.
"""
import json
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
T4_LIMIT_MINUTES = 60

NO_TIMING = '''
from helpers import budget as _budget
_report = _budget.Plan.report
_budget.Plan.report = lambda self, device, **kwargs: _report(self, device, **{**kwargs, "measure": False})
'''
READ = 'import json; print("ESTIMATE=" + json.dumps({k: ESTIMATE[k] for k in ("pflop", "t4_minutes")}))'


def budget_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "budget" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'budget'"
    return tagged[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_full_profile_fits_one_colab_session_on_a_t4(notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    nb = nbformat.read(notebook, as_version=4)
    index = budget_cell(nb)
    first_training = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "fit(" in c.source)
    assert index < first_training, "the budget is printed before the first training cell"
    nb.cells = [new_code_cell(NO_TIMING)] + nb.cells[: index + 1] + [new_code_cell(READ)]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    estimate = json.loads(printed.split("ESTIMATE=", 1)[1])
    assert 0 < estimate["t4_minutes"] <= T4_LIMIT_MINUTES, f"{notebook.name}: {estimate}"
