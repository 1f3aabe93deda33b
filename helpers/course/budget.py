"""How much time a notebook's profile needs, said before its first training cell.

`training_flops` counts the FLOPs of training one image (forward and backward, with
torch.utils.flop_counter). A `Plan` lists everything the notebook will do that takes time: what it
trains (each model, at what resolution, for how many images in total: `add`), what it runs forward
only (evaluation after every epoch, features, maps, deletion curves: `add_inference`, in forward
passes), and the work on the host's CPU (loading data, t-SNE, metrics computed in NumPy:
`add_host`, in seconds measured on this machine). `Plan.report` prints the total with two
estimates: one for a T4 (GPU work from the T4 rates below, host work as measured here: Colab's VM
has 2 CPU cores, as this course's build machine) and one for the device at hand, from timing a few
real steps.

    plan = budget.Plan("02_augmentation")
    plan.add("report 002 rows", lambda: models.resnet18(), images=5 * 60 * 50_000, size=32)
    plan.add_inference("test accuracy after every epoch", lambda: models.resnet18(), images=60 * 10_000, size=32)
    plan.add_host("t-SNE of 2,000 points", seconds=budget.time_host(lambda: tsne_of(sample)) * scale)
    plan.report(rt.device)

FLOPs here are what flop_counter counts: matrix products and convolutions (2 per multiply-add).
Bias additions, BatchNorm, activations, the loss and the optimizer step are not counted; in a
ResNet they are well under 1% of the arithmetic, though not of the memory traffic.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import runtime
from ..runs import Training
from ..train import autocast_dtype

# ----------------------------------------------------------------------------- the T4 assumption

# NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md (results from
# the pytorch-21.03 NGC container, repository commit 291f0d02e815b148fa5c2b81bf07aa3552142895).
# The README measures T4 inference, but not T4 training; it does measure both on a V100.
T4_RESNET50_INFERENCE_IMAGES_PER_S = 1198  # "Inference performance: NVIDIA T4", mixed precision, batch 256
V100_RESNET50_INFERENCE_IMAGES_PER_S = 3382  # "Inference performance: NVIDIA DGX-1 (1x V100 16GB)", mixed, batch 256
V100_RESNET50_TRAINING_IMAGES_PER_S = 1200  # "Training performance: NVIDIA DGX-1 16GB", 1 GPU, mixed precision
# T4 training throughput, assuming a T4 keeps the V100's training-to-inference ratio: ≈ 425 img/s
T4_RESNET50_TRAINING_IMAGES_PER_S = (T4_RESNET50_INFERENCE_IMAGES_PER_S * V100_RESNET50_TRAINING_IMAGES_PER_S
                                     / V100_RESNET50_INFERENCE_IMAGES_PER_S)
# training_flops(torchvision.models.resnet50(), 224) (tests/test_budget.py recounts it)
RESNET50_TRAINING_FLOPS = 24_299_077_632

T4_TFLOPS = T4_RESNET50_TRAINING_IMAGES_PER_S * RESNET50_TRAINING_FLOPS / 1e12  # ≈ 10.3
"""Sustained training throughput assumed for a T4 (Colab's GPU), in TFLOP/s: ≈ 10.3.

Where it comes from: NVIDIA's DeepLearningExamples ResNet-50 v1.5 (PyTorch) README publishes, in
one container release (pytorch-21.03), mixed-precision inference on a T4 (1198 img/s at batch 256)
and on a V100 16GB (3382 img/s), and mixed-precision training on that V100 (1200 img/s); it has
no T4 training figure. Scaling the T4's inference by the V100's training/inference ratio gives
≈ 425 training img/s, times 24.3 GFLOP to train ResNet-50 on one 224-px image
(`training_flops(torchvision.models.resnet50(), 224)`) = 10.3 TFLOP/s, 16% of the T4's 65 TFLOP/s
FP16 tensor-core peak. That scaling is itself optimistic: training leans harder on memory
bandwidth than inference, and a T4 has a third of a V100's (320 vs 900 GB/s).

Small 32-px ResNets use a GPU less efficiently than ResNet-50 at 224 px (smaller matrices, more
time in BatchNorm, activations and kernel launches per FLOP), so for the course's CIFAR models the
T4 estimate is optimistic: read it as a lower bound on the time, not a forecast.
"""

# The same README, in fp32 (no tensor cores on the T4's fp32 path): T4 inference 415 img/s at batch 256,
# V100 16GB inference 1261 img/s at batch 256, V100 16GB training 367 img/s (1 GPU).
T4_RESNET50_FP32_INFERENCE_IMAGES_PER_S = 415
V100_RESNET50_FP32_INFERENCE_IMAGES_PER_S = 1261
V100_RESNET50_FP32_TRAINING_IMAGES_PER_S = 367
T4_RESNET50_FP32_TRAINING_IMAGES_PER_S = (T4_RESNET50_FP32_INFERENCE_IMAGES_PER_S * V100_RESNET50_FP32_TRAINING_IMAGES_PER_S
                                          / V100_RESNET50_FP32_INFERENCE_IMAGES_PER_S)  # ≈ 121 img/s
T4_FP32_TFLOPS = T4_RESNET50_FP32_TRAINING_IMAGES_PER_S * RESNET50_TRAINING_FLOPS / 1e12  # ≈ 2.9
"""Sustained fp32 training throughput assumed for a T4, in TFLOP/s (≈ 2.9), derived as T4_TFLOPS is, from
the README's fp32 columns. Runs that train in true fp32 (`fit(amp=False)`, the seed reports' recipes)
are budgeted at this rate, 3.5× slower than mixed precision."""

# Inference, from the same README's T4 columns (the T4 inference figures are measured there; no scaling):
# ResNet-50 forward passes at 224 px, batch 256.
RESNET50_FORWARD_FLOPS = 8_178_368_512   # training_flops(torchvision.models.resnet50(), 224, trainable=()) (recounted in the tests)
T4_INFERENCE_TFLOPS = T4_RESNET50_INFERENCE_IMAGES_PER_S * RESNET50_FORWARD_FLOPS / 1e12   # ≈ 9.8, mixed precision
T4_FP32_INFERENCE_TFLOPS = T4_RESNET50_FP32_INFERENCE_IMAGES_PER_S * RESNET50_FORWARD_FLOPS / 1e12   # ≈ 3.4
"""Forward-only throughput assumed for a T4 (TFLOP/s): 1198 (mixed precision) and 415 (fp32) ResNet-50 images
per second at batch 256, NVIDIA's measured T4 inference, times the forward pass's counted FLOPs. Small batches
(a CAM method's few images at a time) and per-image Python work run slower: read these as lower bounds too."""


# ----------------------------------------------------------------------------- counting


def _loss(output, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for (N, classes) logits; else the mean square of every output tensor (e.g. an
    autoencoder's reconstruction, a tuple of embeddings): something to call backward on."""
    if isinstance(output, torch.Tensor) and output.dim() == 2 and output.is_floating_point():
        if labels is None:
            labels = torch.randint(output.shape[1], (len(output),), device=output.device)
        return F.cross_entropy(output.float(), labels)
    if isinstance(output, dict):
        output = list(output.values())
    tensors = [output] if isinstance(output, torch.Tensor) else [t for t in output if isinstance(t, torch.Tensor)]
    tensors = [t for t in tensors if t.is_floating_point()]
    if not tensors:
        raise TypeError(f"the model returned no floating-point tensor to train on ({type(output).__name__})")
    return sum(t.float().pow(2).mean() for t in tensors)


def _set_trainable(model: nn.Module, trainable: tuple[str, ...] | None) -> None:
    """requires_grad on every parameter (None) or only on those of the named submodules."""
    if trainable is None:
        model.requires_grad_(True)
        return
    if isinstance(trainable, str):  # ("head") without the comma is a string, not a tuple
        trainable = (trainable,)
    try:
        parts = [model.get_submodule(name) for name in trainable]
    except AttributeError as err:
        raise ValueError(f"trainable names submodules of the model (e.g. ('head',)); {err}") from None
    model.requires_grad_(False)
    for part in parts:
        part.requires_grad_(True)


def time_host(fn: Callable[[], object], *, repeat: int = 1) -> float:
    """Seconds `fn()` takes on this machine's CPU (the fastest of `repeat` calls): for `Plan.add_host`, time a
    sample of the host work and scale it to the profile's count."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def training_flops(model: nn.Module, size: int, in_channels: int = 3,
                   trainable: tuple[str, ...] | None = None, *, batch: int = 2) -> float:
    """FLOPs to train on one image of size×size: forward and backward, counted by flop_counter.

    The count runs on a copy of the model, on the CPU, in train mode, with `batch` random images,
    and is divided by the batch. trainable: None trains every parameter; a tuple of submodule names
    (e.g. ("head",)) trains only theirs, and the backward pass then stops where nothing before it
    needs a gradient, as it does in real training; () trains nothing and counts the forward pass
    alone. The input needs no gradient, so the first layer computes only its weight gradient. The
    model passed in is left as it was.
    """
    # a copy: BatchNorm's running statistics and requires_grad of the caller's model stay untouched
    model = copy.deepcopy(model).cpu().train()
    _set_trainable(model, trainable)
    x = torch.randn(batch, in_channels, size, size)
    with FlopCounterMode(display=False) as counter:
        loss = _loss(model(x))
        if loss.requires_grad:  # no trainable parameter: forward only
            loss.backward()
    return counter.get_total_flops() / batch


# ----------------------------------------------------------------------------- timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def seconds_per_image(make_model: Callable[[], nn.Module], size: int, device: torch.device | str, *,
                      in_channels: int = 3, trainable: tuple[str, ...] | None = None,
                      steps: int = 3, batch_size: int = 32, amp: bool = True) -> float:
    """Time `steps` training steps (SGD, cross-entropy, random data) after one warm-up step.

    The step is set up as `train.fit` sets up its own: mixed precision on CUDA, channels_last on
    CUDA and the CPU. The warm-up step takes cuDNN's autotuning and the first allocations out of the
    timing. A small batch on a big GPU underestimates its throughput; pass the notebook's batch size.
    """
    device = torch.device(device)
    model = make_model().to(device).train()
    _set_trainable(model, trainable)
    channels_last = device.type in ("cuda", "cpu")  # what fit() uses by default
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(device, amp=amp)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9) if parameters else None
    x = torch.randn(batch_size, in_channels, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = _loss(model(x))
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    step()
    _synchronize(device)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - began) / (steps * batch_size)


# ----------------------------------------------------------------------------- the plan


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return runtime.device_name(device)
    return device.type.upper()


class Plan:
    """What a notebook trains in its current profile: one row per model, resolution and image count.

    FLOP counts are cached per model structure (repr and parameter count), size, input channels and
    trainable parts, so rows that train the same model (seeds, learning rates, augmentations) are
    counted once, and timed once by `report`.
    """

    def __init__(self, title: str):
        self.title = title
        self.rows: list[dict] = []
        self._flops: dict[tuple, float] = {}  # cache key -> FLOPs per image
        self._builders: dict[tuple, tuple] = {}  # cache key -> (make_model, size, in_channels, trainable)

    def add(self, name: str, make_model: Callable[[], nn.Module], *, images: int, size: int,
            in_channels: int = 3, trainable: tuple[str, ...] | None = None, amp: bool = True) -> None:
        """One training run (or several alike): `images` pushed through the model in total
        (epochs × images per epoch × runs). make_model builds it; it is built here, on the CPU, to count.
        amp: whether the runs train in mixed precision (`fit`'s amp); fp32 runs are budgeted at T4_FP32_TFLOPS."""
        if isinstance(trainable, str):
            trainable = (trainable,)
        self._add("train", name, make_model, images=images, size=size, in_channels=in_channels,
                  trainable=tuple(trainable) if trainable is not None else None, amp=amp, passes=1)

    def add_training(self, training: Training, *, scoring: str | None = None) -> None:
        """A `helpers.runs.Training`, as the notebook's training cell will run it: its trained images (every run
        and epoch) in a train row named after it, and what it scores forward only (after every epoch and once
        after training) in an inference row below, labelled `scoring` or the training's own `scoring`."""
        self.add(training.name, training.network, images=training.trained_images, size=training.size,
                 in_channels=training.in_channels, trainable=training.trainable, amp=training.amp)
        if training.scored_images:
            label = scoring if scoring is not None else training.scoring or "its forward passes (scoring)"
            self.add_inference("  " + label, training.network, images=training.scored_images, size=training.size,
                               in_channels=training.in_channels, amp=training.amp)

    def add_inference(self, name: str, make_model: Callable[[], nn.Module], *, images: int, size: int,
                      in_channels: int = 3, amp: bool = True, passes: float = 1.0) -> None:
        """Forward passes on the device: `images` images, each `passes` forward passes' worth (1 to evaluate;
        about 3 for a forward and a backward pass, as a gradient-based CAM method takes; 1 + K for Score-CAM's
        K masked copies). amp: under autocast (evaluate's default) or in fp32; budgeted at the T4's inference
        rates (T4_INFERENCE_TFLOPS, T4_FP32_INFERENCE_TFLOPS)."""
        if passes < 0:
            raise ValueError(f"passes must be ≥ 0, not {passes}")
        self._add("infer", name, make_model, images=images, size=size, in_channels=in_channels, trainable=(),
                  amp=amp, passes=passes)

    def add_host(self, name: str, *, seconds: float) -> None:
        """Work on the host's CPU (decoding data, t-SNE, NumPy metrics, Python loops): `seconds` as measured on
        this machine (e.g. by timing a sample with `time_host` and scaling it). Colab's VM has 2 CPU cores: a
        figure measured on a 2-core machine stands for it."""
        self._add_seconds("host", name, seconds)

    def add_loading(self, name: str, *, seconds: float, downloaded: float = 0.0) -> None:
        """The data's loading, as measured: `seconds` in all, of which `downloaded` went to downloads
        (`data.download_seconds()`). The rest (decoding, caching) is host work; the download is reported
        apart and not counted in the estimate, since it depends on the network and happens once per machine."""
        downloaded = min(max(downloaded, 0.0), seconds)
        self._add_seconds("host", name + (" (the download apart)" if downloaded else ""), seconds - downloaded)
        if downloaded:
            self._add_seconds("net", "  its download (once per machine; not counted)", downloaded)

    def _add_seconds(self, kind: str, name: str, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"seconds must be ≥ 0, not {seconds}")
        self.rows.append({"kind": kind, "name": name, "size": None, "trainable": None, "images": 0, "amp": True,
                          "passes": 0, "flops_per_image": 0.0, "pflop": 0.0,
                          "t4_minutes": seconds / 60 if kind == "host" else 0.0,
                          "host_seconds": float(seconds), "_key": None})

    def _add(self, kind: str, name: str, make_model, *, images, size, in_channels, trainable, amp, passes) -> None:
        if isinstance(make_model, nn.Module) or not callable(make_model):
            raise TypeError("make_model is a function that builds the model, e.g. lambda: models.resnet18()")
        if images < 0:
            raise ValueError(f"images must be ≥ 0, not {images}")
        model = make_model()
        key = (repr(model), sum(p.numel() for p in model.parameters()), size, in_channels, trainable)
        if key not in self._flops:
            self._flops[key] = training_flops(model, size, in_channels, trainable)
        self._builders[key + (amp,)] = (make_model, size, in_channels, trainable, amp)
        flops = self._flops[key] * passes
        if kind == "train":
            rate = T4_TFLOPS if amp else T4_FP32_TFLOPS
        else:
            rate = T4_INFERENCE_TFLOPS if amp else T4_FP32_INFERENCE_TFLOPS
        self.rows.append({"kind": kind, "name": name, "size": size, "trainable": trainable, "images": int(images),
                          "amp": amp, "passes": passes, "flops_per_image": flops, "pflop": images * flops / 1e15,
                          "t4_minutes": images * flops / (rate * 1e12) / 60, "_key": key + (amp,)})

    @property
    def pflop(self) -> float:
        return sum(row["pflop"] for row in self.rows)

    def report(self, device: torch.device | str, *, measure: bool = True, steps: int = 3,
               batch_size: int = 32) -> dict:
        """Print the table, the total and the estimates (T4, and `device` when measure); return them.

        Returns {"pflop", "t4_minutes" (everything but downloads), "train_minutes", "inference_minutes",
        "host_minutes" (the T4 estimate's parts), "download_minutes" (apart), "device_minutes" (None without
        measure), "t4_tflops", "rows"}.
        """
        device = torch.device(device)
        pflop = self.pflop
        t4_minutes = sum(row["t4_minutes"] for row in self.rows)
        part = {kind: sum(r["t4_minutes"] for r in self.rows if r["kind"] == kind) for kind in ("train", "infer", "host")}
        network = sum(r["host_seconds"] for r in self.rows if r["kind"] == "net") / 60
        timed: dict[tuple, float] = {}
        if measure:
            for key, (make_model, size, in_channels, trainable, amp) in self._builders.items():
                if any(row["_key"] == key and row["images"] for row in self.rows):
                    timed[key] = seconds_per_image(make_model, size, device, in_channels=in_channels,
                                                   trainable=trainable, steps=steps, batch_size=batch_size, amp=amp)
        rows = []
        for row in self.rows:
            out = {k: v for k, v in row.items() if k != "_key"}
            if row["kind"] in ("host", "net"):
                out["device_minutes"] = row["t4_minutes"]
            elif row["_key"] in timed:
                seconds = timed[row["_key"]] * row["passes"]
                out["seconds_per_image"] = seconds
                out["device_tflops"] = row["flops_per_image"] / seconds / 1e12 if seconds else 0.0
                out["device_minutes"] = row["images"] * seconds / 60
            rows.append(out)
        device_minutes = sum(r.get("device_minutes", 0.0) for r in rows) if measure else None

        width = max([len(r["name"]) for r in rows] + [len("total")])
        print(f"time budget: {self.title} (GPU work in FLOPs counted by flop_counter: train = forward + backward, "
              f"infer = forward passes; host = CPU work timed here)")
        print(f"  {'':<{width}}  {'kind':>5}  {'size':>4}  {'GFLOP/image':>11}  {'images':>13}  {'PFLOP':>8}  "
              f"{'T4 min':>7}" + (f"  {'TFLOP/s here':>12}" if measure else ""))
        for r in rows:
            if r["kind"] in ("host", "net"):
                line = (f"  {r['name']:<{width}}  {r['kind']:>5}  {'':>4}  {'':>11}  {'':>13}  {'':>8}  "
                        + (f"{r['host_seconds'] / 60:>6.1f}h" if r["kind"] == "host"
                           else f"{'(' + format(r['host_seconds'] / 60, '.1f') + ')':>7}"))
            else:
                line = (f"  {r['name']:<{width}}  {r['kind']:>5}  {r['size']:>4}  {r['flops_per_image'] / 1e9:>11.3f}  "
                        f"{r['images']:>13,}  {r['pflop']:>8.3f}  {r['t4_minutes']:>6.1f}{'' if r['amp'] else '*'}")
                if "device_tflops" in r:
                    line += f"  {r['device_tflops']:>12.3f}"
            print(line)
        print(f"  {'total':<{width}}  {'':>5}  {'':>4}  {'':>11}  {sum(r['images'] for r in rows):>13,}  {pflop:>8.3f}  "
              f"{t4_minutes:>6.1f}")
        print(f"T4 estimate: {_minutes(t4_minutes)} (training {part['train']:.1f}, inference {part['infer']:.1f}, "
              f"host work {part['host']:.1f}) for {pflop:.3g} PFLOP"
              + (f"; downloads took {network:.1f} min more here (not counted)" if network else ""))
        print(f"  assumed T4 rates: training, mixed precision {T4_TFLOPS:.1f} TFLOP/s (ResNet-50, "
              f"{T4_RESNET50_TRAINING_IMAGES_PER_S:.0f} img/s × {RESNET50_TRAINING_FLOPS / 1e9:.1f} GFLOP), * fp32 "
              f"{T4_FP32_TFLOPS:.1f} TFLOP/s ({T4_RESNET50_FP32_TRAINING_IMAGES_PER_S:.0f} img/s); inference "
              f"{T4_INFERENCE_TFLOPS:.1f} TFLOP/s mixed, {T4_FP32_INFERENCE_TFLOPS:.1f} fp32 (measured "
              f"{T4_RESNET50_INFERENCE_IMAGES_PER_S} and {T4_RESNET50_FP32_INFERENCE_IMAGES_PER_S} img/s); all from "
              f"NVIDIA DeepLearningExamples' published T4 and V100 throughputs (helpers.course.budget); optimistic for "
              f"small models. h: host work, timed on this machine ({_device_label(torch.device('cpu'))})"
              + ("; (minutes): a download, not in the total" if network else ""))
        if measure:
            print(f"{_device_label(device)} estimate: {_minutes(device_minutes)}, from timing {steps} steps of "
                  f"{batch_size} images per model after a warm-up step, and the host work above")
        return {"pflop": pflop, "t4_minutes": t4_minutes, "train_minutes": part["train"],
                "inference_minutes": part["infer"], "host_minutes": part["host"], "download_minutes": network,
                "device_minutes": device_minutes, "t4_tflops": T4_TFLOPS, "rows": rows}


def _minutes(minutes: float) -> str:
    return f"{minutes:,.1f} min" if minutes < 120 else f"{minutes:,.0f} min ({minutes / 60:,.1f} h)"
