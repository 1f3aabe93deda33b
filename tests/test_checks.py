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


def test_direction_asserts_only_clear_margins_and_bites_when_they_reverse(capsys):
    # clear margin (10 points against a spread of 1 point), right way: asserted and passes
    r = checks.direction("a beats b", [0.60, 0.61], [0.50, 0.51], n=10_000)
    assert r["asserted"] and r["holds"] and abs(r["margin"] - 0.10) < 1e-9 and abs(r["spread"] - 0.01) < 1e-9
    assert "shown" in capsys.readouterr().out
    # the same numbers the other way round: a clear reversal fails
    with pytest.raises(checks.DirectionError, match="b beats a"):
        checks.direction("b beats a", [0.50, 0.51], [0.60, 0.61], n=10_000)
    # margin 2 points, spread 1 point: within 3x, printed, not asserted, even though reversed
    r = checks.direction("c beats d", [0.50, 0.51], [0.52, 0.53], n=10_000)
    assert not r["asserted"] and not r["holds"]
    assert "not asserted" in capsys.readouterr().out
    # an open question of the lesson: clear and reversed, printed, never raised
    r = checks.direction("b beats a?", [0.50, 0.51], [0.60, 0.61], n=10_000, assert_clear=False)
    assert r["clear"] and not r["asserted"] and not r["holds"]
    assert "open question" in capsys.readouterr().out
    # one seed: the spread is unknown, never asserted
    assert not checks.direction("e beats f", [0.2], [0.9], n=10_000)["asserted"]
    # seeds that agree exactly: the binomial SD on 100 images (5 points at 50%) is the floor of the spread
    r = checks.direction("g beats h", [0.55, 0.55], [0.45, 0.45], n=100)
    assert abs(r["spread"] - 0.05) < 1e-9 and not r["asserted"]


def test_a_rehearsal_prints_the_chance_and_direction_checks_instead_of_asserting_them(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_REHEARSAL", "2")
    assert checks.rehearsing()
    checks.above_chance(0.1, classes=10, n=1000, what="a few steps")
    assert "a rehearsal: not checked" in capsys.readouterr().out
    result = checks.direction("a beats b", [0.2, 0.21], [0.5, 0.51], n=10_000)
    assert result["clear"] and not result["asserted"]
    monkeypatch.setenv("COURSE_PROFILE", "small")   # only the full profile is rehearsed
    assert not checks.rehearsing()
    with pytest.raises(checks.LearningCheckError):
        checks.above_chance(0.1, classes=10, n=1000, what="a few steps")
