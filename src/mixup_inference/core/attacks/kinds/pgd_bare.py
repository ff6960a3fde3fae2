"""PGD on the bare model at Tramer et al. (2020)'s step size (0.5/255): the counterpart, for a deterministic
model, of their PGD-50 through MI-OL, so that the bare model faces a fine-stepped long PGD as the
defenses do. Config: ``robustness.pgd_bare: {steps}`` (the start); one ladder doubling the steps per level
(e.g. 13 -> 26 -> 52: a PGD-50 at the top of three levels). eps and the labels are the config's
`attacks:`, as EOT PGD's. A deterministic kind: it attacks only defense ``none`` (`RobustKind.applies_to`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..defended import TRAMER_2020
from .base import AttackInputs, RobustKind, RobustRun
from .eot_pgd import pgd_through

__all__ = ["PgdBare"]


class PgdBare(RobustKind):
    name = "pgd_bare"
    label = "PGD at Tramer et al.'s step size on the bare model"
    config_key = "pgd_bare"
    schema = {"type": "object", "additionalProperties": False, "required": ["steps"],
              "properties": {"steps": {"$ref": "#/$defs/positive_int"}}}
    deterministic = True

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        """One ladder from the configured steps, one execution of the model per step (no draws)."""
        return self.ladder(self.name, targeted=False, steps=int(robustness[self.config_key]["steps"]), eot=1,
                           n_samples=1, levels=levels)

    def threat(self, run: RobustRun, attack: Mapping[str, Any]) -> dict[str, Any]:
        """The config's eps and labels, Tramer et al.'s step size."""
        return {**attack, "step_size": TRAMER_2020["step_size"], "targeted": run.targeted}

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        # the bare model through the one code path of the robust PGD runs (defense none: the model's softmax,
        # the NLL of its log is the cross entropy), with the same per-point random starts
        return pgd_through(run, inputs, inputs.defense, inputs.setting)

    def family_label(self, family: tuple) -> str:
        return f"PGD, step {TRAMER_2020['step_size'] * 255:g}/255 (bare model)"

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        return {"step_size": TRAMER_2020["step_size"], "source": "Tramer et al. 2020's step size"}
