"""runtime.setup and pick: the profile, the folders, the seed, the threads and the deterministic switch, tested once
here (every notebook calls setup in its first cells)."""
import os

import nbformat
import pytest
import torch

from helpers import runtime
from helpers.course.notebooks import notebooks


def test_setup_reads_the_profile_and_folders_and_says_what_it_chose(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("COURSE_OUTPUT_DIR", raising=False)
    rt = runtime.setup(seed=7)
    line = capsys.readouterr().out
    assert rt.profile == "ci" and rt.ci and rt.data_dir == tmp_path / "d" and rt.output_dir.name == "ci"
    assert rt.device.type in ("cpu", "cuda", "mps")
    for part in ("torch " + torch.__version__, "profile: ci", str(tmp_path / "d"), "seed: 7"):
        assert part in line
    assert rt.pick(full=60, small=8, ci=1) == 1
    for profile, value in (("full", 60), ("small", 8), ("ci", 1)):
        monkeypatch.setenv("COURSE_PROFILE", profile)
        assert runtime.pick(full=60, small=8, ci=1) == value
    monkeypatch.delenv("COURSE_PROFILE")
    assert runtime.current_profile() == "full" and runtime.pick(full=60, small=8, ci=1) == 60
    with pytest.raises(TypeError):
        runtime.pick(full=60, ci=1)   # a profile left out is an error, not a silent default
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    a = torch.rand(3)
    runtime.setup(seed=7, verbose=False)
    assert torch.equal(a, torch.rand(3))  # the same seed, the same draws
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE='fast'"):
        runtime.setup()


def test_the_ci_profile_on_the_cpu_runs_on_one_thread(tmp_path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rt = runtime.setup(profile="small", output_dir=tmp_path, verbose=False)
        assert rt.device.type != "cpu" or torch.get_num_threads() == 2   # small and full keep the machine's threads
        rt = runtime.setup(profile="ci", output_dir=tmp_path, verbose=False)
        assert rt.device.type != "cpu" or torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_the_deterministic_switch_from_the_environment_and_from_a_notebook(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")      # setup() sets it; restored after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    try:
        monkeypatch.setenv("COURSE_DETERMINISTIC", "1")
        rt = runtime.setup(0, profile="ci", output_dir=tmp_path)
        assert rt.deterministic and torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert "deterministic kernels" in capsys.readouterr().out
        monkeypatch.setenv("COURSE_DETERMINISTIC", "0")
        rt = runtime.setup(0, profile="ci", output_dir=tmp_path)
        assert not rt.deterministic and not torch.are_deterministic_algorithms_enabled()
        # a notebook's `deterministic=DETERMINISTIC or None`: True switches it on and False (None: the
        # environment's, unset here) back off
        monkeypatch.delenv("COURSE_DETERMINISTIC")
        for flag, on in ((True, True), (False, False)):
            rt = runtime.setup(0, profile="ci", output_dir=tmp_path, deterministic=flag or None, verbose=False)
            assert rt.deterministic is on and torch.are_deterministic_algorithms_enabled() is on
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_every_notebook_has_the_switch_and_passes_it_to_setup(notebook):
    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    assert cells[0].startswith("# ---- Setup") and "\nDETERMINISTIC = False\n" in cells[0]
    calls = [line for c in cells for line in c.splitlines() if "setup(SEED" in line]
    assert calls and all("deterministic=DETERMINISTIC or None" in line for line in calls), calls
