"""Student versions and grading, with nbgrader's cell format and preprocessors, without its server.

The notebooks in `notebooks/` are the instructor's version. An exercise there is two cells (see the
docs/instructors.md):
  * a solution cell (nbgrader metadata `solution: true`), whose answer sits between
    `### BEGIN SOLUTION` and `### END SOLUTION`;
  * an autograded test cell (`grade: true`, `locked: true`, `points`), whose checks an answer could
    fake sit between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`.

`release` runs nbgrader's own preprocessors (those of `nbgrader generate_assignment` that need no
gradebook database) to write the student version. `grade` puts the instructor's test cells back into
a student's notebook (hidden tests included), executes it at the ci profile without stopping at
errors, and scores each test cell with nbgrader's own rule (`nbgrader.utils.determine_grade`): full
points if the cell ran without an error or stderr output, none otherwise.

nbgrader is the `instructor` extra (`pip install -e ".[instructor]"`); students never need it.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import runtime
from .notebooks import point_text

STORED_NOTE = re.compile(r"\*\*Stored outputs\.\*\*[^\n]*(\n[^\n]+)*")   # `course store`'s paragraph
BADGE = re.compile(r"^\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)\n*")   # it opens the instructor's copy
STUDENT_NOTE = ("**Student version.** Each exercise is a cell with `# YOUR CODE HERE` and "
                "`raise NotImplementedError()`: replace those two lines with your answer. The cell after it "
                "tests your answer; more tests, hidden here, run when your notebook is graded. Until an "
                "exercise is done the rest of the notebook runs without it.")


def _nbgrader():
    try:
        import nbgrader.preprocessors as pre
        import nbgrader.utils as utils
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "course release and course grade need nbgrader, which is in the course's `instructor` extra: "
            "run `pip install -e \".[instructor]\"` in the course folder (or "
            "`conda env create -f environment.yml`, which includes it)") from None
    return pre, utils


def instructor_notebooks() -> list[Path]:
    return sorted((runtime.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """The autograded test cells of `nb`, by grade_id, in notebook order."""
    _, utils = _nbgrader()
    return {c.metadata.nbgrader["grade_id"]: c for c in nb.cells
            if utils.is_grade(c) and not utils.is_solution(c) and c.cell_type == "code"}


def has_exercises(nb) -> bool:
    return bool(test_cells(nb))


# ----------------------------------------------------------------------------- release

def student_version(nb, repo: str | None = None, branch: str = "main"):
    """The student version of an instructor notebook: nbgrader's preprocessors, in the order
    `nbgrader generate_assignment` runs them (less the two that need its database and header file):
    lock the test cells, replace each solution by a stub that raises NotImplementedError, clear
    outputs, remove the hidden tests, record checksums (which tell nbgrader an answer is untouched).

    repo ("you/student-repo"): point the Colab badge and the setup cell's COURSE_REPO at the students'
    repository; without it the badge is dropped (it would open the instructor's copy)."""
    pre, _ = _nbgrader()
    nb = nbformat.from_dict(dict(nb))   # a copy: the caller's notebook stays the instructor's
    resources: dict = {}
    for step in (pre.LockCells, pre.ClearSolutions, pre.ClearOutput, pre.CheckCellMetadata,
                 pre.ComputeChecksums, pre.ClearHiddenTests, pre.ClearMarkScheme, pre.ComputeChecksums,
                 pre.CheckCellMetadata):
        nb, resources = step().preprocess(nb, resources)
    # The instructor's copy carries a small run's outputs and says so; the student's has no outputs.
    nb.metadata.pop("course_stored", None)
    if repo:
        for cell in nb.cells:
            cell.source = point_text(cell.source, repo, branch)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is not None:
        text = first.source if repo else BADGE.sub("", first.source)
        first.source = STORED_NOTE.sub(STUDENT_NOTE, text) if STORED_NOTE.search(text) else text + "\n\n" + STUDENT_NOTE
    return nb


def release(out_dir: str | Path, selected: list[str] | None = None, *, repo: str | None = None,
            branch: str = "main") -> list[Path]:
    """Write the student version of every instructor notebook with exercises (or of `selected`,
    number prefixes) to `out_dir`, and nbgrader's settings for them (`nbgrader_config.py`: the ci profile, a
    cell timeout); return the notebooks written."""
    out_dir = Path(out_dir)
    if out_dir.resolve() == (runtime.project_root() / "notebooks").resolve():
        raise SystemExit(f"{out_dir} holds the instructor's notebooks: the student versions would replace "
                         f"the solutions. Release into another folder, e.g. `course release release/`.")
    chosen = [nb for nb in instructor_notebooks() if not selected or any(nb.name.startswith(s) for s in selected)]
    if selected and not chosen:
        raise SystemExit(f"no notebook in {runtime.project_root() / 'notebooks'} starts with {selected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in chosen:
        nb = nbformat.read(path, as_version=4)
        if not has_exercises(nb):
            continue
        target = out_dir / path.name
        nbformat.write(student_version(nb, repo, branch), target)
        written.append(target)
    if written:   # beside them: the ci profile and a cell timeout for nbgrader's Validate button and autograder
        (out_dir / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    return written


GRADING_CELL_TIMEOUT = 600   # seconds a cell may run when graded (`course grade`, nbgrader's own runs)


NBGRADER_CONFIG = f'''"""nbgrader's settings for this course, read by `nbgrader validate` (the Validate button) and nbgrader's
autograder when they run in this folder (written by `course release`)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
# the notebooks' ci profile: tiny real subsets, on the CPU, in seconds; without it a notebook runs its full profile
os.environ.setdefault("COURSE_PROFILE", "ci")
# seconds a cell may run (nbgrader's default, 30, is shorter than loading a dataset the first time on a busy
# machine); a cell past it is interrupted, and the next cells still run
c.ExecutePreprocessor.timeout = {GRADING_CELL_TIMEOUT}
c.ExecutePreprocessor.interrupt_on_timeout = True
'''


# ----------------------------------------------------------------------------- grade

@dataclass
class Grade:
    grade_id: str
    score: float
    max_score: float
    error: str = ""   # the failing test's exception, or why the cell could not be graded


@dataclass
class Report:
    notebook: str
    grades: list[Grade]
    other_errors: list[str] = field(default_factory=list)   # cells outside the tests that raised
    notes: list[str] = field(default_factory=list)          # what the grader changed in the notebook

    @property
    def score(self) -> float:
        return sum(g.score for g in self.grades)

    @property
    def max_score(self) -> float:
        return sum(g.max_score for g in self.grades)

    def __str__(self) -> str:
        width = max([len(g.grade_id) for g in self.grades] + [len("total")])
        lines = [f"{self.notebook}: graded at the ci profile"]
        for g in self.grades:
            line = f"  {g.grade_id:{width}}  {g.score:g} / {g.max_score:g}"
            lines.append(line + (f"   {g.error}" if g.error else ""))
        lines.append(f"  {'total':{width}}  {self.score:g} / {self.max_score:g}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.other_errors:
            lines.append("  cells outside the exercises that raised an error:")
            lines += [f"    {e}" for e in self.other_errors]
        return "\n".join(lines)


def _instructor_for(student, path: Path) -> tuple[Path, object]:
    """The instructor notebook a student's notebook came from: the one of the same name, else the
    one whose test cells the student's notebook carries."""
    candidates = instructor_notebooks()
    for nb_path in candidates:
        if nb_path.name == path.name:
            return nb_path, nbformat.read(nb_path, as_version=4)
    ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in student.cells} - {None}
    for nb_path in candidates:
        nb = nbformat.read(nb_path, as_version=4)
        if ids and ids & set(test_cells(nb)):
            return nb_path, nb
    raise FileNotFoundError(
        f"{path} is not a student version of any notebook in {runtime.project_root() / 'notebooks'}: no notebook "
        f"there has its name or its exercises. Keep the released file name (e.g. 01_baseline.ipynb).")


def _error_text(cell) -> str:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}".strip().splitlines()[0][:300]
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and out.name == "stderr":
            return "wrote to stderr: " + out.text.strip().splitlines()[-1][:300] if out.text.strip() else "wrote to stderr"
    return ""


def grade(notebook: str | Path, *, instructor: str | Path | None = None, timeout: int | None = GRADING_CELL_TIMEOUT,
          output_dir: str | Path | None = None, executed: str | Path | None = None,
          env: dict[str, str] | None = None) -> Report:
    """Grade a student's notebook: restore the instructor's test cells (hidden tests included), run
    every cell at the ci profile on this machine, going on after errors, and score each test cell.

    instructor: the instructor notebook it was released from (default: the one in `notebooks/` of the
    same name). output_dir: where the run's checkpoints and results go (default: a temporary folder
    that is then removed). executed: also write the executed notebook there, for the student's feedback.
    env: the environment the kernel starts from (default: this process's, as it is now)."""
    import nbclient

    _nbgrader()   # fails early, with the install hint, when nbgrader is missing
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}: pass the path of a student's .ipynb file")
    student = _read_submission(path)
    source = (nbformat.read(instructor, as_version=4) if instructor else _instructor_for(student, path)[1])
    tests = test_cells(source)
    present, cells, notes = set(), [], []
    for cell in student.cells:   # a student may have edited a test: the instructor's wins
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in tests:
            if grade_id in present:   # a copied test cell (Colab's "duplicate" keeps its id) counts once
                notes.append(f"a second copy of the test cell {grade_id} was removed")
                continue
            cell = nbformat.from_dict(dict(tests[grade_id]))
            present.add(grade_id)
        if cell.cell_type == "code":   # nothing from an earlier run counts: a cell scores only if it runs now
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    student.cells = cells

    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        out = Path(output_dir) if output_dir else Path(tmp)
        # the kernel's own environment (this process's is left alone: graders may run side by side)
        env = {**(os.environ if env is None else env), "COURSE_PROFILE": "ci", "COURSE_OUTPUT_DIR": str(out.resolve())}
        # A cell past `timeout` is interrupted (a KeyboardInterrupt error in that cell) and the rest runs.
        # A cell that survives its interrupt (a bare `except:` around a loop) is killed with its kernel
        # KILL_GRACE seconds later: the watchdog below.
        running: dict = {}   # the cell sent to the kernel last (recorded before the kernel sees it), and when
        client = nbclient.NotebookClient(
            student, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
            on_cell_execute=lambda cell, cell_index: running.update(cell=cell, began=time.monotonic()),
            resources={"metadata": {"path": str(path.resolve().parent)}})
        try:
            with _watchdog(client, running, timeout):
                client.execute(env=env)
        except Exception as err:   # the kernel died: the cell it was running fails, later cells did not run
            died = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            cell = running.get("cell")
            if running.get("killed"):
                died = (f"a cell ran {timeout} s and went on {KILL_GRACE} s after its interrupt: its kernel was "
                        f"killed")
            if cell is not None and not any(o.output_type == "error" for o in cell.outputs):
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename=type(err).__name__, evalue="the kernel stopped while this cell ran"
                    + (f" (killed: it ran past its {timeout} s and ignored the interrupt)" if running.get("killed")
                       else ""), traceback=[]))
        else:
            died = ""
    if executed:
        nbformat.write(student, executed)
    return score(student, tests, name=path.name, notes=notes, died=died)


