"""The course's one training loop, `fit`, and `evaluate`.

Every notebook trains through `fit`. What differs between lessons (cross-entropy, triplet, center,
contrastive or autoencoder losses) is the `step` function, `step(model, batch) -> (loss, metrics)`,
where `metrics` maps names to 0-d tensors averaged over the batch. The loop around it handles the
plumbing: mixed precision, channels_last, per-step or per-epoch schedules, a NaN guard, progress,
and checkpoints that let a disconnected Colab session resume where it stopped.
"""
from __future__ import annotations

import random
import time
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoints
from .metrics import classification_metrics, topk_correct
from .models import eval_mode
from .runtime import rehearsal_batches

PER_STEP_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def classification_step(model: torch.nn.Module, batch, *, label_smoothing: float = 0.0):
    """Cross-entropy on (images, labels); reports the batch accuracy."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return loss, {"accuracy": (logits.argmax(dim=1) == y).float().mean()}


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 on GPUs that have it (Ampere and newer), fp16 on older ones (Colab's T4), none on the CPU."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def _to_device(batch, device: torch.device, channels_last: bool):
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def _batch_size(batch) -> int:
    return len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters; a model without any is refused by name (it has nothing to train)."""
    for parameter in model.parameters():
        return parameter.device
    raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to train or to put on a device. "
                     f"Pass the network (an nn.Module with layers), not a loss or a function.")


# ----------------------------------------------------------------------------- arguments checked before training

