"""The state of a training run apart from the loop: the optimiser, the learning-rate schedule,
the lookahead average of the weights, and the checkpoint a bit-exact resume needs
(`checkpoint_state`, `check_resumable`). The options are specified in `training`'s module
docstring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import TrainConfig

__all__ = ["LookaheadEMA", "TriangularLR", "check_resumable", "checkpoint_state", "inputs_per_step", "make_optimizer",
           "make_scheduler", "per_batch_schedule", "pytorch_hyperparameters"]


# ----------------------------------------------------------------------------------------------
# Optimiser and schedules


def inputs_per_step(config: TrainConfig) -> int:
    """Inputs the loss averages over in one step: the batch, or clean + adversarial for AT regimes."""
    return config.batch_size * (2 if config.regime in ("at", "interpolated_at") else 1)


def pytorch_hyperparameters(config: TrainConfig) -> tuple[float, float]:
    """(lr, decay per step) in PyTorch's units for the mean loss of one batch, where the decay per
    step is what ``torch.optim.SGD`` subtracts as lr x weight_decay x parameter.

    ``sgd``: (lr, lr x weight_decay) as written. ``sgd_decoupled`` (airbench94, after Page's "How
    to train your ResNet" series): with n inputs per step and k = 1024 (1 + 1 / (1 - momentum)),
    (lr n / k, weight_decay n / k). Dividing by 1 + 1 / (1 - m), about the factor by which
    momentum m enlarges the steps under a constant gradient, lets the momentum change without
    retuning lr; giving the decay per step directly (not as a multiple of lr) lets lr change
    without changing the decay; both are per 1,024 inputs, so the batch size can change too.
    airbench94 sums its loss over the batch and uses lr / k; this loop averages it, hence the n."""
    if config.optimizer == "sgd":
        return config.lr, config.lr * config.weight_decay
    n = inputs_per_step(config)
    per_kilo = 1024 * (1 + 1 / (1 - config.momentum))
    return config.lr * n / per_kilo, config.weight_decay * n / per_kilo


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay on all parameters (frozen ones have no gradient and are
    skipped by the step). ``sgd`` with ``bias_lr_scale`` 1: one group, Nesterov off, exactly as
    before the fast recipe. Otherwise two groups, BatchNorm biases at ``bias_lr_scale`` x the lr
    and the rest, with the same decay per step (`pytorch_hyperparameters`); Nesterov on for
    ``sgd_decoupled``."""
    if config.optimizer == "sgd" and config.bias_lr_scale == 1:
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=False)
    lr, decay = pytorch_hyperparameters(config)
    biases = {id(m.bias): m.bias for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    rest = [p for p in model.parameters() if id(p) not in biases]
    groups = [{"params": rest, "lr": lr, "weight_decay": decay / lr}]
    if biases:
        bias_lr = lr * config.bias_lr_scale
        groups.append({"params": list(biases.values()), "lr": bias_lr, "weight_decay": decay / bias_lr})
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.optimizer == "sgd_decoupled")


class TriangularLR:
    """airbench94's learning-rate factor at step s of ``total_steps``: linear from 0.2 at step 0 to
    1 at ``peak`` (23%) of the steps, then linear to 0.07 at the end. A class, not a lambda, so
    ``LambdaLR.state_dict`` keeps it."""

    def __init__(self, total_steps: int, start: float = 0.2, peak: float = 0.23, end: float = 0.07) -> None:
        self.total_steps, self.start, self.end = int(total_steps), float(start), float(end)
        self.warmup = int(self.total_steps * peak)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (1 - self.start) * step / self.warmup
        return 1 - (1 - self.end) * (step - self.warmup) / max(1, self.total_steps - self.warmup)


