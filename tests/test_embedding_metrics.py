"""Embedding metrics (helpers.metrics: kNN classification, Recall@1, mAP@R, class separation) against
independent implementations: scikit-learn's KNeighborsClassifier, pytorch-metric-learning's
AccuracyCalculator, and brute-force loops over the pairs."""
import itertools

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.neighbors import KNeighborsClassifier

from helpers import metrics


def clustered(n=300, classes=6, dim=8, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, dim, generator=g) * spread
    return torch.randn(n, dim, generator=g) + centres[labels], labels


@pytest.mark.parametrize("k", [1, 5, 10])
def test_knn_agrees_with_scikit_learn_distance_weighted(k):
    bank, bank_labels = clustered(seed=1)
    queries, _ = clustered(n=120, seed=2)
    ours = metrics.knn_predict(bank, bank_labels, queries, k=k, chunk=50)   # chunks of 50: the joins too
    sk = KNeighborsClassifier(n_neighbors=k, weights="distance").fit(bank.numpy(), bank_labels.numpy())
    assert np.array_equal(ours.numpy(), sk.predict(queries.numpy()))


def test_knn_weights_votes_by_closeness_and_takes_an_exact_match():
    bank = torch.tensor([[0.0], [3.0], [3.5]])
    labels = torch.tensor([0, 1, 1])
    # query 1.0: class 0 at distance 1 (weight 1) against class 1 at 2 and 2.5 (0.5 + 0.4): class 0 wins,
    # where a majority vote of the 3 neighbours would say class 1
    assert metrics.knn_predict(bank, labels, torch.tensor([[1.0]]), k=3).tolist() == [0]
    # past the balance point class 1 wins: at 1.4 the weights are 1/1.4 = 0.71 against 1/1.6 + 1/2.1 = 1.10
    assert metrics.knn_predict(bank, labels, torch.tensor([[1.4]]), k=3).tolist() == [1]
    # a query on a bank image takes its class (1/0 would be infinite): again not what a majority says
    assert metrics.knn_predict(bank, labels, torch.tensor([[0.0]]), k=3).tolist() == [0]
    with pytest.raises(ValueError, match="k must lie between 1 and the bank's 3 images"):
        metrics.knn_predict(bank, labels, bank, k=4)


def brute_force_retrieval(emb, labels):
    n = len(labels)
    recall, aps = [], []
    for q in range(n):
        others = [i for i in range(n) if i != q]
        order = sorted(others, key=lambda i: float((emb[q] - emb[i]).norm()))
        r = sum(int(labels[i] == labels[q]) for i in others)
        if r == 0:
            continue
        recall.append(float(labels[order[0]] == labels[q]))
        hits, ap = 0, 0.0
        for rank, i in enumerate(order[:r], start=1):
            if labels[i] == labels[q]:
                hits += 1
                ap += hits / rank
        aps.append(ap / r)
    return np.mean(recall), np.mean(aps)


@pytest.mark.parametrize("spread", [0.5, 1.5, 4.0])
def test_retrieval_agrees_with_pytorch_metric_learning_and_a_loop(spread):
    emb, labels = clustered(n=150, spread=spread, seed=3)
    ours = metrics.retrieval_metrics(emb, labels, chunk=40)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count",
                              knn_func=CustomKNN(LpDistance(normalize_embeddings=False)))
    pml = calc.get_accuracy(emb, labels)
    assert ours["recall_at_1"] == pytest.approx(pml["precision_at_1"], abs=1e-12)
    assert ours["map_at_r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert (ours["recall_at_1"], ours["map_at_r"]) == pytest.approx(brute_force_retrieval(emb, labels))


def test_retrieval_by_hand_and_what_it_leaves_out():
    perfect = metrics.retrieval_metrics(torch.tensor([[0.0], [1.0], [10.0], [11.0]]), torch.tensor([0, 0, 1, 1]))
    assert perfect["recall_at_1"] == 1.0 and perfect["map_at_r"] == 1.0
    swapped = metrics.retrieval_metrics(torch.tensor([[0.0], [10.0], [1.0], [11.0]]), torch.tensor([0, 0, 1, 1]))
    assert swapped["recall_at_1"] == 0.0 and swapped["map_at_r"] == 0.0
    # class 0: 3 images; the query at 0 finds 0.5 (right), 1 (wrong), then 1.2 (right): AP@R = (1/1 + 2/3) / 2
    emb, labels = torch.tensor([[0.0], [0.5], [1.0], [1.2], [9.0], [20.0]]), torch.tensor([0, 0, 1, 0, 1, 2])
    result = metrics.retrieval_metrics(emb, labels)
    assert result["queries"] == 5   # the lone image of class 2 is no query
    assert result["map_at_r"] == pytest.approx(brute_force_retrieval(emb, labels)[1])
    with pytest.raises(ValueError, match="at least one class with two images or more; it got 3 images in 3 classes"):
        metrics.retrieval_metrics(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="1 of the 4 images are unlabeled"):
        metrics.retrieval_metrics(torch.zeros(4, 2), torch.tensor([0, 0, 1, -1]))
    with pytest.raises(ValueError, match="1 unlabeled embeddings"):
        metrics.knn_predict(torch.zeros(4, 2), torch.tensor([0, 0, 1, -1]), torch.zeros(1, 2), k=2)


def test_class_separation_is_the_mean_of_the_pairs_and_ignores_scale():
    emb, labels = clustered(n=60, seed=4)
    within = [float((emb[i] - emb[j]).norm()) for i, j in itertools.permutations(range(60), 2) if labels[i] == labels[j]]
    between = [float((emb[i] - emb[j]).norm()) for i, j in itertools.permutations(range(60), 2) if labels[i] != labels[j]]
    ours = metrics.class_separation(emb, labels)
    assert ours["within"] == pytest.approx(np.mean(within)) and ours["between"] == pytest.approx(np.mean(between))
    assert metrics.class_separation(emb * 7.5, labels)["ratio"] == pytest.approx(ours["ratio"])
    points = torch.tensor([[0.0, 0], [0, 0], [5, 0], [5, 0]])
    assert metrics.class_separation(points, torch.tensor([0, 0, 1, 1]))["ratio"] == 0.0
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0, 0])):   # no pair within, or none between
        with pytest.raises(ValueError, match="needs two classes and a class with two images"):
            metrics.class_separation(points, labels)
