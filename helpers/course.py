"""The course's main job: execute every notebook headless at a profile, then print the results table.

    course run --profile ci --out runs/ci          # every notebook, tiny subsets, minutes on a CPU
    course run --profile small 01                  # notebook 01's whole lesson, scaled for a 2-core CPU
    course run --profile full --out runs/full 01   # notebook 01 at full size (wants a GPU)
    course rehearse 06                             # notebook 06's full profile with its counts cut, minutes
    course store runs/small 01                     # keep that run's outputs in notebooks/01_*.ipynb
    course results                                 # the tables of every profile run here, and the stored one
    course results runs/full                       # one output folder's table
    course colab you/your-fork                     # point the notebooks' Colab links at your fork
    course release release/                        # the student versions (nbgrader format; instructor extra)
    course grade submissions/*.ipynb               # points per exercise, hidden tests restored (instructor extra)

Each executed notebook is saved, with its outputs, in the output folder; a notebook that fails
does not stop the others, and the exit status says whether all of them ran.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from .results import _write_atomic, collect, markdown_table
from .runtime import PROFILES, default_data_dir, device_name, environment, pick_device, project_root



PLACEHOLDER_REPO = "OWNER/REPO"  # the GitHub path in the links until `course colab` sets it
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/"
                    r"(?P<path>[^/]+/[^/]+)/blob/(?P<branch>[^/]+)/notebooks/(?P<name>[^)]+)\)")
_REPO_LINE = re.compile(r'COURSE_REPO = os\.environ\.get\("COURSE_REPO", "[^"]*"\)')


def colab_badge(github_path: str, notebook: str, branch: str = "main") -> str:
    return (f"[![Open in Colab]({COLAB_BADGE})](https://colab.research.google.com/github/{github_path}/blob/"
            f"{branch}/notebooks/{notebook})")


def point_text(text: str, github_path: str, branch: str) -> str:
    """`text` with its Colab badges and COURSE_REPO default pointed at `github_path`."""
    text = _BADGE.sub(lambda m: colab_badge(github_path, m["name"], branch), text)
    return _REPO_LINE.sub(f'COURSE_REPO = os.environ.get("COURSE_REPO", "https://github.com/{github_path}.git")', text)


def point_links_at(github_path: str, branch: str = "main") -> list[Path]:
    """Rewrite every notebook's "Open in Colab" badge and its setup cell's COURSE_REPO default for the
    repository `github_path` ("you/your-fork"), and the README's badges; return the files changed."""
    import nbformat
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", github_path):
        raise SystemExit(f"{github_path!r} is not a GitHub path like 'you/your-fork'")
    changed = []
    for file in notebooks():
        nb = nbformat.read(file, as_version=4)
        edits = 0
        for cell in nb.cells:
            new = point_text(cell.source, github_path, branch)
            edits += new != cell.source
            cell.source = new
        if edits:
            nbformat.write(nb, file)
            changed.append(file)
    readme = project_root() / "README.md"
    if readme.exists() and (new := point_text(text := readme.read_text(), github_path, branch)) != text:
        readme.write_text(new)
        changed.append(readme)
    return changed


def notebooks(selected: list[str] | None = None) -> list[Path]:
    folder = project_root() / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [nb for nb in found if any(nb.name.startswith(s) for s in selected)]
        if not found:
            raise SystemExit(f"no notebook in {folder} starts with {selected}")
    return found


def execute(notebook: Path, out_dir: Path, timeout: int | None) -> tuple[bool, float, str]:
    import nbclient
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(notebook.parent)}})
    began = time.perf_counter()
    error = ""
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:  # a dead kernel, a timeout: report it and go on with the next notebook
        error = f"{type(err).__name__}: {err}"
    nbformat.write(nb, out_dir / notebook.name)
    return not error, time.perf_counter() - began, error


def run(profile: str, out_dir: Path, selected: list[str] | None, timeout: int | None) -> int:
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # the kernels inherit these; the caller's values come back afterwards. The inline backend: a caller's
    # MPLBACKEND=Agg (usual in scripts and CI) would make plt.show() draw nothing into the executed notebooks
    with environment(COURSE_PROFILE=profile, COURSE_OUTPUT_DIR=str(out_dir),
                     MPLBACKEND="module://matplotlib_inline.backend_inline"):
        return _run(profile, out_dir, selected, timeout)


