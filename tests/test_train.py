import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from helpers import loader, models, train


def _small_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return models.resnet18(num_classes=4, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1), dropout=dropout)


def _batches(ds, seed=0):
    return loader.GpuBatches(ds, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, seed=seed)


def test_overfits_one_batch(tiny_data):
    model = _small_model()
    batch = next(iter(loader.GpuBatches(tiny_data, batch_size=24, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = train.fit(model, [batch] * 60, 1, opt, progress=False)
    assert history[0]["loss"] < 2.0
    assert train.evaluate(model, [batch])["top1"] == 1.0


def test_nan_loss_is_caught_with_epoch_and_step(tiny_data):
    model = _small_model()
    calls = []

    def step(m, batch):
        loss, metrics = train.classification_step(m, batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 3 else loss), metrics
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(train.NonFiniteLossError, match="epoch 1, step 3 of 3"):
        train.fit(model, _batches(tiny_data), 2, opt, step=step, progress=False)
    assert len(calls) == 3  # stopped at once on the CPU


class Interrupt(Exception):
    pass


def _run(tiny_data, ckpt, epochs=4, stop_at_call=None):
    model = _small_model(seed=1, dropout=0.2)  # dropout: resuming must restore the RNG too
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=epochs * 3)
    calls = []

    def step(m, batch):
        calls.append(1)
        if stop_at_call is not None and len(calls) == stop_at_call:
            raise Interrupt  # the Colab session disconnects mid-epoch
        return train.classification_step(m, batch)
    history = train.fit(model, _batches(tiny_data, seed=5), epochs, opt, sched, step=step, checkpoint=ckpt,
                        progress=False)
    return model, history


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_data, tmp_path):
    reference, ref_history = _run(tiny_data, None)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        _run(tiny_data, ckpt, stop_at_call=8)  # in epoch 3: epochs 1 and 2 are saved
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed, history = _run(tiny_data, ckpt)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in history] == [r["loss"] for r in ref_history]
    assert not (tmp_path / "run.pt.partial").exists()


def test_a_checkpoint_from_another_recipe_is_refused(tiny_data, tmp_path):
    ckpt = tmp_path / "run.pt"
    _run(tiny_data, ckpt, epochs=2)
    with pytest.raises(ValueError, match="written by another run"):
        _run(tiny_data, ckpt, epochs=4)


def test_one_cycle_steps_per_batch_and_step_lr_per_epoch(tiny_data):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=2 * 3)
    train.fit(model, _batches(tiny_data), 2, opt, sched, progress=False)  # a per-epoch step would stop early
    assert sched.last_epoch == 6
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step_lr = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = train.fit(model, _batches(tiny_data), 2, opt, step_lr, progress=False)
    assert [r["lr"] for r in history] == [0.05, 0.025]


def test_history_records_throughput_and_validation(tiny_data):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    val = loader.GpuBatches(tiny_data, batch_size=10, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    history = train.fit(model, _batches(tiny_data), 1, opt, val_batches=val, progress=False)
    r = history[0]
    for key in ("loss", "accuracy", "lr", "images", "seconds", "images_per_s", "val_loss", "val_top1", "val_top5", "val_f1"):
        assert key in r and np.isfinite(r[key]), key
    assert r["images"] == len(_batches(tiny_data)) * _batches(tiny_data).batch_size
    with pytest.raises(ValueError, match="label_smoothing"):
        train.fit(model, _batches(tiny_data), 1, opt, step=train.classification_step, label_smoothing=0.1)


def test_evaluate_agrees_with_scikit_learn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))
    xs = [torch.randn(25, 3, 2, 2) for _ in range(4)]
    ys = [torch.randint(0, 6, (25,)) for _ in range(4)]
    result = train.evaluate(model, list(zip(xs, ys)))
    with torch.no_grad():
        logits = model(torch.cat(xs))
    y, p = torch.cat(ys).numpy(), logits.argmax(1).numpy()
    assert result["top1"] == pytest.approx(accuracy_score(y, p))
    assert np.array_equal(result["confusion"], confusion_matrix(y, p, labels=range(6)))
    assert result["precision"] == pytest.approx(precision_score(y, p, average="macro", zero_division=0))
    assert result["recall"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
    assert result["f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert result["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.cat(ys))), rel=1e-5)
    top5 = np.mean([t in row for t, row in zip(y, logits.topk(5, dim=1).indices.numpy())])
    assert result["top5"] == pytest.approx(top5)
    np.testing.assert_allclose(result["per_class_accuracy"], recall_score(y, p, average=None, labels=range(6),
                                                                          zero_division=0))


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16)])
def test_mixed_precision_uses_bf16_where_the_gpu_has_it_and_fp16_on_a_t4(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert train.autocast_dtype(torch.device("cuda"), amp=True) == expected
    assert train.autocast_dtype(torch.device("cuda"), amp=False) is None
    assert train.autocast_dtype(torch.device("cpu"), amp=True) is None


def test_a_finished_run_is_not_trained_again(tiny_data, tmp_path):
    ckpt = tmp_path / "run.pt"
    model, history = _run(tiny_data, ckpt, epochs=2)
    again, again_history = _run(tiny_data, ckpt, epochs=2, stop_at_call=1)  # a training step would raise
    assert again_history == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_compiled_model_trains_and_saves_plain_weights(tiny_data, tmp_path):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    history = train.fit(model, _batches(tiny_data), 1, opt, compile=True, checkpoint=tmp_path / "c.pt",
                        progress=False)
    assert np.isfinite(history[0]["loss"])
    saved = torch.load(tmp_path / "c.pt", weights_only=True)["model"]
    assert set(saved) == set(model.state_dict())  # no "_orig_mod." prefixes
