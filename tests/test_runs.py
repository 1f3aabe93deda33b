"""helpers.runs: a notebook's trainings described once, and the budget that counts them from that description."""
import pytest
from torch import nn

from helpers import runs
from helpers.course import budget


def _net():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_epoch_images_drops_the_incomplete_last_batch():
    assert runs.epoch_images(10, 4) == 8
    assert runs.epoch_images(3, 64) == 3   # a batch never larger than the split
    with pytest.raises(ValueError, match="at least one image"):
        runs.epoch_images(0, 4)


def test_a_training_counts_every_run_and_epoch():
    t = runs.Training("rows", _net, images=96, epochs=3, size=4, runs=[0, 1], scored=50, scored_once=20)
    assert t.trained_images == 2 * 3 * 96
    assert t.scored_images == 2 * (3 * 50 + 20)
    assert t.runs == (0, 1)
    assert t.but(runs=[1]).trained_images == 3 * 96   # the runs still to train
    assert runs.Training("no runs", _net, images=96, epochs=3, size=4, runs=[]).trained_images == 0


@pytest.mark.parametrize("bad, message", [
    (dict(network=_net()), "builds the network"),
    (dict(images=-1), "images"),
    (dict(epochs=2.5), "epochs"),
    (dict(runs=3), "one entry per run"),
    (dict(runs="012"), "one entry per run"),
    (dict(size=0), "size"),
])
def test_a_training_refuses_what_it_cannot_count(bad, message):
    settings = dict(network=_net, images=10, epochs=1, size=4) | bad
    with pytest.raises((TypeError, ValueError), match=message):
        runs.Training("bad", **settings)


def test_the_budget_counts_a_training_as_its_training_cell_runs_it():
    t = runs.Training("rows", _net, images=96, epochs=3, size=4, runs=[0, 1], scored=50, scored_once=20,
                      amp=False, scoring="the test images")
    plan = budget.Plan("toy")
    plan.add_training(t)
    train, scored = plan.rows
    by_hand = budget.Plan("by hand")
    by_hand.add("rows", _net, images=2 * 3 * 96, size=4, amp=False)
    by_hand.add_inference("  the test images", _net, images=2 * (3 * 50 + 20), size=4, amp=False)
    for ours, theirs in zip(plan.rows, by_hand.rows):
        assert {k: v for k, v in ours.items() if k != "_key"} == {k: v for k, v in theirs.items() if k != "_key"}
    assert train["images"] == t.trained_images and scored["images"] == t.scored_images
    plan.add_training(t.but(name="unscored", scored=0, scored_once=0))   # nothing scored: no inference row
    assert len(plan.rows) == 3 and plan.rows[-1]["kind"] == "train"