def _run(profile: str, out_dir: Path, selected: list[str] | None, timeout: int | None) -> int:
    status = []
    for nb in notebooks(selected):
        print(f"running {nb.name} (profile {profile}) ...", flush=True)
        # a notebook's records are its latest run's only: rows an earlier run wrote under names this run no
        # longer uses would otherwise sit beside them (and be stored with them)
        (out_dir / "results" / f"{nb.stem}.json").unlink(missing_ok=True)
        ok, seconds, error = execute(nb, out_dir, timeout)
        status.append({"notebook": nb.name, "status": "ok" if ok else f"FAILED: {error}", "seconds": seconds})
        print(f"  {'ok' if ok else 'FAILED'} in {seconds:.0f} s" + (f": {error}" if error else ""), flush=True)
        _record_run_time(out_dir, nb.stem, profile=profile, ok=ok, seconds=seconds)
    print(f"\nExecuted notebooks are in {out_dir}\n")
    print(markdown_table(status))
    print("\nResults (each row says what produced it):\n")
    print(markdown_table(collect(out_dir)))
    return 0 if all(s["status"] == "ok" for s in status) else 1


RUN_TIMES = "run_times.json"   # beside the results records: how long each notebook took, as `course run` measured


def _record_run_time(out_dir: Path, notebook: str, *, profile: str, ok: bool, seconds: float) -> None:
    file = out_dir / "results" / RUN_TIMES
    file.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(file.read_text()) if file.exists() else {}
    times[notebook] = {"profile": profile, "ok": ok, "minutes": round(seconds / 60, 1),
                       "device": device_name(pick_device()), "date": datetime.now().astimezone().date().isoformat()}
    _write_atomic(file, json.dumps(times, indent=1))


# ---- Stored outputs: a small-profile run kept in the notebooks, so readers see results without running --------

STORED = project_root() / "notebooks" / "results"   # the stored runs' records: STORED/<profile>/<notebook>.json
MAX_NOTEBOOK_BYTES = 2_000_000
_ABSOLUTE = re.compile(r"(?<![\w.~$])/(?:root|home|Users|tmp|work|content|mnt|var|opt|private|srv|data)/[^\s'\")]*")
STORED_NOTE = "**Stored outputs.**"


def code_fingerprint(nb) -> str:
    """A hash of every code cell's source, in order: stored outputs belong to exactly this code. The setup
    cell's COURSE_REPO default is left out, so `course colab` (which points it at a fork) keeps them valid."""
    code = "\n\x00".join(_REPO_LINE.sub("COURSE_REPO", c.source) for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:16]


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
                    str(project_root()): "<course>", str(Path.home()): "~"}
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
            outputs = json.loads(_scrub(json.dumps(ran.outputs), replacements))
            cell.outputs = [nbformat.from_dict(o) for o in outputs]
            cell.execution_count = ran.execution_count
            if "execution" in ran.metadata:
                cell.metadata["execution"] = ran.metadata["execution"]
        note = (f"{STORED_NOTE} The outputs below come from the `small` profile on a 2-core CPU "
                f"({run['device']}), run on {run['date']} by `course run --profile small` in {run['minutes']:.1f} "
                f"minutes. Run a cell and your own outputs replace them.")
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        paragraphs = [p for p in first.source.split("\n\n") if not p.startswith(STORED_NOTE)]
        first.source = "\n\n".join(paragraphs[:2] + [note] + paragraphs[2:])
        nb.metadata["course_stored"] = {"profile": "small", **{k: run[k] for k in ("device", "date", "minutes")},
                                        "code": code_fingerprint(nb)}
        text = nbformat.writes(nb)
        if leaks := absolute_paths(outputs_text(nb)):
            raise SystemExit(f"{target.name}: its outputs still hold machine paths, e.g. {leaks[:3]}; print "
                             f"paths relative to the data or output folder, then run it again")
        if len(text.encode()) > MAX_NOTEBOOK_BYTES:
            raise SystemExit(f"{target.name} would be {len(text.encode()) / 1e6:.1f} MB with its outputs, over the "
                             f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB limit: draw fewer or smaller figures")
        records = out_dir / "results" / f"{target.stem}.json"
        folder = STORED / "small"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / records.name).write_text(_scrub(records.read_text(), replacements))
        store_times = folder / RUN_TIMES
        kept = json.loads(store_times.read_text()) if store_times.exists() else {}
        store_times.write_text(json.dumps({**kept, target.stem: run}, indent=1, sort_keys=True))
        target.write_text(text)
        stored.append(target)
        print(f"stored {target.name}: {len(text.encode()) / 1e6:.2f} MB, small profile, {run['minutes']:.1f} min "
              f"on {run['device']} ({run['date']})")
    return stored


