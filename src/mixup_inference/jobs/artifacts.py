"""The evaluation artifact: what the evaluate, adaptive and robust jobs write and the report reads.

One file per evaluation (a defense setting scored on one attack's examples), written with
``torch.save`` by :func:`save` and read back with ``torch.load(weights_only=True)`` by :func:`load`.
On disk it is a plain dict (so it loads without this package):

* ``probs``: float32 [n, C], the defended output (softmax averaged over the defense's executions);
* ``plain_probs``: float32 [n, C], the undefended model on the same inputs;
* ``y``: int64 [n], true labels; ``target``: int64 [n], targets of targeted attacks, -1 otherwise;
* ``meta``: the fields of :class:`EvaluationMeta` (:meth:`EvaluationMeta.to_dict`), with the
  robust runs' attack budget (:class:`RobustBudget`) only in the robust jobs' artifacts;
* robust jobs' artifacts only (issue 25): ``attacked``, bool [n], the points this run attacked (a
  cascade attacks only the points every earlier run left; the others were broken before and count as
  broken here; their ``probs`` and ``plain_probs`` rows are NaN, not computed), and
  ``repeat_correct``, bool [R, n], whether each of the R independent verdict runs of the defense
  classified the final example correctly (False where not attacked).

:func:`correct_points` is the one per-point verdict every reader uses: attacked and correct in all R
runs (``argmax(probs) == y`` for the artifacts without these fields).

:class:`Evaluation` is the typed form the jobs build; :func:`check` is the one validation of the
on-disk dict (fields present, shapes consistent, defense and attack kind known), used by
:func:`load`, :meth:`Evaluation.from_dict` and the report's row builders.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.attacks.specs import ADAPTIVE_KINDS
from ..core.defenses.specs import DEFENSES
from ..core.utils import atomic_save
from .points import ATTACK_LABELS

__all__ = ["Evaluation", "EvaluationMeta", "RobustBudget", "RobustSchedule", "check", "correct_points", "expand_paths", "load",
           "repeat_accuracy", "save", "upgrade_meta", "verdict_repeats", "verdict_shares"]

#: Tensor fields every artifact holds (``target`` too since the jobs write it; old test fixtures
#: without it still load).
_TENSORS = ("probs", "plain_probs", "y")
#: Meta fields without a default: what identifies the evaluation besides its attack kind.
_REQUIRED_META = ("dataset", "regime", "attack", "defense", "setting")


@dataclass(frozen=True)
class RobustBudget:
    """The attack budget a robust run records beside its meta (robust job only): the defense's
    executions inside the attack, the L-inf radius, the PGD step (None for AutoAttack, which picks
    its own), the number of restarts (1 for EOT PGD) and ``eot``, the defense draws per gradient (1
    against the bare model). Artifacts from before issue 33 stored the draws as ``n_adaptive``;
    :func:`load` reads them as ``eot``."""

    n_samples_attack: int
    eps: float
    step_size: float | None
    n_restarts: int = 1
    eot: int = 1


@dataclass(frozen=True)
class RobustSchedule:
    """Where a robust run sits in its job's schedule (issue 25): ``cascade`` (it attacked only the
    points that survived every earlier run), ``repeats`` (R verdict runs per final example), its
    ``family`` (the ladder of doublings it belongs to) and ``level`` (0 = the start budget), and
    ``converged``: after this run, whether its family's last doubling changed the worst case by no
    more than the tolerance (None for a run outside a ladder)."""

    cascade: bool = False
    repeats: int = 1
    family: str = ""
    level: int = 0
    converged: bool | None = None


@dataclass(frozen=True)
class EvaluationMeta:
    """The ``meta`` of an evaluation artifact, with the defaults an absent field reads as.

    ``attack``: the attack's name ("clean", "pgd10", "tpgd50", ...); ``adaptive``: one of
    :data:`ADAPTIVE_KINDS` (the paper's adaptive attack of Fig. 4, a robustness-evaluation kind, or none);
    ``n_adaptive``: N_A of Fig. 4's attacks, 0 for any other evaluation (a robust run's EOT draws are
    its budget's ``eot``); ``n_samples``: the defense's executions when evaluating;
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
    schedule: RobustSchedule | None = None

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
            meta |= {"eps": self.robust.eps, "step_size": self.robust.step_size, "n_restarts": self.robust.n_restarts,
                     "eot": self.robust.eot}
        if self.schedule is not None:
            meta |= dataclasses.asdict(self.schedule)
        return meta | {"dataset": self.dataset, "regime": self.regime}

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> EvaluationMeta:
        """The typed meta of an on-disk one (absent optional fields take their defaults; unknown keys are ignored)."""
        names = {field.name for field in dataclasses.fields(cls)} - {"robust", "schedule"}
        robust = schedule = None
        if "n_samples_attack" in meta:
            robust = RobustBudget(**{field.name: meta[field.name] for field in dataclasses.fields(RobustBudget)
                                     if field.name in meta})
        if "family" in meta:
            schedule = RobustSchedule(**{field.name: meta[field.name] for field in dataclasses.fields(RobustSchedule)
                                         if field.name in meta})
        return cls(**{key: value for key, value in meta.items() if key in names}, robust=robust, schedule=schedule)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation artifact (see the module docstring): tensors on the CPU, shapes checked."""

    probs: torch.Tensor
    plain_probs: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    meta: EvaluationMeta
    attacked: torch.Tensor | None = None
    repeat_correct: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_shapes(self.probs, self.plain_probs, self.y, "evaluation")
        if self.target.shape != self.y.shape:
            raise ValueError(f"evaluation: target {tuple(self.target.shape)} must be [n] like y {tuple(self.y.shape)}")
        _check_verdicts(self.attacked, self.repeat_correct, len(self.y), "evaluation")

    def to_dict(self) -> dict[str, Any]:
        """The on-disk layout (what :func:`save` writes); the verdict fields only when present."""
        out = {"probs": self.probs, "plain_probs": self.plain_probs, "y": self.y, "target": self.target,
               "meta": self.meta.to_dict()}
        if self.attacked is not None:
            out |= {"attacked": self.attacked, "repeat_correct": self.repeat_correct}
        return out

    @classmethod
    def from_dict(cls, artifact: dict[str, Any], where: str = "artifact") -> Evaluation:
        """The typed form of an on-disk artifact, after :func:`check` (no ``target``: -1 everywhere)."""
        check(artifact, where)
        target = artifact.get("target")
        return cls(probs=artifact["probs"], plain_probs=artifact["plain_probs"], y=artifact["y"],
                   target=torch.full_like(artifact["y"], -1) if target is None else target,
                   meta=EvaluationMeta.from_dict(artifact["meta"]), attacked=artifact.get("attacked"),
                   repeat_correct=artifact.get("repeat_correct"))


def _check_verdicts(attacked: torch.Tensor | None, repeat_correct: torch.Tensor | None, n: int, where: str) -> None:
    if (attacked is None) != (repeat_correct is None):
        raise ValueError(f"{where}: attacked and repeat_correct come together (robust runs) or not at all")
    if attacked is None:
        return
    if attacked.dtype != torch.bool or attacked.shape != (n,):
        raise ValueError(f"{where}: attacked must be bool [n={n}], got {attacked.dtype} {tuple(attacked.shape)}")
    if repeat_correct.dtype != torch.bool or repeat_correct.ndim != 2 or repeat_correct.shape[1] != n \
            or repeat_correct.shape[0] < 1:
        raise ValueError(f"{where}: repeat_correct must be bool [R >= 1, n={n}], got {repeat_correct.dtype} "
                         f"{tuple(repeat_correct.shape)}")
    if bool((repeat_correct & ~attacked).any()):
        raise ValueError(f"{where}: a point not attacked cannot be correct in a verdict run (it was broken before)")


def correct_points(artifact: dict[str, Any]) -> torch.Tensor:
    """bool [n]: the points an artifact counts as robust. A robust run's (``repeat_correct``): attacked
    by this run and classified correctly by every one of its R verdict runs (a point skipped by a cascade
    was broken by an earlier run); any other artifact: ``argmax(probs) == y``."""
    if artifact.get("repeat_correct") is not None:
        return artifact["attacked"] & artifact["repeat_correct"].all(0)
    return artifact["probs"].argmax(1) == artifact["y"]


def verdict_repeats(artifact: dict[str, Any]) -> int:
    """R, the verdict runs that judged a robust run's final examples (1 for any other artifact)."""
    return int(artifact["repeat_correct"].shape[0]) if artifact.get("repeat_correct") is not None else 1


def verdict_shares(artifact: dict[str, Any]) -> torch.Tensor:
    """float [n]: per point, the share of the verdict runs that classify the final example correctly, where
    this evaluation judged the point: a robust run's attacked points (mean of ``repeat_correct`` over its R
    runs), every point of any other artifact (1 or 0, its one verdict). A point a cascade's run did not
    attack was broken by an earlier evaluation, which judges it: 1 here, so the minimum over a setting's
    evaluations (the mean-over-R worst case, report.aggregate.worst_case_rows) takes the share where the
    point fell."""
    if artifact.get("repeat_correct") is None:
        return correct_points(artifact).float()
    shares = artifact["repeat_correct"].float().mean(0)
    return torch.where(artifact["attacked"], shares, torch.ones_like(shares))


def repeat_accuracy(artifact: dict[str, Any]) -> float:
    """The accuracy averaged over a robust run's R verdict runs (points not attacked count as wrong); for
    other artifacts the accuracy of ``argmax(probs)``."""
    counts = artifact["repeat_correct"] if artifact.get("repeat_correct") is not None else correct_points(artifact)
    return int(counts.sum()) / counts.numel() if counts.numel() else float("nan")


def expand_paths(paths: list[str | os.PathLike]) -> list[str]:
    """Artifact paths, with each robust job's ``schedule.json`` replaced by the artifacts it lists (the
    runs its convergence schedule actually ran; the workflow knows only the schedule's path in advance)."""
    out: list[str] = []
    for path in paths:
        if str(path).endswith(".json"):
            schedule = json.loads(Path(path).read_text())
            out += [str(Path(path).parent / run["file"]) for run in schedule["runs"] if run["ran"]]
        else:
            out.append(str(path))
    return out


def _check_shapes(probs: torch.Tensor, plain: torch.Tensor, y: torch.Tensor, where: str) -> None:
    if probs.ndim != 2 or plain.shape != probs.shape or y.shape != (probs.shape[0],):
        raise ValueError(
            f"{where}: probs {tuple(probs.shape)}, plain_probs {tuple(plain.shape)} and y {tuple(y.shape)} "
            "must be [n, C], [n, C] and [n]"
        )


def check(artifact: Any, where: str = "artifact") -> None:
    """Check an on-disk evaluation artifact: a dict with the tensor fields and the required meta
    fields, consistent shapes, a known defense and attack kind. ValueError says what is wrong."""
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
    _check_verdicts(artifact.get("attacked"), artifact.get("repeat_correct"), len(artifact["y"]), where)


def save(evaluation: Evaluation, path: str | os.PathLike) -> None:
    """Write `evaluation` atomically (utils.atomic_save) in the on-disk layout."""
    atomic_save(evaluation.to_dict(), path)


def upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """An on-disk meta in today's keys: a robust run's meta from before issue 33 (``n_samples_attack``
    without ``eot``) stored its EOT draws as ``n_adaptive``; they move to ``eot`` and ``n_adaptive``
    becomes 0 (Fig. 4's N_A only). Any other meta comes back unchanged."""
    if "n_samples_attack" in meta and "eot" not in meta:
        return {**meta, "eot": int(meta.get("n_adaptive", 1)), "n_adaptive": 0}
    return meta


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one evaluation artifact (``torch.load(weights_only=True)`` on the CPU), its meta in today's
    keys (:func:`upgrade_meta`), and :func:`check` it; returns the on-disk dict, as the report's row
    builders take it."""
    artifact = torch.load(Path(path), weights_only=True, map_location="cpu")
    if isinstance(artifact, dict) and isinstance(artifact.get("meta"), dict):
        artifact["meta"] = upgrade_meta(artifact["meta"])
    check(artifact, where=str(path))
    return artifact