def per_batch_schedule(config: TrainConfig) -> bool:
    """Whether the scheduler steps once per batch (onecycle, triangular) rather than per epoch (step)."""
    return config.schedule != "step"


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """"step": MultiStepLR(milestones, gamma 0.1), call ``.step()`` once per epoch.
    "onecycle": OneCycleLR(max_lr=lr, total_steps=epochs * steps_per_epoch, cosine, PyTorch's
    defaults pct_start 0.3, div_factor 25, final_div_factor 1e4; momentum not cycled), call
    ``.step()`` once per batch. "triangular": LambdaLR with :class:`TriangularLR` over
    epochs * steps_per_epoch steps (every group's lr scaled alike), once per batch."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=0.1)
    if config.schedule == "triangular":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, TriangularLR(config.epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                               total_steps=config.epochs * steps_per_epoch, cycle_momentum=False)


class LookaheadEMA:
    """airbench94's lookahead: every ``every`` steps, an exponential moving average of the model's
    floating-point state (weights and BatchNorm statistics) moves toward the model with weight
    1 - decay, decay = ``base`` (step / total_steps)^3 (0 early, ~0.77 at the end), and the model
    is set to the average; the last step sets the model to the average whatever its number. Early
    on it changes nothing, late it damps the noise of the last SGD steps, like weight averaging.
    Its tensors are part of the checkpoint (`state_dict`), so a resume continues it exactly."""

    def __init__(self, model: nn.Module, *, total_steps: int, every: int = 5, base: float = 0.95**5) -> None:
        self.total_steps, self.every, self.base = int(total_steps), int(every), float(base)
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, step: int) -> None:
        """Call after optimizer step number ``step`` (1-based) of the run."""
        if step % self.every and step < self.total_steps:
            return
        decay = 1.0 if step >= self.total_steps else self.base * (step / self.total_steps) ** 3
        for key, value in model.state_dict().items():
            if key in self.average:
                self.average[key].lerp_(value, 1 - decay)
                value.copy_(self.average[key])

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.average.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != set(self.average):
            raise ValueError(f"lookahead state has keys {sorted(set(state) ^ set(self.average))[:3]} that the model "
                             "lacks or adds; the checkpoint is for another model")
        for key, value in state.items():
            self.average[key].copy_(value)


# ----------------------------------------------------------------------------------------------
# Checkpoints

#: Values of the TrainConfig fields added after checkpoints already existed, for those checkpoints.
_LATER_FIELDS = {"init": "pytorch", "optimizer": "sgd", "bias_lr_scale": 1.0, "label_smoothing": 0.0,
                 "lookahead": False, "augmentation": "crop_flip", "whiten_bias_epochs": 3}


def check_resumable(ckpt: dict, path: Path, model: nn.Module, config: TrainConfig) -> None:
    """Refuse a checkpoint written for another architecture or another configuration."""
    fix = f"use another checkpoint_dir, or delete {path} to start over"
    own = model.state_dict()
    saved = ckpt["model"]
    if set(saved) != set(own) or any(tuple(saved[k].shape) != tuple(own[k].shape) for k in own):
        missing = sorted(set(own) ^ set(saved))[:3]
        shapes = [k for k in own if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)][:3]
        raise ValueError(f"checkpoint {path} was written for a different model architecture "
                         f"(differing keys {missing}, shapes {shapes}); {fix}")
    old = ckpt["config"]
    if old["regime"] != config.regime:
        raise ValueError(f"checkpoint {path} is from regime {old['regime']!r}, not {config.regime!r}; {fix}")
    new = config.to_dict()
    # More epochs may be added to a step-schedule run; a one-cycle schedule is fixed by its length.
    ignored = {"epochs"} if config.schedule == "step" else set()
    # Checkpoints written before a field existed ran with its value in _LATER_FIELDS.
    old = {**_LATER_FIELDS, **old}
    changed = sorted(k for k in new if k not in ignored and old.get(k) != new[k])
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise ValueError(f"checkpoint {path} was written with a different config ({detail}); {fix}")


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                     generator: torch.Generator, epoch: int, config: TrainConfig, history: list[dict],
                     num_classes: int, *, lookahead: LookaheadEMA | None = None,
                     whitening: dict | None = None) -> dict:
    """Everything a bit-exact resume needs; tensors, numbers, strings, lists and dicts only. The
    whitening layer's fitted weights are in the model's state; `whitening` is the record of the fit."""
    return {
        "lookahead": lookahead.state_dict() if lookahead is not None else None,
        "whitening": whitening,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "config": config.to_dict(),
        "history": history,
        "num_classes": num_classes,
    }
