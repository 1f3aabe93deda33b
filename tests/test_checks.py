import math

import numpy as np
import pytest
import torch

from helpers import checks


def test_chance_threshold_is_three_binomial_standard_deviations():
    assert checks.chance_threshold(10, 500) == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 500))
    assert checks.chance_threshold(2, 100, sigmas=2) == pytest.approx(0.6)


def test_a_random_classifier_almost_never_passes():
    rng = np.random.default_rng(0)
    n, classes = 500, 10
    labels = np.repeat(np.arange(classes), n // classes)
    passed = 0
    for _ in range(2000):
        accuracy = float((rng.integers(0, classes, n) == labels).mean())
        try:
            checks.above_chance(accuracy, classes=classes, n=n, what="random")
            passed += 1
        except checks.LearningCheckError:
            pass
    assert passed <= 10  # about 0.1% expected: 2 of 2000


def test_above_chance_names_the_figures():
    with pytest.raises(checks.LearningCheckError, match=r"course recipe: accuracy 12.00% on 500 images.*14.02% needed"):
        checks.above_chance(0.12, classes=10, n=500, what="course recipe")
    assert checks.above_chance(0.2, classes=10, n=500, what="ok") == pytest.approx(0.1402, abs=1e-4)


def test_moved_and_did_not_move():
    layer = torch.nn.Linear(3, 2)
    before = checks.snapshot(layer)
    with pytest.raises(checks.LearningCheckError):
        checks.moved(before, layer, what="untrained")
    checks.did_not_move(before, layer, what="frozen")
    with torch.no_grad():
        layer.bias += 0.1
    assert checks.moved(before, layer, what="trained") > 0
    with pytest.raises(AssertionError, match="frozen tensors changed"):
        checks.did_not_move(before, layer, what="frozen")
