"""Colab: every notebook opens from a badge, its setup cell installs the course and can keep runs on Drive."""
import shutil
import sys
import types
from pathlib import Path

import nbformat
import pytest

from helpers import runtime
from helpers.course import cli, notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_an_open_in_colab_badge_for_itself(notebook):
    first = nbformat.read(notebook, as_version=4).cells[0].source.splitlines()[0]
    assert first == notebooks.colab_badge(notebooks.PLACEHOLDER_REPO, notebook.name)


def test_course_colab_points_badges_and_setup_cells_at_a_fork(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "README.md").write_text("see " + notebooks.colab_badge(notebooks.PLACEHOLDER_REPO, "01_baseline.ipynb"))
    monkeypatch.setattr(runtime, "project_root", lambda: tmp_path)
    assert cli.main(["colab", "me/my-fork", "--branch", "spring"]) == 0
    assert f"pointed {len(NOTEBOOKS) + 1} files at github.com/me/my-fork" in capsys.readouterr().out   # and the README
    for notebook in NOTEBOOKS:
        cells = nbformat.read(tmp_path / "notebooks" / notebook.name, as_version=4).cells
        assert cells[0].source.startswith(notebooks.colab_badge("me/my-fork", notebook.name, "spring"))
        assert "colab.research.google.com/github/me/my-fork/blob/spring/notebooks/" + notebook.name in cells[0].source
        assert 'os.environ.get("COURSE_REPO", "https://github.com/me/my-fork.git")' in cells[1].source
        pointed = nbformat.read(tmp_path / "notebooks" / notebook.name, as_version=4)
        original = nbformat.read(notebook, as_version=4)
        assert notebooks.code_fingerprint(pointed) == notebooks.code_fingerprint(original)  # stored outputs stay valid
    assert "github/me/my-fork/blob/spring/notebooks/01_baseline.ipynb" in (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit, match="not a GitHub path"):
        cli.main(["colab", "https://github.com/me/my-fork"])


def _setup_cell(notebook):
    return nbformat.read(notebook, as_version=4).cells[1].source


@pytest.mark.parametrize("use_drive", [True, False])
def test_setup_cell_mounts_drive_for_checkpoints_when_asked(monkeypatch, use_drive, capsys):
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("COURSE_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)   # (CI sets it to ci)
    source = _setup_cell(NOTEBOOKS[0]).replace("USE_DRIVE = False", f"USE_DRIVE = {use_drive}")
    exec(compile(source, "setup cell", "exec"), {})
    import os
    if use_drive:
        assert mounted == ["/content/drive"]
        assert os.environ["COURSE_OUTPUT_DIR"] == "/content/drive/MyDrive/dl-course/runs/full"   # one folder per profile
        os.environ.pop("COURSE_OUTPUT_DIR")
    else:
        assert mounted == [] and "COURSE_OUTPUT_DIR" not in os.environ
        assert "set USE_DRIVE = True" in capsys.readouterr().out


def test_on_drive_each_profile_keeps_its_own_folder(monkeypatch):
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda path: None)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("COURSE_OUTPUT_DIR", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "small")
    exec(compile(_setup_cell(NOTEBOOKS[0]).replace("USE_DRIVE = False", "USE_DRIVE = True"), "setup cell", "exec"), {})
    import os
    assert os.environ["COURSE_OUTPUT_DIR"] == "/content/drive/MyDrive/dl-course/runs/small"
    monkeypatch.delenv("COURSE_OUTPUT_DIR")


def test_on_colab_the_setup_cell_installs_the_course_holding_every_installed_package_at_its_version(
        monkeypatch, tmp_path):
    # Colab ships ipykernel 6.17 and ipywidgets 7: a plain `pip install` of the course upgraded them (red ERROR
    # lines, and a kernel that may not start after a restart). The cell now passes pip one constraint per
    # installed package: the first copy of a name on sys.path (the one Python imports), and no version pip
    # would refuse to read (Debian's "1.1build1" would stop the install).
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda path: None)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "helpers", None)   # not installed yet: `import helpers` fails
    from importlib import metadata
    installed = [("torch", "2.11.0+cu128"), ("numpy", "2.1.3"), ("ipykernel", "6.17.1"), ("distro-info", "1.1build1"),
                 ("Torch", "1.0.0"), ("typing_extensions", "4.12.2")]
    monkeypatch.setattr(metadata, "distributions", lambda: [types.SimpleNamespace(metadata={"Name": n}, version=v)
                                                            for n, v in installed])
    calls, written = [], {}

    def run(command, check):
        calls.append(command)
        if "pip" in command:   # the install: afterwards `import helpers` works
            monkeypatch.delitem(sys.modules, "helpers")
            written["pins"] = (tmp_path / "colab-pins.txt").read_text()
    monkeypatch.setattr("subprocess.run", run)
    source = _setup_cell(NOTEBOOKS[0]).replace("/content/colab-pins.txt", str(tmp_path / "colab-pins.txt"))
    source = source.replace('"https://github.com/OWNER/REPO.git"', '"https://github.com/me/course.git"')
    exec(compile(source, "setup cell", "exec"), {})
    clone, install = calls
    assert clone[:2] == ["git", "clone"]
    assert install[1:4] == ["-m", "pip", "install"] and "-c" in install and install[-1] == "/content/course"
    assert install[install.index("-c") + 1] == str(tmp_path / "colab-pins.txt")
    assert sorted(written["pins"].split()) == ["ipykernel==6.17.1", "numpy==2.1.3", "torch==2.11.0+cu128",
                                               "typing_extensions==4.12.2"]


def _requirements():
    import tomllib
    from packaging.requirements import Requirement
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_colabs_own_versions_satisfy_every_dependency_so_the_install_changes_none_of_them():
    from packaging.utils import canonicalize_name
    from packaging.version import Version
    colab = {}
    for line in (ROOT / "tests" / "colab_versions.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            colab[canonicalize_name(name)] = Version(version)
    assert {"torch", "numpy", "ipykernel"} <= set(colab)
    for requirement in _requirements():
        have = colab.get(canonicalize_name(requirement.name))
        if have is not None:   # Colab has it: its version must do, or the pinned install would fail
            assert requirement.specifier.contains(have, prereleases=True), f"{requirement} against Colab's {have}"
    # what Colab pins and the course used to require newer versions of are no dependency now
    assert not {canonicalize_name(r.name) for r in _requirements()} & {"ipykernel", "ipywidgets", "nbclient", "nbformat"}


def test_every_notebook_has_the_same_setup_cell():
    assert len({_setup_cell(nb) for nb in NOTEBOOKS}) == 1
