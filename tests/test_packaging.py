import re
import tomllib
from pathlib import Path


from helpers import runtime
from helpers.course import results

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"course", "test", "instructor", "lab"}
    assert [_name(r) for r in extras["instructor"]] == ["nbgrader"]
    assert [_name(r) for r in extras["lab"]] == ["jupyterlab", "ipywidgets"]
    assert [_name(r) for r in extras["course"]] == ["nbclient", "nbformat", "ipykernel"]
    wanted = set(project["dependencies"]) | {r for extra in extras.values() for r in extra}
    conda = [line.strip()[2:].strip() for line in (ROOT / "environment.yml").read_text().splitlines()
             if line.strip().startswith("- ") and line.startswith("      ")]  # the pip: section
    listed = {c for c in conda if c != "-e ."}
    assert listed == wanted
    assert not any("==" in r for r in wanted if _name(r) in ("torch", "torchvision")), "never pin torch for users"
    # a student's install stays light: grading, headless execution and JupyterLab are extras, not dependencies
    assert not {_name(r) for r in project["dependencies"]} & {"nbgrader", "jupyterlab", "nbclient", "nbformat",
                                                               "ipykernel", "ipywidgets", "pandas"}


def test_results_are_recorded_with_provenance_and_tabulated(tmp_path):
    rt = runtime.setup(profile="ci", output_dir=tmp_path, verbose=False)
    results.record(rt, "01_x", "recipe a", test_accuracy=0.5, epochs=3, s_per_epoch=0.25)
    results.record(rt, "01_x", "recipe a", test_accuracy=0.75, epochs=3, s_per_epoch=0.25)  # replaces
    results.record(rt, "02_y", "recipe b", test_accuracy=0.9)
    rows = results.collect(tmp_path)
    assert [r["experiment"] for r in rows] == ["recipe a", "recipe b"]
    assert rows[0]["profile"] == "ci" and rows[0]["device"] and rows[0]["seed"] == 0
    table = results.markdown_table(rows)
    assert "75.00%" in table and "0.25" in table and "25.00%" not in table
