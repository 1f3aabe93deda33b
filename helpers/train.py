"""The course's one training loop, `fit`, and `evaluate`.

Every notebook trains through `fit`. What differs between lessons (cross-entropy, triplet, center,
contrastive or autoencoder losses) is the `step` function, `step(model, batch) -> (loss, metrics)`,
where `metrics` maps names to 0-d tensors averaged over the batch. The loop around it handles the
plumbing: mixed precision, channels_last, per-step or per-epoch schedules, a NaN guard, progress,
and checkpoints that let a disconnected Colab session resume where it stopped.
"""
from __future__ import annotations

import os
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics import classification_metrics, topk_correct

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


# ----------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, then rename: a run killed mid-write leaves the old checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _signature(model, optimizer, epochs: int, steps_per_epoch: int) -> dict:
    """What a checkpoint must agree with to be resumed (so a changed recipe never reuses stale weights)."""
    return {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "optimizer": type(optimizer).__name__, "epochs": epochs, "steps_per_epoch": steps_per_epoch}


# ----------------------------------------------------------------------------- the loop

def fit(model: torch.nn.Module, train_batches, epochs: int, optimizer: torch.optim.Optimizer,
        scheduler=None, *, step=None, val_batches=None, evaluate_fn=None,
        checkpoint: str | Path | None = None, label_smoothing: float = 0.0, amp: bool = True,
        channels_last: bool | None = None, compile: bool = False, scheduler_interval: str | None = None,
        grad_clip: float | None = None, progress: bool = True, log_every: int = 20) -> list[dict]:
    """Train `model` for `epochs` passes over `train_batches`; return one dict per epoch.

    step: `(model, batch) -> (loss, metrics)`; default: cross-entropy with `label_smoothing`.
    val_batches / evaluate_fn: evaluated after each epoch with `evaluate_fn(model, val_batches)`
        (default `evaluate`); its scalar results enter the history as `val_<name>`.
    checkpoint: a file written after every epoch (atomically); when it exists, training resumes
        from it, with the same RNG states, so the result equals an uninterrupted run.
    amp: mixed precision on CUDA (bf16 where the GPU supports it, else fp16 with a grad scaler).
    channels_last: NHWC memory layout (default: on CUDA and the CPU). compile: `torch.compile` the model.
    scheduler_interval: "step" or "epoch"; default "step" for OneCycleLR and CyclicLR, else "epoch".
    """
    if step is None:
        step = partial(classification_step, label_smoothing=label_smoothing)
    elif label_smoothing:
        raise ValueError("label_smoothing applies to the default step; put it inside your own step instead")
    evaluate_fn = evaluate_fn or evaluate
    device = next(model.parameters()).device
    # NHWC: faster on tensor-core GPUs, and measured faster on this course's 2-core CI CPU too (38 vs 28 img/s)
    channels_last = device.type in ("cuda", "cpu") if channels_last is None else channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if scheduler_interval is None:
        scheduler_interval = "step" if isinstance(scheduler, PER_STEP_SCHEDULERS) else "epoch"
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', not {scheduler_interval!r}")
    amp_dtype = autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    run_model = torch.compile(model) if compile else model
    steps_per_epoch = len(train_batches)
    signature = _signature(model, optimizer, epochs, steps_per_epoch)
    check_every = 1 if device.type == "cpu" else log_every  # a NaN check costs a GPU sync

    history: list[dict] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("signature") != signature:
            raise ValueError(
                f"the checkpoint {checkpoint} was written by another run ({state.get('signature')}), not this "
                f"one ({signature}). Delete it to start over, or pass another checkpoint path.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history, start = state["history"], state["epoch"]
        print(f"resumed from {checkpoint}: {start} of {epochs} epochs done")

    for epoch in range(start, epochs):
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        images = 0
        first_bad = torch.tensor(-1, device=device)
        began = time.perf_counter()
        bar = tqdm(train_batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress,
                   total=steps_per_epoch)
        for i, batch in enumerate(bar):
            batch = _to_device(batch, device, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss, metrics = step(run_model, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()

            n = _batch_size(batch)
            images += n
            loss = loss.detach().float()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
            for name, value in {"loss": loss, **metrics}.items():
                sums[name] = sums.get(name, 0) + value.detach().float() * n
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                bad = int(first_bad)
                if bad >= 0:
                    saved = f"; the last good checkpoint is {checkpoint}" if checkpoint and Path(checkpoint).exists() else ""
                    raise NonFiniteLossError(
                        f"the loss became {float(sums['loss']):.4g} at epoch {epoch + 1}, step {bad + 1} of "
                        f"{steps_per_epoch}{saved}. Lower the learning rate, check the inputs for NaN, or clip "
                        f"gradients (grad_clip=).")
            if progress and (i + 1) % log_every == 0:
                bar.set_postfix(loss=f"{float(sums['loss']) / images:.3f}")
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        seconds = time.perf_counter() - began  # exact on a GPU: the NaN check at the last step synchronised

        record = {"epoch": epoch + 1, **{k: float(v) / images for k, v in sums.items()},
                  "lr": optimizer.param_groups[0]["lr"], "images": images, "seconds": seconds,
                  "images_per_s": images / seconds}
        if val_batches is not None:
            t = time.perf_counter()
            result = evaluate_fn(run_model, val_batches, amp=amp)
            record.update({f"val_{k}": float(v) for k, v in result.items() if np.ndim(v) == 0})
            record["val_seconds"] = time.perf_counter() - t
        history.append(record)
        if progress:
            print(_epoch_line(record, epochs))
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "signature": signature, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(), "rng": _rng_state(), "history": history})
    return history


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
    """Yield (float32 logits, batch on the device) in eval mode; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(device, amp)
    try:
        for batch in batches:
            batch = _to_device(batch, device, channels_last=False)
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            yield logits.float(), batch
    finally:
        model.train(was_training)


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
