"""The hyperparameters of a training run (`TrainConfig`) and the names they take: the regimes,
schedules, optimisers and augmentations `loop.train` implements (specified in its module
docstring). Its own module so the training loop (loop) and the run's state (state) both
import it without importing each other."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..models.networks import INITS

__all__ = ["ADVERSARIAL_REGIMES", "AUGMENTATIONS", "OPTIMIZERS", "REGIMES", "SCHEDULES", "TrainConfig"]

REGIMES: tuple[str, ...] = ("erm", "mixup", "at", "interpolated_at")
ADVERSARIAL_REGIMES: tuple[str, ...] = ("at", "interpolated_at")  # the regimes that train on PGD examples
SCHEDULES: tuple[str, ...] = ("step", "onecycle", "triangular")
OPTIMIZERS: tuple[str, ...] = ("sgd", "sgd_decoupled")
AUGMENTATIONS: tuple[str, ...] = ("crop_flip", "flip_translate")


# ----------------------------------------------------------------------------------------------
# Configuration


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (defaults: the paper's CIFAR setting, Sec. 4.1).

    Validated on construction; every error is a one-line ValueError naming the field.
    """

    regime: str = "erm"                   # erm | mixup | at | interpolated_at
    epochs: int = 200                     # passes over the training set
    batch_size: int = 64                  # clean images per batch (AT regimes train on 2x this)
    lr: float = 0.01                      # initial lr (step) or max_lr (onecycle, triangular); paper: 0.1 for
                                          # IAT; sgd_decoupled: per 1,024 inputs (airbench94: 11.5)
    momentum: float = 0.9                 # SGD momentum (Nesterov off for sgd, on for sgd_decoupled)
    weight_decay: float = 0.0             # L2 penalty on all parameters (authors: none); sgd_decoupled: per
                                          # 1,024 inputs, independent of lr (airbench94: 0.0153)
    schedule: str = "step"                # step (x0.1 at milestones, per epoch) | onecycle | triangular (per batch)
    milestones: tuple[int, ...] = (100, 150)  # epochs after which the lr is multiplied by 0.1 (step)
    mixup_alpha: float = 1.0              # Beta(alpha, alpha) mixing ratio (mixup, interpolated_at)
    at_eps: float = 8 / 255               # PGD L-inf radius, [0, 1] pixel units (at, interpolated_at)
    at_step_size: float = 2 / 255         # PGD step, pixel units (<= 2 at_eps; FGSM-RS: 1 step of 1.25 at_eps)
    at_steps: int = 10                    # PGD iterations
    augment: bool = True                  # random crop (pad 4) + horizontal flip on tensors
    init: str = "kaiming_fan_out"         # initialisation of the model the workflow builds (models.INITS)
    optimizer: str = "sgd"                # sgd (PyTorch's units) | sgd_decoupled (airbench94's units, Nesterov)
    bias_lr_scale: float = 1.0            # lr multiplier of BatchNorm biases, decay unchanged (airbench94: 64)
    label_smoothing: float = 0.0          # ERM only: targets (1 - s) onehot + s / C (airbench94: 0.2)
    lookahead: bool = False               # airbench94's lookahead EMA of the weights, every 5 steps
    augmentation: str = "crop_flip"       # crop_flip (pad 4) | flip_translate (alternating flip, 2-px shift)
    whiten_bias_epochs: int = 3           # epochs the whitening layer's bias trains (models with one)
    seed: int = 0                         # seeds the single training generator

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {', '.join(REGIMES)} (got {self.regime!r})")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        for name in ("epochs", "batch_size", "at_steps"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0 (got {self.seed!r})")
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0 (got {self.lr!r}); e.g. lr=0.01")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (got {self.momentum!r}); e.g. momentum=0.9")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0 (got {self.weight_decay!r})")
        if not _is_number(self.mixup_alpha) or self.mixup_alpha <= 0:
            raise ValueError(f"mixup_alpha must be a finite number > 0 (got {self.mixup_alpha!r}); paper: 1.0")
        if not _is_number(self.at_eps) or not 0 < self.at_eps <= 1:
            raise ValueError(f"at_eps must be in (0, 1] pixel units (got {self.at_eps!r}); paper: 8/255")
        if not _is_number(self.at_step_size) or not 0 < self.at_step_size <= 2 * self.at_eps:
            raise ValueError(f"at_step_size must be in (0, 2 x at_eps={2 * self.at_eps}] (got {self.at_step_size!r}); "
                             "paper: 2/255 with 10 steps; FGSM with a random start (Wong et al. 2020): 1.25 x at_eps "
                             "with 1 step")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)} (got {self.init!r}); paper: kaiming_fan_out")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be true or false (got {self.augment!r})")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)} (got {self.augmentation!r})")
        if not _is_number(self.bias_lr_scale) or self.bias_lr_scale <= 0:
            raise ValueError(f"bias_lr_scale must be a finite number > 0 (got {self.bias_lr_scale!r}); "
                             "1 = the lr of every other parameter, airbench94: 64")
        if not isinstance(self.lookahead, bool):
            raise ValueError(f"lookahead must be true or false (got {self.lookahead!r})")
        if not _is_int(self.whiten_bias_epochs) or self.whiten_bias_epochs < 0:
            raise ValueError(f"whiten_bias_epochs must be an integer >= 0 (got {self.whiten_bias_epochs!r})")
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1) (got {self.label_smoothing!r}); airbench94: 0.2")
        if self.label_smoothing and self.regime != "erm":
            raise ValueError(f"label_smoothing={self.label_smoothing} applies to regime erm only, not "
                             f"{self.regime!r} (mixup's targets are already soft; AT and interpolated AT keep the "
                             "paper's one-hot targets); set it under training.regimes.erm")
        milestones = self.milestones
        if (not isinstance(milestones, (list, tuple)) or not all(_is_int(m) and m >= 1 for m in milestones)
                or any(a >= b for a, b in zip(milestones, milestones[1:]))):
            raise ValueError(f"milestones must be strictly increasing integer epochs >= 1 (got {milestones!r}); "
                             "e.g. [100, 150]")
        self.milestones = tuple(milestones)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (milestones as a list): JSON- and weights_only-safe."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out
