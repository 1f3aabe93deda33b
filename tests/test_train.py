import re
import warnings
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from helpers import augment, checkpoints, data, loader, models, train


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


def _interrupt_at_step(monkeypatch, n):
    """The Colab session disconnects during optimizer step `n` (counted over SGD steps)."""
    real, calls = torch.optim.SGD.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Interrupt
        return real(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    return calls


def _run(tiny_data, ckpt, epochs=4, **kwargs):
    model = _small_model(seed=1, dropout=0.2)  # dropout: resuming must restore the RNG too
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=epochs * 3)
    history = train.fit(model, _batches(tiny_data, seed=5), epochs, opt, sched, checkpoint=ckpt,
                        checkpoint_every=0,   # saved after every epoch: these tests interrupt between epochs
                        **{"progress": False, **kwargs})
    return model, history


def _files(folder, stem="run"):
    return sorted(folder.glob(f"{stem}-*.pt"))


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    reference, ref_history = _run(tiny_data, None)
    ckpt = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        _interrupt_at_step(m, 8)  # in epoch 3: epochs 1 and 2 are saved
        with pytest.raises(Interrupt):
            _run(tiny_data, ckpt)
    [saved] = _files(tmp_path)
    assert re.fullmatch(r"run-[0-9a-f]{12}\.pt", saved.name)
    assert torch.load(saved, weights_only=True)["epoch"] == 2
    resumed, history = _run(tiny_data, ckpt)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in history] == [r["loss"] for r in ref_history]
    assert [f.name for f in tmp_path.iterdir()] == [saved.name]  # no temporary file left behind


# Every field that decides a run's result: changing any one of them must train anew, never resume.
# (Not momentum: OneCycleLR cycles it between its own bounds, so SGD's momentum= does not change the run.)
BASE = dict(seed=1, dropout=0.0, lr=0.05, weight_decay=0.0, nesterov=False, label_smoothing=0.0, crop_padding=4,
            augmentations=(), per_class=6, subset_seed=0, batch_size=8, loader_seed=5, warmup=0.3,
            weights=None, global_seed=None, config=None, epochs=2)
CHANGES = {"learning rate": dict(lr=0.5), "weight decay": dict(weight_decay=5e-4), "nesterov": dict(nesterov=True),
           "label smoothing": dict(label_smoothing=0.1), "model seed": dict(seed=2), "dropout": dict(dropout=0.1),
           "crop": dict(crop_padding=2),
           "an augmentation": dict(augmentations=(partial(augment.random_rotation, degrees=10),)),
           "augmentation magnitude": dict(augmentations=(partial(augment.random_rotation, degrees=20),)),
           "split size": dict(per_class=5), "subset seed": dict(per_class=5, subset_seed=1),
           "batch size": dict(batch_size=4), "loader seed": dict(loader_seed=6), "schedule": dict(warmup=0.5),
           "initial weights": dict(weights="other"), "global RNG": dict(global_seed=123),
           "epochs": dict(epochs=3), "config": dict(config={"note": "anything fit cannot see"})}


