"""pytest's view of the notebooks: nbval executes each one at the ci profile (see the README's test
command), and this file keeps what that execution gave so that no test has to execute the notebook
again for the same answer.

For every notebook nbval runs, the session's config gets, under `course_nbval_runs[<resolved path>]`:
  * `source`: the notebook as read, and `cells`: for each code cell nbval ran (numbered from 0 among
    the code cells), its outputs and its start and end times, which
    `helpers.course.grading.executed_notebook(source, cells)` turns into the executed notebook;
  * `n_code`: the number of code cells (nbval ran them all when `len(cells) == n_code`);
  * `broken`: a cell nbval could not run to the end without an error output to show for it (a dead
    kernel, a timeout, a skip): that execution cannot be graded, and is not reused;
  * `out`: the notebook's own fresh output folder (records and checkpoints), inside COURSE_OUTPUT_DIR
    when it is set, so that a run never resumes an older run's checkpoints and its records are its own;
  * `profile`: the COURSE_PROFILE it ran at.
tests/test_grading.py grades the instructor's version from this execution when it is there (pytest
runs `notebooks` before `tests`, see pyproject.toml), and executes the notebook itself otherwise.
"""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _nbval_cell(item) -> bool:
    return hasattr(item, "test_outputs") and hasattr(item, "cell_num")


def _key(item) -> str:
    return str(Path(str(item.parent.fspath)).resolve())   # the notebook's resolved path


def pytest_configure(config):
    config.course_nbval_runs = {}


def pytest_collection_modifyitems(items):
    for item in items:
        if _nbval_cell(item):
            item.add_marker("notebooks")   # the layer of tests that execute a notebook (tests/conftest.py)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Before nbval starts a notebook's kernel (in its first cell's setup): a fresh output folder."""
    if not _nbval_cell(item):
        yield
        return
    runs = item.config.course_nbval_runs
    key = _key(item)
    saved = os.environ.get("COURSE_OUTPUT_DIR")
    if key not in runs:
        if saved:
            Path(saved).mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix=f"nbval-{Path(key).stem}-", dir=saved or None))
        runs[key] = SimpleNamespace(source=item.parent.nb, cells={}, out=out, profile=os.environ.get("COURSE_PROFILE"),
                                    n_code=sum(c.cell_type == "code" for c in item.parent.nb.cells), broken=False)
        os.environ["COURSE_OUTPUT_DIR"] = str(out)
    try:
        yield   # the kernel starts here, for the first cell, and inherits the folder
    finally:
        if saved is None:
            os.environ.pop("COURSE_OUTPUT_DIR", None)
        else:
            os.environ["COURSE_OUTPUT_DIR"] = saved


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _nbval_cell(item):
        yield
        return
    started = _now()
    outcome = yield
    run = item.config.course_nbval_runs[_key(item)]
    outputs = item.test_outputs
    shown = outputs is not None and any(o.get("output_type") == "error" for o in outputs)
    if outputs is None or (outcome.excinfo is not None and not shown):
        run.broken = True   # it failed without an error in its outputs: grading this execution would miss that
    run.cells[item.cell_num] = (list(outputs or []), started, _now())
