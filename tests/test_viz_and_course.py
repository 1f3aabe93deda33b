import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from helpers import runtime, viz  # noqa: E402
from helpers.course import cli, notebooks, store  # noqa: E402


def test_history_plot_draws_train_and_validation_curves():
    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.1 * e, "val_loss": 1.2 / e, "val_top1": 0.09 * e}
               for e in range(1, 4)]
    axes = viz.plot_history(history)
    labels = [[line.get_label() for line in ax.get_lines()] for ax in axes]
    assert labels == [["train loss", "val loss"], ["train accuracy", "val top1"]]
    np.testing.assert_allclose(axes[1].get_lines()[1].get_ydata(), [0.09, 0.18, 0.27])
    plt.close("all")


def test_confusion_heatmap_has_class_names_and_normalised_rows():
    ax = viz.plot_confusion(np.array([[3, 1], [0, 4]]), ["cat", "dog"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert [t.get_text() for t in ax.texts] == ["0.75", "0.25", "0.00", "1.00"]
    plt.close("all")


def test_image_grid_marks_wrong_predictions():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    fig = viz.show_images(images, [0, 1, 1], ["cat", "dog"], predictions=[0, 0, 1], ncols=3)
    titles = [ax.title for ax in fig.axes[:3]]
    assert [t.get_text() for t in titles] == ["cat\n→ cat", "dog\n→ cat", "dog\n→ dog"]
    assert [t.get_color() for t in titles] == ["green", "red", "green"]
    plt.close("all")


def test_course_runner_executes_notebooks_and_gathers_their_results(tmp_path, monkeypatch, capsys):
    (tmp_path / "notebooks").mkdir()
    good = new_notebook(cells=[new_code_cell(
        "from helpers.runtime import setup\nfrom helpers.course.results import record\n"
        "rt = setup(3)\nrecord(rt, '01_toy', 'a recipe', test_accuracy=0.5)"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    bad = new_notebook(cells=[new_code_cell("raise ValueError('broken on purpose')")], metadata=good.metadata)
    nbformat.write(good, tmp_path / "notebooks" / "01_toy.ipynb")
    nbformat.write(bad, tmp_path / "notebooks" / "02_bad.ipynb")
    monkeypatch.setattr(runtime, "project_root", lambda: tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")   # a script's or CI's setting: the executed notebooks still get figures
    status = cli.run("ci", tmp_path / "out", None, timeout=120)
    out = capsys.readouterr().out
    assert status == 1  # one notebook failed, and the run says so
    assert "FAILED: ValueError: broken on purpose" in out
    assert "| 01_toy | a recipe | 50.00% |" in out and "| ci | 3 |" in out
    executed = nbformat.read(tmp_path / "out" / "01_toy.ipynb", as_version=4)
    assert "profile: ci" in executed.cells[0].outputs[0]["text"]
    assert any("image/png" in o.get("data", {}) for o in executed.cells[1].outputs), "plt.show() drew a figure"
    assert os.environ["MPLBACKEND"] == "Agg"   # and the caller's value is back
    assert cli.run("ci", tmp_path / "out2", ["01"], timeout=120) == 0
    # a rerun keeps only its own rows: one that an earlier run recorded under another name is gone
    records = tmp_path / "out2" / "results" / "01_toy.json"
    rows = json.loads(records.read_text())
    records.write_text(json.dumps(rows + [{**rows[0], "experiment": "a row from an older version"}]))
    assert cli.run("ci", tmp_path / "out2", ["01"], timeout=120) == 0
    assert [r["experiment"] for r in json.loads(records.read_text())] == ["a recipe"]


def test_augmentation_grid_has_one_labelled_row_per_augmentation():
    examples = {"none": torch.zeros(3, 3, 8, 8, dtype=torch.uint8), "flip": torch.ones(2, 3, 8, 8, dtype=torch.uint8)}
    fig = viz.plot_augmentation_grid(examples)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [axes[i, 0].get_ylabel() for i in range(2)] == ["none", "flip"]
    assert len(axes[0, 2].images) == 1 and len(axes[1, 2].images) == 0  # the shorter row leaves a blank
    plt.close("all")


def test_augmentation_grid_draws_one_channel_images_in_gray_on_a_fixed_scale():
    fig = viz.plot_augmentation_grid({"gray": torch.full((2, 1, 8, 8), 100, dtype=torch.uint8)})
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (8, 8) and image.get_cmap().name == "gray"
    assert image.get_clim() == (0, 255)   # a flat gray image stays mid-gray, not stretched to black or white
    plt.close("all")


def test_heatmap_outlines_the_best_cell_and_bars_show_error_bars():
    ax = viz.plot_heatmap([[0.1, 0.5], [0.3, 0.2]], [0.01, 0.1], [0.8, 0.9], row_label="lr", col_label="momentum")
    (best,) = ax.patches
    assert best.get_xy() == (1, 0) and [t.get_text() for t in ax.texts][1] == "50.0%"
    ax = viz.plot_bars(["a", "b"], [0.5, 0.7], [0.01, 0.02], reference=0.6)
    bars = [c for c in ax.containers if hasattr(c, "patches")][0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and len(bars) == 2
    assert bars.errorbar is not None and [t.get_text() for t in ax.texts] == [" 50.0%", " 70.0%"]
    plt.close("all")


def test_a_small_run_is_stored_in_the_notebook_without_machine_paths_and_only_for_the_code_that_ran(
        tmp_path, monkeypatch, capsys):
    from nbformat.v4 import new_markdown_cell
    (tmp_path / "notebooks").mkdir()
    nb = new_notebook(cells=[
        new_markdown_cell("badge\n\n# 01 · toy\n\n**What you learn here.** Nothing."),
        new_code_cell("from helpers.runtime import setup\nfrom helpers.course.results import record\n"
                      "rt = setup(0)\nrecord(rt, '01_toy', 'a recipe', test_accuracy=0.25)\nprint(rt.output_dir)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    source = tmp_path / "notebooks" / "01_toy.ipynb"
    nbformat.write(nb, source)
    monkeypatch.setattr(runtime, "project_root", lambda: tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    assert cli.run("ci", tmp_path / "ci", ["01"], timeout=120) == 0
    with pytest.raises(SystemExit, match="ran at profile 'ci'"):
        store.store(tmp_path / "ci", ["01"])   # only a small-profile run is stored
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    assert cli.run("small", tmp_path / "small", ["01"], timeout=120) == 0
    assert os.environ["COURSE_PROFILE"] == "ci"   # the caller's profile is back (later notebooks run at ci)
    edited = nbformat.read(source, as_version=4)   # prose written after the run moves the code cell down
    edited.cells.insert(1, new_markdown_cell("What this run showed."))
    nbformat.write(edited, source)
    store.store(tmp_path / "small", ["01"])
    stored = nbformat.read(source, as_version=4)
    assert stored.cells[1].cell_type == "markdown" and not stored.cells[1].get("outputs")
    printed = "".join(o.get("text", "") for o in stored.cells[2].outputs)
    assert "profile: small" in printed and "$COURSE_DATA_DIR" in printed and "$COURSE_OUTPUT_DIR" in printed
    assert not store.absolute_paths(store.outputs_text(stored))
    assert stored.cells[0].source.split("\n\n")[2].startswith("**Stored outputs.** The outputs below come from the "
                                                             "`small` profile on a 2-core CPU")
    assert stored.metadata["course_stored"]["code"] == notebooks.code_fingerprint(stored)
    assert json.loads((tmp_path / "notebooks" / "results" / "small" / "01_toy.json").read_text())[0]["profile"] == "small"
    store.store(tmp_path / "small", ["01"])   # storing again replaces the note instead of adding a second one
    assert nbformat.read(source, as_version=4).cells[0].source.count("**Stored outputs.**") == 1
    # every profile's table, and the stored one, in `course results`
    (tmp_path / "runs").mkdir()
    (tmp_path / "small").rename(tmp_path / "runs" / "small")
    tables = cli.results_tables()
    assert "## profile small (runs/small)" in tables and "## stored with the notebooks, profile small" in tables
    # code edited after the run: its outputs would no longer be its own
    stored.cells[2].source += "\nprint('changed')"
    nbformat.write(stored, source)
    with pytest.raises(SystemExit, match="code changed after the run"):
        store.store(tmp_path / "runs" / "small", ["01"])
