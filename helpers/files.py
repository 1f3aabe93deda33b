"""Files written whole or not at all: the one atomic writer of the course.

Checkpoints, the data cache, the results records and the stored notebooks are all written through
`write_atomic`: the content goes to a temporary file unique to this process beside the target, is
flushed to disk, and only then takes the target's name. A run killed mid-write, a full disk (a Drive
quota on Colab) or two processes writing the same file never leave half a file under the real name.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Callable


def temporary_name(path: Path) -> Path:
    """`.name.<pid>-<random>.tmp` beside `path`: hidden, unique per process and call, and never read as the
    file itself (it ends in .tmp)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | Path, content: str | bytes | Callable[[Path], object]) -> None:
    """Replace `path` in one step with `content`: text, bytes, or a function that writes the file it is given
    (`lambda tmp: torch.save(state, tmp)`). On failure the temporary file goes, `path` is as it was, and the
    error (an OSError; torch.save reports a full disk as a RuntimeError) reaches the caller, which says what
    was lost and what to do."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(tmp)
        else:
            with tmp.open("wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())   # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
