"""The course's main job: execute every notebook headless at a profile, then print the results table.

    course run --profile ci --out runs/ci          # every notebook, tiny subsets, minutes on a CPU
    course run --profile small 01                  # notebook 01's whole lesson, scaled for a 2-core CPU
    course run --profile full --out runs/full 01   # notebook 01 at full size (wants a GPU)
    course rehearse 06                             # notebook 06's full profile with its counts cut, minutes
    course store runs/small 01                     # keep that run's outputs in notebooks/01_*.ipynb
    course results                                 # the tables of every profile run here, and the stored one
    course results runs/full                       # one output folder's table
    course pages                                   # write RESULTS.md and docs/instructors.md's exercise table
    course colab you/your-fork                     # point the notebooks' Colab links at your fork
    course release release/                        # the student versions (nbgrader format; instructor extra)
    course grade submissions/*.ipynb               # points per exercise, hidden tests restored (instructor extra)

Each executed notebook is saved, with its outputs, in the output folder; a notebook that fails
does not stop the others, and the exit status says whether all of them ran.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import runtime
from ..runtime import PROFILES, environment
from .notebooks import notebooks, point_links_at
from .results import collect, markdown_table
from .store import checkpoint_times, record_run_time, store, stored_folder, trained_anything


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


def _read(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def _run(profile: str, out_dir: Path, selected: list[str] | None, timeout: int | None) -> int:
    status = []
    for nb in notebooks(selected):
        print(f"running {nb.name} (profile {profile}) ...", flush=True)
        # a notebook's records are its latest run's only: rows an earlier run wrote under names this run no
        # longer uses would otherwise sit beside them (and be stored with them)
        (out_dir / "results" / f"{nb.stem}.json").unlink(missing_ok=True)
        written = checkpoint_times(out_dir)
        ok, seconds, error = execute(nb, out_dir, timeout)
        status.append({"notebook": nb.name, "status": "ok" if ok else f"FAILED: {error}", "seconds": seconds})
        print(f"  {'ok' if ok else 'FAILED'} in {seconds:.0f} s" + (f": {error}" if error else ""), flush=True)
        record_run_time(out_dir, nb.stem, profile=profile, ok=ok, seconds=seconds,
                        trained=trained_anything(_read(out_dir / nb.name)) or checkpoint_times(out_dir) != written)
    print(f"\nExecuted notebooks are in {out_dir}\n")
    print(markdown_table(status))
    print("\nResults (each row says what produced it):\n")
    print(markdown_table(collect(out_dir)))
    return 0 if all(s["status"] == "ok" for s in status) else 1


def results_tables(out: Path | None = None) -> str:
    """One output folder's results; without one, every profile's folder under runs/ and the stored records."""
    if out is not None:
        return markdown_table(collect(out))
    sources = [(f"profile {p} (runs/{p})", collect(runtime.project_root() / "runs" / p)) for p in PROFILES]
    sources += [(f"stored with the notebooks, profile {p} (notebooks/results/{p})", collect(stored_folder(p), folder=""))
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
    sub.add_parser("pages", help="write RESULTS.md (from the stored records) and the exercise table of "
                                 "docs/instructors.md (from the notebooks)")
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
            except Exception as err:   # one unreadable or broken submission does not stop the others
                print(f"{submission}: not graded: {err}", flush=True)
                failed.append(submission)
        return 1 if failed else 0
    if args.command == "rehearse":
        from . import rehearse
        return rehearse.cli(args)
    if args.command == "pages":
        from . import pages
        changed = pages.write()
        print("wrote " + (", ".join(str(f.relative_to(runtime.project_root())) for f in changed) or "nothing: up to date"))
        return 0
    if args.command == "store":
        store(args.out, args.notebooks)
        return 0
    return run(args.profile, args.out or runtime.project_root() / "runs" / args.profile, args.notebooks, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
