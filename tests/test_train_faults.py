"""fit against the mistakes people make in the order they use notebooks (rerun one cell, interrupt, fix a
function, rerun): each is refused before it trains the wrong thing, with a message that names the mistake."""
import pytest
import torch
from torch import nn

from helpers import checkpoints, loader, models, train


def _model(seed=0):
    torch.manual_seed(seed)
    return models.resnet18(num_classes=4, widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1))


def _batches(data, batch_size=8, **kwargs):
    return loader.GpuBatches(data, batch_size=batch_size, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0, **kwargs)


def _fit(model, data, *, optimizer=None, epochs=1, **kwargs):
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05)
    return train.fit(model, _batches(data), epochs, optimizer, progress=False, **kwargs)


def test_an_optimizer_built_over_an_earlier_model_is_refused(tiny_data):
    earlier = _model()
    optimizer = torch.optim.SGD(earlier.parameters(), lr=0.05)   # the optimizer's cell, run once
    model = _model()                                             # the model's cell, run again
    with pytest.raises(ValueError, match="holds none of this model's .* built over another model"):
        _fit(model, tiny_data, optimizer=optimizer)
    head_only = torch.optim.SGD(model.head.parameters(), lr=0.05)   # the rest would never change
    with pytest.raises(ValueError, match=r"holds 2 of this model's \d+ .* never change \(stem"):
        _fit(model, tiny_data, optimizer=head_only)
    model.requires_grad_(False).head.requires_grad_(True)           # frozen as it should be: accepted
    assert len(_fit(model, tiny_data, optimizer=head_only)) == 1


def test_a_model_with_nothing_to_train_is_named(tiny_data):
    model = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter of ResNet is frozen"):
        _fit(model, tiny_data, optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
    with pytest.raises(ValueError, match="Flatten has no parameters"):
        train.fit(nn.Flatten(), _batches(tiny_data), 1, torch.optim.SGD([torch.zeros(1, requires_grad=True)]),
                  progress=False)


class Interrupt(BaseException):   # as KeyboardInterrupt: not an Exception
    pass


def _interrupt_in_epoch(monkeypatch, epoch):
    real = train.train_one_epoch

    def one_epoch(*args, **kwargs):
        if kwargs["epoch"] + 1 == epoch:
            real(*args, **{**kwargs, "steps": 1})   # one step trains, then the interrupt
            raise Interrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(train, "train_one_epoch", one_epoch)


def test_rerunning_only_the_fit_cell_after_an_interrupt_is_refused_and_a_rebuilt_model_resumes(
        tiny_data, tmp_path, monkeypatch):
    reference = _model()
    _fit(reference, tiny_data, epochs=3)
    model = _model()
    with monkeypatch.context() as m:
        _interrupt_in_epoch(m, 2)
        with pytest.raises(Interrupt):
            _fit(model, tiny_data, epochs=3, checkpoint=tmp_path / "run.pt", checkpoint_every=0)
    with pytest.raises(RuntimeError, match=r"did not finish \(Interrupt in epoch 2 of 3\).*Rerun the cell that builds"):
        _fit(model, tiny_data, epochs=3, checkpoint=tmp_path / "run.pt")
    model = _model()   # the model's cell again: the interrupted run resumes and ends where an uninterrupted one does
    _fit(model, tiny_data, epochs=3, checkpoint=tmp_path / "run.pt")
    for (name, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_step_that_fails_before_changing_anything_can_simply_be_fixed_and_rerun(tiny_data):
    model = _model()

    def broken(m, batch):
        raise NameError("name 'labels' is not defined")   # a typo in the student's step
    with pytest.raises(NameError):
        _fit(model, tiny_data, step=broken)
    assert len(_fit(model, tiny_data)) == 1   # nothing changed: no rebuild needed


def test_a_checkpoint_folder_and_a_name_with_glob_characters(tiny_data, tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="is a folder: give a file name in it"):
        _fit(_model(), tiny_data, checkpoint=tmp_path)
    _fit(_model(), tiny_data, checkpoint=tmp_path / "run[a].pt")
    other = checkpoints.Run.of(tmp_path / "run[a].pt", {"another": "identity"})
    assert "1 checkpoint(s) of other settings" in other.trains_anew()


@pytest.mark.parametrize("step, error, message", [
    (lambda m, b: (train.classification_step(m, b)[0].item(), {}), TypeError, r"not loss\.item\(\)"),
    (lambda m, b: (nn.functional.cross_entropy(m(b[0]), b[1], reduction="none"), {}), ValueError,
     r"loss of shape \(8,\): return one number"),
    (lambda m, b: (train.classification_step(m, b)[0], {"accuracy": 0.5}), TypeError, "metric 'accuracy' is float"),
    (lambda m, b: (train.classification_step(m, b)[0], {"per_class": torch.ones(4)}), TypeError,
     r"metric 'per_class' is a tensor of shape \(4,\)"),
    (lambda m, b: (train.classification_step(m, b)[0].detach(), {}), ValueError, "loss has no gradient"),
    (lambda m, b: train.classification_step(m, b)[0], TypeError, r"returns \(loss, metrics\)"),
])
def test_a_step_that_returns_the_wrong_thing_is_named_before_the_epoch_trains(tiny_data, step, error, message):
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=message):
        _fit(model, tiny_data, step=step)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # refused at the first step


def test_a_last_batch_of_one_image_with_batchnorm_is_named(tiny_data):
    torch.manual_seed(0)   # the ImageNet stem on 16 px: layer3 and layer4 are 1×1, one value per channel
    model = models.resnet18(num_classes=4, stem="imagenet", widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1))
    batches = _batches(tiny_data, batch_size=23, drop_last=False)   # 24 images: 23 and 1
    with pytest.raises(ValueError, match="batch 2 of 2 holds 1 image: BatchNorm .*drop_last=True"):
        train.fit(model, batches, 1, torch.optim.SGD(model.parameters(), lr=0.05), progress=False)


def test_a_one_cycle_schedule_counted_in_epochs_is_named(tiny_data):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=2)   # epochs, not steps
    with pytest.raises(ValueError, match=r"total_steps is epochs × batches per epoch"):
        train.fit(model, _batches(tiny_data), 2, optimizer, scheduler, progress=False)
