"""The state of a training run apart from the loop: the optimiser, the learning-rate schedule,
and the checkpoint a bit-exact resume needs (`checkpoint_state`, `check_resumable`). The
schedules are specified in `training`'s module docstring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # training imports this module; TrainConfig is only an annotation here
    from .training import TrainConfig

__all__ = ["check_resumable", "checkpoint_state", "make_optimizer", "make_scheduler"]


# ----------------------------------------------------------------------------------------------
# Optimiser and schedules


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum (Nesterov off) and weight decay on all parameters."""
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=False)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """"step": MultiStepLR(milestones, gamma 0.1), call ``.step()`` once per epoch.
    "onecycle": OneCycleLR(max_lr=lr, total_steps=epochs * steps_per_epoch, cosine, PyTorch's
    defaults pct_start 0.3, div_factor 25, final_div_factor 1e4; momentum not cycled), call
    ``.step()`` once per batch."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=0.1)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                               total_steps=config.epochs * steps_per_epoch, cycle_momentum=False)


# ----------------------------------------------------------------------------------------------
# Checkpoints


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
    # Checkpoints written before `init` existed used PyTorch's default initialisation.
    old = {"init": "pytorch", **old}
    changed = sorted(k for k in new if k not in ignored and old.get(k) != new[k])
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise ValueError(f"checkpoint {path} was written with a different config ({detail}); {fix}")


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                generator: torch.Generator, epoch: int, config: TrainConfig, history: list[dict],
                num_classes: int) -> dict:
    """Everything a bit-exact resume needs; tensors, numbers, strings, lists and dicts only."""
    return {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "config": config.to_dict(),
        "history": history,
        "num_classes": num_classes,
    }
