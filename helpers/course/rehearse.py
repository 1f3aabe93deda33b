"""Rehearse the full profile before a GPU's quota is spent on it: `course rehearse`.

    course rehearse                      # every notebook's full profile, counts cut, on this machine
    course rehearse 06 07 --batches 1    # two notebooks, one batch per pass
    course rehearse --offline-data       # where STL-10 cannot be downloaded (this course's build machine)
    course rehearse --gpu-check          # on a GPU: a run interrupted and resumed, then the rehearsal
    course rehearse --in-process         # without Jupyter: each notebook's cells in a fresh Python process

A rehearsal executes a notebook at the full profile with `COURSE_REHEARSAL` set: the full profile's
data (every image of every split it loads), image sizes, widths, precision and code paths, with every
pass over a loader cut to a few batches (`runtime.rehearsal_batches`) and the counts its top cell marks
`rehearse=` cut (epochs, images evaluated, plotted points). It takes minutes where the full profile
takes an hour, and finds what would crash, run out of host memory or misplace a tensor on the
device before that hour starts. For every code cell it prints the time it took and the peak memory of
the notebook's process (the kernel's peak resident set while the cell ran, and on a GPU the peak of
PyTorch's allocations), and it fails when a cell errs or the host peak passes Colab's 12.7 GB.

What it cannot tell: how long the full profile takes (the budget cell estimates that), and on a
machine without a GPU, what only CUDA checks (a tensor on the wrong device: run it on a GPU). On the
CPU the host peak also holds what a GPU would keep in its own memory (the data GpuBatches copies to
the device, the activations), so it is an upper bound of the VM's share.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import runtime
from ..runtime import default_data_dir, environment
from .notebooks import notebooks

COLAB_VM_GB = 12.7   # the memory of Colab's free VM, as its RAM gauge shows it
RECORDS = "rehearsal-cells.jsonl"

# Run in the kernel before the notebook's first cell: after each cell, one line of JSON with its time and
# memory peaks. Linux resets a process's peak resident set when "5" is written to /proc/self/clear_refs.
_PROBE = r'''
import json as _json, os as _os, time as _time
def _course_peak_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    _torch = __import__("sys").modules.get("torch")
    if _torch is not None and _torch.cuda.is_available():
        _torch.cuda.reset_peak_memory_stats()
    _course_cell["began"] = _time.perf_counter()
def _course_peak_read(result):
    rss = None
    try:
        with open("/proc/self/status") as f:
            rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _torch = __import__("sys").modules.get("torch")
    gpu = _torch.cuda.max_memory_allocated() if _torch is not None and _torch.cuda.is_available() else None
    with open(_os.environ["COURSE_REHEARSAL_RECORDS"], "a") as f:
        f.write(_json.dumps({"seconds": _time.perf_counter() - _course_cell.get("began", _time.perf_counter()), "host_bytes": rss,
                             "gpu_bytes": gpu, "error": not result.success}) + "\n")
_course_cell = {}
get_ipython().events.register("pre_run_cell", lambda *a: _course_peak_reset())
get_ipython().events.register("post_run_cell", _course_peak_read)
'''


def offline_data(source: Path, target: Path, *, unlabeled: int = 100_000) -> Path:
    """A data folder for a rehearsal where STL-10 cannot be downloaded: every dataset of `source` linked in,
    and `stl10/` made from the offline stand-in (`stl10-standin`), its unlabeled images linked again and again
    up to STL-10's 100,000, so that the full profile's memory and loops meet the real split's size. Its origin
    mark says so, and the notebooks label their figures from it. Caches already decoded in `source` are
    linked too, and `stl10`'s are written from the stand-in's (decoded once, in `source`): the 100,000 links
    hold 10 copies of the same images, which need not be decoded again."""
    from .. import data
    source, target = Path(source).resolve(), Path(target)
    standin = source / "stl10-standin"
    if not standin.is_dir():
        raise SystemExit(f"--offline-data needs the STL-10 stand-in in {standin} (the course's data pack: "
                         f"shared/data/prepare.sh {source})")
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        link = target / entry.name
        if entry.name in (".cache", "stl10") or link.exists() or link.is_symlink():
            continue
        link.symlink_to(entry)
    (target / ".cache").mkdir(exist_ok=True)
    for cached in (source / ".cache").glob("*.pt") if (source / ".cache").is_dir() else []:
        if not (target / ".cache" / cached.name).exists():
            (target / ".cache" / cached.name).symlink_to(cached)
    stl = target / "stl10"
    marker = stl / ".course-origin"
    if not marker.exists():
        shutil.rmtree(stl, ignore_errors=True)
        stl.mkdir()
        for split in ("train", "test"):
            (stl / split).symlink_to(standin / split)
        files = sorted(f for f in (standin / "unlabeled").iterdir() if not f.name.startswith("."))
        (stl / "unlabeled").mkdir()
        for i in range(unlabeled):
            original = files[i % len(files)]
            (stl / "unlabeled" / f"{i:06d}{original.suffix}").symlink_to(original)
        origin = (f"the STL-10 stand-in (NOT STL-10), its {len(files):,} unlabeled images repeated to {unlabeled:,} "
                  f"(a rehearsal)")
        for split in ("train", "test", "unlabeled"):   # the links' images, from the stand-in's decoded splits
            d = data.load("stl10", split, source, folder="stl10-standin", verbose=False)
            if split == "unlabeled":
                reps = -(-unlabeled // len(d))
                d = replace(d, images=d.images.repeat(reps, 1, 1, 1)[:unlabeled],
                            labels=torch.full((unlabeled,), -1, dtype=torch.int64))
            data.write_cache(replace(d, origin=origin, source=str(stl / split)), target, "stl10", "stl10", split)
            del d
        marker.write_text(origin + "\n")
    return target


def _execute_in_process(notebook: Path, records: Path) -> int:
    """Run a notebook's code cells in this process, in order, in one namespace (what a kernel does, without
    Jupyter: for a machine that has none, such as a lent GPU machine), writing the probe's record after each;
    stops at the first error. The cells' own output goes to stdout."""
    import traceback

    import nbformat
    exec(compile(_PROBE.replace("get_ipython().events.register", "_course_register"), "probe", "exec"),
         probe := {"_course_register": lambda *a: None})
    cells = _code_cells(nbformat.read(notebook, as_version=4))
    namespace = {"__name__": "__main__"}
    records.write_text(json.dumps({"seconds": 0.0, "host_bytes": 0, "gpu_bytes": None, "error": False}) + "\n")
    for i, cell in enumerate(cells):
        probe["_course_peak_reset"]()
        result = type("Result", (), {"success": True})()
        try:
            exec(compile(cell.source, f"{notebook.name}, code cell {i}", "exec"), namespace)
        except BaseException:   # noqa: BLE001 - reported and recorded, as a kernel shows an error
            traceback.print_exc()
            result.success = False
        finally:
            import matplotlib.pyplot as plt
            plt.close("all")
        probe["_course_peak_read"](result)
        if not result.success:
            return 1
    return 0


