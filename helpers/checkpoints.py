"""Checkpoints that resume only the run that wrote them.

A run's *identity* is everything that decides its result and that the training loop can see: the
model (architecture, initial weights and buffers, which parameters learn), the optimizer (class,
every hyperparameter of every group, which parameters are in which group), the scheduler's settings,
the step function (its source text, the arguments bound to it, the globals it reads), the training batches
(the data itself, batch size, augmentations, seed), the validation batches, the global RNG state, the
precision, and anything extra the caller passes. `fit` derives it itself, so a notebook cannot forget
a field: the checkpoint `runs/01_course.pt` is stored as `runs/01_course-<hash>.pt`, and a run whose
learning rate, seed, data or weights changed finds no file under its own hash and trains anew, while
an identical rerun (a Colab session that disconnected) resumes. Older runs' files stay where they
were; nothing is overwritten.

Writes are atomic (a temporary file unique to the process, then a rename), every error names the
file, and a finished run keeps only its weights, history and RNG state (no optimizer state). An
unfinished run is saved at the end of an epoch once SAVE_EVERY_SECONDS of training have passed since
its last save (`fit`'s checkpoint_every): a disconnect loses at most about that much training, and a
full-width network's 100 MB are not rewritten after every short epoch.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import glob
import hashlib
import inspect
import json
import os
import pickle
import symtable
import tempfile
import textwrap
import types
import weakref
import zipfile
from pathlib import Path

import numpy as np
import torch

from .files import write_atomic


SAVE_EVERY_SECONDS = 600   # an unfinished run is saved at the end of an epoch once this much training passed since the last save


class CheckpointError(OSError):
    """A checkpoint could not be written or read; the message names the file and what to do."""


# ----------------------------------------------------------------------------- identity

_tensor_digests: dict[int, tuple[int, str]] = {}  # id -> (version, digest): a split is hashed once, not per run


def _digest(t: torch.Tensor) -> str:
    cpu = t.detach().cpu().contiguous()
    if cpu.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
        cpu = cpu.view(torch.int16)
    h = hashlib.sha1(f"{cpu.dtype}{tuple(cpu.shape)}".encode())
    h.update(memoryview(cpu.numpy()).cast("B"))
    return h.hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    """A content hash of a tensor (dtype, shape and values; the memory layout does not matter).

    Large tensors (a whole split) are hashed once per object and in-place version; the entry goes
    when the tensor does, so a new tensor at a reused address is never mistaken for an old one.
    """
    if t.numel() < 1_000_000:
        return _digest(t)
    cached = _tensor_digests.get(id(t))
    if cached is not None and cached[0] == t._version:
        return cached[1]
    digest = _digest(t)
    if cached is None:
        weakref.finalize(t, _tensor_digests.pop, id(t), None)
    _tensor_digests[id(t)] = (t._version, digest)
    return digest


_SIMPLE = (type(None), bool, int, float, str)


def _is_simple(value, depth: int = 0) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list, frozenset)) and depth < 3 and len(value) <= 64:
        return all(_is_simple(v, depth + 1) for v in value)
    if isinstance(value, dict) and depth < 3 and len(value) <= 64:
        return all(isinstance(k, str) and _is_simple(v, depth + 1) for k, v in value.items())
    return False


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """The same instructions on the same names and constants (line numbers and file aside)."""
    def constants(c):
        return [repr(k) for k in c.co_consts if not isinstance(k, types.CodeType)]
    return (a.co_name, a.co_code, a.co_names, a.co_varnames, constants(a)) == \
        (b.co_name, b.co_code, b.co_names, b.co_varnames, constants(b))


def _source(function: types.FunctionType) -> str | None:
    """The function's source, dedented: text, which survives a Python upgrade (bytecode does not). None where it
    cannot be trusted to be this function's and no other's: no source kept (code built by `exec`), a lambda (its
    text is the whole line, which may hold other lambdas), or text that no longer compiles to the code that runs
    (the file was edited after the function was defined; a method that uses `super()` or a closure)."""
    if function.__code__.co_name == "<lambda>":
        return None
    try:
        lines, _ = inspect.getsourcelines(function)
        compiled = compile(textwrap.dedent("".join(lines)), "<identity>", "exec", dont_inherit=True)
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    if not any(_same_code(c, function.__code__) for c in _code_objects(compiled)):
        return None
    return textwrap.dedent("".join(lines))


def _globals_read(source: str | None, code: types.CodeType) -> list[str]:
    """The global names a function body reads (nested functions included), in order: from its symbol table where
    its source is trusted, else from its code objects."""
    if source is None:
        return list(dict.fromkeys(name for c in _code_objects(code) for name in c.co_names))
    found: list[str] = []

    def walk(table: symtable.SymbolTable) -> None:
        found.extend(s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced())
        for child in table.get_children():
            walk(child)

    for table in symtable.symtable(source, "<identity>", "exec").get_children():
        walk(table)
    return list(dict.fromkeys(found))


def _code(function: types.FunctionType, seen: set) -> dict:
    """A function body: its source text without blank or comment lines (nested functions and constants included),
    and the simple globals it reads (a top-cell hyperparameter such as MARGIN used inside a step function belongs
    to the run's identity). Where the source cannot be trusted (`_source`), its bytecode and constants stand in,
    nested code included: they change with the Python version."""
    code, globals_ = function.__code__, function.__globals__
    source = _source(function)
    if source is not None:
        text = "\n".join(line.rstrip() for line in source.splitlines()
                         if line.strip() and not line.lstrip().startswith("#"))
        body = {"source": hashlib.sha1(text.encode()).hexdigest()}
    else:
        h = hashlib.sha1()
        for c in _code_objects(code):
            h.update(c.co_code)
            h.update(repr([k for k in c.co_consts if not isinstance(k, types.CodeType)]).encode())
        body = {"bytecode": h.hexdigest()}
    read = {}
    for name in _globals_read(source, code):
        if name in globals_ and name not in seen:
            value = globals_[name]
            if _is_simple(value) or isinstance(value, (torch.nn.Module, torch.Tensor)):
                read[name] = fingerprint(value, seen=seen)
            elif _written_in_the_notebook(value):   # the code the step reaches: a loss the student wrote, fixed
                read[name] = _notebook_code(value, seen)   # and rerun, makes another run
    return {**body, "reads": read}


def _written_in_the_notebook(value) -> bool:
    """A function or class defined in the notebook (or script) that runs: its code can change between two runs
    of a cell without any import. The package's and libraries' own code is versioned with them, and left out."""
    return isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", None) == "__main__"


def _notebook_code(value, seen: set):
    if isinstance(value, types.FunctionType):
        return fingerprint(value, seen=seen)
    methods = {k: v for k, v in vars(value).items() if isinstance(v, (types.FunctionType, staticmethod, classmethod))}
    return {"class": _qualname(value), "bases": [_qualname(b) for b in value.__bases__],
            "methods": {k: fingerprint(getattr(v, "__func__", v), seen=seen | {id(value)}) for k, v in methods.items()}}


def fingerprint(obj, *, seen: set | None = None, depth: int = 0):
    """A JSON-able description of `obj` that changes whenever what it computes may change.

    Objects can define `__fingerprint__()` to say what matters about them (GpuBatches does).
    """
    seen = set() if seen is None else seen
    if isinstance(obj, _SIMPLE):
        return obj if not isinstance(obj, float) or np.isfinite(obj) else repr(obj)
    if id(obj) in seen:
        return "<seen>"
    if depth > 8:
        return f"<{type(obj).__qualname__}>"
    seen = seen | {id(obj)}
    recurse = functools.partial(fingerprint, seen=seen, depth=depth + 1)
    if isinstance(obj, torch.Tensor):
        return {"tensor": tensor_digest(obj), "requires_grad": obj.requires_grad}
    if isinstance(obj, np.ndarray):
        return {"array": tensor_digest(torch.from_numpy(np.ascontiguousarray(obj)))}
    if isinstance(obj, (torch.device, torch.dtype, Path, enum.Enum)):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [recurse(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(json.dumps(recurse(v), sort_keys=True) for v in obj)
    if isinstance(obj, dict):
        return {str(k): recurse(v) for k, v in obj.items()}
    if hasattr(obj, "__fingerprint__") and not isinstance(obj, type):
        return {"type": _qualname(type(obj)), **recurse(obj.__fingerprint__())}
    if isinstance(obj, functools.partial):
        return {"partial": recurse(obj.func), "args": recurse(obj.args), "keywords": recurse(obj.keywords)}
    if isinstance(obj, types.MethodType):
        return {"method": recurse(obj.__func__), "of": recurse(obj.__self__)}
    if isinstance(obj, types.FunctionType):
        closure = [c.cell_contents for c in obj.__closure__ or () if _cell_filled(c)]
        return {"function": _qualname(obj), **_code(obj, seen),
                "defaults": recurse(obj.__defaults__), "kwdefaults": recurse(obj.__kwdefaults__),
                "closure": recurse(closure)}
    if isinstance(obj, (types.BuiltinFunctionType, type)):
        return _qualname(obj)
    if isinstance(obj, torch.nn.Module):
        return {"module": _qualname(type(obj)), "repr": repr(obj),
                "state": {k: tensor_digest(v) for k, v in obj.state_dict().items()},
                "frozen": [n for n, p in obj.named_parameters() if not p.requires_grad]}
    if dataclasses.is_dataclass(obj):
        return {"type": _qualname(type(obj)), **{f.name: recurse(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if hasattr(obj, "__dict__"):  # a DataLoader, a sampler, a torchvision transform ...
        public = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        return {"type": _qualname(type(obj)), **{k: recurse(v) for k, v in public.items()}}
    return {"type": _qualname(type(obj)), "repr": _stable_repr(obj)}


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (reading an empty cell raises ValueError)
    except ValueError:
        return False
    return True


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _stable_repr(obj) -> str:
    text = repr(obj)
    return "" if " at 0x" in text else text  # an address differs from run to run


def _parameter_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def optimizer_identity(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    """Class, every hyperparameter of every group, and which of the model's parameters each group holds."""
    names = _parameter_names(model)
    groups = []
    for group in optimizer.param_groups:
        settings = {k: fingerprint(v) for k, v in group.items() if k != "params"}
        settings["params"] = [names.get(id(p), f"<not in the model: {tuple(p.shape)}>") for p in group["params"]]
        groups.append(settings)
    return {"type": _qualname(type(optimizer)), "groups": groups, "has_state": bool(optimizer.state)}


def run_identity(**parts) -> dict:
    """`fingerprint` of every part, keyed by its name (model=, optimizer=, ... as `fit` passes them)."""
    return {name: fingerprint(value) for name, value in parts.items()}


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def differences(old: dict, new: dict, limit: int = 6) -> list[str]:
    """The dotted paths where two identities differ, at most `limit` of them: what changed between runs."""
    found: list[str] = []

    def walk(a, b, path: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}" if path else k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        else:
            short = lambda v: (s if len(s := json.dumps(v, default=str)) < 60 else s[:57] + "...")  # noqa: E731
            found.append(f"{path}: {short(a)} -> {short(b)}")

    walk(old, new, "")
    return found


def run_path(checkpoint: str | Path, digest: str) -> Path:
    """`runs/01_course.pt` -> `runs/01_course-<digest>.pt`: one file per run identity."""
    checkpoint = Path(checkpoint)
    suffix = checkpoint.suffix or ".pt"
    return checkpoint.with_name(f"{checkpoint.stem}-{digest}{suffix}")


@dataclasses.dataclass
class Run:
    """One run's checkpoint: the name `fit` was given (`runs/01_course.pt`), the run's identity, the hash of it,
    and the file named after both (`runs/01_course-<hash>.pt`)."""
    checkpoint: Path
    identity: dict
    digest: str
    path: Path

    @classmethod
    def of(cls, checkpoint: str | Path, identity: dict) -> Run:
        """The run of `identity` under `checkpoint`; its folder is checked for writing now, not after an epoch."""
        if Path(checkpoint).is_dir() or str(checkpoint).endswith(("/", os.sep)):
            raise CheckpointError(f"checkpoint={str(checkpoint)!r} is a folder: give a file name in it, e.g. "
                                  f"{Path(checkpoint) / 'run.pt'} (the run is saved as run-<hash>.pt beside it)")
        digest = identity_hash(identity)
        path = run_path(checkpoint, digest)
        check_writable(path.parent)
        return cls(Path(checkpoint), identity, digest, path)

    def load(self, device: torch.device | str = "cpu") -> dict | None:
        """The saved state of this very run, or None where it has none yet."""
        return load(self.path, device) if self.path.exists() else None

    def trains_anew(self, explain: bool = False) -> str:
        """A line saying that checkpoints of other settings lie under the same name (empty where none do); with
        `explain`, which fields of the identity differ from the latest of them."""
        earlier = other_runs(self.checkpoint, self.digest)
        if not earlier:
            return ""
        note = " (fit(..., explain=True) says which settings differ)"
        if explain:
            try:
                changed = differences(json.loads(load(earlier[-1], "cpu").get("identity", "{}")), self.identity)
                note = ("; it differs in " + "; ".join(changed)) if changed else ""
            except CheckpointError:
                note = ""
        return (f"training anew: {len(earlier)} checkpoint(s) of other settings under this name, e.g. "
                f"{earlier[-1].name}{note}")

    def save(self, model: torch.nn.Module, history: list[dict], *, rng: dict, finished: bool, **extra) -> None:
        """Save the run after `len(history)` epochs: weights, history, RNG states and `extra` (an unfinished
        run's optimizer, scheduler and scaler states)."""
        save(self.path, {"identity": json.dumps(self.identity, sort_keys=True, default=str), "digest": self.digest,
                         "epoch": len(history), "finished": finished, "model": model.state_dict(), "rng": rng,
                         "history": history, **extra})


def other_runs(checkpoint: str | Path, digest: str) -> list[Path]:
    """Checkpoints of other identities under the same name (older settings of the same experiment)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.parent.is_dir():
        return []
    pattern = glob.escape(f"{checkpoint.stem}-") + "?" * len(digest) + glob.escape(checkpoint.suffix or ".pt")
    return sorted(p for p in checkpoint.parent.glob(pattern) if p != run_path(checkpoint, digest))


# ----------------------------------------------------------------------------- files

def check_writable(folder: str | Path) -> None:
    """Create `folder` and write a probe file into it, so that a read-only or full folder fails now,
    before the first epoch, not an hour later."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoints into {folder} ({type(err).__name__}: {err}). Make the folder writable, "
            f"free disk space (df -h {folder}), or set COURSE_OUTPUT_DIR to another folder.") from None


