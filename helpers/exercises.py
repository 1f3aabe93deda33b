"""What a notebook does with an exercise's answer: call it without letting it stop the lesson, test it
without a stray warning costing its points, and check on a CPU that it would run on a GPU too.

In the student version (`course release`) every solution is a stub that raises NotImplementedError.
The lesson's own cells that use an exercise's function call it through `attempt`, so that a notebook
with an unfinished (or broken) exercise still runs to the end: only the exercise's test cell fails.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode


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


# ----------------------------------------------------------------------------- would it run on a GPU?

class DeviceError(AssertionError):
    """An answer that works on the CPU and would fail on a GPU (the message says where and why)."""


# torch functions that create a tensor from sizes or Python data: on the CPU unless given device=
_FACTORIES = {"tensor", "as_tensor", "asarray", "from_numpy", "zeros", "ones", "full", "empty", "empty_strided",
              "rand", "randn", "randint", "randperm", "arange", "range", "linspace", "logspace", "eye", "normal",
              "tril_indices", "triu_indices", "scalar_tensor", "bernoulli", "poisson"}
# factories that, given a tensor, make theirs on its device: a copy of one tensor, or draws with tensor parameters
_COPIES = {"tensor", "as_tensor", "asarray"}
_DRAWS = {"normal", "bernoulli", "poisson"}
# operations that accept tensors on two devices: they copy or only read metadata (indexing has its own rule)
_MIXING_ALLOWED = {"copy_", "to", "cpu", "cuda", "type", "type_as",
                   "__get__", "__set__", "__repr__", "__str__", "__format__", "__len__", "size", "dim", "numel",
                   "tolist", "item", "__bool__", "__int__", "__float__", "__index__", "__iter__",
                   "__contains__", "detach", "clone", "contiguous", "float", "double", "long", "int", "bool", "half"}


# in-place operators (x += y): x keeps its device, and CUDA's kernel refuses a CPU x beside GPU operands
_IN_PLACE = {f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor",
                                     "lshift", "rshift", "matmul")}
# to NumPy: refused for a CUDA tensor
_NUMPY = {"numpy", "__array__"}
# not elementwise: every tensor on one device, a zero-dimensional CPU tensor included
_NO_CPU_SCALARS = {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "index_select", "gather",
                   "take", "take_along_dim", "scatter", "scatter_add", "index_add", "index_copy", "masked_select",
                   "matmul", "mm", "bmm", "mv", "dot", "einsum", "cdist", "embedding"}


def _tensors(value, depth: int = 0):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, torch.nn.Module):   # the lesson moves a network to its device: parameters and buffers
        yield from value.parameters()
        yield from value.buffers()
    elif isinstance(value, (list, tuple)) and depth < 3:
        for v in value:
            yield from _tensors(v, depth + 1)
    elif isinstance(value, dict) and depth < 3:
        for v in value.values():
            yield from _tensors(v, depth + 1)


def _generators(value):
    if isinstance(value, torch.Generator):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _generators(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _generators(v)


class _Tracker(TorchFunctionMode):
    """Follows, on the CPU, where each tensor would be if the inputs were on a GPU: 'gpu' (the inputs, what
    is computed from them, what is created with device= or moved with .to(device)) or 'cpu' (created
    without device=, or moved with .cpu()). Records the first operation CUDA would refuse: tensors of both
    kinds in one operation (a zero-dimensional CPU tensor, a Python-like scalar, is allowed, as are CPU
    indices into a GPU tensor, but not values written through them), or a random draw whose generator is on
    the other device."""

    def __init__(self, inputs, generators):
        super().__init__()
        self.where: dict[int, tuple[str, str, torch.Tensor]] = {}   # id -> (device, how it was made, the tensor)
        self.gpu_generators = {id(g) for g in generators}
        self.problem: str | None = None
        for t in inputs:
            self._mark(t, "gpu", "an input")

    def _mark(self, t: torch.Tensor, device: str, how: str) -> None:
        self.where[id(t)] = (device, how, t)   # the tensor is kept: its id is not reused during the check

    def device_of(self, t: torch.Tensor) -> tuple[str, str]:
        device, how, _ = self.where.get(id(t), ("cpu", "a tensor the function was not given: a global, or a parameter of a layer built inside it", None))
        return device, how

    def _named_device(self, value) -> str | None:
        if value is None:
            return None
        if isinstance(value, torch.Tensor):
            return self.device_of(value)[0]
        if isinstance(value, str):
            return "cpu" if value.split(":")[0] == "cpu" else "gpu"
        if isinstance(value, torch.device):   # images.device, DEVICE: the device the lesson runs on
            return "gpu"
        return None

    def _report(self, text: str) -> None:
        if self.problem is None:
            self.problem = text

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        found = [(t, *self.device_of(t)) for t in inputs]
        gpu_in = any(d == "gpu" for _, d, _ in found)
        target = args[0] if args and isinstance(args[0], torch.Tensor) else None
        in_place = (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE
        # where the result would be
        if name.startswith("new_") or name.endswith("_like"):
            device = self._named_device(kwargs.get("device")) or (found[0][1] if found else "cpu")
        elif name in _FACTORIES and not in_place:
            device = self._named_device(kwargs.get("device"))
            if device is None and name in _COPIES and isinstance(target, torch.Tensor):
                device = found[0][1]   # torch.tensor(x), torch.as_tensor(x): x's device
            elif device is None and name in _DRAWS and inputs:
                device = "gpu" if gpu_in else "cpu"   # torch.normal(mean, std) with tensors: theirs
            device = device or "cpu"   # sizes or values, even from a tensor (torch.arange(n), torch.full(s, v))
        elif name == "to":
            named = [self._named_device(a) for a in list(args[1:]) + list(kwargs.values())]
            named = [d for d in named if d is not None]
            device = named[0] if named else (found[0][1] if found else "cpu")
        elif name == "type_as" and len(args) > 1 and isinstance(args[1], torch.Tensor):
            device = self.device_of(args[1])[0]   # x.type_as(y): y's type, device included
        elif name == "cpu":
            device = "cpu"
        elif name == "cuda":
            device = "gpu"
        elif name in _NUMPY:
            device = "cpu"
            if target is not None and self.device_of(target)[0] == "gpu":
                self._report(f"`{name}` of a tensor on the GPU ({self.device_of(target)[1]}): CUDA tensors cannot "
                             f"become NumPy arrays; keep to torch operations (or move it with .cpu() first)")
        elif name in ("__getitem__", "__setitem__", "index_put_", "index_put") and target is not None:
            device = self.device_of(target)[0]
            index = args[1] if len(args) > 1 else kwargs.get("indices")
            advanced = name.startswith("index_put") or _advanced(index)
            if device == "cpu" and any(self.device_of(t)[0] == "gpu" for t in _tensors(index) if _tensor_index(t)):
                self._report(f"indexing a tensor on the CPU ({self.device_of(target)[1]}) with an index on the GPU: "
                             f"on a GPU both must be on the GPU (create it with device=)")
            # A value written through a tensor or list index (x[mask] = v, index_put_) must be on x's device unless
            # it has no dimensions; through integers and slices it is copied from anywhere.
            value = args[2] if len(args) > 2 else kwargs.get("values")
            if advanced and isinstance(value, torch.Tensor) and value.dim() > 0:
                value_device, how = self.device_of(value)
                if value_device != device:
                    self._report(f"writing values on the {value_device.upper()} ({how}) through a tensor index into "
                                 f"a tensor on the {device.upper()}: on a GPU the values must be on the tensor's "
                                 f"device (create them with device=, or move them with .to(x.device))")
        elif in_place and target is not None:   # x.add_(y), x += y, x.copy_(y): x stays where it is
            device, how = self.device_of(target)
            others = [d for t, d, _ in found if t is not target]
            if device == "cpu" and "gpu" in others and name not in ("copy_", "fill_"):
                self._report(f"`{name}` writes a result computed from the inputs (on the GPU) into a tensor on the "
                             f"CPU ({how}): create it on the inputs' device (e.g. torch.zeros(n, device=x.device))")
            elif device == "gpu" and name not in _MIXING_ALLOWED:
                self._check_mixing(name, found)
        else:
            device = "gpu" if gpu_in else "cpu"
            if name not in _MIXING_ALLOWED and gpu_in:
                self._check_mixing(name, found)
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator) and (id(generator) in self.gpu_generators) != (device == "gpu"):
            shown = f"torch.{name}" if name in _FACTORIES else name
            self._report(f"`{shown}` draws with a generator on the {'GPU' if device == 'cpu' else 'CPU'} into a "
                         f"tensor on the {'CPU' if device == 'cpu' else 'GPU'}: on a GPU the generator and the "
                         f"tensor must share a device (pass device= the inputs' device)")
        if in_place and target is not None:
            return out   # the same tensor, already marked
        if name in _FACTORIES and device == "cpu" and not any(d == "cpu" for _, d, _ in found):
            how = f"made by `torch.{name}`" + ("" if "device" in kwargs else " without device=")
        elif device == "cpu" and any(d == "cpu" for _, d, _ in found):   # where the CPU tensor it comes from was made
            how = next(h for _, d, h in found if d == "cpu")
        else:
            how = f"made by `{name}`"
        for t in _tensors(out):
            self._mark(t, device, how)
        return out

    def _check_mixing(self, name: str, found) -> None:
        """CUDA takes a CPU tensor beside GPU tensors only as a scalar (no dimensions) of an elementwise operation."""
        lone = [(t, how) for t, d, how in found if d == "cpu" and (t.dim() > 0 or name in _NO_CPU_SCALARS)]
        if lone:
            t, how = lone[0]
            self._report(f"`{name}` mixes tensors on two devices: one of shape {tuple(t.shape)} on the CPU "
                         f"({how}) and the inputs' on the GPU. Create tensors on the inputs' device "
                         f"(e.g. torch.zeros(n, device=x.device)) or move them there (.to(x.device))")


def _tensor_index(t: torch.Tensor) -> bool:
    """An index tensor that indexes as a tensor: a zero-dimensional integer one acts as a Python int."""
    return t.dim() > 0 or t.dtype == torch.bool


def _advanced(index) -> bool:
    """x[index] is advanced indexing (a gather or an index_put, not a view): a tensor or a list in it."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, list) or (isinstance(i, torch.Tensor) and _tensor_index(i)) for i in items)


