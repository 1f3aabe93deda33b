"""Losses that shape an embedding instead of class scores: batch-hard triplet loss and center loss
(notebook 04), the pairwise contrastive loss and NT-Xent (notebook 05).

Each is one short function or module; the notebooks show them and check them against these. The
tests compare the triplet loss and NT-Xent with pytorch-metric-learning, and the center loss and the
pair loss with brute-force loops.
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


def _hardest_gaps(d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, D(a, hardest positive) - D(a, hardest negative) from the distance matrix d, and which
    anchors have both a positive (another image of their class) and a negative in the batch."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = positive.any(1) & (~same).any(1)
    gap = d.masked_fill(~positive, -math.inf).amax(1) - d.masked_fill(same, math.inf).amin(1)
    return gap, valid


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
    gap, valid = _hardest_gaps(pairwise_distances(embeddings), labels)
    if not valid.any():
        return embeddings.sum() * 0.0   # no triplet in this batch: a zero that keeps the graph
    gap = gap[valid]
    per_anchor = nn.functional.softplus(gap) if margin == "soft" else (gap + margin).clamp(min=0)
    return per_anchor.mean()


@torch.no_grad()
def triplet_diagnostics(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> dict:
    """What to watch while a triplet loss trains: the mean distance between two embeddings (it goes to
    0 when the embedding collapses), the share of anchors with a valid triplet, and the share of those
    whose hardest triplet still violates the margin (0 late in a healthy run, 1 in a collapsed one)."""
    d = pairwise_distances(embeddings)
    n = len(labels)
    gap, valid = _hardest_gaps(d, labels)
    off_diagonal = d[~torch.eye(n, dtype=torch.bool, device=labels.device)]
    return {"mean_distance": float(off_diagonal.mean()) if n > 1 else 0.0,
            "valid_anchors": float(valid.float().mean()),
            "active": float((gap[valid] + margin > 0).float().mean()) if valid.any() else 0.0}


def _checked_at_once(t: torch.Tensor) -> bool:
    """Whether a check of `t`'s values costs nothing to wait for: on the CPU. (On a GPU it would wait for the GPU.)"""
    return t.device.type == "cpu"


class CenterLoss(nn.Module):
    """Center loss (Wen, Zhang, Li & Qiao, ECCV 2016): `½ ||f_i - c_{y_i}||²`, averaged over the batch,
    added to cross-entropy with a weight λ. (The paper sums both terms over the batch; here both are
    means.)

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
        inside = self._inside(labels)
        loss = 0.5 * (features - self.centers[labels.clamp(0, len(self.centers) - 1)]).pow(2).sum(1).mean()
        return loss if inside is None else torch.where(inside.all(), loss, torch.full_like(loss, float("nan")))

    def _inside(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Labels index the centres: one out of range (an unlabeled -1, a class the loss was not built for) would
        read another class's centre (Python's negative indexing) or fail deep in torch. On the CPU such a label
        is refused here, by name. On a GPU a check would wait for the GPU at every step: there the loss turns
        NaN instead (fit stops at it) and `update` leaves those features out; returns which labels are inside."""
        inside = (labels >= 0) & (labels < len(self.centers))
        if not _checked_at_once(labels):
            return inside
        if not bool(inside.all()):
            outside = ~inside
            raise ValueError(f"CenterLoss has centres for classes 0-{len(self.centers) - 1}; {int(outside.sum())} of the "
                             f"{len(labels)} labels lie outside (e.g. {labels[outside][:5].tolist()}). Leave unlabeled "
                             f"images (-1) out, or build CenterLoss with num_classes covering every label.")
        return None

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        inside = self._inside(labels)
        weight = torch.ones_like(labels, dtype=self.centers.dtype) if inside is None else inside.to(self.centers.dtype)
        labels = labels.clamp(0, len(self.centers) - 1)
        features = features.detach().to(self.centers.dtype)
        diff = torch.zeros_like(self.centers).index_add_(0, labels, (self.centers[labels] - features) * weight[:, None])
        counts = torch.zeros(len(self.centers), device=labels.device, dtype=self.centers.dtype)
        counts.index_add_(0, labels, weight)
        self.centers -= self.alpha * diff / (1 + counts)[:, None]


def contrastive_pair_loss(x1: torch.Tensor, x2: torch.Tensor, similar: torch.Tensor, margin: float = 1.0,
                          eps: float = DISTANCE_EPS) -> torch.Tensor:
    """The pairwise contrastive loss of Hadsell, Chopra & LeCun 2006, averaged over the pairs.

    x1, x2: B×D embeddings of the two images of each pair; similar: B booleans, True where the two
    images belong together. With D the Euclidean distance of a pair (eps inside the root, so that the
    gradient stays finite at D = 0): `½ D²` for a similar pair, `½ max(0, margin − D)²` for a
    dissimilar one. (The paper writes it with Y = 0 for similar pairs and Y = 1 for dissimilar ones,
    and many tutorials flip that convention: a boolean named `similar` leaves no doubt.)
    """
    if x1.shape != x2.shape or x1.ndim != 2:
        raise ValueError(f"x1 and x2 must be B×D embeddings of the same shape, not {tuple(x1.shape)} and {tuple(x2.shape)}")
    if similar.dtype != torch.bool or similar.shape != x1.shape[:1]:
        raise ValueError(f"similar must be {x1.shape[0]} booleans (True: the pair belongs together), not "
                         f"{similar.dtype} of shape {tuple(similar.shape)}")
    d = ((x1 - x2).pow(2).sum(1) + eps).sqrt()
    return torch.where(similar, 0.5 * d.pow(2), 0.5 * (margin - d).clamp(min=0).pow(2)).mean()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    z1, z2: N×D projections of two augmented views of the same N images (row i of each). Every one of
    the 2N views is an anchor: its positive is the other view of its image, its negatives the 2N − 2
    views of the other images; similarities are cosines divided by `temperature`, and the loss is the
    cross-entropy of picking the positive, averaged over the 2N anchors. When every projection is the
    same it equals ln(2N − 1).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or len(z1) < 2:
        raise ValueError(f"z1 and z2 must be N×D projections of the same shape with N >= 2, not "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    n = len(z1)
    z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    similarity = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -math.inf)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return nn.functional.cross_entropy(similarity, positives)