def _check_model_and_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Refuse what would train nothing, or the wrong thing, without a word: a model that a cut-off run of fit left
    half-trained, a model whose parameters are all frozen, and an optimizer that does not hold every trainable
    parameter of the model (built over an earlier model: rerunning the model's cell but not the optimizer's)."""
    if cut := getattr(model, "_course_cut_off", None):
        raise RuntimeError(
            f"this model's weights were changed by a run of fit that did not finish ({cut}): they are neither "
            f"its starting weights nor a finished run's, and training on from them would match no run. Rerun the "
            f"cell that builds the model (and its optimizer), then this one: with a checkpoint, fit resumes the "
            f"cut-off run from its last save; without one, it trains from the start.")
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    device_of(model)
    if not names:
        raise ValueError(f"every parameter of {type(model).__name__} is frozen (requires_grad=False): training "
                         f"would change nothing. Unfreeze what should train, e.g. model.head.requires_grad_(True).")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [n for i, n in names.items() if i not in held]
    if len(missing) == len(names):
        raise ValueError(
            f"the optimizer holds none of this model's {len(names)} trainable parameter tensors: it was built over "
            f"another model (an earlier run of the cell that builds the model?). Build the optimizer over this "
            f"model (rerun its cell after the model's), then call fit again.")
    if missing:
        raise ValueError(
            f"the optimizer holds {len(names) - len(missing)} of this model's {len(names)} trainable parameter "
            f"tensors; {len(missing)} would get gradients and never change ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}). Freeze what should not train (requires_grad_(False)) or "
            f"give the optimizer every trainable parameter.")


def _versions(model: torch.nn.Module) -> list[int]:
    """Each parameter's and buffer's version counter: any in-place change (an optimizer step, BatchNorm's
    running statistics, a loaded state dict) moves it."""
    return [t._version for t in (*model.parameters(), *model.buffers())]


def _mark_if_changed(model: torch.nn.Module, versions: list[int], when: str) -> None:
    if _versions(model) != versions:
        model._course_cut_off = when


@contextmanager
def _marked_if_cut_off(model: torch.nn.Module, versions: list[int], epochs_done, epochs: int):
    """Mark `model` as half-trained where training stops with an exception (Ctrl-C, a loss that turns NaN, a
    crash) after its weights changed: the next fit refuses it (`_check_model_and_optimizer`)."""
    try:
        yield
    except BaseException as err:
        _mark_if_changed(model, versions, f"{type(err).__name__} in epoch {epochs_done() + 1} of {epochs}")
        raise


def _checked_step(step, model, batch, i: int, steps: int):
    """`step(model, batch)`, its output checked: (a scalar loss tensor with a gradient, {name: scalar tensor})."""
    try:
        out = step(model, batch)
    except ValueError as err:
        if "Expected more than 1 value per channel when training" in str(err):
            raise ValueError(
                f"batch {i + 1} of {steps} holds {_batch_size(batch)} image: BatchNorm cannot normalise one image in "
                f"training mode. Drop the incomplete last batch (drop_last=True) or choose a batch size that does "
                f"not leave one image over.") from err
        raise
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(f"a step returns (loss, metrics): a loss tensor and a dict of metrics ({{}} for none), "
                        f"not {type(out).__name__}")
    loss, metrics = out
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the step returned a loss of type {type(loss).__name__}: return the loss tensor itself "
                        f"(loss, not loss.item()), so that fit can backpropagate through it")
    if loss.ndim != 0:
        raise ValueError(f"the step returned a loss of shape {tuple(loss.shape)}: return one number, e.g. the mean "
                         f"over the batch (loss.mean())")
    if not loss.requires_grad:
        raise ValueError("the step's loss has no gradient: it was computed under torch.no_grad(), detached, or "
                         "from a model whose parameters are all frozen")
    for name, value in metrics.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            kind = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a tensor of shape {tuple(value.shape)}"
            raise TypeError(f"the step's metric {name!r} is {kind}: return each metric as a one-number tensor "
                            f"(e.g. (predictions == labels).float().mean()), so that fit averages it over the epoch")
    return loss, metrics


# ----------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    """Every global RNG's state, as plain numbers: a checkpoint loaded onto any device (torch.load's
    map_location moves tensors, and CUDA's RNG accepts only CPU bytes) restores it the same way."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _rng_bytes(value) -> torch.Tensor:
    """An RNG state as torch.set_rng_state wants it, a CPU uint8 tensor, from a list (how fit saves it) or
    from a tensor on any device (how checkpoints written before saved it, moved by map_location)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.uint8)
    return torch.tensor(value, dtype=torch.uint8)


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(_rng_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_rng_bytes(s) for s in state["cuda"]])


@contextmanager
def _fp32_means_fp32(device: torch.device, amp_dtype):
    """Without mixed precision, switch TF32 off on CUDA for the run, so that "fp32" is fp32 on Ampere and
    newer GPUs too (setup() turns TF32 on for speed); restored afterwards."""
    if device.type != "cuda" or amp_dtype is not None:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def true_fp32(device: torch.device | str):
    """A block in true fp32 on CUDA: TF32 off (setup() turns it on for speed; on Ampere and newer GPUs it rounds
    matrix products to 10 bits of mantissa), put back after. Nothing changes on the CPU or a T4."""
    return _fp32_means_fp32(torch.device(device), None)


# ----------------------------------------------------------------------------- the loop

def fit(model: torch.nn.Module, train_batches, epochs: int, optimizer: torch.optim.Optimizer,
        scheduler=None, *, step=None, val_batches=None, evaluate_fn=None,
        checkpoint: str | Path | None = None, label_smoothing: float = 0.0, amp: bool = True,
        channels_last: bool | None = None, compile: bool = False, scheduler_interval: str | None = None,
        grad_clip: float | None = None, config: dict | None = None, progress: bool = True,
        log_every: int = 20, checkpoint_every: float = checkpoints.SAVE_EVERY_SECONDS,
        explain: bool = False) -> list[dict]:
    """Train `model` for `epochs` passes over `train_batches`; return one dict per epoch.

    step: `(model, batch) -> (loss, metrics)`; default: cross-entropy with `label_smoothing`.
    val_batches / evaluate_fn: evaluated after each epoch with `evaluate_fn(model, val_batches)`
        (default `evaluate`); its scalar results enter the history as `val_<name>`.
    checkpoint: a path such as `runs/01_course.pt`. The run is saved (see checkpoint_every) as
        `runs/01_course-<hash>.pt`, where the hash covers everything that decides the result (see
        `helpers.checkpoints`: model and initial weights, optimizer and scheduler settings, step, data
        and loader, RNG state, precision, `config`, and a rehearsal's cut). An identical rerun resumes from that file, with the
        same RNG states; a run with any setting changed trains anew beside it. A finished run keeps
        its weights, history and RNG state (no optimizer state) and is not trained again. Resuming
        gives the same weights as an uninterrupted run where every kernel is deterministic (the CPU;
        on a GPU, cuDNN's autotuned kernels and atomics can differ in the last bits).
    checkpoint_every: seconds of training between two saves of an unfinished run, at the end of an epoch
        (default 10 minutes): a disconnect loses at most about that much, and a full-width network's
        100 MB are not rewritten after every short epoch (on Google Drive each rewrite also fills the
        trash, which counts against the quota). The finished run is always saved; 0 saves every epoch.
    explain: when a run trains anew beside checkpoints of other settings under the same name, print which
        fields of the identity differ (by default only that it trains anew).
    amp: mixed precision on CUDA (bf16 where the GPU supports it, else fp16 with a grad scaler);
        amp=False is true fp32, TF32 included (switched off for the run).
    channels_last: NHWC memory layout (default: on CUDA and the CPU). compile: `torch.compile` the model.
    scheduler_interval: "step" or "epoch"; default "step" for OneCycleLR and CyclicLR, else "epoch".
    config: anything else that decides the result and that fit cannot see (it joins the identity).
    Refused before anything trains: an optimizer that does not hold every trainable parameter of `model`, a
    model with nothing to train, and a model that a cut-off run of fit left half-trained (rebuild it: the run
    resumes from its checkpoint). A step's output is checked at every step (a scalar loss with a gradient,
    one-number metrics).
    """
    step, evaluate_fn, channels_last, scheduler_interval, amp_dtype = _settings(
        model, optimizer, scheduler, step, evaluate_fn, label_smoothing, amp, channels_last, scheduler_interval)
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive whole number, not {epochs!r}")
    steps = _steps_per_epoch(train_batches)
    device = device_of(model)
    run = None if checkpoint is None else run_of(
        model, train_batches, epochs, optimizer, scheduler, checkpoint=checkpoint, step=step, val_batches=val_batches,
        evaluate_fn=evaluate_fn, amp=amp, channels_last=channels_last, compile=compile,
        scheduler_interval=scheduler_interval, grad_clip=grad_clip, config=config)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    run_model = torch.compile(model) if compile else model
    versions = _versions(model)
    try:
        history = _resume(run, model, optimizer, scheduler, scaler, epochs, progress, explain) if run else []
    except BaseException:
        _mark_if_changed(model, versions, "while its checkpoint was loaded")
        raise
    last_save = time.monotonic()
    with _fp32_means_fp32(device, amp_dtype), _marked_if_cut_off(model, versions, lambda: len(history), epochs):
        for epoch in range(len(history), epochs):
            record = train_one_epoch(
                model, train_batches, optimizer, step=step, scheduler=scheduler, scheduler_interval=scheduler_interval,
                scaler=scaler, amp_dtype=amp_dtype, channels_last=channels_last, grad_clip=grad_clip, steps=steps,
                epoch=epoch, epochs=epochs, run_model=run_model, progress=progress, log_every=log_every,
                last_good=run and run.path)
            if val_batches is not None:
                t = time.perf_counter()
                result = evaluate_fn(run_model, val_batches, amp=amp)
                record.update({f"val_{k}": float(v) for k, v in result.items() if np.ndim(v) == 0})
                record["val_seconds"] = time.perf_counter() - t
            _refuse_non_finite(model, record, epoch, epochs, run and run.path)
            history.append(record)
            if progress:
                print(_epoch_line(record, epochs))
            finished = epoch + 1 == epochs
            if run and (finished or time.monotonic() - last_save >= checkpoint_every):
                # a finished run keeps weights, history and RNG state; an unfinished one what it needs to go on
                run.save(model, history, rng=_rng_state(), finished=finished, **({} if finished else dict(
                    optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                    scheduler=scheduler.state_dict() if scheduler is not None else None)))
                last_save = time.monotonic()
    return history


def _settings(model, optimizer, scheduler, step, evaluate_fn, label_smoothing, amp, channels_last,
              scheduler_interval):
    """fit's arguments checked and its defaults filled in: (step, evaluate_fn, channels_last, scheduler_interval,
    autocast dtype)."""
    _check_model_and_optimizer(model, optimizer)
    if step is None:
        step = partial(classification_step, label_smoothing=label_smoothing)
    elif label_smoothing:
        raise ValueError("label_smoothing applies to the default step; put it inside your own step instead")
    device = device_of(model)
    # NHWC: faster on tensor-core GPUs, and measured faster on this course's 2-core CI CPU too (38 vs 28 img/s)
    channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    return (step, evaluate_fn or evaluate, channels_last, _scheduler_interval(scheduler, scheduler_interval),
            autocast_dtype(device, amp))


def run_of(model: torch.nn.Module, train_batches, epochs: int, optimizer: torch.optim.Optimizer, scheduler=None, *,
           checkpoint: str | Path, step=None, val_batches=None, evaluate_fn=None, label_smoothing: float = 0.0,
           amp: bool = True, channels_last: bool | None = None, compile: bool = False,
           scheduler_interval: str | None = None, grad_clip: float | None = None,
           config: dict | None = None) -> checkpoints.Run:
    """The run that `fit` with the same arguments would resume or write (its identity, hash and file), without
    training: `run_of(...).load()` is the state of a run of these very settings, or None. Call it right before
    `fit`: the global RNG state belongs to the identity."""
    step, evaluate_fn, channels_last, scheduler_interval, amp_dtype = _settings(
        model, optimizer, scheduler, step, evaluate_fn, label_smoothing, amp, channels_last, scheduler_interval)
    device = device_of(model)
    return checkpoints.Run.of(checkpoint, checkpoints.run_identity(
        model=model, optimizer=checkpoints.optimizer_identity(optimizer, model), scheduler=scheduler and {
            "type": type(scheduler).__qualname__, "state": scheduler.state_dict()},
        step=step, train_batches=train_batches, val_batches=val_batches, evaluate_fn=evaluate_fn,
        epochs=epochs, steps_per_epoch=_steps_per_epoch(train_batches), scheduler_interval=scheduler_interval,
        precision=str(amp_dtype), tf32=device.type == "cuda" and amp_dtype is None and "off",
        channels_last=channels_last, compile=compile, grad_clip=grad_clip, rng=torch.get_rng_state(),
        config=config, **({} if rehearsal_batches() is None else {"rehearsal": rehearsal_batches()})))


def _steps_per_epoch(train_batches) -> int:
    steps = len(train_batches)
    if rehearsal_batches() is not None:   # a rehearsal of the full profile: a few steps per epoch (runtime.rehearsal_batches)
        steps = min(steps, rehearsal_batches())
    if steps == 0:
        raise ValueError(
            f"train_batches has no batch: an epoch would train nothing ({_describe(train_batches)}). Lower the "
            f"batch size below the number of training images, or use more images.")
    return steps


def _scheduler_interval(scheduler, interval: str | None) -> str:
    if interval is None:
        interval = "step" if isinstance(scheduler, PER_STEP_SCHEDULERS) else "epoch"
    if interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', not {interval!r}")
    return interval


def _resume(run: checkpoints.Run, model, optimizer, scheduler, scaler, epochs: int, progress: bool,
            explain: bool) -> list[dict]:
    """The history so far of the run `run` names: restored from its checkpoint (weights, RNG states, and for
    an unfinished run the optimizer, scheduler and scaler), or empty for a new run."""
    state = run.load(device_of(model))
    if state is None:
        if note := run.trains_anew(explain):
            print(note)
        return []
    model.load_state_dict(state["model"])
    _set_rng_state(state["rng"])
    history, start = state["history"], state["epoch"]
    if start < epochs:  # a finished run has no optimizer state to restore
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        print(f"resumed from {run.path}: {start} of {epochs} epochs done")
    else:
        print(f"this run finished before: weights and history from {run.path} (delete it to train again)")
        if progress:   # its log as it was printed when it trained, indented: these epochs did not run now
            print("\n".join("  " + _epoch_line(record, epochs) for record in history))
    return history[:start]


def _describe(batches) -> str:
    size = getattr(batches, "batch_size", None)
    images = getattr(batches, "epoch_images", None)
    if images is None and hasattr(batches, "dataset"):
        images = len(batches.dataset)
    if size is None or images is None:
        return f"len(train_batches) is 0 for {type(batches).__name__}"
    return f"{images} images per epoch, batch size {size}, incomplete last batch dropped"


def train_one_epoch(model: torch.nn.Module, batches, optimizer: torch.optim.Optimizer, *, step=None,
                    scheduler=None, scheduler_interval: str | None = None, scaler=None, amp_dtype=None,
                    channels_last: bool = False, grad_clip: float | None = None, steps: int | None = None,
                    epoch: int = 0, epochs: int | None = None, run_model=None, progress: bool = True,
                    log_every: int = 20, last_good=None) -> dict:
    """One pass over `batches` (the first `steps` of them): for each batch, `step(model, batch) -> (loss, metrics)`
    under autocast at `amp_dtype`, backward (scaled by `scaler` in fp16), optional gradient clipping, the
    optimizer's step and, per step or per epoch, the scheduler's. Returns the epoch's record: the means of the
    loss and the step's metrics, the learning rate, images and speed. A loss that is not finite raises
    NonFiniteLossError naming the step (checked every step on the CPU, every `log_every` steps on a GPU,
    where a check costs a sync). `run_model` is what the step calls (a compiled `model`); `fit` passes it all."""
    step = classification_step if step is None else step
    run_model = model if run_model is None else run_model
    device = device_of(model)
    scaler = torch.amp.GradScaler(device.type, enabled=False) if scaler is None else scaler
    steps = _steps_per_epoch(batches) if steps is None else steps
    scheduler_interval = _scheduler_interval(scheduler, scheduler_interval)
    check_every = 1 if device.type == "cpu" else log_every
    if hasattr(batches, "set_epoch"):
        batches.set_epoch(epoch)
    model.train()
    sums: dict[str, torch.Tensor] = {}
    images = 0
    first_bad = torch.tensor(-1, device=device)
    began = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs or '?'}", leave=False, disable=not progress, total=steps)
    for i, batch in enumerate(bar):
        if i == steps:   # a rehearsal's cut epoch (runtime.rehearsal_batches)
            break
        batch = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, metrics = _checked_step(step, run_model, batch, i, steps)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None and scheduler_interval == "step":
            _scheduler_step(scheduler)
        n = _batch_size(batch)
        images += n
        loss = loss.detach().float()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
        for name, value in {"loss": loss, **metrics}.items():
            sums[name] = sums.get(name, 0) + value.detach().float() * n
        if ((i + 1) % check_every == 0 or i + 1 == steps) and (bad := int(first_bad)) >= 0:
            raise NonFiniteLossError(
                f"the loss became {float(sums['loss']):.4g} at epoch {epoch + 1}, step {bad + 1} of "
                f"{steps}{_last_good(last_good)}. Lower the learning rate, check the inputs for "
                f"NaN, or clip gradients (grad_clip=); a run with changed settings starts afresh.")
        if progress and (i + 1) % log_every == 0:
            bar.set_postfix(loss=f"{float(sums['loss']) / images:.3f}")
    if scheduler is not None and scheduler_interval == "epoch":
        _scheduler_step(scheduler)
    seconds = time.perf_counter() - began  # exact on a GPU: the NaN check at the last step synchronised
    return {"epoch": epoch + 1, **{k: float(v) / images for k, v in sums.items()},
            "lr": optimizer.param_groups[0]["lr"], "images": images, "seconds": seconds,
            "images_per_s": images / seconds}


def _scheduler_step(scheduler) -> None:
    """scheduler.step(), without the warning that fp16's grad scaler sets off: the scaler skips the optimizer's
    step while it searches for its scale (the first steps, or a step whose gradients overflowed), and PyTorch
    then warns that "lr_scheduler.step() was called before optimizer.step()" and that the schedule's first
    value is skipped. The schedule counts steps, skipped ones included, so that it ends where it was set to."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        try:
            scheduler.step()
        except ValueError as err:
            if "Tried to step" not in str(err):
                raise
            raise ValueError(
                f"{type(scheduler).__name__} was stepped past its last step ({err}). fit steps a per-step schedule "
                f"after every batch: its total_steps is epochs × batches per epoch (epochs * len(train_batches)), "
                f"not the number of epochs.") from None


