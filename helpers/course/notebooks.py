"""The course's notebooks as files: finding them, the fingerprint of their code, and their Colab links.

The notebooks in `notebooks/` are the instructor's version. Each opens with an "Open in Colab" badge and
a setup cell whose COURSE_REPO default says which repository Colab clones; both point at `OWNER/REPO`
until `course colab you/your-fork` points them at a fork (and `course release --repo` at the students').
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .. import runtime

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
    readme = runtime.project_root() / "README.md"
    if readme.exists() and (new := point_text(text := readme.read_text(), github_path, branch)) != text:
        readme.write_text(new)
        changed.append(readme)
    return changed


def notebooks(selected: list[str] | None = None) -> list[Path]:
    folder = runtime.project_root() / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [nb for nb in found if any(nb.name.startswith(s) for s in selected)]
        if not found:
            raise SystemExit(f"no notebook in {folder} starts with {selected}")
    return found


def code_fingerprint(nb) -> str:
    """A hash of every code cell's source, in order: stored outputs belong to exactly this code. The setup
    cell's COURSE_REPO default is left out, so `course colab` (which points it at a fork) keeps them valid."""
    code = "\n\x00".join(_REPO_LINE.sub("COURSE_REPO", c.source) for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:16]
