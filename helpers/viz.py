"""Plots. The only module that draws; everything it shows comes in as plain data."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch


def plot_history(history: list[dict], *, metrics=("loss", "accuracy"), title: str = "", axes=None):
    """Training and validation curves per epoch: one panel per metric (`val_<metric>` drawn beside it).

    Accuracy panels also look for the validation key `val_top1`.
    """
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
        axes = axes[0]
    epochs = [r["epoch"] for r in history]
    for ax, name in zip(axes, metrics):
        if name in history[0]:
            ax.plot(epochs, [r[name] for r in history], marker=".", label=f"train {name}")
        for key in (f"val_{name}",) + (("val_top1",) if name == "accuracy" else ()):
            if key in history[0]:
                ax.plot(epochs, [r[key] for r in history], marker=".", label=key.replace("_", " "))
                break
        ax.set_xlabel("epoch")
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes


def plot_confusion(confusion: np.ndarray, classes, *, normalize: bool = True, title: str = "", ax=None):
    """A heatmap of the confusion matrix (rows: true class, columns: prediction), rows as fractions."""
    import seaborn as sns
    cm = np.asarray(confusion, dtype=float)
    if normalize:
        cm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * len(classes) + 2, 0.6 * len(classes) + 1.5))
    sns.heatmap(cm, annot=len(classes) <= 20, fmt=".2f" if normalize else "g", cmap="Blues",
                xticklabels=classes, yticklabels=classes, cbar=False, ax=ax, square=True)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (each row sums to 1)" if normalize else "confusion matrix"))
    return ax


def show_images(images: torch.Tensor, labels=None, classes=None, *, predictions=None, ncols: int = 8,
                size: float = 1.4, title: str = ""):
    """A grid of uint8 images (N×C×H×W) captioned with labels, and predictions when given (red when wrong)."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * (predictions is not None)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().cpu()
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)

        def name(k):
            return classes[int(k)] if classes is not None else str(int(k))
        caption = name(labels[i]) if labels is not None else ""
        color = "black"
        if predictions is not None:
            caption = f"{caption}\n→ {name(predictions[i])}"
            color = "green" if labels is not None and int(predictions[i]) == int(labels[i]) else "red"
        ax.set_title(caption, fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_balance(counts, classes, *, title: str = "images per class", ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.5))
    ax.bar(range(len(classes)), np.asarray(counts))
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_title(title)
    return ax


def plot_augmentation_grid(examples: dict[str, torch.Tensor], *, size: float = 1.1, title: str = ""):
    """One row per augmentation (its name on the left), one column per draw: uint8 N×C×H×W each."""
    names = list(examples)
    ncols = max(len(v) for v in examples.values())
    fig, axes = plt.subplots(len(names), ncols, figsize=(size * ncols + 1.6, size * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(examples[name]):
                img = examples[name][j].detach().cpu()
                ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None,
                          vmin=0, vmax=255)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_heatmap(values, row_values, col_values, *, row_label: str, col_label: str, title: str = "",
                 fmt: str = ".1%", ax=None):
    """A grid-search result: values[i][j] for row_values[i], col_values[j]; the best cell is outlined."""
    import seaborn as sns
    values = np.asarray(values, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(col_values) + 2, 0.8 * len(row_values) + 1.2))
    sns.heatmap(values, annot=True, fmt=fmt, cmap="viridis", cbar=False, ax=ax,
                xticklabels=[f"{v:g}" for v in col_values], yticklabels=[f"{v:g}" for v in row_values])
    best = np.unravel_index(np.nanargmax(values), values.shape)
    ax.add_patch(plt.Rectangle((best[1], best[0]), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    return ax


def plot_bars(names, means, stds=None, *, reference: float | None = None, xlabel: str = "test accuracy",
              title: str = "", ax=None):
    """Horizontal bars of mean ± std (e.g. over seeds), one per row, with an optional reference line."""
    means = np.asarray(means, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y, means, xerr=None if stds is None else np.asarray(stds, dtype=float), capsize=3, color="tab:blue")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    low = max(0.0, float(np.nanmin(means)) - 0.1)
    ax.set_xlim(low, min(1.0, float(np.nanmax(means)) + 0.05))
    for yi, m in zip(y, means):
        ax.text(m, yi, f" {m:.1%}", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color="gray", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_curves(x, curves: dict[str, list[float]], *, xlabel: str, ylabel: str, logx: bool = False,
                title: str = "", ax=None):
    """Several y-series over the same x (e.g. learning rate per step, accuracy per labelled-set size)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in curves.items():
        xs = x[name] if isinstance(x, dict) else x
        ax.plot(xs, ys, marker="." if len(ys) <= 30 else None, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
