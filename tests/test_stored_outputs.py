"""The small-profile outputs stored in the notebooks are real, current and clean.

`course run --profile small` executes a notebook and records its results and run time; `course store`
copies the outputs into the notebook (with a hash of its code) and the records into
notebooks/results/small/. These tests need no execution: they read what was stored.
"""
import json

import nbformat
import pytest

from helpers.course import notebooks, store
from helpers.runtime import project_root

ROOT = project_root()
STORED = ROOT / "notebooks" / "results" / "small"
WITH_STORED_OUTPUTS = ["01_baseline", "02_augmentation", "03_pretrained_vs_scratch", "04_triplet_and_center_loss",
                       "05_contrastive_stl10", "06_greedy_pretraining", "07_class_activation_maps"]


def run_times():
    return json.loads((STORED / store.RUN_TIMES).read_text())


def records(stem):
    return json.loads((STORED / f"{stem}.json").read_text())


@pytest.mark.parametrize("stem", WITH_STORED_OUTPUTS)
def test_the_stored_outputs_are_a_finished_small_run_of_the_current_code(stem):
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("course_stored")
    assert stored, f"{path.name} has no stored outputs: `course run --profile small {stem[:2]}`, then `course store`"
    assert stored["profile"] == "small"
    assert stored["code"] == notebooks.code_fingerprint(nb), (
        f"{path.name}'s code changed after its outputs were stored: run `course run --profile small {stem[:2]}` "
        f"and `course store runs/small {stem[:2]}` again")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3, "the plots are stored"
    outputs = store.outputs_text(nb)
    assert not store.absolute_paths(outputs), store.absolute_paths(outputs)[:3]
    assert len(path.read_bytes()) <= store.MAX_NOTEBOOK_BYTES
    first = next(c for c in nb.cells if c.cell_type == "markdown").source
    run = run_times()[stem]
    cold = run.get("cold", run)   # an execution that reused finished runs keeps the minutes of the one that trained
    assert run["profile"] == "small" and run["ok"] and cold["minutes"] <= 20, run
    assert {k: run[k] for k in ("device", "date", "minutes")} == {k: stored[k] for k in ("device", "date", "minutes")}
    assert f"{store.STORED_NOTE} The outputs below come from the `small` profile on a 2-core CPU" in first
    assert store.run_note(run) in first
    assert not [o for c in code for o in c.outputs if store.WIDGET in o.get("data", {})], "progress bars are not stored"
    assert "[IPKernelApp]" not in outputs and "it differs in" not in outputs
    rows = records(stem)
    assert rows and all(r["profile"] == "small" and r["notebook"] == stem for r in rows)


def test_machine_paths_are_looked_for_in_text_outputs_not_in_images():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()")])
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBO/srv/uUP/PEPP+abc==",
                                                                        "text/plain": "<Figure size 640x480>"})]
    assert not store.absolute_paths(store.outputs_text(nb))          # base64 letters, not a path
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="saved /root/runs/x.pt here"))
    assert store.absolute_paths(store.outputs_text(nb)) == ["/root/runs/x.pt"]


def test_absolute_paths_are_found_and_placeholders_are_not():
    assert store.absolute_paths("data: /root/.cache/dl-course/data | seed: 0") == ["/root/.cache/dl-course/data"]
    assert store.absolute_paths("saved /tmp/x/ckpt-1.pt") and store.absolute_paths("(/home/me/runs)")
    assert not store.absolute_paths("data: $COURSE_DATA_DIR/cifar10 in <course>/runs/small, ~/x, 1/2/3, a/tmp/b")


