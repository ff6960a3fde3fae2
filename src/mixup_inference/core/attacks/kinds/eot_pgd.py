"""EOT PGD through the whole defense (Athalye et al. 2018; core.attacks.defended.eot_pgd_through_defense).
Config: ``robustness.eot_pgd: {steps, eot, targeted}``, lists swept: one family per (targeted, steps,
EOT draws), each a ladder doubling the steps and the EOT draws per level. The step size and eps are the
config's `attacks:`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..defended import eot_pgd_through_defense
from ...utils import derive_seed, make_generator
from .base import AttackInputs, RobustKind, RobustRun

__all__ = ["EotPgd", "pgd_through"]

_STARTS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/positive_int"}}


def pgd_through(run: RobustRun, inputs: AttackInputs, defense: str, setting: str) -> Tensor:
    """EOT PGD with the run's steps, draws and direction through (`defense`, `setting`), in batches of
    inputs.batch_size // eot points. Its random start is one U[-1, 1] draw per point of the whole job
    (generator `robust-start` of the run), indexed by point, so a point's start does not depend on
    which other points a cascade attacks with it."""
    x, device = inputs.x, inputs.x.device
    start_gen = make_generator(derive_seed(inputs.seed, "robust-start", *inputs.name), device)
    start = (torch.rand(tuple(x.shape), generator=start_gen, device=device, dtype=x.dtype) * 2 - 1)[inputs.idx]
    points, labels = inputs.points, inputs.labels
    size = max(1, inputs.batch_size // run.eot)
    return torch.cat([
        eot_pgd_through_defense(inputs.model, points[s], labels[s], defense, setting, eot=run.eot,
                                eps=inputs.threat["eps"], step_size=inputs.threat["step_size"], steps=run.steps,
                                targeted=run.targeted, start=start[s], pool=inputs.pool, n_samples=inputs.n_samples,
                                generator=inputs.generator, chunk_size=inputs.chunk_size)
        for s in (slice(i, i + size) for i in range(0, len(points), size))
    ])


class EotPgd(RobustKind):
    name = "eot_pgd"
    label = "EOT PGD through the defense"
    config_key = "eot_pgd"
    schema = {"type": "object", "additionalProperties": False, "required": ["steps", "eot", "targeted"],
              "properties": {"steps": _STARTS, "eot": _STARTS,
                             "targeted": {"type": "array", "minItems": 1, "uniqueItems": True,
                                          "items": {"type": "boolean"}}}}

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        section = robustness[self.config_key]
        return [run
                for targeted in section["targeted"] for steps in section["steps"] for draws in section["eot"]
                for run in self.ladder(f"{self.name}-{'t' if targeted else ''}pgd{int(steps)}-e{int(draws)}",
                                       targeted=bool(targeted), steps=int(steps), eot=int(draws),
                                       n_samples=n_samples, levels=levels)]

    def check(self, robustness: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        levels = (robustness.get("convergence") or {}).get("levels", 1)
        section = robustness[self.config_key]
        if levels > 1 and (len(section["steps"]) > 1 or len(section["eot"]) > 1):
            raise ValueError(f"robustness.convergence.levels={levels} doubles EOT PGD's budget from one start: give "
                             f"robustness.eot_pgd.steps and .eot one value each (got {section['steps']} and "
                             f"{section['eot']}), or set convergence.levels: 1 to sweep them")

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        return pgd_through(run, inputs, inputs.defense, inputs.setting)

    def family(self, row: Mapping[str, Any]) -> tuple:
        """(kind, targeted, start steps, start draws): level k has 2^k times the start's steps and draws."""
        scale = 2 ** int(row["level"])
        return (self.name, bool(row["targeted"]), int(row["steps"]) // scale, int(row["eot"]) // scale)

    def family_label(self, family: tuple) -> str:
        _, targeted, steps, draws = family
        return f"EOT {'tPGD' if targeted else 'PGD'}-{steps}, {draws} draw{'s' if draws > 1 else ''} (start)"

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        return {"step_size": attacks.get("step_size")}
