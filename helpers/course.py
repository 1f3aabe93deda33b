"""The course's main job: execute every notebook headless at a profile, then print the results table.

    course run --profile ci --out runs/ci          # every notebook, tiny subsets, minutes on a CPU
    course run --profile full --out runs/full 01   # notebook 01 at full size (wants a GPU)
    course results runs/full                       # the table again
    course colab you/your-fork                     # point the notebooks' Colab links at your fork

Each executed notebook is saved, with its outputs, in the output folder; a notebook that fails
does not stop the others, and the exit status says whether all of them ran.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from .results import collect, markdown_table
from .runtime import PROFILES, project_root



PLACEHOLDER_REPO = "OWNER/REPO"  # the GitHub path in the links until `course colab` sets it
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/"
                    r"(?P<path>[^/]+/[^/]+)/blob/(?P<branch>[^/]+)/notebooks/(?P<name>[^)]+)\)")
_REPO_LINE = re.compile(r'COURSE_REPO = os\.environ\.get\("COURSE_REPO", "[^"]*"\)')


def colab_badge(github_path: str, notebook: str, branch: str = "main") -> str:
    return (f"[![Open in Colab]({COLAB_BADGE})](https://colab.research.google.com/github/{github_path}/blob/"
            f"{branch}/notebooks/{notebook})")


def _point(text: str, github_path: str, branch: str) -> str:
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
            new = _point(cell.source, github_path, branch)
            edits += new != cell.source
            cell.source = new
        if edits:
            nbformat.write(nb, file)
            changed.append(file)
    readme = project_root() / "README.md"
    if readme.exists() and (new := _point(text := readme.read_text(), github_path, branch)) != text:
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
    os.environ["COURSE_PROFILE"] = profile
    os.environ["COURSE_OUTPUT_DIR"] = str(out_dir)
    status = []
    for nb in notebooks(selected):
        print(f"running {nb.name} (profile {profile}) ...", flush=True)
        ok, seconds, error = execute(nb, out_dir, timeout)
        status.append({"notebook": nb.name, "status": "ok" if ok else f"FAILED: {error}", "seconds": seconds})
        print(f"  {'ok' if ok else 'FAILED'} in {seconds:.0f} s" + (f": {error}" if error else ""), flush=True)
    print(f"\nExecuted notebooks are in {out_dir}\n")
    print(markdown_table(status))
    print("\nResults (each row says what produced it):\n")
    print(markdown_table(collect(out_dir)))
    return 0 if all(s["status"] == "ok" for s in status) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks and print the results table")
    p_run.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 01 03 (default: all)")
    p_run.add_argument("--profile", choices=PROFILES, default="ci")
    p_run.add_argument("--out", type=Path, default=None, help="output folder (default runs/<profile>)")
    p_run.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    p_res = sub.add_parser("results", help="print the results table of an output folder")
    p_res.add_argument("out", type=Path)
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
        print(markdown_table(collect(args.out)))
        return 0
    return run(args.profile, args.out or project_root() / "runs" / args.profile, args.notebooks, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
