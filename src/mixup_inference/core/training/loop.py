"""Training of the four regimes of the paper (Sec. 4.1): ERM, mixup, adversarial training (AT)
and interpolated adversarial training (IAT), with exact, resumable, seeded runs.

Regimes (one mini-batch of B images x with one-hot labels t; all losses are the soft-label
cross entropy, averaged over the inputs the model sees):

- ``"erm"``: train on (x, t).
- ``"mixup"`` (Zhang et al. 2018, https://arxiv.org/abs/1710.09412), in the authors' form: one
  lam_i ~ Beta(alpha, alpha) per example and two independent random permutations p1, p2; train
  on (lam x[p1] + (1-lam) x[p2], lam t[p1] + (1-lam) t[p2]) (``mixing.mixup_batch``).
- ``"at"`` (Madry et al. 2018, https://arxiv.org/abs/1706.06083): x_adv = untargeted PGD of x
  with the model in eval mode, pushing away from the model's own prediction on x, as the
  authors' cleverhans call with y=None (``adversarial_examples``; random start, L-inf eps, fixed
  step count); train on the concatenation [x, x_adv] with targets [t, t] (clean:adversarial =
  1:1 per batch, as in the paper and the authors' code).
- ``"interpolated_at"`` (Lamb et al. 2019, https://arxiv.org/abs/1906.06784): x_adv as for AT;
  mixup within the clean half and, separately, within the adversarial half (each with its own
  per-example lams and permutations); train on the concatenation of both mixed halves.

Optimiser (``optimizer``): ``"sgd"``, SGD with momentum (Nesterov off) and weight decay in
PyTorch's units; or ``"sgd_decoupled"``, airbench94's form (Jordan 2024,
https://arxiv.org/abs/2404.00498): Nesterov SGD whose ``lr`` and ``weight_decay`` are written per
1,024 training inputs and decoupled from the momentum and from each other (``state``
converts them). ``bias_lr_scale`` multiplies the learning rate of BatchNorm biases (airbench94:
64) without changing their decay. Schedules: ``"step"`` (lr x 0.1 at each milestone epoch,
stepped per epoch), ``"onecycle"`` (``OneCycleLR`` with max_lr = lr, stepped per batch; momentum
is NOT cycled, so ``config.momentum`` holds throughout) or ``"triangular"`` (airbench94's:
piecewise linear per batch from 0.2 lr up to lr at 23% of the steps, down to 0.07 lr at the end).
``lookahead``: every 5 steps the weights (and BatchNorm statistics) are pulled to an exponential
moving average of themselves with decay 0.95^5 (step / total)^3, and the last step leaves the
model at that average (airbench94's lookahead EMA; ``state.LookaheadEMA``).
``label_smoothing`` (ERM only: mixup's targets are already soft, and AT and interpolated AT keep
the paper's definitions) trains on (1 - s) t + s / C.

Augmentation (``augment``, ``augmentation``): ``"crop_flip"``, random crop (pad 4) + horizontal
flip (``core.data.datasets.random_crop_flip``); or ``"flip_translate"``, airbench94's alternating flip (each
image mirrored at random once per run, the whole set mirrored every other epoch,
``datasets.alternating_flips``) and a random translation of up to 2 pixels with reflected borders
(``datasets.flip_translate``). Both batched on tensors. Each epoch visits a fresh random
permutation of the training set in ``N // batch_size`` full batches (the remainder is left out of
that epoch, as the authors' ``drop_last=True``). No test-time augmentation: the trained model is
the model that is evaluated, attacked and defended.

Models with a patch-whitening layer (``networks.PatchWhitening``, the airbench94 networks): before
the first epoch the train function fits it to ``WHITENING_IMAGES`` training images drawn with
``derive_seed(seed, "whitening")`` (the model's view of them, i.e. normalised, un-augmented),
records the fit in the checkpoint and the summary, and trains its bias for the first
``whiten_bias_epochs`` epochs only (its weight never trains).

Randomness: every draw (data order, augmentation, mixup lam and permutations, PGD random
start) comes from ONE CPU ``torch.Generator`` seeded with ``config.seed``; draws are moved to
the training device. Two once-per-run choices come from their own generators seeded by
``derive_seed(seed, name)``, so a resumed run redraws them identically: the whitening images
("whitening") and the first flip of each image ("alternating-flip"). With the same initial weights and config, training on CPU is bit-for-bit
reproducible, and a run resumed from ``checkpoint_dir/last.pt`` equals the uninterrupted run.
Order of draws per batch: augmentation, then PGD start (AT regimes), then mixup permutations
and lams (clean half first for IAT).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attacks.pgd import pgd
from ..data.datasets import alternating_flips, flip_translate, random_crop_flip, to_float
from .mixing import mixup_batch, soft_cross_entropy
from ..models.networks import whitening_layers
from .config import TrainConfig
from .state import (LookaheadEMA, check_resumable, checkpoint_state, make_optimizer, make_scheduler,
                         per_batch_schedule)
from ..utils import (atomic_save, atomic_write_text, derive_seed, eval_mode, load_checkpoint, make_generator,
                    resolve_device)

__all__ = ["TrainingDiverged", "adversarial_examples", "fit_whitening", "train"]

CHECKPOINT_NAME = "last.pt"
#: Training images the whitening layer is fitted on (airbench94: 5,000; 20M 2x2 patches at 32x32).
WHITENING_IMAGES = 5000
#: Added to every patch eigenvalue before its inverse square root (airbench94's 5e-4): bounds the
#: gain of the near-constant directions of the patch space.
WHITENING_EPS = 5e-4
#: Pixels of airbench94's random translation.
TRANSLATE = 2


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Its message names epoch, batch and learning rate and says
    which checkpoint is kept; a job reports it in one line, like bad input (no traceback)."""


