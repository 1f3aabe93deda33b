"""The small-profile outputs stored in notebooks 01-04 are real, current and clean, and the README's
small-profile column says exactly what their results records say.

`course run --profile small` executes a notebook and records its results and run time; `course store`
copies the outputs into the notebook (with a hash of its code) and the records into
notebooks/results/small/. These tests need no execution: they read what was stored.
"""
import json
import re

import nbformat
import pytest

from helpers import course
from helpers.results import PERCENT_WORDS

ROOT = course.project_root()
STORED = ROOT / "notebooks" / "results" / "small"
WITH_STORED_OUTPUTS = ["01_baseline", "02_augmentation", "03_pretrained_vs_scratch", "04_triplet_and_center_loss",
                       "05_contrastive_stl10", "06_greedy_pretraining", "07_class_activation_maps"]
SMALL_COLUMN = "ours, small profile (2-core CPU, measured)"


def run_times():
    return json.loads((STORED / course.RUN_TIMES).read_text())


def records(stem):
    return json.loads((STORED / f"{stem}.json").read_text())


@pytest.mark.parametrize("stem", WITH_STORED_OUTPUTS)
def test_the_stored_outputs_are_a_finished_small_run_of_the_current_code(stem):
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("course_stored")
    assert stored, f"{path.name} has no stored outputs: `course run --profile small {stem[:2]}`, then `course store`"
    assert stored["profile"] == "small"
    assert stored["code"] == course.code_fingerprint(nb), (
        f"{path.name}'s code changed after its outputs were stored: run `course run --profile small {stem[:2]}` "
        f"and `course store runs/small {stem[:2]}` again")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3, "the plots are stored"
    outputs = course.outputs_text(nb)
    assert not course.absolute_paths(outputs), course.absolute_paths(outputs)[:3]
    assert len(path.read_bytes()) <= course.MAX_NOTEBOOK_BYTES
    first = next(c for c in nb.cells if c.cell_type == "markdown").source
    run = run_times()[stem]
    assert run["profile"] == "small" and run["ok"] and run["minutes"] <= 20, run
    assert {k: run[k] for k in ("device", "date", "minutes")} == {k: stored[k] for k in ("device", "date", "minutes")}
    assert f"{course.STORED_NOTE} The outputs below come from the `small` profile on a 2-core CPU" in first
    assert f"run on {run['date']}" in first and f"in {run['minutes']:.1f} minutes" in first
    rows = records(stem)
    assert rows and all(r["profile"] == "small" and r["notebook"] == stem for r in rows)


def test_machine_paths_are_looked_for_in_text_outputs_not_in_images():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()")])
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBO/srv/uUP/PEPP+abc==",
                                                                        "text/plain": "<Figure size 640x480>"})]
    assert not course.absolute_paths(course.outputs_text(nb))          # base64 letters, not a path
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="saved /root/runs/x.pt here"))
    assert course.absolute_paths(course.outputs_text(nb)) == ["/root/runs/x.pt"]


def test_absolute_paths_are_found_and_placeholders_are_not():
    assert course.absolute_paths("data: /root/.cache/dl-course/data | seed: 0") == ["/root/.cache/dl-course/data"]
    assert course.absolute_paths("saved /tmp/x/ckpt-1.pt") and course.absolute_paths("(/home/me/runs)")
    assert not course.absolute_paths("data: $COURSE_DATA_DIR/cifar10 in <course>/runs/small, ~/x, 1/2/3, a/tmp/b")


def _readme_small_cells():
    lines = [l for l in (ROOT / "README.md").read_text().splitlines() if l.startswith("|")]
    header = next(l for l in lines if SMALL_COLUMN in l)
    columns = [c.strip() for c in header.strip("|").split("|")]
    col = columns.index(SMALL_COLUMN)
    start = lines.index(header)
    cells = {}
    for line in lines[start + 2:]:
        values = [c.strip() for c in line.strip("|").split("|")]
        if len(values) != len(columns):
            break
        cells[values[0]] = values[col]
    return cells


def test_the_readme_small_column_equals_the_stored_records():
    cells = _readme_small_cells()
    for stem in WITH_STORED_OUTPUTS:
        cell = cells.get(stem[:2])
        assert cell, f"the README's notebook table has no {SMALL_COLUMN!r} figures for {stem}"
        recorded = {f"{100 * v:.2f}" for r in records(stem) for k, v in r.items()
                    if isinstance(v, float) and any(w in k for w in PERCENT_WORDS)}
        shown = re.findall(r"(\d+\.\d\d)%", cell)
        assert len(shown) >= 2, f"{stem}: {cell!r}"
        assert set(shown) <= recorded, f"{stem}: the README shows {sorted(set(shown) - recorded)}, not in its records"
        minutes = re.findall(r"(\d+\.\d) min", cell)
        assert minutes == [f"{run_times()[stem]['minutes']:.1f}"], f"{stem}: run time {minutes} in the README"