def _configured_run(tiny_data, folder, **changes):
    c = {**BASE, **changes}
    model = _small_model(seed=c["seed"], dropout=c["dropout"])
    if c["global_seed"] is not None:  # the RNG state fit starts from (dropout, a DataLoader's shuffle draw from it)
        torch.manual_seed(c["global_seed"])
    if c["weights"] == "other":
        model.load_state_dict(_small_model(seed=99).state_dict())
    split = data.subset(tiny_data, c["per_class"], c["subset_seed"]) if c["per_class"] < 6 else tiny_data
    batches = loader.GpuBatches(split, batch_size=c["batch_size"], crop_padding=c["crop_padding"],
                                augmentations=c["augmentations"], mean=(0.5,) * 3, std=(0.25,) * 3, seed=c["loader_seed"])
    opt = torch.optim.SGD(model.parameters(), lr=c["lr"], momentum=0.9, nesterov=c["nesterov"], weight_decay=c["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, c["lr"], total_steps=c["epochs"] * len(batches), pct_start=c["warmup"])
    return train.fit(model, batches, c["epochs"], opt, sched, label_smoothing=c["label_smoothing"], config=c["config"],
                     checkpoint=folder / "run.pt", progress=False)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    toy = data.ImageData(images=torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g),
                         labels=torch.arange(4).repeat_interleave(6), classes=("a", "b", "c", "d"), name="toy",
                         split="train")
    folder = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    return toy, folder, _configured_run(toy, folder)


def test_an_identical_rerun_resumes_and_trains_nothing(base_run, monkeypatch, capsys):
    toy, folder, history = base_run
    _interrupt_at_step(monkeypatch, 1)  # any training step would raise
    torch.manual_seed(0)
    assert _configured_run(toy, folder) == history
    assert "this run finished before" in capsys.readouterr().out


@pytest.mark.parametrize("change", list(CHANGES))
def test_changing_any_setting_trains_anew_beside_the_old_run(base_run, change, capsys):
    toy, folder, history = base_run
    before = set(folder.iterdir())
    torch.manual_seed(0)
    new_history = _configured_run(toy, folder, **CHANGES[change])
    created = set(folder.iterdir()) - before
    assert len(created) == 1, f"{change}: resumed another run's checkpoint instead of training"
    out = capsys.readouterr().out
    assert "training anew" in out and "explain=True" in out and "differs in" not in out   # no dump unless asked
    for path in created:
        path.unlink()  # keep the folder to the base run for the other cases
    assert all(np.isfinite(r["loss"]) for r in new_history)


def test_a_change_of_precision_trains_anew_instead_of_crashing(tiny_data, tmp_path, monkeypatch):
    _run(tiny_data, tmp_path / "run.pt", epochs=1)  # fp32 on the CPU, grad scaler off
    monkeypatch.setattr(train, "autocast_dtype", lambda device, amp: torch.bfloat16 if amp else None)
    _run(tiny_data, tmp_path / "run.pt", epochs=1)
    assert len(_files(tmp_path)) == 2


def test_a_finished_run_is_not_trained_again_and_keeps_no_optimizer_state(tiny_data, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        _interrupt_at_step(m, 4)
        with pytest.raises(Interrupt):
            _run(tiny_data, ckpt, epochs=2)
    [path] = _files(tmp_path)
    mid_run = torch.load(path, weights_only=True)
    model, history = _run(tiny_data, ckpt, epochs=2)
    finished = torch.load(path, weights_only=True)
    assert "optimizer" in mid_run and not {"optimizer", "scheduler", "scaler"} & set(finished)
    assert finished["finished"] and finished["epoch"] == 2 and finished["history"] == history
    _interrupt_at_step(monkeypatch, 1)  # a training step would raise
    again, again_history = _run(tiny_data, ckpt, epochs=2)
    assert again_history == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def _poison_batchnorm_at(call):
    """A step whose `call`-th batch leaves an infinite BatchNorm statistic: the loss stays finite."""
    calls = []

    def step(m, batch):
        calls.append(1)
        loss, metrics = train.classification_step(m, batch)
        if len(calls) == call:
            m.stem.bn.running_var = torch.full_like(m.stem.bn.running_var, float("inf"))
        return loss, metrics
    return step


def test_non_finite_weights_are_never_saved(tiny_data, tmp_path):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(train.NonFiniteLossError, match=r"after epoch 2 of 3.*weights or BatchNorm statistics.*"
                                                       r"not saved; the last good checkpoint of this run is"):
        train.fit(model, _batches(tiny_data), 3, opt, step=_poison_batchnorm_at(5), checkpoint=tmp_path / "run.pt",
                  progress=False, checkpoint_every=0)
    [path] = _files(tmp_path)
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_after_a_divergence_a_lower_learning_rate_trains_afresh(tiny_data, tmp_path):
    def attempt(lr):
        model = _small_model()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        return train.fit(model, _batches(tiny_data), 3, opt, checkpoint=tmp_path / "run.pt", progress=False)
    with pytest.raises(train.NonFiniteLossError, match="Lower the learning rate"):
        attempt(1e6)
    history = attempt(0.01)  # the advice works: nothing of the diverged run is resumed
    assert [r["epoch"] for r in history] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in history)


def test_an_unwritable_checkpoint_folder_fails_before_the_first_epoch(tiny_data, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    calls = _interrupt_at_step(monkeypatch, 10**9)
    with pytest.raises(checkpoints.CheckpointError, match=f"cannot write checkpoints into {tmp_path / 'a-file'}"):
        _run(tiny_data, tmp_path / "a-file" / "run.pt", epochs=1)
    assert calls == []  # no step was trained before the error


def test_a_full_disk_names_the_checkpoint_keeps_the_last_one_and_leaves_no_partial_file(tiny_data, tmp_path,
                                                                                     monkeypatch):
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            Path(f).write_bytes(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1234 vs 5678")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(checkpoints.CheckpointError, match=r"could not write the checkpoint .*run-[0-9a-f]{12}\.pt "
                                                          r".*the previous version of run-.* is intact"):
        _run(tiny_data, tmp_path / "run.pt", epochs=3)
    [path] = list(tmp_path.iterdir())
    assert torch.load(path, weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(tiny_data, tmp_path, damage):
    _run(tiny_data, tmp_path / "run.pt", epochs=1)
    [path] = _files(tmp_path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"")
    with pytest.raises(checkpoints.CheckpointError, match=f"the checkpoint {path} cannot be read.*Delete it"):
        _run(tiny_data, tmp_path / "run.pt", epochs=1)


def test_two_writers_of_one_path_do_not_collide(tmp_path):
    errors = []

    def writer(i):
        try:
            for j in range(15):
                checkpoints.save(tmp_path / "run.pt", {"model": {}, "history": [], "writer": i, "j": j})
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    assert torch.load(tmp_path / "run.pt", weights_only=True)["j"] == 14


def test_settings_that_cannot_train_are_refused(tiny_data):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="epochs must be a positive"):
        train.fit(model, _batches(tiny_data), 0, opt, progress=False)
    empty = torch.utils.data.DataLoader(loader.TransformDataset(tiny_data), batch_size=64, drop_last=True)
    with pytest.raises(ValueError, match="no batch.*24 images per epoch, batch size 64"):
        train.fit(model, empty, 1, opt, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        loader.GpuBatches(tiny_data, batch_size=0, mean=(0.5,) * 3, std=(0.25,) * 3)
    with pytest.raises(ValueError, match="batch_size 64 is larger than the 24 images of toy/train"):
        loader.GpuBatches(tiny_data, batch_size=64, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert len(loader.GpuBatches(tiny_data, batch_size=64, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)) == 1


def test_fp32_switch_restores_the_flags_it_changed():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    seen = []
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with train._fp32_means_fp32(torch.device("cuda"), None):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        with train._fp32_means_fp32(torch.device("cuda"), torch.bfloat16):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert seen == [(False, False), (True, True), (True, True)]


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


def test_compiled_model_trains_and_saves_plain_weights(tiny_data, tmp_path):
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    history = train.fit(model, _batches(tiny_data), 1, opt, compile=True, checkpoint=tmp_path / "c.pt",
                        progress=False)
    assert np.isfinite(history[0]["loss"])
    [path] = tmp_path.glob("c-*.pt")
    saved = torch.load(path, weights_only=True)["model"]
    assert set(saved) == set(model.state_dict())  # no "_orig_mod." prefixes


def test_evaluation_in_fp32_uses_the_same_tf32_switch(monkeypatch):
    from contextlib import contextmanager
    entered = []

    @contextmanager
    def recording(device, amp_dtype):
        entered.append((device.type, amp_dtype))
        yield
    monkeypatch.setattr(train, "_fp32_means_fp32", recording)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    train.evaluate(model, [(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))], amp=False)
    assert entered == [("cpu", None)]


def test_an_unfinished_run_is_saved_once_per_checkpoint_every_and_the_finished_run_always(tiny_data, tmp_path,
                                                                                       monkeypatch):
    saved = []
    real = checkpoints.save
    monkeypatch.setattr(checkpoints, "save", lambda path, state: (saved.append(state["epoch"]), real(path, state)))
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train.fit(model, _batches(tiny_data), 4, opt, checkpoint=tmp_path / "run.pt", progress=False)
    assert saved == [4]   # four short epochs: only the finished run is written (default: every 10 minutes)
    clock = iter(range(0, 10_000, 100))   # each call of the clock: 100 s later
    monkeypatch.setattr(train.time, "monotonic", lambda: next(clock))
    saved.clear()
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    train.fit(model, _batches(tiny_data), 4, opt, checkpoint=tmp_path / "run.pt", progress=False, checkpoint_every=150)
    assert saved == [2, 4]   # 200 s after the start, then the end


def test_a_checkpoint_restores_the_random_state_whatever_device_it_was_loaded_onto(tiny_data, tmp_path):
    # torch.load(map_location=device) moves every tensor to the device; CUDA's and the CPU's RNG accept only
    # CPU bytes, so a resume on a GPU raised TypeError. The meta device stands in for CUDA here.
    torch.manual_seed(7)
    _run(tiny_data, tmp_path / "run.pt", epochs=1)
    [path] = _files(tmp_path)
    expected = torch.load(path, weights_only=True)["rng"]
    state = checkpoints.load(path, "meta")
    assert state["model"]["stem.conv.weight"].device.type == "meta"
    torch.manual_seed(123)
    train._set_rng_state(state["rng"])
    assert torch.equal(torch.get_rng_state(), torch.tensor(expected["torch"], dtype=torch.uint8))
    # a checkpoint written before (RNG state as tensors) is restored too, wherever its tensors are
    old = {**expected, "torch": torch.tensor(expected["torch"], dtype=torch.uint8)}
    torch.manual_seed(123)
    train._set_rng_state(old)
    assert torch.equal(torch.get_rng_state(), old["torch"])


def test_fp16_loss_scaling_skipping_its_first_steps_raises_no_scheduler_warning(tiny_data, monkeypatch):
    # fp16 (a T4) trains with a grad scaler, which skips the optimizer step while it looks for its scale;
    # PyTorch then warned "lr_scheduler.step() before optimizer.step()" in every run. The CPU's scaler does the same.
    monkeypatch.setattr(train, "autocast_dtype", lambda device, amp: torch.float16 if amp else None)
    model = _small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=2 * 3)

    calls = []

    def step(m, batch):   # a first step whose scaled gradients overflow (the loss itself stays finite): the scaler
        calls.append(1)    # skips the optimizer and lowers its scale, as on a GPU in fp16
        loss, metrics = train.classification_step(m, batch)
        return (loss * 1e36 if len(calls) == 1 else loss), metrics
    stepped = []
    real = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (stepped.append(1), real(self, *a, **k))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = train.fit(model, _batches(tiny_data), 2, opt, sched, step=step, progress=False)
    assert len(calls) == 2 * 3 and len(stepped) < len(calls)   # the scaler skipped steps, the first one at least
    assert len(history) == 2 and sched.last_epoch == 2 * 3   # and the schedule counted every step


def test_a_rehearsals_checkpoint_is_never_resumed_by_the_real_run(tiny_data, tmp_path, monkeypatch):
    # A rehearsal cuts every pass to a few batches; where a split is that short anyway, its run would have the
    # real run's identity, and the real run would take the rehearsal's (cut-evaluation) history as its own.
    def run():
        torch.manual_seed(0)
        model = _small_model()
        train.fit(model, _batches(tiny_data), 1, torch.optim.SGD(model.parameters(), lr=0.01),
                  checkpoint=tmp_path / "run.pt", progress=False)
        return {p.name for p in tmp_path.glob("run-*.pt")}
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.setenv("COURSE_REHEARSAL", str(10 ** 6))   # cuts nothing here: the epoch is shorter
    rehearsed = run()
    monkeypatch.delenv("COURSE_REHEARSAL")
    assert len(rehearsed) == 1 and len(run() - rehearsed) == 1


def test_a_finished_run_prints_its_log_and_a_new_one_says_what_changed_when_asked(tiny_data, tmp_path, capsys):
    _, first = _run(tiny_data, tmp_path / "run.pt", epochs=2)
    capsys.readouterr()
    _, again = _run(tiny_data, tmp_path / "run.pt", epochs=2, progress=True)
    out = capsys.readouterr().out
    assert again == first and "this run finished before" in out
    assert [line.split("|")[0] for line in out.splitlines() if "epoch" in line] == ["  epoch   1/2 ", "  epoch   2/2 "]
    _run(tiny_data, tmp_path / "run.pt", epochs=3, explain=True, progress=False)
    assert "it differs in epochs: 2 -> 3" in capsys.readouterr().out


def test_one_epoch_trains_alone_with_the_defaults(tiny_data):
    torch.manual_seed(0)
    model = models.resnet18(num_classes=4, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
    before = [p.detach().clone() for p in model.parameters()]
    batches = loader.GpuBatches(tiny_data, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    record = train.train_one_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert record["epoch"] == 1 and record["images"] == 24 and np.isfinite(record["loss"]) and "accuracy" in record
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)   # a one-cycle schedule steps per batch, as in fit
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=len(batches))
    train.train_one_epoch(model, batches, opt, scheduler=sched, progress=False)
    assert sched.last_epoch == len(batches) == 3
