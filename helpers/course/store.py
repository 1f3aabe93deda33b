"""Stored outputs: a small-profile run kept in the notebooks, so that a reader sees real results on
GitHub or Colab before running a cell.

`course run --profile small` executes a notebook, records its results and its run time (`record_run_time`);
`course store` copies the outputs into the notebook (machine paths replaced by placeholders, a note in its
first markdown cell, the fingerprint of its code in its metadata) and the records into
`notebooks/results/small/`, from which RESULTS.md is generated (`course results --write`).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from ..files import write_atomic
from .. import runtime
from ..runtime import default_data_dir, device_name, pick_device
from .notebooks import code_fingerprint, notebooks

RUN_TIMES = "run_times.json"   # beside the results records: how long each notebook took, as `course run` measured


TRAINED = re.compile(r"^epoch +\d+/\d+ \| loss", re.M)   # fit's line after an epoch it trained (a reused run's
                                                           # log is printed indented under "this run finished before")


def trained_anything(nb) -> bool:
    """Whether an executed notebook printed an epoch it trained itself (fit's log, with progress on)."""
    return any(TRAINED.search(output.get("text", "")) for cell in nb.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def checkpoint_times(out_dir: Path) -> dict[str, float]:
    """Every checkpoint file under `out_dir` and when it was written: a run that trains writes one (a finished
    run is never written again), also where fit's log is switched off."""
    return {str(p): p.stat().st_mtime for p in Path(out_dir).rglob("*.pt")}


def record_run_time(out_dir: Path, notebook: str, *, profile: str, ok: bool, seconds: float,
                    trained: bool = True) -> dict:
    """Keep how long `notebook` took in `out_dir/results/run_times.json`. An execution that trained nothing
    (every run was finished in the folder) also keeps `cold`: the minutes and date of the last execution in
    this folder that trained, so that a stored run never passes off minutes of reuse as the profile's cost."""
    file = out_dir / "results" / RUN_TIMES
    times = json.loads(file.read_text()) if file.exists() else {}
    entry = {"profile": profile, "ok": ok, "minutes": round(seconds / 60, 1),
             "device": device_name(pick_device()), "date": datetime.now().astimezone().date().isoformat()}
    entry["trained"] = trained
    before = times.get(notebook, {})
    last_cold = before.get("cold") or ({k: before[k] for k in ("minutes", "date")}
                                       if before.get("ok") and before.get("trained", True) else None)
    if not (trained and ok) and last_cold and before.get("profile") == profile:   # a failed run keeps it too
        entry["cold"] = last_cold
    times[notebook] = entry
    write_atomic(file, json.dumps(times, indent=1))
    return entry


def run_note(run: dict) -> str:
    """How a stored run was made, in words (the stored notebook's first cell and RESULTS.md say it)."""
    made = f"run on {run['date']} by `course run --profile small` in {run['minutes']:.1f} minutes"
    if "cold" in run:
        made += (f", reusing the finished training runs in its output folder (the execution that trained them, "
                 f"on {run['cold']['date']}, took {run['cold']['minutes']:.1f} minutes)")
    return made


WIDGET = "application/vnd.jupyter.widget-view+json"
_NOISE = re.compile(r"^\[IPKernelApp\] WARNING.*\n?", re.M)
_BAR = re.compile(r"\d+%\|.*\|")


def clean_outputs(outputs: list[dict]) -> list[dict]:
    """A cell's outputs as a reader should see them: progress bars dropped (widgets whose state is not stored
    show only a stub such as `0%| 0/58`) and the kernel's own warnings left out."""
    kept = []
    for output in outputs:
        if WIDGET in output.get("data", {}):
            continue
        if output.get("output_type") == "stream":
            text = _NOISE.sub("", output["text"])
            if output.get("name") == "stderr":   # tqdm's bars in a terminal: what a carriage return left, if not a bar
                lines = (line.split("\r")[-1] for line in text.split("\n"))
                text = "\n".join(line for line in lines if not _BAR.search(line))
            if not text.strip():
                continue
            output = {**output, "text": text}
        kept.append(output)
    return kept


# ---- Stored outputs: a small-profile run kept in the notebooks, so readers see results without running --------

MAX_NOTEBOOK_BYTES = 2_000_000
_ABSOLUTE = re.compile(r"(?<![\w.~$])/(?:root|home|Users|tmp|work|content|mnt|var|opt|private|srv|data)/[^\s'\")]*")
STORED_NOTE = "**Stored outputs.**"


def stored_folder(profile: str = "small") -> Path:
    """Where the stored runs' records are kept: notebooks/results/<profile>/<notebook>.json."""
    return runtime.project_root() / "notebooks" / "results" / profile


def _scrub(text: str, replacements: dict[str, str]) -> str:
    for path, placeholder in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, placeholder)
    return text


def outputs_text(nb) -> str:
    """Every code cell's stored outputs, as text (the sources may name Colab's paths on purpose): streams,
    errors and the text forms of rich outputs. Images are left out: their base64 letters can spell anything,
    '/srv/...' included."""
    outputs = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = {k: v for k, v in output.get("data", {}).items() if k.startswith("text/") or k.endswith("json")}
            outputs.append({**{k: v for k, v in output.items() if k != "data"}, "data": data})
    return json.dumps(outputs, ensure_ascii=False)


def absolute_paths(text: str) -> list[str]:
    """Absolute paths of a machine (/root/..., /home/..., /tmp/...) found in `text`."""
    return _ABSOLUTE.findall(text)


def store(out_dir: Path, selected: list[str] | None = None) -> list[Path]:
    """Copy the outputs of notebooks executed by `course run --profile small` in `out_dir` into the
    course's notebooks, with machine paths replaced by placeholders, a note in the first markdown cell
    (profile, device, date, run time), and the run's results records under notebooks/results/small/.

    Refuses (SystemExit, saying why and what to do) when a notebook failed or was not run at the small
    profile, when its code differs from the notebook's current code, when a machine path would remain,
    or when the stored notebook would exceed 2 MB.
    """
    import nbformat
    out_dir = out_dir.resolve()
    times_file = out_dir / "results" / RUN_TIMES
    if not times_file.exists():
        raise SystemExit(f"{times_file} is missing: run `course run --profile small --out {out_dir}` first")
    times = json.loads(times_file.read_text())
    replacements = {str(out_dir): "$COURSE_OUTPUT_DIR", str(default_data_dir()): "$COURSE_DATA_DIR",
                    str(runtime.project_root()): "<course>", str(Path.home()): "~"}
    stored = []
    for target in notebooks(selected):
        executed_file = out_dir / target.name
        run = times.get(target.stem)
        if not executed_file.exists() or run is None:
            raise SystemExit(f"{target.stem} was not run into {out_dir}: run `course run --profile small --out "
                             f"{out_dir} {target.stem[:2]}` first")
        if run["profile"] != "small" or not run["ok"]:
            raise SystemExit(f"{target.stem} in {out_dir} ran at profile {run['profile']!r}"
                             f"{'' if run['ok'] else ' and FAILED'}: only a finished small-profile run is stored")
        executed = nbformat.read(executed_file, as_version=4)
        nb = nbformat.read(target, as_version=4)
        if code_fingerprint(executed) != code_fingerprint(nb):
            raise SystemExit(f"{target.name}'s code changed after the run in {out_dir}: run it again "
                             f"(`course run --profile small --out {out_dir} {target.stem[:2]}`), then store it")
        # code cells pair up in order (the fingerprint says they are the same code); markdown may have changed
        code_cells = lambda book: [c for c in book.cells if c.cell_type == "code"]
        for cell, ran in zip(code_cells(nb), code_cells(executed)):
            outputs = clean_outputs(json.loads(_scrub(json.dumps(ran.outputs), replacements)))
            cell.outputs = [nbformat.from_dict(o) for o in outputs]
            cell.execution_count = ran.execution_count
            if "execution" in ran.metadata:
                cell.metadata["execution"] = ran.metadata["execution"]
        note = (f"{STORED_NOTE} The outputs below come from the `small` profile on a 2-core CPU "
                f"({run['device']}), {run_note(run)}. Run a cell and your own outputs replace them.")
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        paragraphs = [p for p in first.source.split("\n\n") if not p.startswith(STORED_NOTE)]
        first.source = "\n\n".join(paragraphs[:2] + [note] + paragraphs[2:])
        nb.metadata["course_stored"] = {"profile": "small", **{k: run[k] for k in ("device", "date", "minutes", "cold")
                                                                if k in run},
                                        "code": code_fingerprint(nb)}
        text = nbformat.writes(nb)
        if leaks := absolute_paths(outputs_text(nb)):
            raise SystemExit(f"{target.name}: its outputs still hold machine paths, e.g. {leaks[:3]}; print "
                             f"paths relative to the data or output folder, then run it again")
        if len(text.encode()) > MAX_NOTEBOOK_BYTES:
            raise SystemExit(f"{target.name} would be {len(text.encode()) / 1e6:.1f} MB with its outputs, over the "
                             f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB limit: draw fewer or smaller figures")
        records = out_dir / "results" / f"{target.stem}.json"
        folder = stored_folder("small")
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / records.name, _scrub(records.read_text(), replacements))
        store_times = folder / RUN_TIMES
        kept = json.loads(store_times.read_text()) if store_times.exists() else {}
        write_atomic(store_times, json.dumps({**kept, target.stem: run}, indent=1, sort_keys=True))
        write_atomic(target, text)   # a notebook is never left half written
        stored.append(target)
        print(f"stored {target.name}: {len(text.encode()) / 1e6:.2f} MB, small profile, {run['minutes']:.1f} min "
              f"on {run['device']} ({run['date']})")
    return stored
