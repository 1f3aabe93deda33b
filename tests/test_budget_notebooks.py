"""Every notebook's full profile is estimated at 60 minutes or less on a T4, by its own budget cell.

The budget cell (tagged `budget`) builds a `budget.Plan` of everything the profile does that takes time
(training, forward passes that only evaluate or explain, work on the CPU) and sets ESTIMATE. Each notebook
is executed at the full profile up to that cell, on the full profile's data (every dataset at its full
size: the whole data pack, and STL-10's 100,000 unlabeled images made of the stand-in's, as a rehearsal
has them), beside the rest of the session (tests/executions.py), and ESTIMATE is read here.
"""
import nbformat
import pytest

import executions
from helpers import data

T4_LIMIT_MINUTES = 60


@pytest.mark.parametrize("notebook", executions.NOTEBOOKS, ids=lambda p: p.stem)
def test_the_full_profile_fits_one_colab_session_on_a_t4(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert executions.budget_cell(nb) < executions.first_training_cell(nb), "the budget is printed before the first training cell"
    run = executions.result(("budget", notebook.stem))
    estimate = run["estimate"]
    assert 0 < estimate["t4_minutes"] <= T4_LIMIT_MINUTES, f"{notebook.name}: {estimate}"
    # every part counted: training, the forward passes that only evaluate, and the CPU's work (at least the data)
    assert estimate["train_minutes"] > 0 and estimate["inference_minutes"] > 0 and estimate["host_minutes"] > 0
    # on the full profile's data: Tiny ImageNet's 500 training images per class, STL-10's 100,000 unlabeled
    tiny = len(data.load("tiny-imagenet", "train", run["data_dir"], verbose=False))
    assert tiny == data.SPLIT_SIZES["tiny-imagenet"]["train"], f"the data pack is partial ({tiny} Tiny ImageNet images)"
    assert len(data.load("stl10", "unlabeled", run["data_dir"], verbose=False)) == data.SPLIT_SIZES["stl10"]["unlabeled"]
