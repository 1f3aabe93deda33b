"""Headline figures: each notebook records its own, the course runner gathers them into one table.

A record always carries what produced it (device, profile, seed, where its data came from, and
whatever the notebook adds, e.g. epochs and data), so no figure in the table is separated from its
provenance.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from .runtime import Runtime, device_name


def record(rt: Runtime, notebook: str, experiment: str, **figures) -> dict:
    """Add (or replace) one row of `notebook`'s results in `rt.output_dir/results/<notebook>.json`."""
    from .data import provenance
    row = {"notebook": notebook, "experiment": experiment, **figures,
           "device": device_name(rt.device), "profile": rt.profile, "seed": rt.seed}
    # where the data came from: every split helpers.data.load read in this process (a notebook loads its
    # data at the top), unless the notebook names it itself
    if provenance() and "data_from" not in figures:
        row["data_from"] = provenance()
    folder = rt.output_dir / "results"
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{notebook}.json"
    rows = json.loads(file.read_text()) if file.exists() else []
    rows = [r for r in rows if r["experiment"] != experiment] + [row]
    _write_atomic(file, json.dumps(rows, indent=1, default=float))
    return row


def is_timing(field: str) -> bool:
    """A field that measures the machine's speed (`s_per_epoch`, `images_per_s`, ...), not the model:
    it differs from run to run. Every other field of a record repeats exactly on a rerun on the CPU."""
    return field.startswith("s_per_") or field.endswith("_per_s") or field in ("seconds", "minutes")


def without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not is_timing(k)} for row in rows]


def _write_atomic(file: Path, text: str) -> None:
    """Replace `file` in one step. Written in place, a full disk (a Drive quota on Colab) cut the
    file off and lost every row recorded before; now only the temporary file is lost."""
    # Unique per process: two notebooks recording at once never write into one temporary file. It
    # ends in .tmp, so collect() never reads it.
    tmp = file.with_name(f".{file.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, file)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write the results file {file} ({err.strerror or err}); "
                                 f"its earlier rows are intact. Free some disk space (or Drive quota) "
                                 f"and record again.") from err


def collect(output_dir: str | Path, folder: str = "results") -> list[dict]:
    """Every recorded row under `output_dir/<folder>`, notebooks in order (files of rows only: the run
    times that `course run` keeps beside them are not results)."""
    rows = []
    for file in sorted((Path(output_dir) / folder).glob("*.json")):
        content = json.loads(file.read_text())
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
