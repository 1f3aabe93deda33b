"""Colab: every notebook opens from a badge, its setup cell installs the course and can keep runs on Drive."""
import shutil
import sys
import types
from pathlib import Path

import nbformat
import pytest

from helpers import course

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_an_open_in_colab_badge_for_itself(notebook):
    first = nbformat.read(notebook, as_version=4).cells[0].source.splitlines()[0]
    assert first == course.colab_badge(course.PLACEHOLDER_REPO, notebook.name)


def test_course_colab_points_badges_and_setup_cells_at_a_fork(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "README.md").write_text("see " + course.colab_badge(course.PLACEHOLDER_REPO, "01_baseline.ipynb"))
    monkeypatch.setattr(course, "project_root", lambda: tmp_path)
    assert course.main(["colab", "me/my-fork", "--branch", "spring"]) == 0
    assert f"pointed {len(NOTEBOOKS) + 1} files at github.com/me/my-fork" in capsys.readouterr().out   # and the README
    for notebook in NOTEBOOKS:
        cells = nbformat.read(tmp_path / "notebooks" / notebook.name, as_version=4).cells
        assert cells[0].source.startswith(course.colab_badge("me/my-fork", notebook.name, "spring"))
        assert "colab.research.google.com/github/me/my-fork/blob/spring/notebooks/" + notebook.name in cells[0].source
        assert 'os.environ.get("COURSE_REPO", "https://github.com/me/my-fork.git")' in cells[1].source
        pointed = nbformat.read(tmp_path / "notebooks" / notebook.name, as_version=4)
        original = nbformat.read(notebook, as_version=4)
        assert course.code_fingerprint(pointed) == course.code_fingerprint(original)  # stored outputs stay valid
    assert "github/me/my-fork/blob/spring/notebooks/01_baseline.ipynb" in (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit, match="not a GitHub path"):
        course.main(["colab", "https://github.com/me/my-fork"])


def _setup_cell(notebook):
    return nbformat.read(notebook, as_version=4).cells[1].source


@pytest.mark.parametrize("use_drive", [True, False])
def test_setup_cell_mounts_drive_for_checkpoints_when_asked(monkeypatch, use_drive, capsys):
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("COURSE_OUTPUT_DIR", raising=False)
    source = _setup_cell(NOTEBOOKS[0]).replace("USE_DRIVE = False", f"USE_DRIVE = {use_drive}")
    exec(compile(source, "setup cell", "exec"), {})
    import os
    if use_drive:
        assert mounted == ["/content/drive"]
        assert os.environ["COURSE_OUTPUT_DIR"] == "/content/drive/MyDrive/dl-course/runs"
        os.environ.pop("COURSE_OUTPUT_DIR")
    else:
        assert mounted == [] and "COURSE_OUTPUT_DIR" not in os.environ
        assert "set USE_DRIVE = True" in capsys.readouterr().out


def test_every_notebook_has_the_same_setup_cell():
    assert len({_setup_cell(nb) for nb in NOTEBOOKS}) == 1
