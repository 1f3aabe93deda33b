"""Metrics, losses and maps refuse what would score garbage without a word: non-finite embeddings and maps,
labels outside a loss's classes, boxes outside the maps."""
import numpy as np
import pytest
import torch

from helpers import cam, losses, metrics


def _embeddings():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=g), torch.arange(3).repeat_interleave(4)


def test_nan_embeddings_are_refused_by_every_embedding_metric():
    x, y = _embeddings()
    nan = torch.full_like(x, float("nan"))   # an all-NaN embedding scored Recall@1 = 1.0 before
    with pytest.raises(ValueError, match=r"12 of the 12 embeddings hold NaN .*rows 0, 1, 2, 3, 4, \.\.\."):
        metrics.retrieval_metrics(nan, y)
    with pytest.raises(ValueError, match="of the 12 query embeddings hold NaN"):
        metrics.knn_predict(x, y, nan, k=3)
    x[5, 2] = float("inf")
    with pytest.raises(ValueError, match=r"1 of the 12 bank embeddings .*rows 5\)"):
        metrics.knn_predict(x, y, x, k=3)
    with pytest.raises(ValueError, match="1 of the 12 embeddings"):
        metrics.class_separation(x, y)


def test_center_loss_refuses_labels_outside_its_classes():
    loss = losses.CenterLoss(num_classes=3, feat_dim=4)
    features = torch.randn(4, 4)
    for labels in (torch.tensor([0, 1, 2, -1]), torch.tensor([0, 1, 2, 3])):   # -1 read the last centre before
        with pytest.raises(ValueError, match=r"classes 0-2; 1 of the 4 labels lie outside"):
            loss(features, labels)
        with pytest.raises(ValueError, match="lie outside"):
            loss.update(features, labels)
    assert float(loss(features, torch.tensor([0, 1, 2, 2]))) > 0


def test_boxes_outside_the_maps_and_non_finite_maps_are_refused():
    maps = np.random.default_rng(0).random((3, 8, 8))
    boxes = [[0, 0, 3, 3], [2, 2, 7, 7], [1, 1, 4, 4]]
    assert set(cam.localisation(maps, boxes)) >= {"pointing", "energy", "iou"}
    for bad in ([[0, 0, 3, 3], [2, 2, 8, 7], [1, 1, 4, 4]], [[0, 0, 3, 3], [-1, -1, -1, -1], [1, 1, 4, 4]]):
        with pytest.raises(ValueError, match=r"1 of the 3 boxes lie outside the 8×8 maps \(the first: image 1"):
            cam.localisation(maps, bad)
        with pytest.raises(ValueError, match="lie outside"):
            cam.pointing_game(maps, bad)
        with pytest.raises(ValueError, match="lie outside"):
            cam.energy_in_box(maps, bad)
    maps[2] = np.nan
    with pytest.raises(ValueError, match="1 of the 3 maps hold NaN .*image 2"):
        cam.localisation(maps, boxes)


def test_deletion_and_insertion_refuse_an_all_nan_map():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    images = torch.randn(2, 3, 8, 8)
    maps = np.full((2, 8, 8), np.nan)
    with pytest.raises(ValueError, match="2 of the 2 maps hold NaN"):
        cam.deletion_insertion(model, images, maps, [0, 1], steps=2, sigma=1.0)


def test_on_a_gpu_a_label_outside_makes_the_center_loss_nan_without_waiting_for_the_gpu(monkeypatch):
    monkeypatch.setattr(losses, "_checked_at_once", lambda t: False)   # the GPU's path, on the CPU's tensors
    loss = losses.CenterLoss(num_classes=3, feat_dim=4)
    labels = torch.tensor([0, 1, 2, -1])
    assert torch.isnan(loss(torch.randn(4, 4), labels))   # fit stops at a NaN loss
    assert not torch.isnan(loss(torch.randn(4, 4), labels.clamp(min=0)))
    loss.update(torch.ones(4, 4), labels)   # the three inside move their centres halfway; the -1 moves none
    assert torch.equal(loss.centers, torch.tensor([[0.25] * 4, [0.25] * 4, [0.25] * 4]))