def test_a_run_that_reused_finished_runs_keeps_the_minutes_of_the_one_that_trained(tmp_path):
    cold = store.record_run_time(tmp_path, "01_x", profile="small", ok=True, seconds=900, trained=True)
    assert "cold" not in cold and cold["minutes"] == 15.0
    warm = store.record_run_time(tmp_path, "01_x", profile="small", ok=True, seconds=30, trained=False)
    assert warm["minutes"] == 0.5 and warm["cold"] == {"minutes": 15.0, "date": cold["date"]}
    assert "reusing the finished training runs" in store.run_note(warm) and "took 15.0 minutes" in store.run_note(warm)
    failed = store.record_run_time(tmp_path, "01_x", profile="small", ok=False, seconds=5, trained=False)
    assert failed["cold"] == warm["cold"]                          # a failed execution does not lose it
    again = store.record_run_time(tmp_path, "01_x", profile="small", ok=True, seconds=20, trained=False)
    assert again["cold"] == warm["cold"]
    retrained = store.record_run_time(tmp_path, "01_x", profile="small", ok=True, seconds=600, trained=True)
    assert "cold" not in retrained and "reusing" not in store.run_note(retrained)
    other = store.record_run_time(tmp_path, "01_x", profile="ci", ok=True, seconds=40, trained=False)
    assert "cold" not in other                                     # another profile's minutes are not this one's
    reuse = store.record_run_time(tmp_path, "02_y", profile="small", ok=True, seconds=30, trained=False)
    again = store.record_run_time(tmp_path, "02_y", profile="small", ok=True, seconds=30, trained=False)
    assert "cold" not in reuse and "cold" not in again             # minutes of reuse never pass for the training's


def test_a_run_that_wrote_a_checkpoint_trained_even_without_a_printed_log(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    before = store.checkpoint_times(tmp_path)
    (tmp_path / "checkpoints" / "run-abc.pt").write_bytes(b"x")
    assert store.checkpoint_times(tmp_path) != before and store.checkpoint_times(tmp_path) == store.checkpoint_times(tmp_path)


def test_what_counts_as_training_and_what_a_stored_output_keeps():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()")])
    reused = "this run finished before: weights and history from x.pt\n  epoch   1/2 | loss 2.3 | lr 0.1\n"
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=reused)]
    assert not store.trained_anything(nb)
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="epoch   1/2 | loss 2.3 | lr 0.1\n"))
    assert store.trained_anything(nb)
    bar = {"output_type": "display_data", "metadata": {},
           "data": {store.WIDGET: {"model_id": "x"}, "text/plain": "epoch 1/2:   0%|          | 0/58"}}
    noise = {"output_type": "stream", "name": "stderr",
             "text": "[IPKernelApp] WARNING | Kernel is running over TCP without encryption.\n"}
    terminal_bar = {"output_type": "stream", "name": "stderr", "text": "\r 50%|#####     | 1/2\rwarning: kept\n"}
    kept = store.clean_outputs([bar, noise, terminal_bar, {"output_type": "stream", "name": "stdout", "text": "hi\n"}])
    assert kept == [{"output_type": "stream", "name": "stderr", "text": "warning: kept\n"},
                    {"output_type": "stream", "name": "stdout", "text": "hi\n"}]


def test_the_stored_runs_share_their_recipes_runs_instead_of_training_them_again():
    # a notebook that asks for another's run by its recipe loads that run: notebook 06's SimCLR encoder is notebook
    # 05's (same recipe, same images), and 05 and 07 load the same Tiny ImageNet network (notebook 03's, which runs
    # first in `course run --profile small`)
    def outputs(stem):
        return store.outputs_text(nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4))
    simclr_06 = outputs("06_greedy_pretraining")
    assert "SimCLR, 20 epochs on 15,000 images: loaded the finished run simclr-" in simclr_06
    assert "SimCLR: notebook 05's run (20 epochs" in simclr_06 and "trained here" not in simclr_06
    loaded = "this run finished before: weights and history from $COURSE_OUTPUT_DIR/pretrained/tiny-imagenet-resnet18-"
    files = {stem: {line.split(loaded)[1][:12] for line in outputs(stem).splitlines() if loaded in line}
             for stem in ("05_contrastive_stl10", "07_class_activation_maps")}
    assert len(files["05_contrastive_stl10"]) == 1 and files["05_contrastive_stl10"] <= files["07_class_activation_maps"], files
