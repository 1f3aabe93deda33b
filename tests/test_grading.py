"""Exercises, `course release` and `course grade`, and reproducible figures.

Three layers:
* each exercise's autograded test cell, run in this process against other correct answers (they
  must pass: the tests accept any correct answer) and against typical wrong ones (they must fail,
  some of them only in the hidden tests);
* grading small made-up notebooks (hidden tests restored, an edited test put back, a deleted one
  scoring nothing, one failing exercise not stopping the next);
* every notebook graded twice at the ci profile, the instructor's version (full points, no error) and
  the blank student release (no points, errors in exactly the test cells). These two executions are
  also the reproducibility check: their results records must be identical, timings aside, which they
  can only be if a rerun repeats every figure and the exercises leave the lesson's random draws alone.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from sklearn.metrics import precision_score, recall_score

import executions
from helpers import cam, exercises, losses, models
from helpers.course import grading, results
from helpers.course.cli import main as course_main

NOTEBOOKS = [nb for nb in grading.instructor_notebooks() if grading.has_exercises(nbformat.read(nb, as_version=4))]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)


def test_notebooks_01_to_07_have_two_to_four_exercises_each():
    names = [nb.name[:2] for nb in NOTEBOOKS]
    assert {"01", "02", "03", "04", "05", "06", "07"} <= set(names)
    for nb in NOTEBOOKS:
        tests = grading.test_cells(nbformat.read(nb, as_version=4))
        assert 2 <= len(tests) <= 4, f"{nb.name}: {len(tests)} exercises"
        for grade_id, cell in tests.items():
            assert cell.metadata.nbgrader["points"] > 0 and cell.metadata.nbgrader["locked"], grade_id
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{grade_id}: an answer could be faked without hidden tests"


# ----------------------------------------------------------------------------- the test cells, in process

def exercise_tests(notebook: str, grade_id: str, *, hidden: bool = True) -> str:
    path = next(nb for nb in NOTEBOOKS if nb.name.startswith(notebook))
    source = grading.test_cells(nbformat.read(path, as_version=4))[f"{grade_id}_tests"].source
    return source if hidden else HIDDEN.sub("", source)


def run_exercise(notebook: str, grade_id: str, answer: str, *, hidden: bool = True) -> None:
    """Define `answer` and run the exercise's test cell on it, as a kernel would (same names)."""
    images = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    namespace = dict(np=np, torch=torch, math=math, nn=torch.nn, F=torch.nn.functional, models=models, exercises=exercises, cam=cam,
                     distances=losses.pairwise_distances,
                     precision_score=precision_score, recall_score=recall_score,
                     train_set=SimpleNamespace(images=images))
    exec(answer, namespace)
    exec(exercise_tests(notebook, grade_id, hidden=hidden), namespace)


