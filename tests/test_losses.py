"""The embedding losses against an independent library (pytorch-metric-learning) and brute-force loops."""
import math

import pytest
import torch
from pytorch_metric_learning import distances, losses as pml_losses, miners, reducers

from helpers.losses import CenterLoss, batch_hard_triplet_loss, pairwise_distances, triplet_diagnostics


def pk_batch(p=8, k=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p * k, dim, generator=g, dtype=torch.float64), torch.arange(p).repeat_interleave(k)


def pml_batch_hard(embeddings, labels, margin):
    dist = distances.LpDistance(normalize_embeddings=False, p=2, power=1)   # Hermans: raw Euclidean
    soft = margin == "soft"
    loss = pml_losses.TripletMarginLoss(margin=0.0 if soft else margin, smooth_loss=soft, distance=dist,
                                        reducer=reducers.MeanReducer())
    return loss(embeddings, labels, miners.BatchHardMiner(distance=dist)(embeddings, labels))


def brute_force_batch_hard(embeddings, labels, margin):
    terms = []
    for a in range(len(labels)):
        pos = [float((embeddings[a] - embeddings[p]).norm()) for p in range(len(labels))
               if p != a and labels[p] == labels[a]]
        neg = [float((embeddings[a] - embeddings[n]).norm()) for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            gap = max(pos) - min(neg)
            terms.append(math.log1p(math.exp(gap)) if margin == "soft" else max(0.0, gap + margin))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("margin", [0.2, 1.0, "soft"])
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_hard_matches_pytorch_metric_learning_and_a_loop(margin, seed):
    x, y = pk_batch(seed=seed)
    ours = batch_hard_triplet_loss(x, y, margin)
    assert torch.isclose(ours, pml_batch_hard(x, y, margin).to(ours.dtype), rtol=1e-6)
    assert math.isclose(float(ours), brute_force_batch_hard(x, y, margin), rel_tol=1e-6)


def test_batch_hard_drops_anchors_without_a_positive_like_the_miner():
    x, _ = pk_batch(p=4, k=4, seed=2)
    y = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])   # 12 anchors have no positive
    assert math.isclose(float(batch_hard_triplet_loss(x, y, 0.2)), float(pml_batch_hard(x, y, 0.2)), rel_tol=1e-6)
    assert math.isclose(float(batch_hard_triplet_loss(x, y, 0.2)), brute_force_batch_hard(x, y, 0.2), rel_tol=1e-6)
    lonely = torch.arange(16)
    loss = batch_hard_triplet_loss(x.requires_grad_(), lonely, 0.2)
    assert float(loss.detach()) == 0.0
    loss.backward()                                    # no triplet: zero, and the graph still works
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_collapse_signatures_and_a_finite_gradient_at_distance_zero():
    y = torch.arange(8).repeat_interleave(4)
    same_point = torch.ones(32, 16, requires_grad=True)
    hard = batch_hard_triplet_loss(same_point, y, 0.2)
    assert math.isclose(float(hard.detach()), 0.2, rel_tol=1e-5)            # the loss pinned at the margin
    soft = batch_hard_triplet_loss(same_point, y, "soft")
    assert math.isclose(float(soft.detach()), math.log(2), rel_tol=1e-5)    # ln 2
    (hard + soft).backward()
    assert torch.isfinite(same_point.grad).all()
    naive = torch.ones(4, 3, requires_grad=True)                     # what the eps is for
    (naive[:, None] - naive[None]).pow(2).sum(-1).sqrt().sum().backward()
    assert torch.isnan(naive.grad).any()
    stats = triplet_diagnostics(same_point, y, 0.2)
    assert stats["mean_distance"] < 1e-5 and stats["active"] == 1.0 and stats["valid_anchors"] == 1.0
    spread = triplet_diagnostics(torch.arange(8.0).repeat_interleave(4)[:, None] * 10, y, 0.2)
    assert spread["active"] == 0.0 and spread["mean_distance"] > 10


def test_pairwise_distances_are_euclidean():
    x, _ = pk_batch(p=3, k=2, dim=5)
    d = pairwise_distances(x)
    assert torch.allclose(d, torch.cdist(x, x), atol=1e-5)
    with pytest.raises(ValueError, match="margin"):
        batch_hard_triplet_loss(x, torch.zeros(6, dtype=torch.long), margin="hard")