def _last_good(path) -> str:
    if path is None or not Path(path).exists():
        return "; no checkpoint of this run was written"
    return f"; the last good checkpoint of this run is {path}"


def _refuse_non_finite(model: torch.nn.Module, record: dict, epoch: int, epochs: int, path) -> None:
    """Never save weights that are not finite: a finite training loss can hide weights or BatchNorm
    statistics that overflowed in the last step, which show as a NaN validation loss."""
    bad = [k for k in ("loss", "val_loss") if k in record and not np.isfinite(record[k])]
    if not checkpoints.all_finite(model.state_dict().values()):
        bad.append("weights or BatchNorm statistics")
    if bad:
        raise NonFiniteLossError(
            f"after epoch {epoch + 1} of {epochs} these are not finite: {', '.join(bad)}; this epoch was not "
            f"saved{_last_good(path)}. Lower the learning rate or clip gradients (grad_clip=); a run with "
            f"changed settings starts afresh.")


def _epoch_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']:>3}/{epochs}", f"loss {record['loss']:.4f}"]
    if "accuracy" in record:
        parts.append(f"acc {100 * record['accuracy']:5.2f}%")
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f}")
    if "val_top1" in record:
        parts.append(f"val acc {100 * record['val_top1']:5.2f}%")
    parts += [f"lr {record['lr']:.3g}", f"{record['seconds']:.1f} s", f"{record['images_per_s']:,.0f} img/s"]
    return " | ".join(parts)