KILL_GRACE = 30   # seconds a cell gets after its interrupt before its kernel is killed


def _read_submission(path: Path):
    """A student's file as a notebook, or a ValueError naming it: an empty, truncated or foreign file (`{}`, a
    Python script renamed .ipynb) must not stop the grading of the submissions after it."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:   # nbformat raises JSON, schema and version errors of several kinds
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ValueError(f"{path} is not a notebook that can be graded ({type(err).__name__}: {first}); ask the "
                         f"student for the .ipynb file the course released, saved from Jupyter or Colab") from None


@contextlib.contextmanager
def _watchdog(client, running: dict, timeout: int | None, grace: float | None = None):
    """Kill the kernel of `client` when the cell it runs has gone on `grace` seconds (KILL_GRACE) past `timeout`:
    nbclient interrupts a cell at its timeout, and a cell that catches the interrupt would run for ever."""
    if timeout is None:
        yield
        return
    grace = KILL_GRACE if grace is None else grace
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            began = running.get("began")
            if began is not None and time.monotonic() - began > timeout + grace:
                process = getattr(getattr(client.km, "provisioner", None), "process", None)
                if process is not None and process.poll() is None:
                    running["killed"] = True
                    process.kill()
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def score(executed, tests: dict, *, name: str, notes: list[str] | tuple = (), died: str = "") -> Report:
    """Score an executed notebook: each of `tests` (grade id -> the instructor's test cell) that ran
    without an error gets its points; a test cell that did not run, or is missing, gets none.
    died: why the kernel stopped early, if it did (named in the grades of the cells that never ran)."""
    _, utils = _nbgrader()
    grades, other, present = [], [], set()
    for i, cell in enumerate(executed.cells):
        if cell.cell_type != "code":
            continue
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in tests:
            present.add(grade_id)
            ran = cell.get("execution_count") is not None
            points, max_score = utils.determine_grade(cell)
            if not ran:
                points = 0
            error = _error_text(cell) or ("" if ran else f"did not run ({died or 'an earlier cell stopped the kernel'})")
            grades.append(Grade(grade_id, float(points or 0), float(max_score), error))
        elif _error_text(cell).split(":")[0] not in ("", "wrote to stderr"):
            other.append(f"cell {i}: {_error_text(cell)}")
    for grade_id, cell in tests.items():   # a deleted test cell scores nothing
        if grade_id not in present:
            grades.append(Grade(grade_id, 0.0, float(cell.metadata.nbgrader["points"]),
                                "the test cell was deleted from the notebook"))
    return Report(name, grades, other, list(notes))


def executed_notebook(nb, cells: dict[int, tuple[list, str, str]]):
    """`nb` as it would read after an execution in which the code cell numbered k (counting code cells
    only, from 0) gave `cells[k] = (outputs, started, finished)` (ISO times); a code cell missing from
    `cells` did not run. For executions made by something other than nbclient (nbval's, in CI)."""
    nb = nbformat.from_dict(nb)   # a copy
    k = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if k in cells:
            outputs, started, finished = cells[k]
            cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs]
            cell.execution_count = k + 1
            cell.metadata["execution"] = {"iopub.execute_input": started, "shell.execute_reply": finished}
        else:
            cell.outputs, cell.execution_count = [], None
        k += 1
    return nb