def save(path: str | Path, state: dict) -> None:
    """Write `state` atomically (`files.write_atomic`): a run killed mid-write, or a second process writing the
    same path, never leaves a half-written checkpoint."""
    path = Path(path)
    try:
        write_atomic(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:
        kept = f"the previous version of {path.name} is intact" if path.exists() else "nothing was written"
        raise CheckpointError(
            f"could not write the checkpoint {path} ({type(err).__name__}: {err}); {kept}. Free disk space "
            f"(df -h {path.parent}) or point COURSE_OUTPUT_DIR at another folder, then run the cell again.") from None


def load(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint; a truncated, empty or foreign file raises CheckpointError naming it."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise EOFError("the file is empty")
        state = torch.load(path, map_location=device, weights_only=True)
    except (EOFError, RuntimeError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}): "
            f"it is truncated or damaged (a copy that did not finish, a full disk). Delete it to train this run "
            f"again from the start.") from None
    if not isinstance(state, dict) or "model" not in state or "history" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by fit (no model and history in it). "
                              f"Move it away, or pass another checkpoint path.")
    return state


def all_finite(tensors) -> bool:
    """Whether every floating-point tensor holds only finite values (one device sync)."""
    checks = [torch.isfinite(t).all() for t in tensors if torch.is_floating_point(t)]
    return bool(torch.stack(checks).all()) if checks else True
