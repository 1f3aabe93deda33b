"""A run's identity: what makes two runs the same run, and only then."""
import linecache
import subprocess
import sys
from functools import partial

import torch

from helpers import checkpoints

MARGIN = 0.2  # a top-cell hyperparameter that a step function reads


def margin_step(model, batch):
    return MARGIN * model(batch).mean(), {}


def _digest(obj):
    return checkpoints.identity_hash(checkpoints.run_identity(step=obj))


def test_a_global_read_by_the_step_belongs_to_the_identity(monkeypatch):
    before = _digest(margin_step)
    assert _digest(margin_step) == before
    monkeypatch.setattr(sys.modules[__name__], "MARGIN", 0.5)
    assert _digest(margin_step) != before


def test_bound_arguments_and_code_belong_to_the_identity():
    def step(model, batch, *, smoothing=0.0):
        return model(batch).mean() * (1 - smoothing), {}

    def other(model, batch, *, smoothing=0.0):
        return model(batch).sum() * (1 - smoothing), {}
    assert _digest(partial(step, smoothing=0.1)) == _digest(partial(step, smoothing=0.1))
    assert _digest(partial(step, smoothing=0.1)) != _digest(partial(step, smoothing=0.2))
    assert _digest(partial(step, smoothing=0.1)) != _digest(partial(other, smoothing=0.1))


def test_a_large_tensor_is_rehashed_after_an_in_place_change():
    x = torch.zeros(1_000_000)
    before = checkpoints.tensor_digest(x)
    x[0] = 1
    assert checkpoints.tensor_digest(x) != before
    x[0] = 0
    assert checkpoints.tensor_digest(x) == before
    assert checkpoints.tensor_digest(x.to(memory_format=torch.contiguous_format)) == before


def test_the_identity_hash_is_the_same_in_another_process():
    # sets and dicts must not make the hash depend on Python's per-process string hashing
    code = ("from helpers import checkpoints; import torch; "
            "print(checkpoints.identity_hash(checkpoints.run_identity(parts={'names': frozenset({'stem', 'head', 'layer1'}), "
            "'model': torch.nn.Linear(2, 2).requires_grad_(False), 'n': 3})))")
    hashes = {subprocess.run([sys.executable, "-c", "import torch; torch.manual_seed(0); " + code], check=True,
                             capture_output=True, text=True, env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout
              for seed in (1, 2, 3)}
    assert len(hashes) == 1, hashes


def test_differences_name_the_changed_fields():
    old = {"optimizer": {"groups": [{"lr": 0.05, "momentum": 0.9}]}, "epochs": 2}
    new = {"optimizer": {"groups": [{"lr": 0.5, "momentum": 0.9}]}, "epochs": 2}
    assert checkpoints.differences(old, new) == ["optimizer.groups[0].lr: 0.05 -> 0.5"]


STEP_SOURCE = '''
LIMIT = 3


def step(model, batch, *, smoothing=0.0):
    assert smoothing < 1, "a smoothing of 1 leaves no signal"
    return model(batch).mean() * (1 - smoothing) * LIMIT, {}
'''


def _digest_in_a_process(folder, module, *flags):
    code = (f"import sys; sys.path.insert(0, {str(folder)!r}); from helpers import checkpoints; import {module}; "
            f"print(checkpoints.identity_hash(checkpoints.run_identity(step={module}.step)), "
            f"len({module}.step.__code__.co_code))")
    return subprocess.run([sys.executable, *flags, "-c", code], check=True, capture_output=True, text=True).stdout.split()


def test_the_identity_reads_the_source_not_the_bytecode(tmp_path):
    def digest(text, *flags):   # the same module name in its own folder
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "steps.py").write_text(text)
        return _digest_in_a_process(folder, "steps", *flags)
    # `python -O` drops the assert: other bytecode for the same source, as after a Python upgrade
    plain, optimized = digest(STEP_SOURCE), digest(STEP_SOURCE, "-O")
    assert plain[1] != optimized[1] and plain[0] == optimized[0]
    # a comment or a blank line is not a change; code and the globals it reads are
    assert digest(STEP_SOURCE.replace("    return", "    # scaled by LIMIT\n\n    return"))[0] == plain[0]
    assert digest(STEP_SOURCE.replace(".mean()", ".sum()"))[0] != plain[0]
    assert digest(STEP_SOURCE.replace("LIMIT = 3", "LIMIT = 2"))[0] != plain[0]


