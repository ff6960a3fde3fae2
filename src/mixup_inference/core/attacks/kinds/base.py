"""The attack-kind spec (`RobustKind`), the run it plans (`RobustRun`), what it attacks (`AttackInputs`),
and the registry (`ROBUST_KINDS`, `register_kind`, `robust_kind`); the package docstring says how they fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..specs import ADAPTIVE_KINDS, AdaptiveSpec, AttackName
from ...defenses.specs import DEFENSES

__all__ = ["ROBUST_KINDS", "AttackInputs", "RobustKind", "RobustRun", "register_kind", "robust_kind"]


@dataclass(frozen=True)
class RobustRun:
    """One attack run of a robust job (design.plan.robust_runs lists them, cheapest first).

    Attributes:
        kind: its `RobustKind`'s name.  attack: its attack name (``pgd10``, ``tpgd10``, ``aa100``).
        targeted: toward the run's targets (True) or away from the labels (False).
        steps: attack steps (AutoAttack: iterations).  eot: defense draws per gradient (1 for a kind that
            attacks a deterministic model).
        n_samples_attack: executions inside the defense while attacking (1 for a deterministic model).
        family: the ladder it belongs to.  level: 0 = the configured start budget, k = 2^k times it.
        ladder: whether its family doubles (convergence.levels > 1).
        cost: forward+backward passes of one model image per attacked point (`RobustKind.cost`; the
            cascade runs each level's runs cheapest first).
        file: its artifact inside the robust job's directory.
        extras: the kind's own parameters as (key, value) pairs, e.g. AutoAttack's n_restarts.
    """

    kind: str
    attack: str
    targeted: bool
    steps: int
    eot: int
    n_samples_attack: int
    family: str
    level: int
    ladder: bool
    cost: int
    file: str
    extras: tuple[tuple[str, Any], ...] = ()

    def extra(self, key: str) -> Any:
        """One of the kind's own parameters; a KeyError names the run's."""
        for name, value in self.extras:
            if name == key:
                return value
        raise KeyError(f"{self.kind} run {self.attack} has no parameter {key!r}; it has {[k for k, _ in self.extras]}")

    def as_dict(self) -> dict[str, Any]:
        """The run as plain values (provenance, schedule.json): the shared fields, the kind's own after eot."""
        return {"kind": self.kind, "targeted": self.targeted, "steps": self.steps, "eot": self.eot,
                **dict(self.extras), "n_samples_attack": self.n_samples_attack, "family": self.family,
                "level": self.level, "ladder": self.ladder, "attack": self.attack, "cost": self.cost,
                "file": self.file}


@dataclass(frozen=True)
class AttackInputs:
    """What one robust run attacks, as the robust job hands it to `RobustKind.craft`.

    Attributes:
        model: the eval model (the defense wraps it).  x: all n points of the job [n, C, H, W] on the device.
        idx: the points this run attacks (int64 [m] on the device; a cascade's survivors).
        labels: [m] on the device: the targets of a targeted run, else what it pushes away from.
        threat: the run's eps, step_size and labels (`RobustKind.threat`).
        defense, setting: the defense the job evaluates.  pool: the MI pool on the device.
        n_samples: executions inside the defense while attacking (the run's n_samples_attack).
        batch_size: images per gradient, already divided by the executions inside the defense.
        chunk_size: the defense's chunk size.  generator: the run's generator on the device (its
            defense draws).  seed: the config seed.  name: the names of the run's generators
            (kind, attack, eot, defense, setting), for the kind's own generators.
    """

    model: nn.Module
    x: Tensor
    idx: Tensor
    labels: Tensor
    threat: Mapping[str, Any]
    defense: str
    setting: str
    pool: tuple[Tensor, Tensor]
    n_samples: int
    batch_size: int
    chunk_size: int | None
    generator: torch.Generator
    seed: int
    name: tuple[object, ...]

    @property
    def points(self) -> Tensor:
        """The attacked images [m, C, H, W]."""
        return self.x[self.idx]


class RobustKind:
    """One attack kind of the robustness evaluation; subclass it, set the class attributes, and
    override `runs` and `craft` (the rest has defaults).

    Attributes:
        name: the value in ``robustness.kinds``, results.csv's ``adaptive`` column, artifact file names.
        label: how findings and the provenance name it (`attacks.specs.AdaptiveSpec.label`).
        config_key: its sub-section of ``robustness:`` (None: it reads none).
        schema: that sub-section's JSON schema (the config schema's fragment; None without one).
        attack_kind: the attack method (an `attacks.specs.ATTACKS` key) whose names its runs carry (``pgd`` -> pgd10).
        fixed: a published attack with fixed parameters: one run, no ladder; Fig. 5 draws it as a
            dash-dotted level after the ladders.
        deterministic: which targets it attacks (`applies_to`): False, a randomized defense (EOT over its
            draws: AutoAttack rand, EOT PGD, Tramer et al.'s); True, a deterministic model, i.e. the bare
            model (defense ``none``), which the strongest attacks for a deterministic model face
            (AutoAttack standard, PGD). A robust job runs only the kinds that apply to its target.
    """

    name: str = ""
    label: str = ""
    config_key: str | None = None
    schema: Mapping[str, Any] | None = None
    attack_kind: str = "pgd"
    fixed: bool = False
    deterministic: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ---------------------------------------------------------------- the plan
    def applies_to(self, defense: str) -> bool:
        """Whether a robust job of `defense` runs this kind: a randomized-defense kind attacks the randomized
        defenses, a deterministic kind the deterministic ones (the bare model); the other is skipped."""
        return DEFENSES[defense].randomized != self.deterministic

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        """Its runs for the config's ``robustness:`` section: levels 0..`levels`-1 of each family
        (`levels` = convergence.levels), `n_samples` executions inside the defense at level 0."""
        raise NotImplementedError(f"attack kind {self.name!r} must define runs()")

    def at_level(self, steps: int, eot: int, n_samples: int, level: int) -> tuple[int, int, int]:
        """(steps, EOT draws, executions inside the defense) at budget level `level` from the start's: the
        steps and the EOT draws double per level (Carlini et al. 2019: accuracy must be flat as the attack
        grows); the executions inside the defense stay the configured ones (the EOT draws already average
        the defense's randomness; doubling both would make a level cost 4x the one below). A deterministic
        kind has no draws to double: its `eot` stays 1."""
        scale = 2 ** level
        return steps * scale, eot if self.deterministic else eot * scale, n_samples

    def ladder(self, family: str, *, targeted: bool, steps: int, eot: int, n_samples: int, levels: int,
               extras: tuple[tuple[str, Any], ...] = ()) -> list[RobustRun]:
        """One family's runs at levels 0..levels-1 (`at_level`); it doubles only if levels > 1."""
        return [self.run(family=family, targeted=targeted, steps=s, eot=e, n_samples_attack=n, level=k,
                         ladder=levels > 1, extras=extras)
                for k in range(levels) for s, e, n in [self.at_level(steps, eot, n_samples, k)]]

    def run(self, *, family: str, targeted: bool, steps: int, eot: int, n_samples_attack: int, level: int = 0,
            ladder: bool = False, extras: tuple[tuple[str, Any], ...] = ()) -> RobustRun:
        """A run of this kind, with its attack name, cost and artifact file."""
        attack = AttackName(self.attack_kind, targeted, steps).name
        run = RobustRun(kind=self.name, attack=attack, targeted=targeted, steps=steps, eot=eot,
                        n_samples_attack=n_samples_attack, family=family, level=level, ladder=ladder, cost=0,
                        file=f"{self.name}-{attack}-e{eot}.pt", extras=extras)
        return replace(run, cost=self.cost(run))

    def restarts(self, run: RobustRun) -> int:
        """Restarts per attacked point (recorded in the artifact's budget)."""
        return 1

    def cost(self, run: RobustRun) -> int:
        """Forward+backward passes of one model image per attacked point: steps x EOT draws x executions
        inside the defense x restarts (the cascade runs each level's runs cheapest first; config/README.md
        "Budget notes" turns it into core-seconds)."""
        return run.steps * run.eot * run.n_samples_attack * self.restarts(run)

    def check(self, robustness: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Raise ValueError (naming the config key and the fix) for values of the section that are valid
        one by one but wrong together for this kind (configcheck.check_config)."""

    # ---------------------------------------------------------------- the robust job
    def threat(self, run: RobustRun, attack: Mapping[str, Any]) -> dict[str, Any]:
        """The run's eps, step_size (None where the attack picks its own), labels and targeted: the
        config's `attacks:` threat model unless the kind brings its own."""
        return {**attack, "targeted": run.targeted}

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        """The adversarial images [m, C, H, W] of the points `inputs.idx` (max |x_adv - x| <= eps, in [0, 1]).
        Randomness: `inputs.generator` and generators named by `inputs.name`, never the global RNG."""
        raise NotImplementedError(f"attack kind {self.name!r} must define craft()")

    # ---------------------------------------------------------------- the report
    def family(self, row: Mapping[str, Any]) -> tuple:
        """The ladder of a results.csv row of this kind (Fig. 5 draws one line per family)."""
        return (self.name,)

    def family_label(self, family: tuple) -> str:
        """How Fig. 5's legend names a family of this kind."""
        return self.label

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        """What the provenance adds to the run's budget (its source, version, the step size it used)."""
        return {}


#: Kind name -> spec, in the order the robust job lists them (registration order).
ROBUST_KINDS: dict[str, RobustKind] = {}


def register_kind(kind: RobustKind) -> RobustKind:
    """Add an attack kind to the robustness evaluation (and to `attacks.specs.ADAPTIVE_KINDS` with rule
    ``robust``): the schema, the planner, the robust job, the plots and the provenance accept it."""
    if not kind.name or kind.name in ADAPTIVE_KINDS or kind.name in ROBUST_KINDS:
        raise ValueError(f"attack kind {kind.name!r} must be a new name (taken: {', '.join(ADAPTIVE_KINDS)})")
    if (kind.config_key is None) != (kind.schema is None):
        raise ValueError(f"attack kind {kind.name!r}: give both config_key and schema, or neither")
    if kind.config_key and any(other.config_key == kind.config_key for other in ROBUST_KINDS.values()):
        raise ValueError(f"attack kind {kind.name!r}: config_key {kind.config_key!r} is another kind's section")
    ROBUST_KINDS[kind.name] = kind
    ADAPTIVE_KINDS[kind.name] = AdaptiveSpec(kind.name, kind.label, "robust")
    return kind


def robust_kind(name: str) -> RobustKind:
    """The spec of the kind `name`; a ValueError naming the registered kinds for any other."""
    if name not in ROBUST_KINDS:
        raise ValueError(f"robustness kind {name!r} is unknown; use one of {', '.join(ROBUST_KINDS)}, or register "
                         "it (core.attacks.kinds.register_kind)")
    return ROBUST_KINDS[name]

