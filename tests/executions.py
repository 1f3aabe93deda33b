"""Notebook executions that run beside the test session, on the machine's second core, in a process of their own.

pytest executes the notebooks under nbval, then runs the tests, one thing at a time. Three sets of
executions that tests only read afterwards run meanwhile in a worker process, one kernel at a time:
every notebook's full profile executed up to its budget cell (tests/test_budget_notebooks.py), every
blank student release graded at the ci profile (tests/test_grading.py), and every notebook run with no
gradient reaching its optimizers (tests/test_notebooks_learn.py). They run in a worker process, so that
nothing a test patches in this one for a while (the environment, the course's root, a module's function)
reaches them, and each kernel starts from the environment the session began with. Every kernel of the
session has one CPU thread (tests/conftest.py), so the two streams of work never share a core. `tests/conftest.py` submits what the
collected tests will read when collection ends; a test run on its own submits its execution itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# The environment every execution starts from: this process's when the session began (the worker is handed
# this copy: read later, it could hold a value a test has set for itself meanwhile with monkeypatch.setenv).
ENV = dict(os.environ)

_pool: ProcessPoolExecutor | None = None
_futures: dict[tuple, Future] = {}
_folder: Path | None = None
_own_folder = False   # made here (mkdtemp), so removed here at the end
_made: dict[str, object] = {}
_making = threading.Lock()


def once(name: str, make):
    """`make()`'s result, made once per session (what several executions share: the release, the full data).
    Called from inside a job: a job that queued another behind itself on the one worker would wait for good."""
    with _making:
        if name not in _made:
            _made[name] = make()
        return _made[name]


def folder() -> Path:
    """A temporary folder for this session's executions (removed at the end of the session); the worker
    process is told which (COURSE_EXECUTIONS_FOLDER)."""
    global _folder, _own_folder
    if _folder is None:
        given = os.environ.get("COURSE_EXECUTIONS_FOLDER")
        _folder, _own_folder = (Path(given), False) if given else (Path(tempfile.mkdtemp(prefix="course-executions-")), True)
    return _folder


def _start_worker(base: str, env: dict[str, str]) -> None:
    os.environ["COURSE_EXECUTIONS_FOLDER"] = base
    ENV.clear()
    ENV.update(env)


def submit(key: tuple, fn, *args, **kwargs) -> Future:
    global _pool
    if _pool is None:   # spawned, not forked: this process holds torch's threads and the tests' patches
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_start_worker, initargs=(str(folder()), ENV))
    if key not in _futures:
        _futures[key] = _pool.submit(fn, *args, **kwargs)
    return _futures[key]


def result(key: tuple):
    """What the execution `key` gave; it is submitted now if nothing submitted it before."""
    if key not in _futures:
        JOBS[key[0]](key[1])
    return _futures[key].result()


def shutdown() -> None:
    global _pool, _folder
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
    if _folder is not None and _own_folder:
        shutil.rmtree(_folder, ignore_errors=True)
    _folder = None
    _made.clear()


# ----------------------------------------------------------------------------- the blank student releases

def release() -> Path:
    """The student versions, written once (in the worker)."""
    return once("release", _release)


def _release() -> Path:
    from helpers.course import grading
    out = folder() / "release"
    grading.release(out)
    return out


def _grade_blank(stem: str) -> dict:
    from helpers.course import grading
    released = release()
    out = folder() / "blank" / stem
    executed = out / "blank.ipynb"
    out.mkdir(parents=True, exist_ok=True)
    report = grading.grade(released / f"{stem}.ipynb", instructor=ROOT / "notebooks" / f"{stem}.ipynb",
                           output_dir=out / "runs", executed=executed, env=ENV)
    return {"report": report, "out": out / "runs", "nb": nbformat.read(executed, as_version=4)}


def submit_blank(stem: str) -> Future:
    return submit(("blank", stem), _grade_blank, stem)


# ----------------------------------------------------------------------------- the full profiles' budgets

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


def _full_data() -> Path:
    """The data a full profile loads, at full size: every dataset of the data pack, and STL-10's 100,000
    unlabeled images made of the stand-in's, as a rehearsal has them."""
    from helpers.course import rehearse
    return rehearse.offline_data(Path(ENV.get("COURSE_DATA_DIR") or ROOT / "data"), folder() / "full-data")


def _budget(stem: str) -> dict:
    """Execute the notebook at the full profile up to its budget cell (the device timing of training steps
    switched off: a full-size step on this CPU would only cost time) and read ESTIMATE."""
    import nbclient
    data_dir = once("full-data", _full_data)
    notebook = ROOT / "notebooks" / f"{stem}.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    index = budget_cell(nb)
    nb.cells = [new_code_cell(NO_TIMING)] + nb.cells[: index + 1] + [new_code_cell(READ)]
    env = {k: v for k, v in ENV.items() if k != "COURSE_REHEARSAL"}
    env.update(COURSE_PROFILE="full", COURSE_DATA_DIR=str(data_dir), COURSE_OUTPUT_DIR=str(folder() / "budget" / stem))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute(env=env)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    return {"estimate": json.loads(printed.split("ESTIMATE=", 1)[1]), "data_dir": data_dir}


def submit_budget(stem: str) -> Future:
    return submit(("budget", stem), _budget, stem)


# ----------------------------------------------------------------------------- the no-learning sabotage

SABOTAGE = '''
from torch.optim.optimizer import register_optimizer_step_pre_hook

def _no_learning(optimizer, args, kwargs):   # test_notebooks_learn: no gradient reaches any optimizer
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None

_sabotage = register_optimizer_step_pre_hook(_no_learning)
'''


def _sabotaged(stem: str) -> dict:
    """Execute the notebook at the ci profile with every gradient cut off before each optimizer step; the
    error that stopped it (its ename and message), or no error at all."""
    import nbclient
    notebook = ROOT / "notebooks" / f"{stem}.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, new_code_cell(SABOTAGE))
    env = {**ENV, "COURSE_PROFILE": "ci", "COURSE_OUTPUT_DIR": str(folder() / "sabotage" / stem)}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        return {"ename": err.ename, "error": str(err)[-2000:]}
    except Exception as err:   # a timeout, a dead kernel: said as it is
        return {"ename": type(err).__name__, "error": str(err)[-2000:]}
    return {"ename": None, "error": ""}


def submit_sabotaged(stem: str) -> Future:
    return submit(("sabotaged", stem), _sabotaged, stem)


JOBS = {"blank": submit_blank, "budget": submit_budget, "sabotaged": submit_sabotaged}


def first_training_cell(nb) -> int:
    return next(i for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and re.search(r"\btrain\.fit\(|pretrain_tiny_imagenet\(", c.source))