def test_source_that_no_longer_compiles_to_the_running_code_is_not_trusted(tmp_path, monkeypatch):
    path = tmp_path / "steps_e.py"
    path.write_text(STEP_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import steps_e
    before = checkpoints.fingerprint(steps_e.step)
    assert "source" in before
    path.write_text(STEP_SOURCE.replace(".mean()", ".sum()"))   # edited on disk; the imported code is the old one
    linecache.checkcache(str(path))
    after = checkpoints.fingerprint(steps_e.step)
    assert "source" not in after and "bytecode" in after


def test_two_lambdas_on_one_line_are_two_identities():
    def make(hard):
        return (lambda m, b: (m(b) * 1.0, {})) if hard else (lambda m, b: (m(b) * 2.0, {}))
    assert _digest(make(True)) != _digest(make(False))
    assert _digest(make(True)) == _digest(make(True))


def test_a_global_read_only_by_a_nested_function_belongs_to_the_identity(monkeypatch):
    def step(model, batch):
        def scaled(x):
            return MARGIN * x
        return scaled(model(batch).mean()), {}
    before = _digest(step)
    monkeypatch.setattr(sys.modules[__name__], "MARGIN", 0.7)
    assert _digest(step) != before


def test_a_local_name_is_not_read_from_the_globals(monkeypatch):
    def step(model, batch):
        MARGIN = 1.0  # noqa: N806 (a local that shadows the module's MARGIN)
        return MARGIN * model(batch).mean(), {}
    before = _digest(step)
    monkeypatch.setattr(sys.modules[__name__], "MARGIN", 0.5)
    assert _digest(step) == before


def test_a_function_without_source_still_has_an_identity():
    namespace = {}
    exec("def step(model, batch):\n    return model(batch).mean(), {}\n", namespace)   # no file: no source
    identity = checkpoints.fingerprint(namespace["step"])
    assert "bytecode" in identity and "source" not in identity
    assert _digest(namespace["step"]) == _digest(namespace["step"])


def _notebook(source: str) -> dict:
    """Run `source` as a notebook's cells run: in `__main__`, with its source in linecache as IPython keeps it."""
    name = f"<cell {abs(hash(source))}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    namespace = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), namespace)
    return namespace


STEP = """
def step(model, batch):
    return loss_fn(model(batch)), {}
"""


def test_a_function_of_the_notebook_that_the_step_calls_belongs_to_the_identity():
    buggy = _notebook("def loss_fn(out):\n    return out.sum()\n" + STEP)
    fixed = _notebook("def loss_fn(out):\n    return out.mean()\n" + STEP)
    again = _notebook("def loss_fn(out):\n    return out.sum()\n" + STEP)
    assert _digest(buggy["step"]) != _digest(fixed["step"])   # the fix is another run, not "finished before"
    assert _digest(buggy["step"]) == _digest(again["step"])   # the same code rerun is the same run
    helper = _notebook("def scale(x):\n    return 2 * x\n\ndef loss_fn(out):\n    return scale(out).sum()\n" + STEP)
    changed = _notebook("def scale(x):\n    return 3 * x\n\ndef loss_fn(out):\n    return scale(out).sum()\n" + STEP)
    assert _digest(helper["step"]) != _digest(changed["step"])   # two calls deep too


def test_a_class_of_the_notebook_that_the_step_uses_belongs_to_the_identity():
    head = "import torch\nclass Loss(torch.nn.Module):\n    def forward(self, out):\n        return out.{}()\n"
    step = "\ndef step(model, batch):\n    return Loss()(model(batch)), {}\n"
    assert _digest(_notebook(head.format("sum") + step)["step"]) != _digest(_notebook(head.format("mean") + step)["step"])
    recursive = _notebook("def f(n):\n    return f(n - 1) if n else 0\n\ndef step(model, batch):\n    return f(3), {}\n")
    assert _digest(recursive["step"]) == _digest(recursive["step"])   # a function that calls itself ends


def test_the_packages_own_functions_stay_out_of_the_identity():
    from helpers import losses
    namespace = _notebook("def step(model, batch):\n    return nt_xent(model(batch), model(batch)), {}\n")
    plain = _digest(namespace["step"])
    namespace["nt_xent"] = losses.nt_xent   # imported by name: the package's code, versioned with it
    assert _digest(namespace["step"]) == plain
