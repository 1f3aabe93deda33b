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
