"""Device placement on CUDA, checked on a machine without a GPU.

torch._subclasses.fake_tensor.FakeTensorMode makes tensors that claim to live on "cuda" without memory or
a driver: an operation computes only the result's shape, dtype and device, and one that mixes a CUDA tensor
with a CPU tensor raises the error CUDA raises. That reaches every forward pass of the course's models,
losses, augmentations, step functions and CAM helpers. It stops where real numbers are needed: a Python
number read from a tensor (`int(x)`, `.item()`, `.numpy()`: the metrics that return floats, grad-cam),
a random generator on the GPU (`torch.Generator("cuda")` needs the driver, so GpuBatches cannot iterate),
and any backward pass (it needs a CUDA runtime). Those are what the GPU check (.ci/gpu-check) is for.
"""
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from helpers import augment, autoencoders, cam, losses, metrics, models, train

CUDA = torch.device("cuda", 0)


@contextmanager
def fake_cuda():
    """Tensors and modules made inside are CUDA tensors without a GPU (fake: shapes, dtypes and devices only)."""
    with FakeTensorMode(allow_non_fake_inputs=True), torch.device(CUDA):
        yield


def test_a_module_left_on_the_cpu_is_caught_as_cuda_would_catch_it():
    cpu_net = models.resnet18(num_classes=10, widths=(8, 16, 32, 64))   # built outside: real, on the CPU
    with fake_cuda():
        x = torch.randn(2, 3, 32, 32)
        assert x.device == CUDA
        with pytest.raises(RuntimeError, match="same device|different devices"):   # (torch 2.14's words, 2.11's)
            cpu_net(x)
        with pytest.raises(RuntimeError, match="same device|different devices"):
            x + torch.randn(2, 3, 32, 32, device="cpu")


@pytest.mark.parametrize("kwargs, size", [(dict(stem="cifar"), 32), (dict(stem="imagenet"), 64),
                                          (dict(stem="imagenet", in_channels=1), 96), (dict(stem="cifar", dropout=0.15), 32)])
def test_the_resnets_run_on_cuda_in_train_and_eval_mode(kwargs, size):
    with fake_cuda():
        net = models.resnet18(num_classes=7, widths=(8, 16, 32, 64), **kwargs)
        x = torch.randn(4, kwargs.get("in_channels", 3), size, size)
        assert net(x).device == CUDA and net.eval()(x).shape == (4, 7)
        assert net.embed(x).shape == (4, 64) and net.features(x).device == CUDA


def test_the_step_functions_run_forward_on_cuda():
    with fake_cuda():
        net = models.resnet18(num_classes=5, widths=(8, 16, 32, 64))
        loss, m = train.classification_step(net, (torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))), label_smoothing=0.1)
        assert loss.device == CUDA and m["accuracy"].device == CUDA
        stage = autoencoders.StageAutoencoder(autoencoders.stages_below(net, 2), net.layer2,
                                              autoencoders.stage_decoder(16, 8, 2))
        loss, m = autoencoders.reconstruction_step(stage, (torch.randn(4, 3, 32, 32), torch.zeros(4)))
        assert loss.device == CUDA and m["unexplained"].device == CUDA


def test_the_losses_run_on_cuda():
    with fake_cuda():
        emb, labels = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        # (batch_hard_triplet_loss branches on whether a batch has any triplet: a Python bool, past fake tensors;
        # its mining and the loss after it are checked here)
        gap, valid = losses._hardest_gaps(losses.pairwise_distances(emb), labels)
        assert gap.device == valid.device == CUDA
        assert torch.where(valid, F.softplus(gap), 0.0).sum().device == CUDA   # (gap[valid] has a data-dependent shape)
        centers = losses.CenterLoss(4, 16)
        assert centers(emb, labels).device == CUDA
        centers.update(emb, labels)                      # Wen's update: index_add_ on the device
        assert centers.centers.device == CUDA
        assert losses.contrastive_pair_loss(emb[:4], emb[4:], torch.tensor([True, False, True, False])).device == CUDA
        assert losses.nt_xent(emb[:4], emb[4:], 0.5).device == CUDA


def test_every_augmentation_stays_on_the_batchs_device():
    # generator=None: the default CUDA generator (a torch.Generator("cuda") needs the driver). random_gaussian_blur
    # branches on whether any image of the batch is blurred (a Python bool): its blur is checked directly
    with fake_cuda():
        x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        outputs = [augment.random_crop(x, 4), augment.random_crop(x, 4, padding_mode="zeros"), augment.random_flip(x),
                   augment.random_rotation(x, 30), augment.random_translate(x, 0.1), augment.cutout(x, 8),
                   augment.random_resized_crop(x, 32), augment.gaussian_blur(x, torch.rand(4) + 0.1, 3),
                   augment.random_grayscale(x), augment.color_jitter(x, 0.4, 0.4, 0.4, 0.1)]
        for out in outputs:
            assert out.device == CUDA and out.dtype == torch.uint8 and out.shape == x.shape
        assert augment.normalize(x, (0.5,) * 3, (0.25,) * 3).device == CUDA
        assert augment.grayscale(x.float()).shape == (4, 1, 32, 32)


def test_the_metrics_that_stay_tensors_run_on_cuda():
    # (knn_predict, retrieval_metrics and class_separation read Python numbers from tensors: the GPU check's)
    with fake_cuda():
        logits, targets = torch.randn(6, 10), torch.randint(0, 10, (6,))
        assert metrics.topk_correct(logits, targets, 5).device == CUDA
        assert metrics._squared_distances(torch.randn(3, 4), torch.randn(5, 4)).device == CUDA


def test_class_activation_maps_run_on_cuda():
    with fake_cuda():
        net = models.resnet18(num_classes=5, widths=(8, 16, 32, 64)).eval()
        logits, maps = cam.class_activation_maps(net, torch.randn(2, 3, 32, 32))
        assert logits.device == maps.device == CUDA and maps.shape == (2, 5, 4, 4)
        with cam.capture(net, "layer3") as out:
            net(torch.randn(2, 3, 32, 32))
        assert out["layer3"].device == CUDA


def test_the_simclr_recipes_monitor_compares_on_the_labels_device(monkeypatch):
    from helpers import recipes
    # train.predict gives its features on the CPU whatever the model's device: the monitor must bring them to the
    # labels' (the GPU's) before it compares; reading the accuracy as a number is where a fake tensor stops
    monkeypatch.setattr(train, "predict", lambda model, batches, amp=True: torch.randn(6, 4, device="cpu"))
    monkeypatch.setattr(metrics, "knn_predict", lambda bank, bank_labels, queries, k: bank_labels[:len(queries)] * 0
                        + queries[:, 0].long())   # a prediction per query, on the devices it is given (mixed: raises)
    with fake_cuda():
        labels = torch.zeros(6, dtype=torch.long)
        assert labels.device == CUDA
        with pytest.raises(Exception) as caught:
            recipes.knn_monitor(SimpleNamespace(backbone=None), None, bank=None, bank_labels=labels.cpu(), labels=labels, k=3)
    assert "same device" not in str(caught.value) and "different devices" not in str(caught.value), caught.value