def _with_probe(notebook: Path):
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    probe = nbformat.v4.new_code_cell(_PROBE)
    nb.cells.insert(0, probe)
    return nb


def _code_cells(nb) -> list:
    """The code cells a kernel runs: nbclient skips empty ones, so both executors do (the records align)."""
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def _first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip() and not line.startswith("# ----")]
    text = lines[0].strip() if lines else ""
    return text if len(text) <= 60 else text[:57] + "..."


def rehearse_notebook(notebook: Path, out: Path, *, batches: int, data_dir: Path | None, timeout: int | None,
                      limit_gb: float, in_process: bool = False) -> dict:
    """Execute one notebook as a rehearsal; its cells' times and peaks, and whether it passed.
    in_process: run its code cells in a fresh Python process instead of a Jupyter kernel (no Jupyter needed)."""
    out.mkdir(parents=True, exist_ok=True)
    records = out / RECORDS
    records.unlink(missing_ok=True)
    env = dict(COURSE_PROFILE="full", COURSE_REHEARSAL=str(batches), COURSE_OUTPUT_DIR=str(out / "runs"),
               COURSE_REHEARSAL_RECORDS=str(records), MPLBACKEND="Agg")
    if data_dir is not None:
        env["COURSE_DATA_DIR"] = str(data_dir)
    error = ""
    began = time.perf_counter()
    if in_process:
        import subprocess
        with environment(**env, PYTHONPATH=os.pathsep.join([str(runtime.project_root()), os.environ.get("PYTHONPATH", "")])):
            try:
                done = subprocess.run([sys.executable, "-m", "helpers.course.rehearse", "--execute", str(notebook),
                                       str(records)], cwd=notebook.parent, timeout=timeout)
                error = "" if done.returncode == 0 else f"a cell failed (exit status {done.returncode}; its traceback above)"
            except subprocess.TimeoutExpired:
                error = f"it ran past {timeout} s"
        code = [c.source for c in _code_cells(_with_probe(notebook))]
    else:
        import nbclient
        import nbformat
        nb = _with_probe(notebook)
        with environment(**env):
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                             resources={"metadata": {"path": str(notebook.parent)}})
            try:
                client.execute()
            except nbclient.exceptions.CellExecutionError as err:
                error = f"{err.ename}: {err.evalue}"
            except Exception as err:   # a dead kernel (out of memory), a timeout
                error = f"{type(err).__name__}: {err}"
        nbformat.write(nb, out / notebook.name)
        code = [c.source for c in _code_cells(nb)]
    seconds = time.perf_counter() - began
    lines = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
    cells = []
    for i, (source, rec) in enumerate(zip(code[1:], lines[1:])):   # the probe's own cell first
        cells.append({"cell": i, "source": _first_line(source), **rec})
    peak = max((c["host_bytes"] or 0 for c in cells), default=0) / 1e9
    over = [c for c in cells if (c["host_bytes"] or 0) / 1e9 > limit_gb]
    if over:
        memory = f"host memory {over[0]['host_bytes'] / 1e9:.1f} GB in code cell {over[0]['cell']}, over {limit_gb} GB"
        error = f"{memory}; {error}" if error else memory
    return {"notebook": notebook.name, "ok": not error, "error": error, "seconds": seconds, "cells": cells,
            "peak_host_gb": peak, "peak_gpu_gb": max((c["gpu_bytes"] or 0 for c in cells), default=0) / 1e9,
            "ran": len(cells), "code_cells": len(code) - 1}


