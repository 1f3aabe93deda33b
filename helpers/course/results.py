"""Headline figures: each notebook records its own, the course runner gathers them into one table.

A record always carries what produced it (device, profile, seed, where its data came from, and
whatever the notebook adds, e.g. epochs and data), so no figure in the table is separated from its
provenance.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..files import write_atomic

try:   # one writer at a time per results file (Linux and macOS; Windows writes without the lock)
    import fcntl
except ImportError:   # pragma: no cover
    fcntl = None
from ..runtime import Runtime, device_name


def record(rt: Runtime, notebook: str, experiment: str, **figures) -> dict:
    """Add (or replace) one row of `notebook`'s results in `rt.output_dir/results/<notebook>.json`."""
    from ..data import provenance
    row = {"notebook": notebook, "experiment": experiment, **figures,
           "device": device_name(rt.device), "profile": rt.profile, "seed": rt.seed}
    # where the data came from: every split helpers.data.load read in this process (a notebook loads its
    # data at the top), unless the notebook names it itself
    if provenance() and "data_from" not in figures:
        row["data_from"] = provenance()
    row = {key: plain(value, f"{experiment}: {key}") for key, value in row.items()}
    folder = rt.output_dir / "results"
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{notebook}.json"
    with _locked(file):   # read, add, write: two processes recording at once keep both rows
        try:
            rows = _rows(file) if file.exists() else []
        except ValueError as err:   # kept aside, not overwritten: nothing is lost
            damaged = file.with_name(f"{file.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            file.rename(damaged)
            warnings.warn(f"{err}; it is kept as {damaged.name} and this row starts a new {file.name}", stacklevel=2)
            rows = []
        rows = [r for r in rows if r["experiment"] != experiment] + [row]
        try:
            write_atomic(file, json.dumps(rows, indent=1, allow_nan=False))
        except OSError as err:   # a full disk (a Drive quota on Colab): only the temporary file is lost
            raise OSError(err.errno, f"could not write the results file {file} ({err.strerror or err}); "
                                     f"its earlier rows are intact. Free some disk space (or Drive quota) "
                                     f"and record again.") from err
    return row


def plain(value, where: str = "a figure"):
    """`value` as standard JSON holds it: NumPy and one-number torch values as Python numbers (integers stay
    integers), NaN and infinities as the strings "nan", "inf" and "-inf" (JSON has no number for them), tuples
    as lists. Anything else that JSON cannot hold is refused, naming `where`."""
    if isinstance(value, (np.generic, torch.Tensor)):
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise TypeError(f"{where}: a tensor of shape {tuple(value.shape)} is not one figure; record a number")
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: a {type(value).__name__} is not a figure a results file can hold; record a number "
                    f"or a string")


@contextlib.contextmanager
def _locked(file: Path):
    """An exclusive lock on the results folder (the folder itself: no lock file is left in it)."""
    if fcntl is None:
        yield
        return
    fd = os.open(file.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


def _rows(file: Path):
    """A results file's content; a damaged one is named, with what to do."""
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"the results file {file} cannot be read ({type(err).__name__}: {err}): it is damaged "
                         f"(a copy that did not finish?). Move it away or restore it, then run its notebook's "
                         f"results cell again") from None


def is_timing(field: str) -> bool:
    """A field that measures the machine's speed (`s_per_epoch`, `images_per_s`, ...), not the model:
    it differs from run to run. Every other field of a record repeats exactly on a rerun on the CPU."""
    return field.startswith("s_per_") or field.endswith("_per_s") or field in ("seconds", "minutes")


def without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not is_timing(k)} for row in rows]


def collect(output_dir: str | Path, folder: str = "results") -> list[dict]:
    """Every recorded row under `output_dir/<folder>`, notebooks in order (files of rows only: the run
    times that `course run` keeps beside them are not results)."""
    rows = []
    for file in sorted((Path(output_dir) / folder).glob("*.json")):
        content = _rows(file)
        if isinstance(content, list):
            rows += content
    return rows


PERCENT_WORDS = ("accuracy", "top1", "top5", "reported", "precision", "recall", "std", "margin", "spread")


