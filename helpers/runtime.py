"""Where a run happens: seed, device, profile and folders.

This is the only module of the package that reads environment variables; everything else
gets device, paths and seeds passed in. A notebook calls `setup()` once and passes what it
returns along.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

PROFILES = ("full", "small", "ci")
REPO_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The course checkout when the package runs from one (pip install -e), else the working folder
    (e.g. /content on Colab, where the package is installed into site-packages)."""
    return REPO_ROOT if (REPO_ROOT / "notebooks").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    profile: str  # "full" (a GPU), "small" (the whole lesson, scaled for a 2-core CPU) or "ci" (seconds)
    data_dir: Path  # where datasets are found or downloaded to
    output_dir: Path  # where checkpoints and result records go
    seed: int
    deterministic: bool = False  # deterministic kernels only (see `setup`)

    @property
    def ci(self) -> bool:
        return self.profile == "ci"

    def pick(self, *, full, small, ci):
        """The value for this profile: `rt.pick(full=60, small=8, ci=1)`."""
        return pick(full=full, small=small, ci=ci, profile=self.profile)


def current_profile() -> str:
    """`COURSE_PROFILE`, else "full"; an unknown name is an error that lists the profiles."""
    profile = os.environ.get("COURSE_PROFILE") or "full"
    if profile not in PROFILES:
        raise ValueError(f"COURSE_PROFILE={profile!r} is not a profile; use one of {PROFILES} "
                         f"(unset it for the full profile)")
    return profile


_NOT_CUT = object()


def pick(*, full, small, ci, rehearse=_NOT_CUT, profile: str | None = None):
    """A hyperparameter's value for the current profile (`COURSE_PROFILE`, or `profile`).

    A notebook's top cell lists every hyperparameter with its three values side by side:
    `EPOCHS = pick(full=15, small=10, ci=3)`. All three are required, so no profile is forgotten.
    rehearse: the value in a rehearsal of the full profile (`course rehearse`, see `rehearsal_batches`),
    given only for counts that make a run long and nothing else (epochs, images evaluated, plotted
    points): `EPOCHS = pick(full=15, small=10, ci=3, rehearse=1)`. A rehearsal takes `full` for the rest.
    """
    profile = profile or current_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {PROFILES}")
    if profile == "full" and rehearse is not _NOT_CUT and rehearsal_batches() is not None:
        return rehearse
    return {"full": full, "small": small, "ci": ci}[profile]


def rehearsal_batches() -> int | None:
    """In a rehearsal of the full profile, the batches every pass over a split reads; else None.

    `COURSE_REHEARSAL=2` (set by `course rehearse`) runs the full profile's data, image sizes, widths and
    code paths with every pass over a loader cut to 2 batches and the counts the top cell marks
    `rehearse=` cut too: minutes on a CPU or a GPU instead of an hour, to find what would crash, run out of
    memory or take too long before a GPU's quota is spent on it. Its figures mean nothing.
    """
    value = os.environ.get("COURSE_REHEARSAL", "")
    if value in ("", "0") or current_profile() != "full":   # only the full profile is rehearsed
        return None
    if not value.isdigit():
        raise ValueError(f"COURSE_REHEARSAL={value!r}: set it to the number of batches each pass reads (e.g. 2), "
                         f"or unset it")
    return int(value)


@contextlib.contextmanager
def environment(**values: str):
    """Set environment variables for what runs inside (notebook kernels inherit them), then restore
    the caller's values, unset ones included."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    # the instruction set decides which kernels run, and so the last bits of every result: the same code and
    # seed give the same figures on CPUs of one instruction set, not across them (AVX2 against AVX-512)
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''}, {torch.backends.cpu.get_cpu_capability()})"


def default_data_dir() -> Path:
    """`COURSE_DATA_DIR`, else `data/` of the course checkout (or of the working folder)."""
    return Path(os.environ.get("COURSE_DATA_DIR") or project_root() / "data").expanduser().resolve()


def default_output_dir(profile: str) -> Path:
    """`COURSE_OUTPUT_DIR`, else `runs/<profile>` in the repository."""
    return Path(os.environ.get("COURSE_OUTPUT_DIR") or project_root() / "runs" / profile).expanduser().resolve()


def deterministic_requested() -> bool:
    """`COURSE_DETERMINISTIC` set to anything but "" or "0" (the notebooks' setup cell sets it)."""
    return os.environ.get("COURSE_DETERMINISTIC", "") not in ("", "0")


def setup(seed: int = 0, *, profile: str | None = None, data_dir: str | Path | None = None,
          output_dir: str | Path | None = None, deterministic: bool | None = None,
          verbose: bool = True) -> Runtime:
    """Seed everything, pick the device, read the profile and folders, and say what was chosen.

    Keyword arguments override the environment (`COURSE_PROFILE`, `COURSE_DATA_DIR`,
    `COURSE_OUTPUT_DIR`, `COURSE_DETERMINISTIC`).

    On the CPU a seeded run repeats exactly either way. On a GPU the default trades that for speed:
    cuDNN times several convolution algorithms and keeps the fastest (`cudnn.benchmark`), and some
    kernels add in whatever order their threads finish, so a rerun's numbers can differ from the
    first run's (and the differences grow over epochs). `deterministic=True` turns autotuning off,
    asks cuDNN and cuBLAS for deterministic algorithms and has PyTorch warn about any operation that
    has no deterministic version. It costs speed (how much depends on the GPU and model; the budget
    cell measures it: rerun it with the switch on).
    """
    profile = profile or current_profile()
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {PROFILES}")
    deterministic = deterministic_requested() if deterministic is None else deterministic
    seed_everything(seed)
    device = pick_device()
    if profile == "ci" and device.type == "cpu":
        # One CPU thread: the ci profile's tiny convolutions gain little from a second one, and two threads
        # sometimes never leave oneDNN's OpenMP region in a 1×1 convolution's weight gradient at these sizes
        # (py-spy, 2026-11-24): a kernel that spins for good. One thread cannot wait for another.
        torch.set_num_threads(1)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS's deterministic workspace
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        # TF32 matmuls: free speed on Ampere and newer, harmless on a T4, and deterministic.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # cuDNN autotuning: the fastest convolution algorithms, chosen by timing, hence not repeatable.
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    rt = Runtime(
        device=device,
        profile=profile,
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else default_data_dir(),
        output_dir=Path(output_dir).expanduser().resolve() if output_dir else default_output_dir(profile),
        seed=seed,
        deterministic=deterministic,
    )
    if verbose:
        print(f"device: {device_name(device)} | torch {torch.__version__} | torchvision "
              f"{torchvision.__version__} | profile: {profile} | data: {rt.data_dir} | seed: {seed}"
              + (" | deterministic kernels" if deterministic else ""))
        if rehearsal_batches() is not None and profile == "full":
            print(f"REHEARSAL of the full profile: every pass reads {rehearsal_batches()} batches and the counts marked "
                  f"rehearse= in the top cell are cut; the figures below mean nothing (COURSE_REHEARSAL)")
    return rt