def print_report(result: dict) -> None:
    print(f"\n{result['notebook']}: {'ok' if result['ok'] else 'FAILED: ' + result['error']} "
          f"({result['ran']} of {result['code_cells']} code cells ran, {result['seconds']:.0f} s, peak host memory "
          f"{result['peak_host_gb']:.2f} GB" + (f", peak GPU memory {result['peak_gpu_gb']:.2f} GB"
                                              if result['peak_gpu_gb'] else "") + ")")
    print(f"  {'cell':>4}  {'seconds':>8}  {'host GB':>7}  {'GPU GB':>6}  first line")
    for c in result["cells"]:
        gpu = f"{c['gpu_bytes'] / 1e9:6.2f}" if c["gpu_bytes"] is not None else f"{'-':>6}"
        flag = "  <- error" if c["error"] else ""
        print(f"  {c['cell']:>4}  {c['seconds']:8.1f}  {(c['host_bytes'] or 0) / 1e9:7.2f}  {gpu}  {c['source']}{flag}")


def check_resume(device=None) -> dict:
    """A run cut off mid-epoch resumes from its last checkpoint on this device (a GPU's RNG states and
    optimizer state included), and a finished run is reused: the path a disconnected Colab session takes.
    The resumed run's history must match an uninterrupted run's: exactly on the CPU; on a GPU, where cuDNN's
    autotuned kernels and atomics differ in the last bits and three epochs carry that on, each epoch's
    training loss within 2% and its accuracy within 3 of the 256 images."""
    import tempfile
    import warnings

    import torch

    from .. import data, loader, models, train
    from ..runtime import pick_device
    device = torch.device(device) if device is not None else pick_device()
    g = torch.Generator().manual_seed(0)
    toy = data.ImageData(images=torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g),
                         labels=torch.arange(4).repeat(64), classes=("a", "b", "c", "d"), name="toy", split="train")

    def run(folder, interrupt_at=None):
        torch.manual_seed(0)
        net = models.resnet18(num_classes=4, widths=(8, 16, 32, 64)).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        batches = loader.GpuBatches(toy, batch_size=32, device=device, crop_padding=4, mean=(0.5,) * 3,
                                    std=(0.25,) * 3, seed=1)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=3 * len(batches))
        calls = []
        if interrupt_at is not None:
            real = opt.step

            def step(*args, **kwargs):
                calls.append(1)
                if len(calls) == interrupt_at:
                    raise KeyboardInterrupt("the session disconnected")
                return real(*args, **kwargs)
            opt.step = step
        return train.fit(net, batches, 3, opt, sched, checkpoint=Path(folder) / "resume.pt", progress=False,
                         checkpoint_every=0)

    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as apart:
        try:
            with warnings.catch_warnings():   # (the scheduler notices the wrapped optimizer.step; nothing to fix)
                warnings.filterwarnings("ignore", message="Seems like `optimizer.step\\(\\)` has been overridden")
                run(folder, interrupt_at=len(range(0, 256, 32)) + 3)   # in the second epoch
        except KeyboardInterrupt:
            pass
        saved = torch.load(next(Path(folder).glob("resume-*.pt")), map_location="cpu", weights_only=True)
        resumed = run(folder)
        reused = run(folder)
        reference = run(apart)   # the same run, never cut off
    exact = device.type == "cpu"
    pairs = list(zip(resumed, reference))
    loss_gap = max((abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-8) for a, b in pairs), default=0.0)
    accuracy_gap = max((abs(a["accuracy"] - b["accuracy"]) for a, b in pairs), default=0.0)
    same = len(resumed) == len(reference) and (loss_gap == accuracy_gap == 0.0 if exact else
                                               loss_gap <= 0.02 and accuracy_gap <= 3 / 256 + 1e-9)
    ok = saved["epoch"] == 1 and len(resumed) == 3 and reused == resumed and same
    print(f"resume on {device}: cut off in epoch 2, resumed from the checkpoint of epoch {saved['epoch']}, finished "
          f"{len(resumed)} epochs; against an uninterrupted run, training loss within {loss_gap:.2%} and accuracy "
          f"within {accuracy_gap:.2%} ({'exactly equal wanted' if exact else 'within 2% and 3 of 256 images'}); "
          f"the finished run was reused: {reused == resumed} -> {'ok' if ok else 'FAILED'}")
    return {"ok": ok, "device": str(device), "largest_difference": max(loss_gap, accuracy_gap)}


