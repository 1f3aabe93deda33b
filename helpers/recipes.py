"""What two notebooks must agree on, written once.

- **Tiny ImageNet pretraining** (notebooks 03, 05, 07): `tiny_imagenet_recipe()` holds its settings, one column
  per profile, and `tiny_imagenet_resnet18` trains that ResNet-18 or loads it from the finished checkpoint of
  the same recipe (`helpers.transfer.pretrain_tiny_imagenet`), with a learning check.
- **SimCLR** (notebooks 05, 06): `simclr_recipe()`, the network (`SimCLRNet`), its views (`simclr_views`), its
  step (`simclr_step`, the package's NT-Xent, which notebook 05 checks against its own), the k-NN monitor, and
  `train_simclr`, which notebook 06 calls with 05's recipe to get 05's encoder from its finished checkpoint, or
  trains it, saying which.
- **Small shared pieces**: `at_size` (a split resized once), `sgd_one_cycle` and `adamw_one_cycle` (an
  optimizer and its one-cycle schedule), `features`, `knn_accuracy` and `linear_probe` (a frozen representation
  read as the field reads it: k-NN on cosine similarity and a linear classifier on standardised features).

The lessons' own code (a loss being taught, a freezing scheme) stays in the notebooks. A run's identity is
unchanged by coming from here: `fit` hashes what it is given, not where it was built.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import augment, checks, losses, metrics, models, train, transfer
from .data import STATS, ImageData
from .loader import GpuBatches
from .runs import Training, epoch_images
from .runtime import pick


def at_size(split: ImageData, size: int, chunk: int = 2000) -> ImageData:
    """`split` with every image resized once to size × size (bilinear, antialiased) and kept as uint8; a split
    already at `size` is returned as it is. `chunk` images at a time, so that a large split never needs a float
    copy of itself."""
    if split.images.shape[-1] == size:
        return split
    parts = [F.interpolate(split.images[i:i + chunk].float(), size=(size, size), mode="bilinear", antialias=True,
                           align_corners=False).round().clamp(0, 255).to(torch.uint8)
             for i in range(0, len(split), chunk)]
    return dataclasses.replace(split, images=torch.cat(parts))


def sgd_one_cycle(parameters, *, lr, total_steps: int, weight_decay: float = 5e-4, momentum: float = 0.9,
                  nesterov: bool = True, pct_start: float = 0.3):
    """SGD with (Nesterov) momentum and a one-cycle learning-rate schedule stepped after every batch, the
    momentum held constant (`cycle_momentum=False`). `lr`: the peak, or one peak per parameter group where
    `parameters` are groups. Returns (optimizer, scheduler)."""
    parameters = list(parameters)
    peaks = lr if isinstance(lr, (list, tuple)) else None
    optimizer = torch.optim.SGD(parameters, lr=peaks[0] if peaks else lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=list(peaks) if peaks else lr, pct_start=pct_start,
                                                    total_steps=total_steps, cycle_momentum=False)
    return optimizer, scheduler


def adamw_one_cycle(parameters, *, lr: float, total_steps: int, weight_decay: float, pct_start: float = 0.1):
    """AdamW with a one-cycle schedule (a short warm-up, then cosine down), stepped after every batch."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start,
                                                    cycle_momentum=False)
    return optimizer, scheduler


# ----------------------------------------------------------------------------- Tiny ImageNet pretraining