def _cell(column: str, value) -> str:
    if isinstance(value, float):
        if any(w in column for w in PERCENT_WORDS):
            return f"{100 * value:.2f}%"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table; accuracy-like columns print as percentages."""
    if not rows:
        return "(no results recorded)"
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ---- what a run shows: its comparisons and its figures, read back from its records --------------------------

COMPARISON = "comparison: "   # the experiment name of a recorded comparison starts with this
PROVENANCE = ("notebook", "device", "profile", "seed", "data_from")


def record_comparisons(rt: Runtime, notebook: str) -> list[dict]:
    """Record every comparison `checks.direction` judged in this process, one row each (experiment
    "comparison: <claim>"), so that the run's verdicts are kept with its figures."""
    from ..checks import COMPARISONS
    return [record(rt, notebook, COMPARISON + c["claim"], better_accuracy=c["better"], worse_accuracy=c["worse"],
                   margin=c["margin"], spread=c["spread"], ratio=c["ratio"], seeds=c["seeds"], test_images=c["n"],
                   verdict=c["verdict"])
            for c in COMPARISONS.values()]


def read(output_dir: str | Path, notebook: str) -> list[dict]:
    """The rows `notebook` recorded under `output_dir/results/`."""
    file = Path(output_dir) / "results" / f"{notebook}.json"
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist: {notebook} has recorded nothing in {output_dir} yet "
                                f"(its results cell records its figures; run the notebook from the top)")
    return _rows(file)


def _points(value: float) -> str:
    return f"{100 * value:+.2f} points"


def comparison_line(row: dict) -> str:
    """One recorded comparison in words: the claim, the two accuracies, the margin against the spread, the verdict."""
    claim = row["experiment"][len(COMPARISON):]
    return (f"{claim}: {100 * row['better_accuracy']:.2f}% against {100 * row['worse_accuracy']:.2f}%, margin "
            f"{_points(row['margin'])}, {row['ratio']:.1f}× the spread of {100 * row['spread']:.2f} points "
            f"({row['seeds']} seed{'s' if row['seeds'] != 1 else ''}, {row['test_images']:,} test images): "
            f"**{row['verdict']}**")


def summary(rows: list[dict]) -> str:
    """What a run shows, in Markdown, from its records alone: what produced it, every comparison
    `checks.direction` judged (with its verdict), and every other figure (timings left out: they measure the
    machine). A notebook's closing cell shows this for its own run; RESULTS.md shows it for the stored runs."""
    if not rows:
        return "(no results recorded)"
    comparisons = [r for r in rows if r["experiment"].startswith(COMPARISON)]
    figures = [{k: v for k, v in r.items() if not is_timing(k)} for r in rows if r not in comparisons]
    shared = {k: rows[0].get(k) for k in PROVENANCE if k != "notebook" and all(r.get(k) == rows[0].get(k) for r in rows)}
    head = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in shared.items() if v is not None)
    parts = [f"Produced by: {head}."]
    if comparisons:
        parts.append("Comparisons (`checks.direction`: asserted where the margin is at least 3× the larger seed-to-seed "
                     "range of the two rows, never less than one binomial standard deviation):\n\n"
                     + "\n".join(f"- {comparison_line(r)}" for r in comparisons))
    groups: dict[tuple, list[dict]] = {}   # rows that share their fields share a table
    for r in figures:
        columns = tuple(k for k, v in r.items() if k not in shared and k != "notebook" and v is not None)
        if columns != ("experiment",):   # a row of timings alone (they measure the machine) shows nothing here
            groups.setdefault(columns, []).append(r)
    for columns, group in groups.items():
        same = [c for c in columns if c != "experiment" and len(group) > 1 and len({_cell(c, r[c]) for r in group}) == 1]
        note = "; ".join(f"{c.replace('_', ' ')}: {_cell(c, group[0][c])}" for c in same)
        parts.append((f"{note}\n\n" if note else "") + markdown_table(group, [c for c in columns if c not in same]))
    return "\n\n".join(parts)


class Page:
    """Markdown text that Jupyter renders as Markdown when a cell ends with it (and prints as itself)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def run_summary(rt: Runtime, notebook: str) -> Page:
    """The closing cell of a notebook: record this run's comparisons, then show what the run shows (`summary`)."""
    record_comparisons(rt, notebook)
    return Page(summary(read(rt.output_dir, notebook)))
