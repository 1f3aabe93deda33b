"""What a notebook will train, described once: its training cells and its time budget read the same description.

A `Training` is one kind of run (or several alike: one per seed, learning rate or label count): the network
it builds, how many images one epoch pushes through it, for how many epochs, at what size, and what it scores
as it goes. The notebook's training cell builds the network with `training.network()`, trains for
`training.epochs`, and loops over `training.runs`; its budget cell passes the same object to
`helpers.course.budget.Plan.add_training`, which counts `trained_images` and `scored_images`. A change to the
runs (another seed, more epochs, a larger epoch) changes both, and nothing restates the count.

    ROWS = {name: runs.Training(name, resnet(stem), images=epoch_images(N_TRAIN, BATCH), epochs=EPOCHS,
                                size=32, runs=SEEDS, scored_once=N_TEST) for name, stem in ...}
    for seed in ROWS[name].runs:
        torch.manual_seed(seed)                   # seed, then build: the run's initial weights
        model = ROWS[name].network().to(device)
        train.fit(model, batches, ROWS[name].epochs, ...)

`epoch_images` gives an epoch's count where the last incomplete batch is dropped.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from torch import nn


def epoch_images(n: int, batch: int) -> int:
    """Images one epoch trains on: n images in batches of `batch` (at most n), the incomplete last batch dropped."""
    if n < 1 or batch < 1:
        raise ValueError(f"epoch_images needs at least one image and a batch of at least one (n={n}, batch={batch})")
    batch = min(batch, n)
    return n // batch * batch


@dataclasses.dataclass(frozen=True)
class Training:
    """One kind of training run, or several alike (`runs`: one entry per run, e.g. its seed or learning rate).

    images: images pushed through the network in one epoch of one run (views count: SimCLR's two views of a
        batch are two images), after any dropped last batch (`epoch_images`).
    scored: images the run scores (forward only) after every epoch, e.g. a validation split or a k-NN monitor.
    scored_once: images it scores once, after training (its test accuracy, features read afterwards).
    amp: whether it trains and scores in mixed precision (`fit`'s and `evaluate`'s amp).
    in_channels, trainable: the input's channels; the names of the trained submodules (None: all of them).
    scoring: what the scored images are, for the budget's table ("" says nothing more).
    """
    name: str
    network: Callable[..., nn.Module]   # builds the network; the budget calls it with no argument
    images: int
    epochs: int
    size: int
    runs: Sequence = (None,)
    scored: int = 0
    scored_once: int = 0
    amp: bool = True
    in_channels: int = 3
    trainable: tuple[str, ...] | None = None
    scoring: str = ""

    def __post_init__(self):
        if isinstance(self.network, nn.Module) or not callable(self.network):
            raise TypeError(f"Training {self.name!r}: network is a function that builds the network "
                            "(e.g. lambda: models.resnet18()), not a network")
        for field in ("images", "epochs", "scored", "scored_once"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"Training {self.name!r}: {field} is a whole number ≥ 0, not {value!r}")
        if self.size < 1:
            raise ValueError(f"Training {self.name!r}: size is the input's side in pixels, not {self.size!r}")
        if isinstance(self.runs, (str, bytes)) or not isinstance(self.runs, Sequence):
            raise TypeError(f"Training {self.name!r}: runs is a sequence with one entry per run (seeds, learning "
                            f"rates), not {self.runs!r}")
        object.__setattr__(self, "runs", tuple(self.runs))
        if isinstance(self.trainable, str):
            object.__setattr__(self, "trainable", (self.trainable,))

    @property
    def trained_images(self) -> int:
        """Images pushed through the network in training, every run and epoch together."""
        return len(self.runs) * self.epochs * self.images

    @property
    def scored_images(self) -> int:
        """Images scored forward only, every run together: after every epoch, and once after training."""
        return len(self.runs) * (self.epochs * self.scored + self.scored_once)

    def but(self, **changes) -> Training:
        """A copy with `changes` (e.g. `rows.but(runs=seeds[1:])` for the runs still to train)."""
        return dataclasses.replace(self, **changes)