def results_tables(out: Path | None = None) -> str:
    """One output folder's results; without one, every profile's folder under runs/ and the stored records."""
    if out is not None:
        return markdown_table(collect(out))
    sources = [(f"profile {p} (runs/{p})", collect(project_root() / "runs" / p)) for p in PROFILES]
    sources += [(f"stored with the notebooks, profile {p} (notebooks/results/{p})", collect(STORED / p, folder=""))
                for p in PROFILES]
    parts = [f"## {title}\n\n{markdown_table(rows)}" for title, rows in sources if rows]
    return "\n\n".join(parts) or "(no results recorded yet: run `course run --profile ci`)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks and print the results table")
    p_run.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 01 03 (default: all)")
    p_run.add_argument("--profile", choices=PROFILES, default="ci")
    p_run.add_argument("--out", type=Path, default=None, help="output folder (default runs/<profile>)")
    p_run.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    p_reh = sub.add_parser("rehearse", help="rehearse the full profile: its data, sizes and code paths with every "
                                            "count cut (minutes); per cell the time and the peak memory")
    p_reh.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 06 07 (default: all)")
    p_reh.add_argument("--batches", type=int, default=2, help="batches each pass over a loader reads (default: 2)")
    p_reh.add_argument("--out", type=Path, default=None, help="output folder (default runs/rehearsal)")
    p_reh.add_argument("--offline-data", action="store_true",
                       help="STL-10 from the offline stand-in, its unlabeled split repeated to 100,000 images")
    p_reh.add_argument("--limit-gb", type=float, default=12.7, help="host memory a cell may peak at (Colab: 12.7)")
    p_reh.add_argument("--timeout", type=int, default=None,
                       help="seconds per cell, or per notebook with --in-process (default: none)")
    p_reh.add_argument("--gpu-check", action="store_true",
                       help="first interrupt a run mid-epoch and resume it on this device, and list the operations "
                            "without a deterministic version there (the GPU check)")
    p_reh.add_argument("--in-process", action="store_true",
                       help="run each notebook's code cells in a fresh Python process instead of a Jupyter kernel")
    p_res = sub.add_parser("results", help="print the results tables (default: every profile's, and the stored)")
    p_res.add_argument("out", type=Path, nargs="?", default=None)
    p_store = sub.add_parser("store", help="keep a small-profile run's outputs in the notebooks")
    p_store.add_argument("out", type=Path, help="the output folder of `course run --profile small`")
    p_store.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 01 03 (default: all)")
    p_rel = sub.add_parser("release", help="write the student versions of the notebooks with exercises (needs the "
                                            "instructor extra)")
    p_rel.add_argument("out", type=Path, help="folder for the student notebooks")
    p_rel.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 01 03 (default: all)")
    p_rel.add_argument("--repo", default=None, help="owner/name of the students' GitHub repository: the release's "
                                                    "Colab badges and setup cells point there (default: no badge)")
    p_rel.add_argument("--branch", default="main")
    p_grade = sub.add_parser("grade", help="grade students' notebooks: run each at the ci profile with the hidden "
                                          "tests restored, print points per exercise (needs the instructor extra)")
    p_grade.add_argument("submissions", type=Path, nargs="+", help="students' .ipynb files")
    p_grade.add_argument("--executed", type=Path, default=None,
                         help="folder to keep each executed notebook in, as feedback for the student")
    p_grade.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    p_colab = sub.add_parser("colab", help="point the notebooks' 'Open in Colab' links and setup cells at a fork")
    p_colab.add_argument("github_path", help="owner/name of the GitHub repository, e.g. you/dl-course")
    p_colab.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    if args.command == "colab":
        changed = point_links_at(args.github_path, args.branch)
        print(f"pointed {len(changed)} files at github.com/{args.github_path} ({args.branch}): "
              + ", ".join(f.name for f in changed) + "\nCommit and push them; the badges then open your fork.")
        return 0
    if args.command == "results":
        print(results_tables(args.out))
        return 0
    if args.command == "release":
        from . import grading
        written = grading.release(args.out, args.notebooks, repo=args.repo, branch=args.branch)
        print(f"wrote {len(written)} student notebooks to {args.out}: " + ", ".join(p.name for p in written))
        return 0
    if args.command == "grade":
        from . import grading
        if args.executed:
            args.executed.mkdir(parents=True, exist_ok=True)
        written, failed = set(), []
        for submission in args.submissions:
            target = None
            if args.executed:   # one file per submission: students' copies share the released file name
                target, n = args.executed / submission.name, 1
                while target in written:
                    n += 1
                    target = args.executed / f"{submission.resolve().parent.name}-{n}_{submission.name}"
                written.add(target)
            try:
                print(grading.grade(submission, timeout=args.timeout, executed=target), flush=True)
            except (OSError, ValueError) as err:   # one unreadable submission does not stop the others
                print(f"{submission}: not graded: {err}", flush=True)
                failed.append(submission)
        return 1 if failed else 0
    if args.command == "rehearse":
        from . import rehearse
        return rehearse.cli(args)
    if args.command == "store":
        store(args.out, args.notebooks)
        return 0
    return run(args.profile, args.out or project_root() / "runs" / args.profile, args.notebooks, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