@dataclasses.dataclass(frozen=True)
class TinyImageNetRecipe:
    """Notebook 03's pretraining of a ResNet-18 (ImageNet stem) on Tiny ImageNet-200 (see
    `transfer.pretrain_tiny_imagenet`). Every notebook that pretrains asks for it by this recipe, so that the run
    one notebook trained is the checkpoint the next one loads."""
    epochs: int
    per_class: int | None       # training images per class (None: all 500)
    val_per_class: int | None   # validation images per class scored after every epoch (None: all 50)
    image_size: int             # input side in pixels (64: Tiny ImageNet's own)
    batch_size: int
    peak_lr: float              # one-cycle peak (SGD, Nesterov)
    widths: tuple[int, ...]     # channels per stage
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0

    @property
    def train_images(self) -> int:
        return 200 * (self.per_class or 500)

    @property
    def val_images(self) -> int:
        return 200 * (self.val_per_class or 50)

    def training(self, name: str, *, amp: bool = True) -> Training:
        """The pretraining as one `Training` (what `tiny_imagenet_resnet18` runs when no finished run is found):
        for a notebook's budget."""
        return Training(name, self.network, images=epoch_images(self.train_images, self.batch_size),
                        epochs=self.epochs, size=self.image_size, scored=self.val_images, amp=amp,
                        scoring="its validation images after every epoch")

    def network(self) -> models.ResNet:
        """The network it trains, untrained (for a budget or a starting point)."""
        return models.resnet18(num_classes=200, stem="imagenet", widths=self.widths)


def tiny_imagenet_recipe(*, seed: int = 0) -> TinyImageNetRecipe:
    """The Tiny ImageNet pretraining of the current profile: full, a real-width ResNet-18 on all 100,000 images
    for 30 epochs; small, a 4× narrower one on 100 images per class for 10; ci, a step or two."""
    return TinyImageNetRecipe(
        epochs=pick(full=30, small=10, ci=2, rehearse=2),
        per_class=pick(full=None, small=100, ci=1),
        val_per_class=pick(full=None, small=20, ci=1),
        image_size=pick(full=64, small=64, ci=32),
        batch_size=pick(full=256, small=128, ci=64),
        peak_lr=pick(full=0.2, small=0.1, ci=0.05),
        widths=pick(full=models.RESNET18_WIDTHS, small=(16, 32, 64, 128), ci=(16, 32, 64, 128)),
        seed=seed)


def tiny_imagenet_resnet18(recipe: TinyImageNetRecipe, *, data_dir: str | Path, output_dir: str | Path,
                           device: torch.device | str, amp: bool = True, progress: bool = True) -> transfer.Pretrained:
    """The ResNet-18 of `recipe`, trained now or loaded from the finished checkpoint of the same recipe under
    `output_dir/pretrained` (fit says which), after a learning check: its weights moved from the start that
    `pretrain_tiny_imagenet` draws (it seeds torch with the recipe's seed, then builds the network)."""
    pretrained = transfer.pretrain_tiny_imagenet(
        data_dir=data_dir, output_dir=Path(output_dir) / "pretrained", device=device, epochs=recipe.epochs,
        per_class=recipe.per_class, val_per_class=recipe.val_per_class, image_size=recipe.image_size,
        batch_size=recipe.batch_size, peak_lr=recipe.peak_lr, weight_decay=recipe.weight_decay,
        label_smoothing=recipe.label_smoothing, widths=recipe.widths, seed=recipe.seed, amp=amp, progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        start = checks.snapshot(recipe.network())
    moved = recipe.network()
    moved.load_state_dict(pretrained.state_dict)
    checks.moved(start, moved, what=f"Tiny ImageNet pretraining ({recipe.epochs} epochs)")
    return pretrained


# ----------------------------------------------------------------------------- SimCLR

@dataclasses.dataclass(frozen=True)
class SimCLRRecipe:
    """Notebook 05's SimCLR: a ResNet-18 (ImageNet stem) and a projection head trained with NT-Xent on two
    augmented views of every image of a pool, AdamW with a one-cycle schedule."""
    epochs: int
    batch_size: int             # images per step (twice as many views)
    input_size: int             # side the network sees
    widths: tuple[int, ...]     # channels per stage of the backbone
    projection_dim: int         # the projection head's output z (the loss sees z, not the features h)
    blur_p: float               # share of views blurred
    blur_kernel: int            # pixels: about a tenth of the side
    lr: float = 1e-3            # AdamW peak (one-cycle: a tenth of the run warms up, then cosine down)
    weight_decay: float = 1e-4
    temperature: float = 0.5    # NT-Xent's τ
    crop_scale: tuple[float, float] = (0.08, 1.0)   # random resized crop: share of the image area kept
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)   # brightness, contrast, saturation, hue
    jitter_p: float = 0.8       # share of views jittered
    gray_p: float = 0.2         # share of views turned gray
    knn_k: int = 10             # neighbours voting in the k-NN monitor
    seed: int = 0

    def network(self, classes: int = 10) -> SimCLRNet:
        return SimCLRNet(widths=self.widths, dim=self.projection_dim, classes=classes)

    def training(self, name: str, *, pool: int, bank: int, queries: int, amp: bool = True) -> Training:
        """What `train_simclr` runs on a pool of `pool` images (two views of each, the incomplete last batch
        dropped), its k-NN monitor reading a labelled bank and the queries after every epoch: as one `Training`,
        for a notebook's budget."""
        return Training(name, self.network, images=2 * epoch_images(pool, self.batch_size), epochs=self.epochs,
                        size=self.input_size, scored=bank + queries, amp=amp,
                        scoring="its k-NN monitor after every epoch (the labelled bank and the queries)")