# ----------------------------------------------------------------------------------------------
# Adversarial examples and the loss of one batch


def adversarial_examples(model: nn.Module, x: Tensor, config: TrainConfig,
                         generator: torch.Generator) -> Tensor:
    """The training PGD of AT and interpolated AT, as in the authors' train_resnet_adv.py: the model in
    eval mode (``core.attacks.pgd.pgd`` switches it and restores train mode), untargeted, pushing away from the
    model's own eval-mode prediction on the clean batch (cleverhans ``y=None``), NOT the true label;
    random start, ``config.at_steps`` steps of ``config.at_step_size`` in the ``config.at_eps`` ball."""
    with torch.no_grad(), eval_mode(model):
        labels = model(x).argmax(1)
    return pgd(model, x, labels, eps=config.at_eps, step_size=config.at_step_size, steps=config.at_steps,
               targeted=False, random_start=True, generator=generator)


def _training_batch(model: nn.Module, x: Tensor, y: Tensor, num_classes: int, config: TrainConfig,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The inputs and soft targets the model is trained on for one clean batch (x, y)."""
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    if config.regime == "erm":
        if config.label_smoothing:  # as F.cross_entropy(label_smoothing=s): mass s spread over all C classes
            return x, onehot * (1 - config.label_smoothing) + config.label_smoothing / num_classes
        return x, onehot
    if config.regime == "mixup":
        x_mix, t_mix, _ = mixup_batch(x, onehot, alpha=config.mixup_alpha, generator=generator)
        return x_mix, t_mix
    x_adv = adversarial_examples(model, x, config, generator)
    if config.regime == "at":
        return torch.cat([x, x_adv]), torch.cat([onehot, onehot])
    x_clean, t_clean, _ = mixup_batch(x, onehot, alpha=config.mixup_alpha, generator=generator)
    x_adv, t_adv, _ = mixup_batch(x_adv, onehot, alpha=config.mixup_alpha, generator=generator)
    return torch.cat([x_clean, x_adv]), torch.cat([t_clean, t_adv])


# ----------------------------------------------------------------------------------------------
# Training loop


def _check_data(train_x: Tensor, train_y: Tensor, config: TrainConfig) -> None:
    if train_x.dtype != torch.uint8 or train_x.dim() != 4:
        raise ValueError(f"train_x must be a uint8 tensor [N, C, H, W] (got {train_x.dtype} "
                         f"{tuple(train_x.shape)}); pass the dataset's stored uint8 images")
    if train_y.dtype != torch.int64 or train_y.shape != (train_x.shape[0],):
        raise ValueError(f"train_y must be int64 [N] = [{train_x.shape[0]}] (got {train_y.dtype} "
                         f"{tuple(train_y.shape)})")
    if train_x.shape[0] < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set "
                         f"({train_x.shape[0]} images); lower batch_size")


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _num_classes(model: nn.Module, x_uint8: Tensor, device: torch.device) -> int:
    """The model's output width, from one eval-mode forward pass (changes no state, draws nothing)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(to_float(x_uint8[:1].to(device)))
    model.train(was_training)
    return int(out.shape[1])


class _Captured(Exception):
    """Raised by `fit_whitening`'s hook once it holds the whitening layer's input: the rest of the
    forward pass is not needed."""


def fit_whitening(model: nn.Module, train_x_uint8: Tensor, *, seed: int, device: torch.device,
                  n_images: int = WHITENING_IMAGES, eps: float = WHITENING_EPS) -> dict | None:
    """Fit every :class:`networks.PatchWhitening` of ``model`` to the patches it sees on ``n_images``
    training images (a random subset drawn with ``derive_seed(seed, "whitening")``, un-augmented;
    all images if there are fewer), and return the record of the fit for the log and checkpoint
    (None for a model without a whitening layer). The layer's input is captured by a hook, so
    whatever comes before it (the fixed normalisation) is applied as in training; the model is in
    eval mode meanwhile, so no BatchNorm statistic moves."""
    layers = whitening_layers(model)
    if not layers:
        return None
    generator = make_generator(derive_seed(seed, "whitening"))
    n = min(int(n_images), train_x_uint8.shape[0])
    index = torch.randperm(train_x_uint8.shape[0], generator=generator)[:n].sort().values
    x = to_float(train_x_uint8[index.to(train_x_uint8.device)].to(device))
    record: dict[str, Any] = {"images": n, "seed": derive_seed(seed, "whitening"), "eps": eps, "layers": []}
    for layer in layers:
        captured: list[Tensor] = []

        def grab(module: nn.Module, args: tuple) -> None:
            captured.append(args[0].detach().float())
            raise _Captured

        handle = layer.register_forward_pre_hook(grab)
        try:
            with torch.no_grad(), eval_mode(model):
                model(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        record["layers"].append(layer.fit(captured[0], eps=eps))
    return record


def _write_log(log_path: Path, history: list[dict]) -> None:
    """The epoch log as JSON lines, rewritten from the history (so it always matches the checkpoint)."""
    atomic_write_text(log_path, "".join(json.dumps(row) + "\n" for row in history))


def _summary(history: list[dict], config: TrainConfig, resumed_from: int, whitening: dict | None) -> dict:
    last = history[-1]
    seconds = [row["seconds"] for row in history]
    return {
        "whitening": whitening,
        "regime": config.regime,
        "epochs": last["epoch"],
        "final_loss": last["loss"],
        "final_accuracy": last["accuracy"],
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "images_per_second": sum(row["images_per_second"] for row in history) / len(history),
        "resumed_from_epoch": resumed_from,
        "history": history,
    }


def train(model: nn.Module, train_x_uint8: Tensor, train_y: Tensor, config: TrainConfig, *,
          checkpoint_dir: str | Path | None = None, log_path: str | Path | None = None,
          device: str | torch.device | None = None, progress: bool = True) -> dict:
    """Train ``model`` in place on uint8 images [N, C, H, W] and int64 labels [N].

    Args:
        model: a classifier of :func:`networks.build_model` (takes [0, 1] pixels, returns logits).
            Its current weights are the starting point (seed its initialisation yourself).
        train_x_uint8, train_y: the training split; kept as uint8 (on CPU or the device),
            each batch converted to float / 255 on the device.
        config: :class:`TrainConfig`.
        checkpoint_dir: if given, ``checkpoint_dir/last.pt`` is written atomically after every
            epoch (model, optimiser, scheduler and generator states, lookahead average, whitening
            record, epoch, config, history;
            loadable with ``torch.load(weights_only=True)``). If it already exists, training
            resumes from it (ValueError if it was written for another architecture or config;
            ``epochs`` may grow for the step schedule) and returns at once if it is complete.
        log_path: if given, a JSON-lines file with one row per epoch: epoch, loss, accuracy,
            lr (of the epoch's first batch), lr_end (of its last batch), images_per_second,
            seconds, batches.
        device: where to train; default the model's device.
        progress: show a tqdm bar per epoch (loss, accuracy, images/s).

    Loss and accuracy of an epoch are averages over its batches / training inputs; accuracy
    counts a prediction correct when it equals the argmax of its soft target (for AT regimes
    over clean and adversarial inputs alike). images/s counts clean training images.

    Returns:
        dict with whitening (the record of `fit_whitening`, or None), regime, epochs (completed),
        final_loss, final_accuracy, seconds_per_epoch, images_per_second (means over the history),
        resumed_from_epoch and the history.

    Raises:
        TrainingDiverged (a RuntimeError) if the loss becomes NaN or infinite (naming epoch and batch); the last
        checkpoint written is left as it was.
    """
    _check_data(train_x_uint8, train_y, config)
    device = resolve_device(device) if device is not None else _model_device(model)
    model.to(device)
    num_classes = _num_classes(model, train_x_uint8, device)
    if int(train_y.min()) < 0 or int(train_y.max()) >= num_classes:
        raise ValueError(f"train_y must hold labels in [0, {num_classes}) for this model's {num_classes} outputs "
                         f"(got [{int(train_y.min())}, {int(train_y.max())}])")

    generator = make_generator(config.seed)  # CPU: identical draws on every device
    steps_per_epoch = train_x_uint8.shape[0] // config.batch_size
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    # Drawn once per run from their own seeds (not the loop's generator), so a resume redraws them.
    first_flips = None
    if config.augment and config.augmentation == "flip_translate":
        first_flips = torch.rand(train_x_uint8.shape[0], generator=make_generator(
            derive_seed(config.seed, "alternating-flip"))).lt(0.5).to(train_x_uint8.device)
    history: list[dict] = []
    whitening: dict | None = None
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    log_path = Path(log_path) if log_path is not None else None

    start_epoch = 0
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_resumable(ckpt, ckpt_path, model, config)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        generator.set_state(ckpt["generator"])
        whitening = ckpt.get("whitening")
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    else:
        whitening = fit_whitening(model, train_x_uint8, seed=config.seed, device=device)
        if whitening is not None:
            print(f"whitening: fitted on {whitening['images']} training images, patch eigenvalues "
                  + ", ".join(f"{w['eigenvalue_min']:.3g}-{w['eigenvalue_max']:.3g}" for w in whitening["layers"]),
                  file=sys.stderr)
    # Started after the whitening fit: the average of a frozen weight must be the fitted weight.
    lookahead = LookaheadEMA(model, total_steps=config.epochs * steps_per_epoch) if config.lookahead else None
    if lookahead is not None and start_epoch > 0:
        lookahead.load_state_dict(ckpt["lookahead"])

    for epoch in range(start_epoch, config.epochs):
        for layer in whitening_layers(model):  # its bias trains for the first epochs only (airbench94)
            layer.bias.requires_grad_(epoch < config.whiten_bias_epochs)
        row = _train_epoch(model, train_x_uint8, train_y, config, optimizer, scheduler, generator,
                           num_classes=num_classes, epoch=epoch, steps=steps_per_epoch, device=device,
                           ckpt_path=ckpt_path, progress=progress, lookahead=lookahead, first_flips=first_flips)
        history.append(row)
        if ckpt_path is not None:
            atomic_save(checkpoint_state(model, optimizer, scheduler, generator, epoch + 1, config, history,
                                         num_classes, lookahead=lookahead, whitening=whitening), ckpt_path)
        if log_path is not None:
            _write_log(log_path, history)
    if log_path is not None and start_epoch >= config.epochs:
        _write_log(log_path, history)
    model.train()
    return _summary(history, config, start_epoch, whitening)


def host_sync_interval(device: torch.device) -> int:
    """Batches between reads of the loss back to the host: every batch on a CPU (a read costs nothing
    there and a divergence stops before its optimizer step); every 50 on an accelerator, where each
    read would stall the device's queue of kernels."""
    return 1 if device.type == "cpu" else 50


def _train_epoch(model: nn.Module, train_x: Tensor, train_y: Tensor, config: TrainConfig,
                 optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator, *,
                 num_classes: int, epoch: int, steps: int, device: torch.device, ckpt_path: Path | None,
                 progress: bool, lookahead: LookaheadEMA | None = None, first_flips: Tensor | None = None) -> dict:
    """One pass over a fresh permutation of the training set; returns the epoch's log row."""
    model.train()
    order = torch.randperm(train_x.shape[0], generator=generator)[: steps * config.batch_size]
    order = order.view(steps, config.batch_size).to(train_x.device)
    lr_start = optimizer.param_groups[0]["lr"]
    # Loss and accuracy are summed on the device and read back only every `sync_every` batches. The
    # first non-finite loss is remembered on the device, so a divergence is still reported with its
    # batch, and always before the epoch's checkpoint is written.
    sync_every = host_sync_interval(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    bad_loss = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    # Redraw often on a terminal, rarely into a log file (a workflow job's stderr).
    bar = tqdm(total=steps, desc=f"{config.regime} epoch {epoch + 1}/{config.epochs}", unit="batch",
               disable=not progress, leave=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    start = time.perf_counter()
    for batch in range(steps):
        index = order[batch]
        x = to_float(train_x[index].to(device))
        y = train_y[index.to(train_y.device)].to(device)
        if config.augment and config.augmentation == "flip_translate":
            flips = alternating_flips(first_flips[index.to(first_flips.device)], epoch).to(device)
            x = flip_translate(x, flips, translate=TRANSLATE, generator=generator)
        elif config.augment:
            x = random_crop_flip(x, padding=4, generator=generator)
        inputs, targets = _training_batch(model, x, y, num_classes, config, generator)
        logits = model(inputs)
        loss = soft_cross_entropy(logits, targets)
        loss_value = loss.detach().double()
        is_first_bad = (first_bad < 0) & ~torch.isfinite(loss_value)
        first_bad = torch.where(is_first_bad, batch, first_bad)
        bad_loss = torch.where(is_first_bad, loss_value, bad_loss)
        if (batch + 1) % sync_every == 0 or batch + 1 == steps:
            if first_bad.item() >= 0:
                bar.close()
                kept = (f"the last good checkpoint {ckpt_path} is kept" if ckpt_path is not None and ckpt_path.exists()
                        else "no checkpoint was written")
                raise TrainingDiverged(f"training stopped: loss is {bad_loss.item()} at epoch {epoch + 1}/"
                                       f"{config.epochs}, batch {first_bad.item() + 1}/{steps} (regime "
                                       f"{config.regime}, lr {optimizer.param_groups[0]['lr']:.3g}); {kept}; "
                                       "lower lr or check the data")
        lr_end = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if per_batch_schedule(config):
            scheduler.step()
        if lookahead is not None:
            lookahead.step(model, epoch * steps + batch + 1)
        loss_sum += loss_value
        correct += (logits.detach().argmax(1) == targets.argmax(1)).sum()
        seen += targets.shape[0]
        if progress:
            if (batch + 1) % sync_every == 0 or batch + 1 == steps:
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss_sum.item() / (batch + 1):.4f}", acc=f"{correct.item() / seen:.3f}",
                                img_s=f"{(batch + 1) * config.batch_size / max(elapsed, 1e-9):.0f}", refresh=False)
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    bar.close()
    if config.schedule == "step":
        scheduler.step()
    return {
        "epoch": epoch + 1,
        "loss": loss_sum.item() / steps,
        "accuracy": correct.item() / seen,
        "lr": lr_start,
        "lr_end": lr_end,
        "images_per_second": steps * config.batch_size / seconds,
        "seconds": seconds,
        "batches": steps,
    }
