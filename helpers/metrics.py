"""Classification metrics from predictions: plain numbers and arrays, no plotting."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their target among the k largest logits (a 0-d tensor, no sync)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum()


def classification_metrics(targets, predictions, num_classes: int) -> dict:
    """Accuracy, per-class accuracy (= recall), the confusion matrix, and precision/recall/F1.

    Precision and recall are computed per class over the whole set and then averaged (macro):
    a figure from one batch, or from the training set, is not the test precision.
    """
    y = np.asarray(targets)
    p = np.asarray(predictions)
    labels = np.arange(num_classes)
    cm = confusion_matrix(y, p, labels=labels)
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.zeros(num_classes), where=support > 0)
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(y, p, labels=labels, average="macro", zero_division=0)
    return {
        "accuracy": float((y == p).mean()) if len(y) else float("nan"),
        "per_class_accuracy": per_class,
        "confusion": cm,  # rows: true class, columns: predicted class
        "precision": float(macro[0]), "recall": float(macro[1]), "f1": float(macro[2]),
        "per_class_precision": prec, "per_class_recall": rec, "per_class_f1": f1,
    }


# ----------------------------------------------------------------------------- embeddings

def finite_rows(x: torch.Tensor, what: str) -> torch.Tensor:
    """`x` itself, after a check that every row is finite: a row holding NaN or an infinity would rank after
    (or before) every other and score as a match or a miss by accident. Raises ValueError with the count and
    the first rows."""
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1) if x.numel() else torch.zeros(0, dtype=torch.bool)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{int(bad.sum())} of the {len(x)} {what} hold NaN or an infinity (rows "
                         f"{', '.join(map(str, rows[:5].tolist()))}{', ...' if len(rows) > 5 else ''}): the network's "
                         f"output is not finite. Check the training loss and the learning rate before scoring.")
    return x


def _squared_distances(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, queries × bank (float64 for exact rankings; clamped at 0)."""
    q, b = queries.double(), bank.double()
    return (q.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None] - 2 * q @ b.T).clamp(min=0)


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *, k: int = 10,
                chunk: int = 512) -> torch.Tensor:
    """k-nearest-neighbour classification of `queries` (M×D) by a labelled `bank` (N×D), Euclidean distance:
    each of the k nearest bank images votes for its class with weight 1/distance (a query that coincides
    with bank images takes their class). Returns M predicted labels. The same rule as scikit-learn's
    `KNeighborsClassifier(n_neighbors=k, weights="distance")`."""
    if len(bank) != len(bank_labels):
        raise ValueError(f"the bank has {len(bank)} embeddings and {len(bank_labels)} labels: pass one label per "
                         f"bank embedding, in the same order")
    if len(bank_labels) and int(bank_labels.min()) < 0:
        raise ValueError(f"the bank has {int((bank_labels < 0).sum())} unlabeled embeddings (label -1): leave them out")
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must lie between 1 and the bank's {len(bank)} images, not {k}")
    finite_rows(bank, "bank embeddings")
    finite_rows(queries, "query embeddings")
    bank_labels = bank_labels.to(bank.device)
    classes = int(bank_labels.max()) + 1
    out = []
    for a, b in _chunks(len(queries), chunk):
        d2, nearest = _squared_distances(queries[a:b], bank).topk(k, dim=1, largest=False)
        d = d2.sqrt()
        exact = d == 0
        weights = torch.where(exact.any(1, keepdim=True), exact.double(), 1 / d.clamp(min=1e-300))
        votes = torch.zeros(b - a, classes, dtype=torch.float64, device=bank.device)
        votes.scatter_add_(1, bank_labels[nearest], weights)
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=bank.device)


@torch.no_grad()
def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, *, chunk: int = 512) -> dict:
    """Leave-one-out retrieval within one set: every image is a query against all the others.

    recall_at_1: the share of queries whose nearest other image has their class (also called
        precision@1). map_at_r: mean average precision at R (Musgrave, Belongie & Lim 2020, "A Metric
        Learning Reality Check"), where R is the number of other images of the query's class: of the
        R nearest, each image of the right class at rank i counts precision@i, and the sum is divided
        by R; 1 only when all R come first. Queries alone in their class are left out.
    """
    n = len(labels)
    finite_rows(embeddings, "embeddings")
    labels = labels.to(embeddings.device)
    if n and int(labels.min()) < 0:
        raise ValueError(f"{int((labels < 0).sum())} of the {n} images are unlabeled (label -1): leave them out")
    same_class = torch.bincount(labels) - 1 if n else labels
    r = same_class[labels]
    if n < 2 or int(r.max()) == 0:
        raise ValueError(f"retrieval needs at least one class with two images or more; it got {n} images in "
                         f"{len(torch.unique(labels))} classes, each alone")
    max_r = int(r.max())
    hits, precision = [], []
    for a, b in _chunks(n, chunk):
        d2 = _squared_distances(embeddings[a:b], embeddings)
        d2[torch.arange(b - a), torch.arange(a, b)] = float("inf")   # not itself
        nearest = d2.topk(max_r, dim=1, largest=False).indices
        relevant = (labels[nearest] == labels[a:b, None]).double()
        ranks = torch.arange(1, max_r + 1, device=embeddings.device, dtype=torch.float64)
        within_r = ranks[None] <= r[a:b, None]
        at_i = relevant.cumsum(1) / ranks[None]
        rows = r[a:b].double().clamp(min=1)
        precision.append((at_i * relevant * within_r).sum(1) / rows)
        hits.append(relevant[:, 0])
    keep = r > 0
    return {"recall_at_1": float(torch.cat(hits)[keep].mean()), "map_at_r": float(torch.cat(precision)[keep].mean()),
            "queries": int(keep.sum())}


@torch.no_grad()
def class_separation(embeddings: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean Euclidean distance between two images of the same class (itself excluded), of different
    classes, and their ratio (within / between): 0 for classes shrunk to points, about 1 for an
    embedding that ignores the classes. Unlike either distance alone, the ratio does not change
    when the whole embedding is scaled."""
    labels = labels.to(embeddings.device)
    d = _squared_distances(finite_rows(embeddings, "embeddings"), embeddings).sqrt()
    same = labels[:, None] == labels[None]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    if not (same & off).any() or same.all():
        raise ValueError(f"class separation needs two classes and a class with two images or more; it got "
                         f"{len(labels)} images in {len(torch.unique(labels))} classes")
    within, between = float(d[same & off].mean()), float(d[~same].mean())
    return {"within": within, "between": between, "ratio": within / between}