OTHER_CORRECT_ANSWERS = {   # written independently of the notebooks' solutions: each must get full points
    ("01", "ex1_one_cycle"): '''
def one_cycle_lr(step, total_steps, peak_lr, warmup, div_factor=25.0, final_div_factor=1e4):
    peak_step = round(warmup * total_steps)          # another convention for the warm-up's end
    lo, hi, end = peak_lr / div_factor, peak_lr, peak_lr / div_factor / final_div_factor
    if step < peak_step:
        return lo + (hi - lo) * 0.5 * (1 - math.cos(math.pi * step / peak_step))
    frac = (step - peak_step) / max(1, total_steps - 1 - peak_step)
    return end + (hi - end) * 0.5 * (1 + math.cos(math.pi * frac))
''',
    ("01", "ex2_feature_map_sizes"): '''
def feature_map_sizes(size, stem):
    half = lambda n: -(-n // 2)                      # every stride-2 layer here rounds a half up
    n = size if stem == "cifar" else half(half(size))
    out = {"stem": n, "layer1": n}
    for name in ("layer2", "layer3", "layer4"):
        n = half(n)
        out[name] = n
    return out
''',
    ("02", "ex1_cutout"): '''
def cutout(images, size, generator=None):
    # vectorised: a mask from each image's drawn corner, no loop
    B, C, H, W = images.shape
    centre = torch.rand(B, 2, generator=generator, device=images.device) * torch.tensor([H, W], device=images.device)
    corner = centre.floor().long() - size // 2
    rows = torch.arange(H, device=images.device)[None, :, None]
    cols = torch.arange(W, device=images.device)[None, None, :]
    top, left = corner[:, 0, None, None], corner[:, 1, None, None]
    mask = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return torch.where(mask[:, None], torch.zeros_like(images), images)
''',
    ("02", "ex2_channel_stats"): '''
def channel_stats(batches):
    # each batch's count, mean and variance, merged with the law of total variance
    parts = [(b.shape[0] * b.shape[2] * b.shape[3], (b.double() / 255).mean((0, 2, 3)),
              (b.double() / 255).var((0, 2, 3), unbiased=False)) for b in batches]
    n = sum(c for c, _, _ in parts)
    mean = sum(c * m for c, m, _ in parts) / n
    var = sum(c * (v + (m - mean) ** 2) for c, m, v in parts) / n
    return mean.tolist(), var.sqrt().tolist()
''',
    ("03", "ex1_macro_precision_recall"): '''
def macro_precision_recall(y_true, y_pred, num_classes):
    t, p = list(map(int, y_true)), list(map(int, y_pred))
    precisions, recalls = [], []
    for c in range(num_classes):
        hit = sum(1 for a, b in zip(t, p) if a == b == c)
        said, truly = p.count(c), t.count(c)
        precisions.append(hit / said if said else 0.0)
        recalls.append(hit / truly if truly else 0.0)
    return sum(precisions) / num_classes, sum(recalls) / num_classes
''',
    ("03", "ex2_layerwise_lr"): '''
def layerwise_lr_groups(model, head_lr, decay):
    depth = {"head": 0, "layer4": 1, "layer3": 2, "layer2": 3, "layer1": 4, "stem": 5}
    return [{"params": [p], "lr": head_lr * decay ** depth[name.split(".")[0]]}   # one group per parameter
            for name, p in model.named_parameters()]
''',
    ("04", "ex1_hardest_pairs"): '''
def hardest_pairs(d, labels):
    n = len(labels)
    same = labels[:, None].eq(labels[None, :])
    others = same & ~torch.eye(n, dtype=torch.bool, device=d.device)
    big = float(d.abs().max()) + 1.0                 # beyond every distance: never picked
    positive = torch.where(others, d, torch.full_like(d, -big)).argmax(1)
    negative = torch.where(~same, d, torch.full_like(d, big)).argmin(1)
    positive[~others.any(1)] = -1
    negative[~(~same).any(1)] = -1
    return positive.tolist(), negative.tolist()      # lists are fine too
''',
    ("04", "ex2_center_update"): '''
def center_update(centers, features, labels, alpha):
    onehot = torch.nn.functional.one_hot(labels, len(centers)).to(centers.dtype)   # B×C
    n = onehot.sum(0)
    sums = onehot.T @ features.to(centers.dtype)
    return centers - alpha * (n[:, None] * centers - sums) / (1 + n)[:, None]
''',
    ("04", "ex3_recall_at_1"): '''
def recall_at_1(d, labels):
    d = torch.as_tensor(d).double()
    labels = torch.as_tensor(labels)
    n = len(labels)
    d = d + torch.diag(torch.full((n,), float("inf"), dtype=torch.float64, device=d.device))   # itself: infinitely far
    partner = (labels[:, None] == labels[None, :]).sum(1) > 1
    hits = [bool(labels[int(d[i].argmin())] == labels[i]) for i in range(n) if partner[i]]
    return sum(hits) / len(hits)
''',
    ("05", "ex1_balanced_pairs"): '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n, on = len(labels), labels.device
    similar = torch.zeros(n, dtype=torch.bool, device=on)
    similar[torch.randperm(n, generator=generator, device=on)[:n // 2]] = True
    same = labels[:, None] == labels[None, :]
    allowed = torch.where(similar[:, None], same & ~torch.eye(n, dtype=torch.bool, device=on), ~same)
    scores = torch.rand(n, n, generator=generator, device=on).masked_fill(~allowed, -1.0)   # the best of iid scores: uniform
    return scores.argmax(1), similar
''',
    ("05", "ex2_nt_xent_from_similarity"): '''
def nt_xent_from_similarity(similarity, temperature):
    s = torch.as_tensor(similarity, dtype=torch.float64).clone() / temperature
    two_n = s.shape[0]
    rows = torch.arange(two_n)
    positive = (rows + two_n // 2) % two_n
    s[rows, rows] = -math.inf
    top = s.max(1).values
    log_denominator = top + torch.log(torch.exp(s - top[:, None]).sum(1))
    return float((log_denominator - s[rows, positive]).mean())
''',
    ("06", "ex1_freeze"): '''
def freeze(module):
    module.requires_grad_(False)
    module.eval()
    keep_eval = type(module).train              # the class's train(), called with mode=False whatever is asked

    def train(mode=True):
        return keep_eval(module, False)
    module.train = train                        # an instance attribute: the parent's train() calls it
    return module
''',
    ("06", "ex2_stage_decoder"): '''
def stage_decoder(in_channels, out_channels, scale):
    width = 32
    layers = [nn.Conv2d(in_channels, width, 1), nn.ReLU()]
    if scale > 1:
        layers.append(nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False))
    layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_channels, 3, padding=1)]
    return nn.Sequential(*layers)
''',
    ("07", "ex1_cam_from_features"): '''
def cam_from_features(features, weight):
    b, k, h, w = features.shape
    flat = features.reshape(b, k, h * w)                # (B, K, hw)
    return (weight @ flat).reshape(b, weight.shape[0], h, w)   # (C, K) @ (B, K, hw) -> (B, C, hw)
''',
    ("07", "ex2_pointing_game"): '''
def pointing_game(maps, boxes):
    hits = []
    for m, (x0, y0, x1, y1) in zip(maps, boxes):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        hits.append(bool(x0 <= x <= x1 and y0 <= y <= y1))
    return np.array(hits)
''',
}

WRONG_ANSWERS = {   # typical mistakes: (exercise, answer, caught only by the hidden tests)
    "linear warm-up": (("01", "ex1_one_cycle"), '''
def one_cycle_lr(step, total_steps, peak_lr, warmup, div_factor=25.0, final_div_factor=1e4):
    top = warmup * total_steps - 1
    if step <= top:
        return peak_lr / div_factor + (peak_lr - peak_lr / div_factor) * step / top
    t = (step - top) / (total_steps - 1 - top)
    low = peak_lr / div_factor / final_div_factor
    return low + (peak_lr - low) * (1 + math.cos(math.pi * t)) / 2
''', False),
    "sizes hard-coded for 32 and 64 px": (("01", "ex2_feature_map_sizes"), '''
def feature_map_sizes(size, stem):
    n = size if stem == "cifar" else size // 4
    return {"stem": n, "layer1": n, "layer2": n // 2, "layer3": n // 4, "layer4": n // 8}
''', True),
    "cutout kept inside the image": (("02", "ex1_cutout"), '''
def cutout(images, size, generator=None):
    out = images.clone()
    B, _, H, W = images.shape
    top = torch.randint(0, H - size + 1, (B,), generator=generator, device=images.device)
    left = torch.randint(0, W - size + 1, (B,), generator=generator, device=images.device)
    for b in range(B):
        out[b, :, top[b]:top[b] + size, left[b]:left[b] + size] = 0
    return out
''', True),
    "cutout from the global generator": (("02", "ex1_cutout"), '''
def cutout(images, size, generator=None):
    out = images.clone()
    B, _, H, W = images.shape
    cy, cx = torch.randint(0, H, (B,)), torch.randint(0, W, (B,))
    for b in range(B):
        t, l = max(int(cy[b]) - size // 2, 0), max(int(cx[b]) - size // 2, 0)
        out[b, :, t:int(cy[b]) - size // 2 + size, l:int(cx[b]) - size // 2 + size] = 0
    return out
''', False),
    "a cutout mask made on the CPU (fails on a GPU)": (("02", "ex1_cutout"), '''
def cutout(images, size, generator=None):
    B, _, H, W = images.shape
    cy = torch.randint(0, H, (B,), generator=generator, device=images.device)
    cx = torch.randint(0, W, (B,), generator=generator, device=images.device)
    rows, cols = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]          # on the CPU
    top, left = (cy - size // 2)[:, None, None], (cx - size // 2)[:, None, None]
    hide = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return images.masked_fill(hide[:, None], 0)
''', False),
    "accumulators made on the CPU (fails on a GPU)": (("02", "ex2_channel_stats"), '''
def channel_stats(batches):
    total, squares, count = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for b in batches:
        x = b.double() / 255
        total, squares, count = total + x.sum((0, 2, 3)), squares + (x * x).sum((0, 2, 3)), count + x[:, 0].numel()
    mean = total / count
    return mean, (squares / count - mean ** 2).clamp(min=0).sqrt()
''', False),
    "the mean of per-batch stds": (("02", "ex2_channel_stats"), '''
def channel_stats(batches):
    batches = [b.double() / 255 for b in batches]
    return (torch.cat(batches).mean((0, 2, 3)),
            torch.stack([b.std((0, 2, 3), unbiased=False) for b in batches]).mean(0))
''', True),
    "accuracy returned for both": (("03", "ex1_macro_precision_recall"), '''
def macro_precision_recall(y_true, y_pred, num_classes):
    acc = float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    return acc, acc
''', False),
    "a class never predicted left out of the mean": (("03", "ex1_macro_precision_recall"), '''
def macro_precision_recall(y_true, y_pred, num_classes):
    t, p = np.asarray(y_true), np.asarray(y_pred)
    precision = [np.mean(t[p == c] == c) for c in range(num_classes) if np.any(p == c)]
    recall = [np.mean(p[t == c] == c) for c in range(num_classes)]
    return float(np.mean(precision)), float(np.mean(recall))
''', True),
    "the stem forgotten": (("03", "ex2_layerwise_lr"), '''
def layerwise_lr_groups(model, head_lr, decay):
    return [{"params": list(getattr(model, n).parameters()), "lr": head_lr * decay ** k}
            for k, n in enumerate(("head", "layer4", "layer3", "layer2", "layer1"))]
''', False),
    "the anchor is its own positive when alone": (("04", "ex1_hardest_pairs"), '''
def hardest_pairs(d, labels):
    same = labels[:, None] == labels[None, :]
    positive = d.masked_fill(~same, -math.inf).argmax(1)          # the diagonal is not masked
    negative = d.masked_fill(same, math.inf).argmin(1)
    return positive, torch.where((~same).any(1), negative, -1)
''', True),
    "the easiest pairs instead of the hardest": (("04", "ex1_hardest_pairs"), '''
def hardest_pairs(d, labels):
    same = labels[:, None] == labels[None, :]
    others = same & ~torch.eye(len(labels), dtype=torch.bool)
    positive = d.masked_fill(~others, math.inf).argmin(1)
    negative = d.masked_fill(same, -math.inf).argmax(1)
    return torch.where(others.any(1), positive, -1), torch.where((~same).any(1), negative, -1)
''', False),
    "the identity mask made on the CPU (fails on a GPU)": (("04", "ex1_hardest_pairs"), '''
def hardest_pairs(d, labels):
    same = labels[:, None] == labels[None, :]
    others = same & ~torch.eye(len(labels), dtype=torch.bool)
    positive = d.masked_fill(~others, -math.inf).argmax(1)
    negative = d.masked_fill(same, math.inf).argmin(1)
    return torch.where(others.any(1), positive, -1), torch.where((~same).any(1), negative, -1)
''', False),
    "divided by n_j, not 1 + n_j": (("04", "ex2_center_update"), '''
def center_update(centers, features, labels, alpha):
    diff = torch.zeros_like(centers).index_add_(0, labels, centers[labels] - features.to(centers.dtype))
    counts = torch.bincount(labels, minlength=len(centers)).to(centers.dtype).clamp(min=1)
    return centers - alpha * diff / counts[:, None]
''', False),
    "the centres moved in place": (("04", "ex2_center_update"), '''
def center_update(centers, features, labels, alpha):
    diff = torch.zeros_like(centers).index_add_(0, labels, centers[labels] - features.to(centers.dtype))
    counts = torch.bincount(labels, minlength=len(centers)).to(centers.dtype)
    centers -= alpha * diff / (1 + counts)[:, None]
    return centers
''', False),
    "every class's count taken as the batch's mean": (("04", "ex2_center_update"), '''
def center_update(centers, features, labels, alpha):
    n = len(labels) / len(torch.unique(labels))      # as if every class in the batch had the same count
    diff = torch.zeros_like(centers).index_add_(0, labels, centers[labels] - features.to(centers.dtype))
    return centers - alpha * diff / (1 + n)
''', True),
    "the second nearest taken as the nearest other": (("04", "ex3_recall_at_1"), '''
def recall_at_1(d, labels):
    d = torch.as_tensor(d)
    second = d.argsort(1)[:, 1]                      # assumes the diagonal is each row's smallest entry
    has_partner = torch.bincount(labels)[labels] > 1
    return float((labels[second] == labels)[has_partner].double().mean())
''', True),
    "a lone image counted as a miss": (("04", "ex3_recall_at_1"), '''
def recall_at_1(d, labels):
    d = torch.as_tensor(d, dtype=torch.float64).clone()
    d.fill_diagonal_(math.inf)
    return float((torch.as_tensor(labels)[d.argmin(1)] == torch.as_tensor(labels)).double().mean())
''', True),
    "itself found by a distance of 0": (("04", "ex3_recall_at_1"), '''
def recall_at_1(d, labels):
    d = torch.as_tensor(d, dtype=torch.float64)
    d = d.masked_fill(d == 0, math.inf)              # the diagonal need not be exactly 0
    has_partner = torch.bincount(labels)[labels] > 1
    return float((labels[d.argmin(1)] == labels)[has_partner].double().mean())
''', False),
    "partners drawn at random, not balanced": (("05", "ex1_balanced_pairs"), '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n = len(labels)
    shift = torch.randint(1, n, (n,), generator=generator)    # any other image: about 1 in 10 share the class
    partner = (torch.arange(n) + shift) % n
    return partner, labels[partner] == labels
''', False),
    "always the first allowed partner": (("05", "ex1_balanced_pairs"), '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n, on = len(labels), labels.device
    similar = torch.zeros(n, dtype=torch.bool, device=on)
    similar[torch.randperm(n, generator=generator, device=on)[:n // 2]] = True
    same = labels[:, None] == labels[None, :]
    allowed = torch.where(similar[:, None], same & ~torch.eye(n, dtype=torch.bool, device=on), ~same)
    return allowed.float().argmax(1), similar                  # the first one, every time: not uniform
''', True),
    "a class drawn first, then an image of it": (("05", "ex1_balanced_pairs"), '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n, on = len(labels), labels.device
    similar = torch.zeros(n, dtype=torch.bool, device=on)
    similar[torch.randperm(n, generator=generator, device=on)[:n // 2]] = True
    classes = labels.unique()
    partner = torch.empty(n, dtype=torch.long, device=on)
    for i in range(n):
        if similar[i]:
            allowed = torch.nonzero((labels == labels[i]) & (torch.arange(n, device=on) != i)).flatten()
        else:
            others = classes[classes != labels[i]]
            c = others[torch.randint(len(others), (1,), generator=generator, device=on)]   # uniform over classes, not images
            allowed = torch.nonzero(labels == c).flatten()
        partner[i] = allowed[torch.randint(len(allowed), (1,), generator=generator, device=on)]
    return partner, similar
''', True),
    "the global random generator": (("05", "ex1_balanced_pairs"), '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n = len(labels)
    similar = torch.zeros(n, dtype=torch.bool)
    similar[torch.randperm(n)[:n // 2]] = True                 # generator ignored
    same = labels[:, None] == labels[None, :]
    allowed = torch.where(similar[:, None], same & ~torch.eye(n, dtype=torch.bool), ~same)
    return torch.rand(n, n).masked_fill(~allowed, -1.0).argmax(1), similar
''', False),
    "pairs drawn on the CPU for labels on the GPU": (("05", "ex1_balanced_pairs"), '''
def balanced_pairs(labels, generator=None):
    labels = torch.as_tensor(labels)
    n = len(labels)
    similar = torch.zeros(n, dtype=torch.bool)
    similar[torch.randperm(n, generator=generator)[:n // 2]] = True
    same = labels[:, None] == labels[None, :]
    allowed = torch.where(similar[:, None], same & ~torch.eye(n, dtype=torch.bool), ~same)
    scores = torch.rand(n, n, generator=generator).masked_fill(~allowed, -1.0)
    return scores.argmax(1), similar
''', False),
    "the diagonal mask made on the CPU (fails on a GPU)": (("05", "ex2_nt_xent_from_similarity"), '''
def nt_xent_from_similarity(similarity, temperature):
    s = torch.as_tensor(similarity).float() / temperature
    n = s.shape[0] // 2
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return (torch.logsumexp(s, dim=1) - s[torch.arange(2 * n), positive]).mean()
''', False),
    "the view itself kept in the denominator": (("05", "ex2_nt_xent_from_similarity"), '''
def nt_xent_from_similarity(similarity, temperature):
    s = torch.as_tensor(similarity).float() / temperature
    n = s.shape[0] // 2
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return (torch.logsumexp(s, dim=1) - s[torch.arange(2 * n), positive]).mean()
''', False),
    "exponentials that overflow at a small temperature": (("05", "ex2_nt_xent_from_similarity"), '''
def nt_xent_from_similarity(similarity, temperature):
    e = torch.exp(torch.as_tensor(similarity).float() / temperature)
    n = e.shape[0] // 2
    e = e * (1 - torch.eye(2 * n, device=e.device))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return (torch.log(e.sum(1)) - torch.log(e[torch.arange(2 * n), positive])).mean()
''', True),
    "the diagonal taken to be 1": (("05", "ex2_nt_xent_from_similarity"), '''
def nt_xent_from_similarity(similarity, temperature):
    s = torch.as_tensor(similarity, dtype=torch.float64) / temperature
    n = s.shape[0] // 2
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    denominator = torch.exp(s).sum(1) - math.exp(1 / temperature)   # each view's own term, assumed cos = 1
    return float((torch.log(denominator) - s[torch.arange(2 * n), positive]).mean())
''', True),
    "gradients off, BatchNorm still updating": (("06", "ex1_freeze"), '''
def freeze(module):
    return module.requires_grad_(False).eval()      # the model's train() puts it back in training mode
''', False),
    "BatchNorm kept in eval, Dropout not": (("06", "ex1_freeze"), '''
def freeze(module):
    module.requires_grad_(False)

    class KeepStatistics(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def train(self, mode=True):
            super().train(mode)
            for m in self.inner.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
            return self

        def forward(self, x):
            return self.inner(x)
    return KeepStatistics(module).train()
''', True),
    "no upsampling": (("06", "ex2_stage_decoder"), '''
def stage_decoder(in_channels, out_channels, scale):
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(in_channels, out_channels, 3, padding=1))
''', False),
    "a ReLU on the output": (("06", "ex2_stage_decoder"), '''
def stage_decoder(in_channels, out_channels, scale):
    layers, channels = [], in_channels
    while scale > 1:
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(channels, max(channels // 2, out_channels), 3, padding=1), nn.ReLU()]
        channels, scale = max(channels // 2, out_channels), scale // 2
    return nn.Sequential(*layers, nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU())   # never negative
''', True),
    "a ReLU on the class map (Grad-CAM's, not CAM's)": (("07", "ex1_cam_from_features"), '''
def cam_from_features(features, weight):
    return torch.relu(torch.einsum("bkhw,ck->bchw", features, weight))
''', False),
    "maps gathered in a tensor made on the CPU (fails on a GPU)": (("07", "ex1_cam_from_features"), '''
def cam_from_features(features, weight):
    b, k, h, w = features.shape
    maps = torch.zeros(b, weight.shape[0], h, w)
    for c in range(weight.shape[0]):
        maps[:, c] = (features * weight[c].view(1, k, 1, 1)).sum(1)
    return maps
''', False),
    "rows read as x": (("07", "ex2_pointing_game"), '''
def pointing_game(maps, boxes):
    maps, boxes = np.asarray(maps), np.asarray(boxes)
    x, y = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:])   # (row, column) taken as (x, y)
    return (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
''', False),
    "box edges left out": (("07", "ex2_pointing_game"), '''
def pointing_game(maps, boxes):
    maps, boxes = np.asarray(maps), np.asarray(boxes)
    y, x = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:])
    return (boxes[:, 0] < x) & (x < boxes[:, 2]) & (boxes[:, 1] < y) & (y < boxes[:, 3])   # xmax is inside too
''', True),
}


@pytest.mark.parametrize("exercise", OTHER_CORRECT_ANSWERS, ids=lambda e: f"{e[0]}-{e[1]}")
def test_the_tests_accept_another_correct_answer(exercise):
    run_exercise(*exercise, OTHER_CORRECT_ANSWERS[exercise])


@pytest.mark.parametrize("mistake", WRONG_ANSWERS)
def test_the_tests_catch_a_typical_mistake(mistake):
    (notebook, grade_id), answer, hidden_only = WRONG_ANSWERS[mistake]
    with pytest.raises(AssertionError):
        run_exercise(notebook, grade_id, answer)
    if hidden_only:   # the visible tests let it through: this is what the hidden tests are for
        run_exercise(notebook, grade_id, answer, hidden=False)
    else:             # the visible tests catch it already, so a student sees why
        with pytest.raises(AssertionError):
            run_exercise(notebook, grade_id, answer, hidden=False)


def test_every_exercise_has_another_correct_answer_and_a_mistake_in_this_file():
    exercises = {(nb.name[:2], gid[:-len("_tests")]) for nb in NOTEBOOKS
                 for gid in grading.test_cells(nbformat.read(nb, as_version=4))}
    assert exercises == set(OTHER_CORRECT_ANSWERS)
    assert exercises == {exercise for exercise, _, _ in WRONG_ANSWERS.values()}


# ----------------------------------------------------------------------------- release

@pytest.fixture(scope="session")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    written = grading.release(out)
    assert [p.name for p in written] == [nb.name for nb in NOTEBOOKS]
    return out


def solution_lines(nb) -> set[str]:
    """The distinctive lines of the solutions and hidden tests (those that appear nowhere else)."""
    secret, public = set(), []
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if "### BEGIN SOLUTION" in line or "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END SOLUTION" in line or "### END HIDDEN TESTS" in line:
                inside = False
            elif len(line.strip()) >= 12:
                secret.add(line.strip()) if inside else public.append(line)
    public_text = "\n".join(public)
    return {line for line in secret if line not in public_text}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_release_contains_no_solution_text(notebook, released):
    instructor = nbformat.read(notebook, as_version=4)
    student = nbformat.read(released / notebook.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    secret = solution_lines(instructor)
    assert len(secret) >= 10
    leaked = [line for line in secret if line in text]
    assert not leaked, f"solution or hidden-test lines in the student version: {leaked[:3]}"
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "Stored outputs", "colab.research.google.com"):
        assert marker not in text, marker
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code"), "outputs left in"
    assert "course_stored" not in student.metadata
    solutions = [c for c in student.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(solutions) == len(grading.test_cells(instructor))
    assert all("raise NotImplementedError()" in c.source for c in solutions)
    # the rest of the notebook is the instructor's, cell for cell
    assert len(student.cells) == len(instructor.cells)


# ----------------------------------------------------------------------------- grading made-up notebooks

def made_up(path: Path, answer: str, *, edit_test: str | None = None, drop_test: bool = False) -> Path:
    """An instructor notebook of two exercises, or a student's copy with `answer` for the first."""
    def meta(grade_id, solution=False, points=None):
        m = {"grade": points is not None, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
             "solution": solution, "task": False}
        return {"nbgrader": {**m, **({"points": points} if points else {})}}
    cells = [new_markdown_cell("# a made-up notebook"),
             new_code_cell(answer, metadata=meta("add", solution=True)),
             new_code_cell(edit_test or "assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-4, 9) == 5\n"
                           "### END HIDDEN TESTS", metadata=meta("add_tests", points=2)),
             new_code_cell("total = add(2, 2) if 'add' in dir() else None\nprint('lesson cell', total)"),
             new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                           metadata=meta("double", solution=True)),
             new_code_cell("assert double(3) == 6", metadata=meta("double_tests", points=1))]
    if drop_test:
        del cells[2]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


CORRECT = "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"


def scores(report) -> dict[str, float]:
    return {g.grade_id: g.score for g in report.grades}


def test_grade_restores_the_hidden_tests_and_the_instructors_test_cells(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    faked = "def add(a, b):\n    return 3"                 # passes the visible test only
    student = grading.student_version(nbformat.read(instructor, as_version=4))
    assert "add(-4, 9)" not in "".join(c.source for c in student.cells)   # the release has no hidden test
    student.cells[1].source = faked
    student.cells[4].source = "def double(x):\n    return x + x"
    nbformat.write(student, tmp_path / "a.ipynb")
    report = grading.grade(tmp_path / "a.ipynb", instructor=instructor, timeout=60)
    assert scores(report) == {"add_tests": 0, "double_tests": 1}
    assert "AssertionError" in report.grades[0].error
    edited = grading.grade(made_up(tmp_path / "b.ipynb", faked, edit_test="pass"), instructor=instructor, timeout=60)
    assert scores(edited) == {"add_tests": 0, "double_tests": 1}
    right = grading.grade(made_up(tmp_path / "c.ipynb", "def add(a, b):\n    return sum((a, b))"),
                          instructor=instructor, timeout=60)
    assert scores(right) == {"add_tests": 2, "double_tests": 1} and right.score == right.max_score == 3
    assert "3 / 3" in str(right)


def test_a_failing_exercise_does_not_stop_the_grading_of_the_next(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    report = grading.grade(made_up(tmp_path / "s.ipynb", "def add(a, b):\n    raise ValueError('not yet')"),
                           instructor=instructor, timeout=60)
    assert scores(report) == {"add_tests": 0, "double_tests": 1}
    assert report.grades[0].error.startswith("ValueError: not yet")
    assert report.other_errors == ["cell 3: ValueError: not yet"]     # the lesson cell that called it
    assert "0 / 2" in str(report) and "1 / 3" in str(report)


def test_a_copied_test_cell_counts_once(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    student = made_up(tmp_path / "s.ipynb", "def add(a, b):\n    return 3")
    nb = nbformat.read(student, as_version=4)
    copy = nbformat.from_dict(dict(nb.cells[2]))     # the student duplicated the test cell (a new cell id,
    copy.id = "copied-cell"                          # the same nbgrader metadata)
    nb.cells.insert(3, copy)
    nbformat.write(nb, student)
    report = grading.grade(student, instructor=instructor, timeout=60)
    assert scores(report) == {"add_tests": 0, "double_tests": 1} and report.max_score == 3
    assert "second copy of the test cell add_tests" in str(report)


def test_other_correct_answers_get_full_points_in_a_kernel(tmp_path):
    """The in-process tests above, under nbgrader's scoring in a real kernel: a warning a correct
    answer prints (stderr) would cost its points there."""
    setup_cell = ("import math\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
                  "from types import SimpleNamespace\n"
                  "from sklearn.metrics import precision_score, recall_score\nfrom helpers import cam, exercises, models\n"
                  "from helpers.losses import pairwise_distances as distances\n"
                  "train_set = SimpleNamespace(images=torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8))")
    cells = [new_code_cell(setup_cell)]
    for (notebook, grade_id), answer in OTHER_CORRECT_ANSWERS.items():
        path = next(nb for nb in NOTEBOOKS if nb.name.startswith(notebook))
        source = nbformat.read(path, as_version=4)
        solution = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        cells.append(nbformat.from_dict({**solution, "source": answer}))
        cells.append(grading.test_cells(source)[f"{grade_id}_tests"])
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "answers.ipynb")
    report = grading.grade(tmp_path / "answers.ipynb", instructor=tmp_path / "answers.ipynb", timeout=120)
    assert len(report.grades) == len(OTHER_CORRECT_ANSWERS)
    assert report.score == report.max_score, str(report)


def test_a_kernel_that_dies_scores_what_did_not_run_zero(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    student = made_up(tmp_path / "s.ipynb", "import os\nos._exit(1)")
    nb = nbformat.read(student, as_version=4)
    for cell in nb.cells[1:]:   # as if the student's own run had passed every cell
        cell.execution_count = 1
    nbformat.write(nb, student)
    report = grading.grade(student, instructor=instructor, timeout=60)
    assert report.score == 0 and report.max_score == 3
    assert all(g.error.startswith("did not run") for g in report.grades), str(report)


def test_a_deleted_test_cell_scores_nothing(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    report = grading.grade(made_up(tmp_path / "s.ipynb", CORRECT, drop_test=True), instructor=instructor, timeout=60)
    assert scores(report) == {"double_tests": 1, "add_tests": 0}
    assert "deleted" in report.grades[-1].error


SHARED_CHECK = '''
import json, os
from helpers.course import grading

def test_read_nbvals_execution(request):
    run = next(r for k, r in request.config.course_nbval_runs.items() if k.endswith("nb.ipynb"))
    assert os.environ.get("COURSE_OUTPUT_DIR", "").endswith("outside"), "the variable was put back after the kernel started"
    nb = grading.executed_notebook(run.source, run.cells)
    report = grading.score(nb, grading.test_cells(run.source), name="nb.ipynb")
    json.dump({"scores": {g.grade_id: g.score for g in report.grades}, "other": report.other_errors,
               "complete": len(run.cells) == run.n_code, "profile": run.profile, "out": str(run.out),
               "outputs": [[o.get("text", "") for o in c.outputs] for c in nb.cells if c.cell_type == "code"],
               "times": [c.metadata.execution["shell.execute_reply"] >= c.metadata.execution["iopub.execute_input"]
                         for c in nb.cells if c.cell_type == "code"]},
              open(os.environ["SHARED_REPORT"], "w"))
'''


def test_nbvals_execution_is_kept_and_can_be_graded_without_running_again(tmp_path):
    """notebooks/conftest.py, on a made-up notebook with a wrong answer: what nbval ran is what gets scored."""
    import shutil
    import subprocess
    import sys
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "notebooks" / "conftest.py", folder / "conftest.py")
    made_up(folder / "nb.ipynb", "def add(a, b):\n    return 3")   # fails the hidden test: nbval fails that cell
    nb = nbformat.read(folder / "nb.ipynb", as_version=4)
    nb.cells.insert(1, new_code_cell("import os; print(os.environ['COURSE_OUTPUT_DIR'])"))
    nbformat.write(nb, folder / "nb.ipynb")
    (tmp_path / "test_zz_check.py").write_text(SHARED_CHECK)
    env = {**os.environ, "COURSE_PROFILE": "ci", "COURSE_OUTPUT_DIR": str(tmp_path / "outside"),
           "SHARED_REPORT": str(tmp_path / "report.json")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "--rootdir", str(tmp_path), "-c", os.devnull,
                           str(folder / "nb.ipynb"), str(tmp_path / "test_zz_check.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 failed" in done.stdout, done.stdout[-3000:]        # the add_tests cell, and only it
    import json
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scores"] == {"add_tests": 0.0, "double_tests": 1.0}
    assert report["other"] == [] and report["complete"] and report["profile"] == "ci"
    assert report["outputs"][0] == [report["out"] + "\n"], "the kernel got the notebook's own output folder"
    assert Path(report["out"]).is_dir() and Path(report["out"]).parent == tmp_path / "outside"   # a fresh folder inside it
    assert report["outputs"][3] == ["lesson cell 3\n"] and all(report["times"])


def test_grade_names_what_it_could_not_find(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no notebook at"):
        grading.grade(tmp_path / "missing.ipynb")
    stray = made_up(tmp_path / "homework.ipynb", CORRECT)
    with pytest.raises(FileNotFoundError, match="not a student version of any notebook"):
        grading.grade(stray)
    # the command grades what it can and says which submissions it could not
    assert course_main(["grade", str(stray), str(tmp_path / "missing.ipynb")]) == 1
    out = capsys.readouterr().out
    assert "homework.ipynb: not graded" in out and "missing.ipynb: not graded: no notebook at" in out


def test_a_hanging_or_crashing_test_scores_zero_and_the_rest_is_graded(tmp_path):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    hangs = "def add(a, b):\n    import time\n    while True:\n        time.sleep(0.1)"
    report = grading.grade(made_up(tmp_path / "h.ipynb", hangs), instructor=instructor, timeout=3)
    assert scores(report) == {"add_tests": 0, "double_tests": 1}   # interrupted; the next exercise still runs
    assert report.grades[0].error.startswith("KeyboardInterrupt")
    crashes = "def add(a, b):\n    import os\n    os._exit(1)"       # the kernel dies inside the test cell
    report = grading.grade(made_up(tmp_path / "c.ipynb", crashes), instructor=instructor, timeout=60)
    assert scores(report) == {"add_tests": 0, "double_tests": 0}
    assert "kernel stopped while this cell ran" in report.grades[0].error
    assert report.grades[1].error.startswith("did not run")


def test_release_refuses_an_unknown_notebook_and_the_instructors_folder(tmp_path):
    with pytest.raises(SystemExit, match="no notebook"):
        course_main(["release", str(tmp_path), "99"])
    with pytest.raises(SystemExit, match="would replace the solutions"):
        course_main(["release", str(NOTEBOOKS[0].parent)])


def test_release_can_point_the_badges_at_the_students_repository(tmp_path):
    assert course_main(["release", str(tmp_path), "01", "--repo", "teacher/students-2027"]) == 0
    student = nbformat.read(tmp_path / NOTEBOOKS[0].name, as_version=4)
    assert "colab.research.google.com/github/teacher/students-2027/blob/main/notebooks/01_" in student.cells[0].source
    assert "https://github.com/teacher/students-2027.git" in student.cells[1].source


# ----------------------------------------------------------------------------- the course's notebooks, graded

def nbval_execution(config, notebook: Path):
    """nbval's execution of `notebook` in this session, when it ran every cell at the ci profile
    (notebooks/conftest.py keeps it), else None."""
    run = getattr(config, "course_nbval_runs", {}).get(str(notebook.resolve()))
    if run is None or run.profile != "ci" or run.broken or len(run.cells) != run.n_code:
        return None
    return SimpleNamespace(nb=grading.executed_notebook(run.source, run.cells), out=run.out)


@pytest.fixture(scope="session")
def graded(tmp_path_factory, request):
    """Each notebook executed twice at the ci profile: the instructor's version and the blank release.

    The instructor's version is the notebook nbval executes: when nbval ran it in this session (pytest
    runs `notebooks` first), that execution is graded instead of a second, identical one. The blank
    releases are graded beside the session (tests/executions.py)."""
    runs = {}
    for notebook in NOTEBOOKS:
        runs[notebook.stem] = {}
        shared = nbval_execution(request.config, notebook)
        if shared is not None:
            report = grading.score(shared.nb, grading.test_cells(shared.nb), name=notebook.name)
            runs[notebook.stem]["instructor"] = SimpleNamespace(report=report, out=shared.out, nb=shared.nb, shared=True)
        else:
            folder = tmp_path_factory.mktemp(notebook.stem)
            report = grading.grade(notebook, output_dir=folder / "instructor", executed=folder / "instructor.ipynb")
            runs[notebook.stem]["instructor"] = SimpleNamespace(
                report=report, out=folder / "instructor", shared=False,
                nb=nbformat.read(folder / "instructor.ipynb", as_version=4))
        runs[notebook.stem]["blank"] = SimpleNamespace(**executions.result(("blank", notebook.stem)), shared=False)
    return runs


@pytest.mark.data
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_instructors_version_gets_full_points(notebook, graded, request):
    run = graded[notebook.stem]["instructor"]
    print(run.report)
    # executed once: when nbval ran this notebook in this session, its execution is the one graded
    assert run.shared == (nbval_execution(request.config, notebook) is not None), "executed twice"
    assert run.report.max_score > 0 and run.report.score == run.report.max_score, str(run.report)
    assert run.report.other_errors == []
    assert [g.grade_id for g in run.report.grades] == list(grading.test_cells(nbformat.read(notebook, as_version=4)))
    for cell in run.nb.cells:   # every test cell runs in seconds
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            timing = cell.metadata.execution
            seconds = (np.datetime64(timing["shell.execute_reply"][:26]) -
                       np.datetime64(timing["iopub.execute_input"][:26])) / np.timedelta64(1, "s")
            assert seconds < 10, f"{cell.metadata.nbgrader['grade_id']} took {seconds:.1f} s"


@pytest.mark.data
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_blank_release_fails_exactly_the_test_cells_and_scores_zero(notebook, graded):
    run = graded[notebook.stem]["blank"]
    print(run.report)
    assert run.report.score == 0 and run.report.max_score == graded[notebook.stem]["instructor"].report.max_score
    assert all(g.error.startswith("NotImplementedError") for g in run.report.grades), str(run.report)
    failed = [c.metadata.get("nbgrader", {}).get("grade_id") for c in run.nb.cells
              if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert failed == [g.grade_id for g in run.report.grades]
    assert run.report.other_errors == []
    assert all(c.get("execution_count") for c in run.nb.cells if c.cell_type == "code"), "a cell did not run"


@pytest.mark.data
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_rerun_repeats_every_results_record(notebook, graded):
    first = results.collect(graded[notebook.stem]["instructor"].out)
    second = results.collect(graded[notebook.stem]["blank"].out)
    assert len(first) >= 3 and len(first) == len(second)
    assert results.without_timings(first) == results.without_timings(second)


def test_timings_are_the_only_fields_left_out_of_the_comparison():
    row = {"experiment": "x", "test_accuracy": 0.5, "s_per_epoch": 2.0, "images_per_s": 10.0,
           "gpu_batches_images_per_s": 3.0, "seconds": 1.0, "epochs": 3, "seed": 0}
    assert results.without_timings([row]) == [{"experiment": "x", "test_accuracy": 0.5, "epochs": 3, "seed": 0}]


def test_a_cell_that_ignores_its_interrupt_is_killed_and_the_grader_goes_on(tmp_path, monkeypatch):
    instructor = made_up(tmp_path / "instructor.ipynb", CORRECT)
    survives = ("def add(a, b):\n    import time\n    while True:\n        try:\n            time.sleep(0.1)\n"
                "        except:\n            pass")   # a bare except: swallows the KeyboardInterrupt
    monkeypatch.setattr(grading, "KILL_GRACE", 3)
    import time
    began = time.monotonic()
    report = grading.grade(made_up(tmp_path / "s.ipynb", survives), instructor=instructor, timeout=3)
    assert time.monotonic() - began < 60
    assert scores(report) == {"add_tests": 0, "double_tests": 0}
    assert "killed" in report.grades[0].error and report.grades[1].error.startswith("did not run")


def test_a_malformed_submission_does_not_stop_the_others(tmp_path, capsys):
    empty = tmp_path / "a" / "01_baseline.ipynb"
    empty.parent.mkdir()
    empty.write_text("{}")
    script = tmp_path / "b" / "01_baseline.ipynb"
    script.parent.mkdir()
    script.write_text("print('a script, not a notebook')")
    with pytest.raises(ValueError, match=r"01_baseline\.ipynb is not a notebook that can be graded"):
        grading.grade(empty)
    assert course_main(["grade", str(empty), str(script), str(tmp_path / "missing.ipynb")]) == 1
    out = capsys.readouterr().out
    assert out.count("not graded") == 3 and "a/01_baseline.ipynb: not graded: " in out


def test_the_release_ships_nbgraders_settings_for_the_ci_profile(released, monkeypatch):
    from traitlets.config import Config
    monkeypatch.setenv("COURSE_PROFILE", "unset below; put back after the test")
    monkeypatch.delenv("COURSE_PROFILE")
    config = Config()
    exec((released / "nbgrader_config.py").read_text(), {"get_config": lambda: config})
    assert config.ExecutePreprocessor.timeout == grading.GRADING_CELL_TIMEOUT > 30   # nbgrader's default: 30 s
    assert config.ExecutePreprocessor.interrupt_on_timeout is True
    assert os.environ["COURSE_PROFILE"] == "ci"