def simclr_recipe(*, seed: int = 0) -> SimCLRRecipe:
    """SimCLR of the current profile: full, a real-width network at STL-10's 96 px for 40 epochs; small, a 4×
    narrower one at 64 px (images kept at 32 px: the stand-in's detail) for 20, with no blur (as SimCLR for
    CIFAR-10); ci, two short epochs."""
    return SimCLRRecipe(
        epochs=pick(full=40, small=20, ci=2, rehearse=2),
        batch_size=pick(full=256, small=256, ci=32),
        input_size=pick(full=96, small=64, ci=32),
        widths=pick(full=models.RESNET18_WIDTHS, small=(16, 32, 64, 128), ci=(16, 32, 64, 128)),
        projection_dim=pick(full=128, small=64, ci=32),
        blur_p=pick(full=0.5, small=0.0, ci=0.5),
        blur_kernel=pick(full=9, small=3, ci=3),
        seed=seed)


class SimCLRNet(nn.Module):
    """A ResNet-18 backbone (ImageNet stem; its pooled features h) and SimCLR's projection head (z = g(h))."""

    def __init__(self, *, widths=models.RESNET18_WIDTHS, dim: int = 128, classes: int = 10):
        super().__init__()
        self.backbone = models.resnet18(num_classes=classes, stem="imagenet", widths=widths)
        self.backbone.head.fc = nn.Identity()
        self.projection = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(), nn.Linear(widths[-1], dim))

    def forward(self, x):
        return self.projection(self.backbone(x))


def simclr_augmentations(recipe: SimCLRRecipe) -> list:
    """The views' augmentations after the flip: crop and resize, colour jitter, gray, and blur where the recipe has it."""
    brightness, contrast, saturation, hue = recipe.jitter
    found = [partial(augment.random_resized_crop, scale=recipe.crop_scale),
             partial(augment.color_jitter, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                     p=recipe.jitter_p),
             partial(augment.random_grayscale, p=recipe.gray_p)]
    if recipe.blur_p:
        found.append(partial(augment.random_gaussian_blur, kernel_size=recipe.blur_kernel, p=recipe.blur_p))
    return found


def simclr_views(pool: ImageData, recipe: SimCLRRecipe, *, device, stats=STATS["stl10"]) -> GpuBatches:
    """Batches of two independently augmented views of every image of `pool` (flip, then the augmentations)."""
    return GpuBatches(pool, batch_size=recipe.batch_size, device=device, crop_padding=0, flip=True,
                      augmentations=simclr_augmentations(recipe), views=2, size=recipe.input_size, mean=stats[0],
                      std=stats[1], seed=recipe.seed, channels_last=True)


