"""exercises.same_device: on the CPU, the answers that would fail on a GPU are found, and the right ones pass."""
import math

import pytest
import torch

from helpers import exercises


def cutout_right(images, size, generator=None):
    out = images.clone()
    B, _, H, W = images.shape
    cy = torch.randint(0, H, (B,), generator=generator, device=images.device)
    cx = torch.randint(0, W, (B,), generator=generator, device=images.device)
    for b in range(B):
        top, left = int(cy[b]) - size // 2, int(cx[b]) - size // 2
        out[b, :, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
    return out


def cutout_no_device(images, size, generator=None):   # draws on the CPU with the lesson's GPU generator
    out = images.clone()
    B, _, H, W = images.shape
    cy = torch.randint(0, H, (B,), generator=generator)
    cx = torch.randint(0, W, (B,), generator=generator)
    for b in range(B):
        out[b, :, max(int(cy[b]) - size // 2, 0):int(cy[b]) - size // 2 + size,
            max(int(cx[b]) - size // 2, 0):int(cx[b]) - size // 2 + size] = 0
    return out


def cutout_cpu_mask(images, size, generator=None):   # a mask made on the CPU, multiplied with the GPU images
    B, _, H, W = images.shape
    cy = torch.randint(0, H, (B,), generator=generator, device=images.device)
    cx = torch.randint(0, W, (B,), generator=generator, device=images.device)
    rows, cols = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]
    keep = ~((rows - cy.cpu()[:, None, None]).abs() <= size // 2) | ~((cols - cx.cpu()[:, None, None]).abs() <= size // 2)
    return images * keep[:, None].to(images.dtype)


def hardest_pairs_right(d, labels):
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=d.device)
    hardest_positive = d.masked_fill(~positive, -math.inf).argmax(1)
    hardest_negative = d.masked_fill(same, math.inf).argmin(1)
    return torch.where(positive.any(1), hardest_positive, -1), torch.where((~same).any(1), hardest_negative, -1)


def hardest_pairs_cpu_eye(d, labels):
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool)           # the identity made on the CPU
    return d.masked_fill(~positive, -math.inf).argmax(1), d.masked_fill(same, math.inf).argmin(1)


def result_on_the_cpu(x):
    out = torch.zeros(len(x))                                   # filled from x, returned on the CPU
    for i in range(len(x)):
        out[i] = x[i].sum()
    return out


def cpu_indices_into_gpu_tensor(x):   # allowed by CUDA: an index on the CPU, one-element CPU tensors
    return x[torch.arange(2)] * torch.tensor(2.0) + x[:2].sum()


def test_answers_that_keep_to_the_inputs_device_pass_and_give_their_result():
    images = torch.randint(1, 256, (6, 3, 10, 10), dtype=torch.uint8)
    out = exercises.same_device(cutout_right, images, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, cutout_right(images, 4, torch.Generator().manual_seed(0)))
    x = torch.randn(8, 3)
    d = torch.cdist(x, x)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    exercises.same_device(hardest_pairs_right, d, labels)
    exercises.same_device(cpu_indices_into_gpu_tensor, torch.randn(5, 3))
    exercises.same_device(lambda f, w: torch.einsum("bkhw,ck->bchw", f, w), torch.randn(2, 3, 4, 4), torch.randn(5, 3))


@pytest.mark.parametrize("fn, args, words", [
    (cutout_no_device, (torch.randint(1, 256, (4, 3, 8, 8), dtype=torch.uint8), 3), "draws with a generator on the GPU"),
    (cutout_cpu_mask, (torch.randint(1, 256, (4, 3, 8, 8), dtype=torch.uint8), 3), "on the CPU"),
    (hardest_pairs_cpu_eye, (torch.rand(6, 6), torch.tensor([0, 0, 1, 1, 2, 2])), "made by `torch.eye` without device="),
    (result_on_the_cpu, (torch.randn(4, 3),), "returns a tensor of shape (4,) on the CPU"),
])
def test_answers_that_would_fail_on_a_gpu_are_named_with_the_operation(fn, args, words):
    kwargs = {"generator": torch.Generator().manual_seed(1)} if fn.__name__.startswith("cutout") else {}
    fn(*args, **kwargs)   # each of them works on the CPU
    with pytest.raises(exercises.DeviceError, match=fn.__name__ + " works on the CPU but would fail on a GPU") as err:
        exercises.same_device(fn, *args, **kwargs)
    assert words in str(err.value)


def center_update_cpu_values(centers, features, labels, alpha):   # the new rows made on the CPU, written by index
    classes = labels.unique()
    new = torch.stack([centers[c] - alpha * (centers[c] - features[labels == c]).mean(0) for c in classes]).cpu()
    out = centers.clone()
    out[classes] = new
    return out


def one_element_cpu_tensor(x):   # shape (1,), not a scalar: CUDA refuses it beside a GPU tensor
    return x * torch.ones(1)


def arange_from_a_tensor(x):   # torch.arange(n) with n a GPU tensor still makes its result on the CPU
    n = x.new_tensor(len(x), dtype=torch.long)
    return x[torch.arange(n)] + torch.arange(n)[:, None]


def multinomial_with_a_cpu_generator(probs):   # a generator of the answer's own, drawing on the GPU
    return torch.multinomial(probs, 2, generator=torch.Generator().manual_seed(0))


def forward_through_a_cpu_layer(net, x):   # a layer the answer built on the CPU, beside the lesson's network
    return torch.nn.Linear(3, 3)(net(x))


def accumulator_on_the_cpu(x, labels):   # a zero-dimensional CPU tensor as the output of GPU arithmetic
    hits = torch.tensor(0.0)
    for row, label in zip(x, labels):
        hits += (row.argmax() == label).float()
    return hits.to(x.device)


def through_numpy(x):   # NumPy cannot read a CUDA tensor
    import numpy as np
    return torch.from_numpy(np.sort(x.numpy(), axis=1)).to(x.device)


def stack_with_a_cpu_scalar(x):   # stack is not elementwise: no CPU scalar beside GPU tensors
    return torch.stack([x.sum(), torch.tensor(0.0)])


def cpu_values_through_a_list_index(x):
    out = x.clone()
    out[[0, 2]] = torch.zeros(2, 3)
    return out


def right_answers_of_other_kinds(net, x, probs, generator):
    eye = torch.eye(len(x)).type_as(x)                              # type_as moves it to x's device
    first = x[torch.tensor(0)]                                      # a zero-dimensional index acts as an int
    x = x + (eye @ x) * 0 + first * 0
    x[torch.tensor(1)] = torch.ones(3)                              # ... and copies from anywhere
    values = torch.zeros(2, 3, device=x.device)
    out = x.clone()
    out[torch.tensor([0, 1])] = values                              # values on x's device, index on the CPU
    out[0] = torch.ones(3)                                          # through an integer: copied from anywhere
    draws = torch.multinomial(probs, 2, generator=generator)        # the lesson's generator, on the inputs' device
    noise = torch.normal(out, 1.0, generator=generator)             # its mean's device
    scale = torch.tensor(2.0)                                       # zero-dimensional: allowed beside GPU tensors
    return net(out) * scale + noise.sum() + torch.as_tensor(x).sum() + draws.sum()


def test_more_answers_that_keep_to_the_inputs_device_pass():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    exercises.same_device(right_answers_of_other_kinds, net, torch.randn(4, 3), torch.rand(4, 5),
                          torch.Generator().manual_seed(0))


@pytest.mark.parametrize("fn, args, words", [
    (center_update_cpu_values, (torch.zeros(3, 2), torch.ones(4, 2), torch.tensor([0, 2, 2, 0]), 0.5),
     "writing values on the CPU"),
    (one_element_cpu_tensor, (torch.randn(4),), "one of shape (1,) on the CPU (made by `torch.ones` without device=)"),
    (arange_from_a_tensor, (torch.randn(4, 3),), "made by `torch.arange` without device="),
    (multinomial_with_a_cpu_generator, (torch.rand(4, 5),), "`multinomial` draws with a generator on the CPU"),
    (accumulator_on_the_cpu, (torch.randn(4, 3), torch.tensor([0, 1, 2, 0])),
     "`add_` writes a result computed from the inputs (on the GPU) into a tensor on the CPU"),
    (through_numpy, (torch.randn(4, 3),), "CUDA tensors cannot become NumPy arrays"),
    (stack_with_a_cpu_scalar, (torch.randn(4, 3),), "`stack` mixes tensors on two devices: one of shape () on the CPU"),
    (cpu_values_through_a_list_index, (torch.randn(4, 3),), "writing values on the CPU"),
    (forward_through_a_cpu_layer, (torch.nn.Linear(3, 3), torch.randn(2, 3)), "a parameter of a layer built inside it"),
])
def test_more_answers_that_would_fail_on_a_gpu(fn, args, words):
    fn(*args)
    with pytest.raises(exercises.DeviceError, match=fn.__name__) as err:
        exercises.same_device(fn, *args)
    assert words in str(err.value)