def check_deterministic(device=None) -> dict:
    """One training step of each kind the notebooks take, with deterministic algorithms asked for (the setup
    cell's DETERMINISTIC = True): every warning PyTorch gives for an operation without a deterministic
    version on this device is collected and printed. On the CPU there is none; on CUDA this is the check."""
    import warnings

    import torch.nn.functional as F

    from .. import autoencoders, losses, models
    from ..runtime import pick_device
    device = torch.device(device) if device is not None else pick_device()
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # (main sets it before CUDA starts)
    torch.use_deterministic_algorithms(True, warn_only=True)
    found = []
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, 3, 64, 64, generator=g).to(device)
        y = torch.arange(8).remainder(4).to(device)
        steps = {}
        for stem in ("cifar", "imagenet"):
            net = models.resnet18(num_classes=4, stem=stem, widths=(8, 16, 32, 64)).to(device)
            steps[f"cross-entropy, {stem} stem"] = lambda net=net: F.cross_entropy(net(x), y, label_smoothing=0.1)
        net = models.resnet18(num_classes=16, stem="imagenet", widths=(8, 16, 32, 64)).to(device)
        centers = losses.CenterLoss(4, 16).to(device)

        def center():
            f = net(x)
            loss = F.cross_entropy(f[:, :4], y) + 0.1 * centers(f, y)
            centers.update(f, y)
            return loss
        steps["center loss and its update"] = center
        steps["triplet, batch-hard"] = lambda: losses.batch_hard_triplet_loss(net(x), y, 0.2)
        steps["NT-Xent"] = lambda: losses.nt_xent(*net(x).chunk(2), 0.5)
        steps["pair loss"] = lambda: losses.contrastive_pair_loss(*net(x).chunk(2), y[:4] == y[4:])
        stage = autoencoders.StageAutoencoder(autoencoders.stages_below(net, 1), net.layer1,
                                              autoencoders.stage_decoder(8, 8, 1)).to(device)
        steps["greedy stage"] = lambda: autoencoders.reconstruction_step(stage, (x, y))[0]
        decoders = autoencoders.stage_decoder(64, 3, 4).to(device)
        steps["stem decoder (4× up)"] = lambda: F.mse_loss(decoders(torch.randn(8, 64, 16, 16, device=device)), x)
        for name, step in steps.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step().backward()
            found += [(name, str(w.message).splitlines()[0]) for w in caught
                      if "deterministic" in str(w.message).lower()]   # not other notices (deprecations, cuDNN plans)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    for name, message in found:
        print(f"deterministic mode on {device}: {name}: {message}")
    print(f"deterministic mode on {device}: {len(found)} warning(s) over {len(steps)} kinds of training step"
          + ("" if not found else ": docs/instructors.md's paragraph on DETERMINISTIC no longer holds on this device"))
    return {"ok": not found, "device": str(device), "warnings": found}


