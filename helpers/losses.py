"""Losses that shape an embedding instead of class scores: batch-hard triplet loss and center loss.

Each is one short function or module; the notebooks show them and check them against these. The
tests compare the triplet loss with pytorch-metric-learning and the center loss with a brute-force loop.
"""
from __future__ import annotations

import math

import torch
from torch import nn

DISTANCE_EPS = 1e-12   # inside the square root, as Hermans et al.'s code has it: a finite gradient at distance 0


def pairwise_distances(x: torch.Tensor, eps: float = DISTANCE_EPS) -> torch.Tensor:
    """Euclidean distances (not squared) between the rows of x (N×D), N×N.

    `sqrt(sum((a - b)**2))` has an infinite derivative at 0, and a batch always holds pairs at
    distance 0 (each point with itself, and every pair once the embedding collapses): its gradient
    would be NaN. The eps inside the root keeps it finite (the diagonal is then sqrt(eps), not 0).
    """
    squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    return (squared + eps).sqrt()


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float | str = 0.2) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, https://arxiv.org/abs/1703.07737).

    embeddings: B×D, not normalised; labels: B. For each anchor, the farthest image of its class
    (hardest positive) and the closest image of another class (hardest negative), Euclidean distance:
    `relu(d_ap - d_an + margin)`, or `softplus(d_ap - d_an)` with margin="soft". The mean over the
    anchors that have both a positive and a negative in the batch (sample P classes × K images per
    batch, or about half the anchors of a random batch have no positive); 0 if none has.

    Collapse signatures (every embedding the same point): the loss equals the margin, or ln 2 soft.
    """
    if margin != "soft" and not isinstance(margin, (int, float)):
        raise ValueError(f"margin must be a number or 'soft', not {margin!r}")
    d = pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    self_pair = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~self_pair, ~same
    valid = positive.any(1) & negative.any(1)
    if not valid.any():
        return embeddings.sum() * 0.0   # no triplet in this batch: a zero that keeps the graph
    hardest_positive = d.masked_fill(~positive, -math.inf).amax(1)
    hardest_negative = d.masked_fill(~negative, math.inf).amin(1)
    gap = (hardest_positive - hardest_negative)[valid]
    per_anchor = nn.functional.softplus(gap) if margin == "soft" else (gap + margin).clamp(min=0)
    return per_anchor.mean()


@torch.no_grad()
def triplet_diagnostics(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> dict:
    """What to watch while a triplet loss trains: the mean distance between two embeddings (it goes to
    0 when the embedding collapses), the share of anchors with a valid triplet, and the share of those
    whose hardest triplet still violates the margin (0 late in a healthy run, 1 in a collapsed one)."""
    d = pairwise_distances(embeddings)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
    valid = positive.any(1) & (~same).any(1)
    off_diagonal = d[~torch.eye(n, dtype=torch.bool, device=labels.device)]
    gap = d.masked_fill(~positive, -math.inf).amax(1) - d.masked_fill(same, math.inf).amin(1)
    return {"mean_distance": float(off_diagonal.mean()) if n > 1 else 0.0,
            "valid_anchors": float(valid.float().mean()),
            "active": float((gap[valid] + margin > 0).float().mean()) if valid.any() else 0.0}


class CenterLoss(nn.Module):
    """Center loss (Wen, Zhang, Li & Qiao, ECCV 2016): `½ ||f_i - c_{y_i}||²`, averaged over the batch,
    added to cross-entropy with a weight λ. (The paper sums over the batch; the mean keeps λ
    independent of the batch size.)

    The centers (num_classes×feat_dim, a buffer: no optimizer moves them) follow the paper's own
    update, `update(features, labels)` after each step:
    `c_j -= alpha * sum_{i: y_i=j} (c_j - f_i) / (1 + n_j)`, with alpha in [0, 1].
    Centre loss alone collapses (features and centres shrink to one point): pair it with cross-entropy.
    """

    def __init__(self, num_classes: int, feat_dim: int, alpha: float = 0.5):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha (the centres' update rate) must lie in [0, 1], not {alpha}")
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * (features - self.centers[labels]).pow(2).sum(1).mean()

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        features = features.detach().to(self.centers.dtype)
        diff = torch.zeros_like(self.centers).index_add_(0, labels, self.centers[labels] - features)
        counts = torch.zeros(len(self.centers), device=labels.device, dtype=self.centers.dtype)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=self.centers.dtype))
        self.centers -= self.alpha * diff / (1 + counts)[:, None]
