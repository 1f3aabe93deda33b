"""The generated pages are what `course pages` writes today: RESULTS.md from the stored records, the exercise
table of docs/instructors.md from the notebooks. The README holds no figure of a run: those live in the records."""
import json
import re

import pytest

from helpers.course import pages, results, store
from helpers.runtime import project_root

ROOT = project_root()


def test_results_md_is_generated_from_the_stored_records():
    assert (ROOT / "RESULTS.md").read_text() == pages.results_page(), "RESULTS.md is stale: run `course pages`"


def test_every_stored_run_is_in_results_md_with_its_comparisons_and_figures():
    text = (ROOT / "RESULTS.md").read_text()
    folder = store.stored_folder("small")
    for file in sorted(folder.glob("[0-9][0-9]_*.json")):
        rows = json.loads(file.read_text())
        assert f"## {file.stem[:2]} · " in text and results.summary(rows) in text
        for row in rows:
            if row["experiment"].startswith(results.COMPARISON):
                assert results.comparison_line(row) in text


def test_the_exercise_table_is_generated_from_the_notebooks():
    text = (ROOT / "docs" / "instructors.md").read_text()
    assert text == pages.with_exercise_table(text), "docs/instructors.md's exercise table is stale: run `course pages`"
    listed = pages.exercises()
    assert {e["notebook"][:2] for e in listed} == {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert all(e["exercise"].startswith("Exercise ") and e["function"] and e["points"] > 0 and e["test"] for e in listed)
    with pytest.raises(ValueError, match="no generated block"):
        pages.with_exercise_table("a page without the markers")


def test_the_readme_is_a_front_door_without_figures_of_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 11_000, "the README is a front door: move details to docs/ or data/README.md"
    # a measured figure has decimals (61.40%, 15.9 min); limits and settings (60 T4-minutes, 20 minutes) do not
    assert not re.findall(r"\d+\.\d+ ?(?:%|min)", readme), "figures of runs live in RESULTS.md"
    assert "COURSE_PROFILE=ci python -m pytest" in readme   # the test command CI runs
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / link).exists(), f"the README links to {link}, which does not exist"
