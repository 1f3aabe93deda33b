"""What a notebook does with an exercise answer that is not written yet.

In the student version (`course release`) every solution is a stub that raises NotImplementedError.
The lesson's own cells that use an exercise's function call it through `attempt`, so that a notebook
with an unfinished exercise still runs to the end: only the exercise's autograded test cell fails.
"""
from __future__ import annotations

from typing import Any, Callable


def attempt(exercise: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)`, or None (and a printed line) while `fn` is still the student stub."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        print(f"{exercise} is not done yet (its function raises NotImplementedError): "
              f"this cell goes on without it")
        return None
