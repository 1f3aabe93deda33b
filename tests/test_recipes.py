"""helpers.recipes: what two notebooks must agree on, written once, and the notebook that asks for another's run
by its recipe gets that very run."""
import dataclasses

import pytest
import torch
from torch import nn

from helpers import models, recipes, train
from helpers.loader import GpuBatches


def test_sgd_one_cycle_steps_as_the_optimizer_and_schedule_it_replaces():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    optimizer, scheduler = recipes.sgd_one_cycle(a.parameters(), lr=0.1, total_steps=12, weight_decay=1e-3)
    by_hand = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(by_hand, max_lr=0.1, total_steps=12, cycle_momentum=False)
    x = torch.randn(5, 3)
    for _ in range(12):
        for net, opt, sch in ((a, optimizer, scheduler), (b, by_hand, schedule)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
            sch.step()
        assert optimizer.param_groups[0]["lr"] == by_hand.param_groups[0]["lr"]
        assert optimizer.param_groups[0]["momentum"] == 0.9
    torch.testing.assert_close(a.weight, b.weight)


def test_sgd_one_cycle_gives_each_parameter_group_its_own_peak():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    groups = [{"params": net[0].parameters(), "lr": 0.01}, {"params": net[1].parameters(), "lr": 0.1}]
    optimizer, scheduler = recipes.sgd_one_cycle(groups, lr=[0.01, 0.1], total_steps=10, pct_start=0.5)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert [round(g["lr"], 6) for g in optimizer.param_groups] == [0.01, 0.1]   # each group's peak, at step 4 of 10


def test_the_recipes_describe_what_they_train_for_a_budget():
    recipe = dataclasses.replace(recipes.tiny_imagenet_recipe(), epochs=3, per_class=7, val_per_class=2, batch_size=64)
    pretraining = recipe.training("pretraining", amp=False)
    assert pretraining.trained_images == 3 * (1400 // 64 * 64)   # 200 classes × 7, the last incomplete batch dropped
    assert pretraining.scored_images == 3 * 400 and pretraining.size == recipe.image_size and not pretraining.amp
    assert isinstance(pretraining.network(), models.ResNet)
    simclr = dataclasses.replace(recipes.simclr_recipe(), epochs=2, batch_size=32)
    views = simclr.training("simclr", pool=100, bank=40, queries=30)
    assert views.trained_images == 2 * 2 * 96   # two views of each image of the 3 full batches, every epoch
    assert views.scored_images == 2 * 70 and views.size == simclr.input_size


def test_at_size_resizes_once_and_keeps_a_split_at_its_size(tiny_data):
    assert recipes.at_size(tiny_data, 16) is tiny_data
    bigger = recipes.at_size(tiny_data, 24, chunk=5)   # in chunks: the same as at once
    assert bigger.images.shape == (24, 3, 24, 24) and bigger.images.dtype == torch.uint8
    assert torch.equal(bigger.images, recipes.at_size(tiny_data, 24).images)
    assert torch.equal(bigger.labels, tiny_data.labels)


@pytest.mark.parametrize("profile, widths, epochs", [("full", models.RESNET18_WIDTHS, (30, 40)),
                                                      ("small", (16, 32, 64, 128), (10, 20))])
def test_the_recipes_take_their_profiles_column(monkeypatch, profile, widths, epochs):
    monkeypatch.setenv("COURSE_PROFILE", profile)
    tiny, simclr = recipes.tiny_imagenet_recipe(), recipes.simclr_recipe()
    assert tiny.widths == simclr.widths == widths
    assert (tiny.epochs, simclr.epochs) == epochs
    assert recipes.simclr_recipe(seed=3).seed == 3 and recipes.simclr_recipe() == simclr   # a value, comparable


def _pool(images, n):
    return dataclasses.replace(images, images=images.images[:n], labels=torch.full((n,), -1), split="unlabeled")


@pytest.fixture
def simclr_setup(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    recipe = dataclasses.replace(recipes.simclr_recipe(), epochs=1, batch_size=8, input_size=32, widths=(8, 8, 8, 8),
                                 projection_dim=8, blur_p=0.0, knn_k=3)
    args = dict(bank=tiny_data, queries=tiny_data, device="cpu", stats=((0.5,) * 3, (0.25,) * 3), progress=False,
                output_dir=tmp_path)
    return recipe, _pool(tiny_data, 16), args


def test_a_notebook_asking_for_a_finished_simclr_run_by_its_recipe_gets_that_run(simclr_setup, monkeypatch):
    recipe, pool, args = simclr_setup
    assert recipes.train_simclr(recipe, pool, train_if_missing=False, **args) is None   # nothing yet
    first = recipes.train_simclr(recipe, pool, **args)
    assert first.trained_now and first.checkpoint.parent == recipes.simclr_folder(args["output_dir"])
    assert recipes.simclr_checkpoints(args["output_dir"]) == [first.checkpoint]
    assert len(first.history) == 1 and "val_knn" in first.history[0] and "view_top1" in first.history[0]
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = recipes.train_simclr(recipe, pool, train_if_missing=False, **args)
    assert again is not None and not again.trained_now and again.checkpoint == first.checkpoint
    for (name, p), q in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(p, q), name
    # another recipe, or other images, is another run: not found
    assert recipes.train_simclr(dataclasses.replace(recipe, temperature=0.2), pool, train_if_missing=False, **args) is None
    flipped = dataclasses.replace(pool, images=pool.images.flip(-1))
    assert recipes.train_simclr(recipe, flipped, train_if_missing=False, **args) is None


def test_a_run_under_another_name_is_not_listed_as_notebook_05s(simclr_setup):
    recipe, pool, args = simclr_setup
    short = recipes.train_simclr(recipe, pool, name="short-simclr-06", **args)
    assert short.trained_now and short.checkpoint.name.startswith("short-simclr-06-")
    assert recipes.simclr_checkpoints(args["output_dir"]) == []
    assert recipes.simclr_checkpoints(None) == []


def test_the_simclr_step_reports_how_often_a_view_finds_its_partner():
    torch.manual_seed(0)
    v = torch.randn(6, 4)
    loss, metrics = recipes.simclr_step(nn.Identity(), (v, v + 1e-3, None), temperature=0.5)
    assert float(metrics["view_top1"]) == 1.0 and loss > 0
    _, metrics = recipes.simclr_step(nn.Identity(), (v, torch.randn(6, 4), None), temperature=0.5)
    assert float(metrics["view_top1"]) < 1.0


def test_knn_accuracy_compares_directions_only():
    g = torch.Generator().manual_seed(0)
    train_f, test_f = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g)
    train_y, test_y = torch.randint(3, (40,), generator=g), torch.randint(3, (30,), generator=g)
    scale = torch.rand(40, 1, generator=g) * 10 + 0.1
    assert recipes.knn_accuracy(train_f, train_y, test_f, test_y, k=5) == \
        recipes.knn_accuracy(train_f * scale, train_y, test_f * 3, test_y, k=5)
    assert recipes.knn_accuracy(train_f, train_y, train_f, train_y, k=1) == 1.0   # every point its own neighbour


def test_a_linear_probe_separates_what_is_separable_and_repeats_itself():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(2).repeat(100)
    f = torch.randn(200, 8, generator=g) + 40 * y[:, None] * torch.eye(8)[0]   # class 1 far along one axis, offset
    args = dict(classes=2, steps=60, batch_size=32, lr=0.05, seed=0, what="toy")
    first = recipes.linear_probe(f[:100], y[:100], f[100:], y[100:], **args)
    assert first >= 0.95
    assert recipes.linear_probe(f[:100], y[:100], f[100:], y[100:], **args) == first
    with pytest.raises(AssertionError, match="toy"):   # a head that cannot learn fails its learning check
        recipes.linear_probe(f[:100], y[:100], f[100:], y[100:], **{**args, "steps": 0})


def test_run_of_names_the_run_fit_writes(tmp_path, tiny_data):
    torch.manual_seed(0)
    net = models.resnet18(num_classes=4, widths=(4, 4, 4, 4))
    batches = GpuBatches(tiny_data, batch_size=8, device="cpu", seed=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    run = train.run_of(net, batches, 1, optimizer, checkpoint=tmp_path / "toy.pt")
    assert run.load() is None and not run.path.exists()
    train.fit(net, batches, 1, optimizer, checkpoint=tmp_path / "toy.pt", progress=False)
    assert run.path.exists() and run.load()["finished"]
    assert [p.name for p in tmp_path.glob("toy-*.pt")] == [run.path.name]