def test_center_loss_value_gradient_and_update_follow_the_paper():
    g = torch.Generator().manual_seed(0)
    center = CenterLoss(num_classes=3, feat_dim=4, alpha=0.5)
    center.centers.copy_(torch.randn(3, 4, generator=g))
    f = torch.randn(6, 4, generator=g, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 0])                           # class 2: no image in this batch
    loss = center(f, y)
    loop = sum(0.5 * float(((f[i] - center.centers[y[i]]) ** 2).sum().detach()) for i in range(6)) / 6
    assert math.isclose(float(loss.detach()), loop, rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(f.grad, (f - center.centers[y]).detach() / 6)
    assert list(center.parameters()) == []                          # no optimizer moves the centres
    before = center.centers.clone()
    center.update(f, y)
    for j in range(3):                                               # Wen et al., eq. 4 and the update
        members = [i for i in range(6) if y[i] == j]
        delta = sum((before[j] - f[i].detach() for i in members), torch.zeros(4)) / (1 + len(members))
        assert torch.allclose(center.centers[j], before[j] - 0.5 * delta, atol=1e-6)
    assert torch.equal(center.centers[2], before[2])
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(3, 4, alpha=1.5)


def test_center_loss_centres_reach_the_class_means():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(4, 8, generator=g) * 5
    y = torch.arange(4).repeat_interleave(16)
    center = CenterLoss(4, 8, alpha=0.5)
    for _ in range(200):
        center.update(means[y] + 0.1 * torch.randn(64, 8, generator=g), y)
    assert torch.allclose(center.centers, means, atol=0.1)


# ----------------------------------------------------------------------------- notebook 05: pair loss and NT-Xent

def test_pair_loss_against_a_loop_and_by_hand():
    from helpers.losses import contrastive_pair_loss
    g = torch.Generator().manual_seed(5)
    x1, x2 = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g) * 0.3
    similar = torch.rand(12, generator=g) < 0.5
    loop = 0.0
    for a, b, s in zip(x1, x2, similar):
        d = math.sqrt(float(((a - b) ** 2).sum()))
        loop += 0.5 * d ** 2 if s else 0.5 * max(0.0, 1.5 - d) ** 2
    assert float(contrastive_pair_loss(x1, x2, similar, margin=1.5)) == pytest.approx(loop / 12, rel=1e-5)
    # by hand: a similar pair at distance 3 costs 4.5; a dissimilar pair at 0.5 costs ½ (1 - 0.5)² = 0.125,
    # at 2 (beyond the margin) nothing
    p, q = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.5, 0.0], [2.0, 0.0]])
    assert float(contrastive_pair_loss(p, q, torch.tensor([True, False, False]))) == pytest.approx((4.5 + 0.125) / 3)


def test_pair_loss_gradient_is_finite_at_distance_zero_and_the_convention_is_checked():
    from helpers.losses import contrastive_pair_loss
    x = torch.zeros(3, 2, requires_grad=True)
    contrastive_pair_loss(x, torch.zeros(3, 2), torch.tensor([True, False, True])).backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="similar must be 3 booleans"):
        contrastive_pair_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 0]))   # 0/1: which means similar?


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_nt_xent_agrees_with_pytorch_metric_learning_and_a_loop(temperature):
    from helpers.losses import nt_xent
    g = torch.Generator().manual_seed(6)
    z1 = torch.randn(8, 16, generator=g)
    z2 = z1 + 0.5 * torch.randn(8, 16, generator=g)
    ours = nt_xent(z1, z2, temperature)
    pml = pml_losses.SelfSupervisedLoss(pml_losses.NTXentLoss(temperature=temperature), symmetric=True)(z1, z2)
    assert float(ours) == pytest.approx(float(pml), rel=1e-5)
    views = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(16):
        positive = (i + 8) % 16
        logits = [float(views[i] @ views[k]) / temperature for k in range(16) if k != i]
        total += -(float(views[i] @ views[positive]) / temperature - math.log(sum(math.exp(v) for v in logits)))
    assert float(ours) == pytest.approx(total / 16, rel=1e-5)


def test_nt_xent_of_identical_projections_is_log_2n_minus_1_and_it_rewards_matching_views():
    from helpers.losses import nt_xent
    same = torch.ones(6, 4)
    assert float(nt_xent(same, same)) == pytest.approx(math.log(11))
    g = torch.Generator().manual_seed(7)
    z = torch.randn(6, 4, generator=g)
    assert float(nt_xent(z, z, 0.1)) < float(nt_xent(z, z[torch.randperm(6, generator=g)], 0.1))
    with pytest.raises(ValueError, match="temperature must be positive"):
        nt_xent(z, z, 0.0)
