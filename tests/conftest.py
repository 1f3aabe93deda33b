"""Shared fixtures. Tests that read real images use COURSE_DATA_DIR (CI unpacks the data pack there)."""
import dataclasses
import os

# One CPU thread for this process and every kernel it starts: the session runs two things at once (the tests,
# and tests/executions.py's notebooks beside them), one per core; a second thread each would only make them
# fight for the cores (torch's threads slow down many times over when another process holds a core).
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import executions  # noqa: E402

torch.set_num_threads(1)

from helpers import data, download

CLOSED = "http://127.0.0.1:9"
REAL_SOURCES = download.SOURCES   # nothing listens on port 9 here: a refused connection, as offline


def on_host(source, host: str):
    """`source` of download.SOURCES served from `host` instead of its real one."""
    if isinstance(source, download.OfficialArchive):
        return dataclasses.replace(source, url=f"{host}/{source.filename}")
    return dataclasses.replace(source, endpoint=host)


@pytest.fixture
def real_sources():
    """download.SOURCES as the code has it (the hosts' real addresses), for tests of its form."""
    return REAL_SOURCES


@pytest.fixture(autouse=True)
def no_real_hosts(monkeypatch):
    """No test reaches a real dataset host: every source in the table points at a closed port on
    127.0.0.1 (a test that serves files replaces the table again)."""
    monkeypatch.setattr(download, "SOURCES", {name: tuple(on_host(s, CLOSED) for s in sources)
                                              for name, sources in download.SOURCES.items()})
from helpers.runtime import default_data_dir


@pytest.fixture(scope="session")
def data_dir():
    return default_data_dir()


@pytest.fixture(scope="session")
def cifar_test(data_dir):
    return data.load("cifar10", "test", data_dir, verbose=False)


@pytest.fixture
def tiny_data():
    """A 4-class, 6-images-per-class ImageData of random 16×16 images."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(4).repeat_interleave(6)
    return data.ImageData(images=images, labels=labels, classes=("a", "b", "c", "d"), name="toy", split="train")


# ----------------------------------------------------------------------------- layers
# Every test is in one layer, by its module unless named below; run a layer with `-m`, e.g. the developers'
# quick run `python -m pytest -m "not notebooks"` (minutes), or `-m oracle`.
#   unit       one function or class against what it must do
#   oracle     the course's code against an independent library or a brute-force loop
#   io         files, downloads and data on disk (a server on 127.0.0.1 for the hosts)
#   notebooks  executes a notebook in a kernel: the course's (nbval, grading, the no-learning sabotage, the
#              budgets) or a small one made by the test
LAYERS = {
    "oracle": {"test_losses", "test_embedding_metrics", "test_cam", "test_augment"},
    "io": {"test_download", "test_data", "test_checkpoints"},
    "notebooks": {"test_notebooks_learn", "test_budget_notebooks"},
}
EXECUTE_A_NOTEBOOK = {   # in modules of other layers
    "test_grading": {"test_grade_restores_the_hidden_tests_and_the_instructors_test_cells",
                     "test_a_failing_exercise_does_not_stop_the_grading_of_the_next", "test_a_copied_test_cell_counts_once",
                     "test_other_correct_answers_get_full_points_in_a_kernel",
                     "test_a_kernel_that_dies_scores_what_did_not_run_zero", "test_a_deleted_test_cell_scores_nothing",
                     "test_nbvals_execution_is_kept_and_can_be_graded_without_running_again",
                     "test_a_hanging_or_crashing_test_scores_zero_and_the_rest_is_graded",
                     "test_the_instructors_version_gets_full_points",
                     "test_the_blank_release_fails_exactly_the_test_cells_and_scores_zero",
                     "test_a_rerun_repeats_every_results_record"},
    "test_viz_and_course": {"test_course_runner_executes_notebooks_and_gathers_their_results",
                            "test_a_small_run_is_stored_in_the_notebook_without_machine_paths_and_only_for_the_code_that_ran"},
    "test_rehearse": {"test_the_probe_records_every_cells_time_and_memory_and_a_failure",
                      "test_the_full_profile_rehearses_within_colabs_memory"},
}


def layer(module: str, function: str) -> str:
    if function in EXECUTE_A_NOTEBOOK.get(module, ()):
        return "notebooks"
    return next((name for name, modules in LAYERS.items() if module in modules), "unit")


def reads_an_execution(item) -> bool:
    """Whether a test reads what tests/executions.py runs beside the session."""
    module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
    notebook = getattr(getattr(item, "callspec", None), "params", {}).get("notebook")
    return notebook is not None and (module in ("test_budget_notebooks", "test_notebooks_learn")
                                     or (module == "test_grading" and "graded" in item.fixturenames))


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module.startswith("test_"):
            item.add_marker(layer(module, item.originalname))
    # the tests that read the executions beside the session go last, so that the rest runs meanwhile
    items.sort(key=reads_an_execution)



# ----------------------------------------------------------------------------- executions beside the session

def pytest_collection_finish(session):
    """Start the executions the collected tests will read (tests/executions.py), while nbval runs."""
    if session.config.option.collectonly:
        return
    for item in filter(reads_an_execution, session.items):   # in the order the tests will read them
        module, stem = item.module.__name__.rsplit(".", 1)[-1], item.callspec.params["notebook"].stem
        {"test_budget_notebooks": executions.submit_budget, "test_grading": executions.submit_blank,
         "test_notebooks_learn": executions.submit_sabotaged}[module](stem)


def pytest_sessionfinish(session):
    executions.shutdown()