def simclr_step(model: nn.Module, batch, *, temperature: float):
    """NT-Xent of the two views' projections (`losses.nt_xent`), and view top-1: the share of views whose most
    similar other view is their own image's."""
    v1, v2, _ = batch                                        # the labels (-1) are never used
    z1, z2 = model(torch.cat([v1, v2])).float().chunk(2)
    loss = losses.nt_xent(z1, z2, temperature)
    with torch.no_grad():
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        s = (z @ z.T).fill_diagonal_(-math.inf)
        n = len(z1)
        positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        top1 = (s.argmax(1) == positive).float().mean()
    return loss, {"view_top1": top1}


def knn_monitor(model: nn.Module, batches, *, bank: GpuBatches, bank_labels: torch.Tensor, labels: torch.Tensor,
                k: int, amp: bool = True) -> dict:
    """k-NN accuracy of the backbone's features h on `batches` (cosine), the labelled `bank` voting: SimCLR's
    usual monitor, an `evaluate_fn` for `fit`."""
    device = labels.device   # (predict returns its features on the CPU)
    reference = F.normalize(train.predict(model.backbone, bank, amp=amp).float(), dim=1).to(device)
    queries = F.normalize(train.predict(model.backbone, batches, amp=amp).float(), dim=1).to(device)
    predicted = metrics.knn_predict(reference, bank_labels.to(device), queries, k=k)
    return {"knn": float((predicted == labels).float().mean())}


def eval_batches(split: ImageData, *, size: int, device, stats=STATS["stl10"], batch_size: int = 500) -> GpuBatches:
    """Every image of `split` in order, resized to `size` and normalised, not augmented."""
    return GpuBatches(split, batch_size=batch_size, device=device, train=False, size=size, mean=stats[0], std=stats[1])


@dataclasses.dataclass
class SimCLRRun:
    """A finished SimCLR run: the network, its per-epoch history, and whether it trained now or was loaded."""
    model: SimCLRNet
    history: list[dict]
    trained_now: bool
    checkpoint: Path | None


def simclr_folder(output_dir: str | Path) -> Path:
    """Where SimCLR runs are kept: one folder for every notebook that asks for them."""
    return Path(output_dir) / "checkpoints" / "simclr"


def simclr_checkpoints(output_dir: str | Path | None) -> list[Path]:
    """The SimCLR runs kept under `output_dir`, of any recipe (for a budget: whether a finished one may be found)."""
    folder = output_dir and simclr_folder(output_dir)
    return sorted(folder.glob("simclr-*.pt")) if folder and folder.is_dir() else []


def train_simclr(recipe: SimCLRRecipe, pool: ImageData, *, bank: ImageData, queries: ImageData, device,
                 output_dir: str | Path | None, stats=STATS["stl10"], amp: bool = True, progress: bool = True,
                 train_if_missing: bool = True, name: str = "simclr") -> SimCLRRun | None:
    """SimCLR of `recipe` on the images of `pool` (their labels are never read), monitored after every epoch by
    k-NN on the labelled `bank` against `queries`. With `output_dir`, the run is kept in `simclr_folder(output_dir)`:
    a finished run of the same recipe on the same images is loaded instead of trained (notebook 06 gets notebook
    05's encoder so), a run cut off resumes. Says which it did. `train_if_missing=False`: None where no finished
    run of this recipe is there. `name`: the checkpoint's name in that folder (`simclr_checkpoints` lists the
    runs named "simclr", notebook 05's)."""
    views = simclr_views(pool, recipe, device=device, stats=stats)
    reference = eval_batches(bank, size=recipe.input_size, device=device, stats=stats)
    monitor = partial(knn_monitor, bank=reference, bank_labels=bank.labels.to(device), labels=queries.labels.to(device),
                      k=recipe.knn_k)
    torch.manual_seed(recipe.seed)
    model = recipe.network().to(device)
    optimizer, scheduler = adamw_one_cycle(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                           total_steps=recipe.epochs * len(views))
    fit_args = dict(step=partial(simclr_step, temperature=recipe.temperature),
                    val_batches=eval_batches(queries, size=recipe.input_size, device=device, stats=stats),
                    evaluate_fn=monitor, amp=amp)
    checkpoint = output_dir and simclr_folder(output_dir) / f"{name}.pt"
    run = checkpoint and train.run_of(model, views, recipe.epochs, optimizer, scheduler, checkpoint=checkpoint,
                                      **fit_args)
    state = run.load() if run else None
    finished = bool(state and state.get("finished"))
    if not finished and not train_if_missing:
        print(f"SimCLR, {recipe.epochs} epochs on {len(pool):,} images: no finished run of this recipe"
              + (f" in {run.path.parent}" if run else " (no output folder)"))
        return None
    before = checks.snapshot(model)
    history = train.fit(model, views, recipe.epochs, optimizer, scheduler, progress=progress, checkpoint=checkpoint,
                        **fit_args)
    if not finished:
        checks.moved(before, model, what="SimCLR")
    print(f"SimCLR, {recipe.epochs} epochs on {len(pool):,} images: "
          + (f"loaded the finished run {run.path.name}" if finished else "trained now")
          + (f" ({run.path.parent})" if run else ""))
    return SimCLRRun(model.eval(), history, not finished, run.path if run else None)