@torch.no_grad()
def _inference(model: torch.nn.Module, batches, amp: bool):
    """Yield (float32 logits, batch on the device) in eval mode; the model's mode is restored after.
    amp=False evaluates in true fp32 (TF32 off on CUDA), as `fit` trains."""
    device = device_of(model)
    amp_dtype = autocast_dtype(device, amp)
    cap = rehearsal_batches()
    with eval_mode(model), _fp32_means_fp32(device, amp_dtype):
        for i, batch in enumerate(batches):
            if cap is not None and i == cap:   # a rehearsal reads a few batches (runtime.rehearsal_batches)
                break
            batch = _to_device(batch, device, channels_last=False)
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            yield logits.float(), batch


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, *, amp: bool = True) -> dict:
    """Loss, top-1, top-5, per-class accuracy, the confusion matrix, macro precision/recall/F1.

    batches yields (images, labels); the model is put in eval mode and returned to its mode after.
    """
    loss_sum, top5 = 0.0, 0
    targets, predictions = [], []
    num_classes = None
    for logits, (_, y) in _inference(model, batches, amp):
        num_classes = logits.shape[1]
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        top5 += topk_correct(logits, y, 5)
        targets.append(y.cpu())
        predictions.append(logits.argmax(dim=1).cpu())
    if num_classes is None:
        raise ValueError("evaluate() got no batches")
    y = torch.cat(targets).numpy()
    result = classification_metrics(y, torch.cat(predictions).numpy(), num_classes)
    n = len(y)
    return {"loss": float(loss_sum) / n, "top1": result.pop("accuracy"), "top5": float(top5) / n,
            "count": n, **result}


def predict(model: torch.nn.Module, batches, *, amp: bool = True) -> torch.Tensor:
    """Logits (float32, on the CPU) for every batch, in order."""
    return torch.cat([logits.cpu() for logits, _ in _inference(model, batches, amp)])
