"""A run's identity: what makes two runs the same run, and only then."""
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
