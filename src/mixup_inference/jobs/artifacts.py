"""The evaluation artifact: what the evaluate, adaptive and robust jobs write and the report reads.

One file per evaluation (a defense setting scored on one attack's examples), written with
``torch.save`` by :func:`save` and read back with ``torch.load(weights_only=True)`` by :func:`load`.
On disk it is a plain dict (so it loads without this package):

* ``probs``: float32 [n, C], the defended output (softmax averaged over the defense's executions);
* ``plain_probs``: float32 [n, C], the undefended model on the same inputs;
* ``y``: int64 [n], true labels; ``target``: int64 [n], targets of targeted attacks, -1 otherwise;
* ``meta``: the fields of :class:`EvaluationMeta` (:meth:`EvaluationMeta.to_dict`), with the
  robust runs' attack budget (:class:`RobustBudget`) only in the robust jobs' artifacts.

:class:`Evaluation` is the typed form the jobs build; :func:`check` is the one validation of the
on-disk dict (fields present, shapes consistent, defense and adaptive kind known), used by
:func:`load`, :meth:`Evaluation.from_dict` and the report's row builders.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.attack_specs import ADAPTIVE_KINDS
from ..core.defense_specs import DEFENSES
from ..core.utils import atomic_save
from .points import ATTACK_LABELS

__all__ = ["Evaluation", "EvaluationMeta", "RobustBudget", "check", "load", "save"]

#: Tensor fields every artifact holds (``target`` too since the jobs write it; old test fixtures
#: without it still load).
_TENSORS = ("probs", "plain_probs", "y")
#: Meta fields without a default: what identifies the evaluation besides its adaptive kind.
_REQUIRED_META = ("dataset", "regime", "attack", "defense", "setting")


@dataclass(frozen=True)
class RobustBudget:
    """The attack budget a robust run records beside its meta (robust job only): the defense's
    executions inside the attack, the L-inf radius, the PGD step (None for AutoAttack, which picks
    its own) and the number of restarts (1 for EOT PGD)."""

    n_samples_attack: int
    eps: float
    step_size: float | None
    n_restarts: int = 1


@dataclass(frozen=True)
class EvaluationMeta:
    """The ``meta`` of an evaluation artifact, with the defaults an absent field reads as.

    ``attack``: the attack's name ("clean", "pgd10", "tpgd50", ...); ``adaptive``: one of
    :data:`ADAPTIVE_KINDS`; ``n_adaptive``: N_A of Fig. 4's attacks, the EOT draws of a robust run,
    0 for an oblivious evaluation; ``n_samples``: the defense's executions when evaluating;
    ``labels``: what untargeted attacks pushed away from (:data:`points.ATTACK_LABELS`; artifacts
    without it predate the option and used the clean prediction); ``robust``: the robust runs'
    attack budget, None for the other jobs."""

    dataset: str
    regime: str
    attack: str
    defense: str
    setting: str
    adaptive: str = "none"
    n_adaptive: int = 0
    n_samples: int | None = None
    labels: str = "prediction"
    robust: RobustBudget | None = None

    def __post_init__(self) -> None:
        if self.defense not in DEFENSES:
            raise ValueError(f"meta defense={self.defense!r} is not one of {tuple(DEFENSES)}")
        if self.adaptive not in ADAPTIVE_KINDS:
            raise ValueError(f"meta adaptive={self.adaptive!r} is not one of {tuple(ADAPTIVE_KINDS)}")
        if self.labels not in ATTACK_LABELS:
            raise ValueError(f"meta labels={self.labels!r} is not one of {ATTACK_LABELS}")

    def to_dict(self) -> dict[str, Any]:
        """The on-disk meta, in the order the jobs have always written it (the robust budget's
        fields only when present; dataset and regime last)."""
        meta: dict[str, Any] = {"defense": self.defense, "setting": self.setting, "adaptive": self.adaptive,
                                "n_adaptive": self.n_adaptive, "n_samples": self.n_samples}
        if self.robust is not None:
            meta["n_samples_attack"] = self.robust.n_samples_attack
        meta |= {"attack": self.attack, "labels": self.labels}
        if self.robust is not None:
            meta |= {"eps": self.robust.eps, "step_size": self.robust.step_size, "n_restarts": self.robust.n_restarts}
        return meta | {"dataset": self.dataset, "regime": self.regime}

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> EvaluationMeta:
        """The typed meta of an on-disk one (absent optional fields take their defaults; unknown keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)} - {"robust"}
        robust = None
        if "n_samples_attack" in meta:
            robust = RobustBudget(**{field.name: meta[field.name] for field in dataclasses.fields(RobustBudget)
                                     if field.name in meta})
        return cls(**{key: value for key, value in meta.items() if key in names}, robust=robust)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation artifact (see the module docstring): tensors on the CPU, shapes checked."""

    probs: torch.Tensor
    plain_probs: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    meta: EvaluationMeta

    def __post_init__(self) -> None:
        _check_shapes(self.probs, self.plain_probs, self.y, "evaluation")
        if self.target.shape != self.y.shape:
            raise ValueError(f"evaluation: target {tuple(self.target.shape)} must be [n] like y {tuple(self.y.shape)}")

    def to_dict(self) -> dict[str, Any]:
        """The on-disk layout (what :func:`save` writes)."""
        return {"probs": self.probs, "plain_probs": self.plain_probs, "y": self.y, "target": self.target,
                "meta": self.meta.to_dict()}

    @classmethod
    def from_dict(cls, artifact: dict[str, Any], where: str = "artifact") -> Evaluation:
        """The typed form of an on-disk artifact, after :func:`check` (no ``target``: -1 everywhere)."""
        check(artifact, where)
        target = artifact.get("target")
        return cls(probs=artifact["probs"], plain_probs=artifact["plain_probs"], y=artifact["y"],
                   target=torch.full_like(artifact["y"], -1) if target is None else target,
                   meta=EvaluationMeta.from_dict(artifact["meta"]))


def _check_shapes(probs: torch.Tensor, plain: torch.Tensor, y: torch.Tensor, where: str) -> None:
    if probs.ndim != 2 or plain.shape != probs.shape or y.shape != (probs.shape[0],):
        raise ValueError(
            f"{where}: probs {tuple(probs.shape)}, plain_probs {tuple(plain.shape)} and y {tuple(y.shape)} "
            "must be [n, C], [n, C] and [n]"
        )


def check(artifact: Any, where: str = "artifact") -> None:
    """Check an on-disk evaluation artifact: a dict with the tensor fields and the required meta
    fields, consistent shapes, a known defense and adaptive kind. ValueError says what is wrong."""
    if not isinstance(artifact, dict):
        raise ValueError(f"{where}: an evaluation artifact must be a dict, got {type(artifact).__name__}")
    missing = [key for key in (*_TENSORS, "meta") if key not in artifact]
    if missing:
        raise ValueError(f"{where}: evaluation artifact lacks {missing}; rerun the job that wrote it")
    meta = artifact["meta"]
    missing = [key for key in _REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"{where}: artifact meta lacks {missing}")
    _check_shapes(artifact["probs"], artifact["plain_probs"], artifact["y"], where)
    if meta["defense"] not in DEFENSES:
        raise ValueError(f"{where}: meta defense={meta['defense']!r} is not one of {tuple(DEFENSES)}")
    if meta.get("adaptive", "none") not in ADAPTIVE_KINDS:
        raise ValueError(f"{where}: meta adaptive={meta['adaptive']!r} is not one of {tuple(ADAPTIVE_KINDS)}")


def save(evaluation: Evaluation, path: str | os.PathLike) -> None:
    """Write `evaluation` atomically (utils.atomic_save) in the on-disk layout."""
    atomic_save(evaluation.to_dict(), path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one evaluation artifact (``torch.load(weights_only=True)`` on the CPU) and :func:`check`
    it; returns the on-disk dict, as the report's row builders take it."""
    artifact = torch.load(Path(path), weights_only=True, map_location="cpu")
    check(artifact, where=str(path))
    return artifact