def same_device(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)`, checked on the CPU for what would fail on a GPU; its result.

    The lessons run an answer on the GPU, with inputs there (and random draws from a generator there);
    a test on the CPU cannot see a tensor made without `device=`, since everything is on the CPU. This
    follows every torch operation of the call and treats the arguments (tensors, generators, and the
    parameters and buffers of networks) as if they were on a GPU; it raises DeviceError if the answer mixes
    them with tensors it made on the CPU, draws with a generator on the other device, or returns a result on
    the CPU. What it cannot see: operations outside torch (NumPy), tensors reached through other objects
    than lists, tuples, dicts and networks, and device rules that only the GPU's own kernels apply.
    """
    inputs = list(_tensors(args)) + list(_tensors(kwargs))
    tracker = _Tracker(inputs, list(_generators(args)) + list(_generators(kwargs)))
    with tracker:
        result = fn(*args, **kwargs)
    if tracker.problem is None:
        for t in _tensors(result):
            device, how = tracker.device_of(t)
            if device == "cpu" and inputs:
                tracker.problem = (f"it returns a tensor of shape {tuple(t.shape)} on the CPU ({how}) for inputs on "
                                   f"the GPU: create it on the inputs' device (device=x.device)")
                break
    if tracker.problem:
        name = getattr(fn, "__name__", "the function")
        raise DeviceError(f"{name} works on the CPU but would fail on a GPU: {tracker.problem}")
    return result
