"""Every notebook's ci profile must fail one of its own learning checks when its networks cannot learn.

The sabotage cuts every gradient off before each optimizer step (a global step pre-hook), so weights
never change; BatchNorm statistics, data loading, evaluation and plotting all still run. A notebook
whose ci assertions hold for a network that never learned fails this test. The notebooks are found by
their names, so a new notebook is held to the same rule the day it is added.
"""
from pathlib import Path

import pytest
import torch

import executions

from helpers import checks, loader, models, train

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

SABOTAGE = executions.SABOTAGE


def test_the_sabotage_stops_every_weight_but_not_the_loop(tiny_data):
    torch.manual_seed(0)
    model = models.resnet18(num_classes=4, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    before = checks.snapshot(model)
    namespace = {}
    exec(SABOTAGE, namespace)
    try:
        batches = loader.GpuBatches(tiny_data, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
        for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
                    torch.optim.AdamW(model.parameters(), lr=1e-3)):
            history = train.fit(model, batches, 2, opt, progress=False)
            assert len(history) == 2
        with pytest.raises(checks.LearningCheckError, match="did not change a single parameter"):
            checks.moved(before, model, what="sabotaged")
    finally:
        namespace["_sabotage"].remove()


def test_the_notebooks_checked_are_every_numbered_notebook():
    # numbered from 01 without a gap: a notebook renamed out of the pattern would escape this test's check
    assert len(NOTEBOOKS) >= 7 and [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert {p.name for p in NOTEBOOKS} == {p.name for p in NOTEBOOKS[0].parent.glob("*.ipynb")}, "a notebook escapes the pattern"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_whose_networks_cannot_learn_fails_its_own_check(notebook):
    run = executions.result(("sabotaged", notebook.stem))   # executed beside the session (tests/executions.py)
    assert run["ename"] is not None, f"{notebook.name} ran to the end with no gradient reaching any optimizer"
    assert run["ename"] == "LearningCheckError", f"{notebook.name} failed otherwise: {run['error']}"