def main(notebooks: list[Path], *, out: Path, batches: int, offline: bool, timeout: int | None, limit_gb: float,
         gpu_check: bool, in_process: bool = False) -> int:
    out = out.resolve()
    data_dir = offline_data(default_data_dir(), out / "data") if offline else None
    if offline:
        print(f"data: {data_dir} (STL-10 from the stand-in, see its .course-origin)")
    results = []
    if gpu_check:
        # before cuBLAS starts: deterministic matmuls for check_deterministic (the rehearsed notebooks inherit it;
        # it changes no result's meaning, only which cuBLAS workspace they use)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        results.append({"notebook": "(resume check)", **check_resume()})
        results.append({"notebook": "(deterministic mode)", **check_deterministic()})
    for nb in notebooks:
        print(f"rehearsing {nb.name} (full profile, {batches} batch(es) per pass) ...", flush=True)
        result = rehearse_notebook(nb, out / nb.stem, batches=batches, data_dir=data_dir, timeout=timeout,
                                   limit_gb=limit_gb, in_process=in_process)
        print_report(result)
        results.append(result)
    (out / "rehearsal.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'notebook':34} {'result':8} {'minutes':>7} {'host GB':>7} {'GPU GB':>6}")
    for r in results:
        if "cells" in r:
            print(f"{r['notebook']:34} {'ok' if r['ok'] else 'FAILED':8} {r['seconds'] / 60:7.1f} "
                  f"{r['peak_host_gb']:7.2f} {r['peak_gpu_gb']:6.2f}")
        else:
            print(f"{r['notebook']:34} {'ok' if r['ok'] else 'FAILED':8}")
    print(f"(host GB: the notebook process's peak resident memory, Colab's VM has {COLAB_VM_GB} GB; a rehearsal on "
          f"the CPU also counts what a GPU would hold. Records: {out / 'rehearsal.json'})")
    return 0 if all(r["ok"] for r in results) else 1


def cli(args) -> int:
    return main(notebooks(args.notebooks), out=args.out or runtime.project_root() / "runs" / "rehearsal",
                batches=args.batches, offline=args.offline_data, timeout=args.timeout, limit_gb=args.limit_gb,
                gpu_check=args.gpu_check, in_process=args.in_process)


if __name__ == "__main__":   # the in-process executor: python -m helpers.course.rehearse --execute NOTEBOOK RECORDS
    if len(sys.argv) == 4 and sys.argv[1] == "--execute":
        sys.exit(_execute_in_process(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit("usage: course rehearse (see `course rehearse --help`)")