# ----------------------------------------------------------------------------- frozen representations

def features(net: nn.Module, split: ImageData, *, size: int, device, stats, amp: bool = True,
             batch_size: int = 500) -> torch.Tensor:
    """The output of `net` (frozen, in eval mode) for every image of `split`, in order, without augmentation."""
    return train.predict(net, eval_batches(split, size=size, device=device, stats=stats, batch_size=batch_size),
                         amp=amp).float()


def knn_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, *,
                 k: int = 10, device=None) -> float:
    """Test accuracy of k-NN on frozen features (on `device`, else where `train_f` is): cosine (each feature
    vector scaled to length 1), the k nearest labelled images voting with weight 1/distance."""
    device = device or train_f.device
    predicted = metrics.knn_predict(F.normalize(train_f.to(device), dim=1), train_y.to(device),
                                    F.normalize(test_f.to(device), dim=1), k=min(k, len(train_f)))
    return float((predicted == test_y.to(device)).float().mean())


def standardise(train_f: torch.Tensor, test_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets scaled with the labelled (training) features' mean and standard deviation."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    return (train_f - mean) / std, (test_f - mean) / std


def train_head(head: nn.Module, train_f: torch.Tensor, train_y: torch.Tensor, *, steps: int, batch_size: int,
               lr: float, weight_decay: float, seed: int, what: str) -> nn.Module:
    """Cross-entropy on frozen features: `steps` AdamW steps on random batches of `batch_size` (all of them when
    fewer); checks that the head learned something (its weights moved). Returns the head in eval mode."""
    g = torch.Generator().manual_seed(seed)
    train_y = train_y.to(train_f.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    before = checks.snapshot(head)
    head.train()
    for _ in range(steps):
        idx = torch.randperm(len(train_f), generator=g)[:batch_size].to(train_f.device)
        loss = F.cross_entropy(head(train_f[idx]), train_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checks.moved(before, head, what=what)
    return head.eval()


def head_accuracy(head: nn.Module, test_f: torch.Tensor, test_y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(test_f).argmax(1) == test_y.to(test_f.device)).float().mean())


def linear_probe(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, *,
                 classes: int, steps: int, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                 seed: int = 0, what: str, head: nn.Module | None = None, device=None) -> float:
    """Test accuracy of a linear classifier (or `head`) trained on standardised frozen features (`train_head`), on
    `device` (else where `train_f` is); a linear head starts from torch's generator seeded with `seed`, the same
    draw for every representation (seed it yourself before building another `head`)."""
    tr, te = (f.to(device or train_f.device) for f in standardise(train_f, test_f))
    if head is None:
        torch.manual_seed(seed)
        head = nn.Linear(tr.shape[1], classes)
    head = train_head(head.to(tr.device), tr, train_y, steps=steps, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, what=what)
    return head_accuracy(head, te, test_y)
