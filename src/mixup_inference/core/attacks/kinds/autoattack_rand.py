"""AutoAttack's protocol for randomized defenses (Croce and Hein 2020, version='rand'): APGD-CE, then
APGD-DLR on the points it left, each with its gradient averaged over EOT draws of the whole defense
(core.attacks.defended.autoattack_rand). Config: ``robustness.autoattack: {n_iter, eot_iter, n_restarts}``
(the protocol's 100, 20, 1: core.attacks.defended.AUTOATTACK_RAND); one ladder doubling the iterations and the
EOT draws per level. It attacks the randomized defenses; the bare model faces AutoAttack's standard
version (autoattack_standard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..defended import autoattack_rand
from ...utils import derive_seed
from .base import AttackInputs, RobustKind, RobustRun

__all__ = ["AutoAttackRand"]

_POSITIVE = {"$ref": "#/$defs/positive_int"}


class AutoAttackRand(RobustKind):
    name = "autoattack_rand"
    label = "AutoAttack rand through the defense"
    config_key = "autoattack"
    schema = {"type": "object", "additionalProperties": False, "required": ["n_iter", "eot_iter", "n_restarts"],
              "properties": {"n_iter": _POSITIVE, "eot_iter": _POSITIVE, "n_restarts": _POSITIVE}}
    attack_kind = "autoattack"  # its runs are named aa<n_iter>

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        aa = robustness[self.config_key]
        return self.ladder(self.name, targeted=False, steps=int(aa["n_iter"]), eot=int(aa["eot_iter"]),
                           n_samples=n_samples, levels=levels, extras=(("n_restarts", int(aa["n_restarts"])),))

    def restarts(self, run: RobustRun) -> int:
        return int(run.extra("n_restarts"))

    def cost(self, run: RobustRun) -> int:
        """x 2 for APGD-CE then APGD-DLR (an upper bound: APGD-DLR attacks only what APGD-CE left)."""
        return 2 * super().cost(run)

    def threat(self, run: RobustRun, attack: Mapping[str, Any]) -> dict[str, Any]:
        """The config's eps and labels; no step size (APGD adapts its own)."""
        return {**attack, "step_size": None, "targeted": run.targeted}

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        # APGD's random starts come from its own seed (one for every run of the job), its defense draws
        # from the run's generator
        return autoattack_rand(inputs.model, inputs.points, inputs.labels, inputs.defense, inputs.setting,
                               eps=inputs.threat["eps"], n_iter=run.steps, eot_iter=run.eot,
                               n_restarts=self.restarts(run), seed=derive_seed(inputs.seed, "robust-aa"),
                               batch_size=inputs.batch_size, pool=inputs.pool, n_samples=inputs.n_samples,
                               generator=inputs.generator, chunk_size=inputs.chunk_size)

    def family_label(self, family: tuple) -> str:
        return "AutoAttack rand"

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        return {"version": "rand", "package": "pyautoattack (APGD-CE, APGD-DLR with EOT)"}
