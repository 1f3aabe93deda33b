"""Assertions that training changed what it should: the ci profile's guard against a loop that learns nothing.

A notebook at the ci profile trains for seconds on a few hundred images, so its accuracies are low,
and an assertion like "the loss is finite" holds for a network that never learned. These checks bite:
each compares what training produced with what no training would produce, with a margin worked out
from the size of the data, and raises `LearningCheckError` (an AssertionError) when it cannot tell
the two apart. `tests/test_notebooks_learn.py` cuts every gradient off and checks that each notebook
then fails one of them.
"""
from __future__ import annotations

import math

import torch

from .runtime import rehearsal_batches


def rehearsing() -> bool:
    """In a rehearsal of the full profile (`course rehearse`) every run trains a few steps: nothing can be
    expected to beat chance there, so the checks that compare with chance only print, and a notebook's own
    claims about what the full profile shows are not asserted (`if PROFILE == "full" and not rehearsing()`)."""
    return rehearsal_batches() is not None


class LearningCheckError(AssertionError):
    """Training did not change what it should have (accuracy at chance, weights that did not move)."""


def chance_threshold(classes: int, n: int, sigmas: float = 3.0) -> float:
    """The accuracy that a classifier guessing at random exceeds with probability about 0.1% (3 sigmas):
    chance 1/classes plus `sigmas` binomial standard deviations for `n` test images."""
    p = 1.0 / classes
    return p + sigmas * math.sqrt(p * (1 - p) / n)


def above_chance(accuracy: float, *, classes: int, n: int, what: str, sigmas: float = 3.0) -> float:
    """Raise unless `accuracy` on `n` balanced images of `classes` classes beats chance by `sigmas` SDs.

    A network whose weights never changed is a fixed random function: it scores chance on a balanced
    set, and above the threshold only with probability about 0.1%.
    """
    threshold = chance_threshold(classes, n, sigmas)
    if rehearsing():
        print(f"{what}: accuracy {accuracy:.2%} (a rehearsal: not checked against chance, {threshold:.2%})")
        return threshold
    if not accuracy > threshold:
        raise LearningCheckError(
            f"{what}: accuracy {accuracy:.2%} on {n} images is not above chance ({1 / classes:.1%}) by {sigmas:g} "
            f"standard deviations ({threshold:.2%} needed): the network did not learn.")
    return threshold


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's parameters, to compare with after training."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def moved(before: dict[str, torch.Tensor], module: torch.nn.Module, *, what: str) -> float:
    """Raise unless training changed the parameters in `before`; return the relative change."""
    after = dict(module.named_parameters())
    change = sum(float((after[k].detach().cpu() - v.cpu()).norm()) for k, v in before.items())
    size = sum(float(v.norm()) for v in before.values()) or 1.0
    if change == 0.0:
        raise LearningCheckError(f"{what}: training did not change a single parameter ({len(before)} tensors): "
                                 f"no gradient reached the optimizer.")
    return change / size


def did_not_move(before: dict[str, torch.Tensor], module: torch.nn.Module, *, what: str) -> None:
    """Raise unless every parameter in `before` is unchanged (a frozen backbone stayed frozen)."""
    after = dict(module.named_parameters())
    changed = [k for k, v in before.items() if not torch.equal(after[k].detach().cpu(), v.cpu())]
    if changed:
        raise AssertionError(f"{what}: {len(changed)} frozen tensors changed, e.g. {changed[:3]}")


class DirectionError(AssertionError):
    """A comparison whose margin is clearly outside the seed-to-seed noise came out the wrong way."""


def direction(claim: str, better: list[float], worse: list[float], *, n: int, factor: float = 3.0,
              assert_clear: bool = True, verbose: bool = True) -> dict:
    """Check the direction of a lesson's comparison, "`better` beats `worse`", only where it is clear.

    `better` and `worse` are one row's test accuracies, one per seed, on `n` test images. The margin
    is the difference of the means. The spread is the larger of the two rows' seed-to-seed ranges
    (max - min), and never less than one binomial standard deviation of an accuracy on `n` images, so
    that two seeds which agree by luck do not make a tiny margin look clear. Where |margin| is at least
    `factor` times the spread (and both rows have two seeds or more) the comparison is asserted: it
    raises DirectionError if it goes the wrong way. Anywhere else it only prints the comparison,
    saying why it is not asserted. `assert_clear=False` is for a comparison that the lesson leaves
    open (it makes no claim about it): printed with the same figures, never asserted.
    Returns margin, spread, ratio, asserted and holds.
    """
    better, worse = [float(a) for a in better], [float(a) for a in worse]
    if not better or not worse:
        raise ValueError(f"{claim}: both rows need at least one accuracy")
    mean_better, mean_worse = sum(better) / len(better), sum(worse) / len(worse)
    margin = mean_better - mean_worse
    p = min(max((mean_better + mean_worse) / 2, 1e-6), 1 - 1e-6)
    binomial = math.sqrt(p * (1 - p) / n)
    seeds = min(len(better), len(worse))
    spread = max(max(better) - min(better), max(worse) - min(worse), binomial)
    ratio = abs(margin) / spread
    clear = seeds >= 2 and ratio >= factor
    asserted = clear and assert_clear and not rehearsing()   # a rehearsal's few steps show nothing
    holds = margin > 0
    way = "holds" if holds else "reversed"
    verdict = ("shown" if holds else "REVERSED") if asserted else (
        f"not asserted: one seed, spread unknown; {way}" if seeds < 2 else
        f"not asserted: within noise (margin < {factor:g}× spread); {way}" if not clear
        else f"{way} clearly; not asserted in a rehearsal" if assert_clear
        else f"{way} clearly; an open question of the lesson, not asserted")
    if verbose:
        print(f"{claim}: {mean_better:.2%} vs {mean_worse:.2%}, margin {margin:+.2%}, seed spread {spread:.2%} "
              f"({seeds} seed(s)), ratio {ratio:.1f} -> {verdict}")
    result = dict(claim=claim, better=mean_better, worse=mean_worse, margin=margin, spread=spread, ratio=ratio,
                  seeds=seeds, n=n, clear=clear, asserted=asserted, holds=holds, verdict=verdict)
    COMPARISONS[claim] = result
    if asserted and not holds:
        raise DirectionError(f"{claim}: the opposite came out ({mean_better:.2%} vs {mean_worse:.2%}), by {ratio:.1f}× "
                             f"the seed-to-seed spread of {spread:.2%}: the lesson's claim does not hold in this run")
    return result


# Every comparison `direction` judged in this process, by claim (a cell run again replaces its own): a
# notebook's closing cell records them with its results (helpers.course.results.record_comparisons).
COMPARISONS: dict[str, dict] = {}
