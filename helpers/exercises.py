"""What a notebook does with an exercise's answer: call it without letting it stop the lesson, and
test it without a stray warning costing its points.

In the student version (`course release`) every solution is a stub that raises NotImplementedError.
The lesson's own cells that use an exercise's function call it through `attempt`, so that a notebook
with an unfinished (or broken) exercise still runs to the end: only the exercise's test cell fails.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable


def attempt(exercise: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)`, or None (and a printed line) while `fn` is the student stub or raises."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        print(f"{exercise} is not done yet (its function raises NotImplementedError): "
              f"this cell goes on without it")
    except Exception as err:   # a student's answer with a bug: say so, and let the lesson go on
        print(f"{exercise} raised {type(err).__name__}: {err}\nthis cell goes on without it; "
              f"the exercise's test cell shows where it fails")
    return None


@contextlib.contextmanager
def quiet():
    """Silence warnings inside an autograded test cell: nbgrader scores a test cell that writes to
    stderr as failed, and a correct answer may warn (a NumPy division by zero it then handles, a
    library's deprecation notice)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
