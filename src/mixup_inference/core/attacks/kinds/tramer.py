"""Tramer, Carlini, Brendel and Madry (2020)'s attack on interpolated AT + MI-OL: PGD-50 with step
0.5/255 in an eps = 8/255 ball, away from the true labels, through MI-OL (lambda 0.6, 15 samples)
whatever defense the job evaluates (core.attacks.defended.TRAMER_2020). A published attack with fixed
parameters: one run, no ladder, no config keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..defended import TRAMER_2020
from .base import AttackInputs, RobustKind, RobustRun
from .eot_pgd import pgd_through

__all__ = ["Tramer"]


class Tramer(RobustKind):
    name = "tramer"
    label = "Tramer et al. 2020 (PGD-50 through MI-OL, 15 samples)"
    fixed = True

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        own = tuple((key, TRAMER_2020[key]) for key in ("step_size", "eps", "labels", "defense", "setting"))
        return [self.run(family=self.name, targeted=False, steps=TRAMER_2020["steps"], eot=TRAMER_2020["eot"],
                         n_samples_attack=TRAMER_2020["n_samples"], extras=own)]

    def check(self, robustness: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        eps = config["attacks"]["eps"]
        if abs(float(eps) - TRAMER_2020["eps"]) > 1e-4:
            raise ValueError(f"robustness.kinds names tramer, Tramer et al.'s attack at eps 8/255, but attacks.eps="
                             f"{eps}: drop tramer from robustness.kinds or set attacks.eps: 0.0313725")

    def threat(self, run: RobustRun, attack: Mapping[str, Any]) -> dict[str, Any]:
        """Their eps, step size and true labels, not the config's."""
        return {**attack, **{key: run.extra(key) for key in ("eps", "step_size", "labels")}, "targeted": run.targeted}

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        return pgd_through(run, inputs, run.extra("defense"), run.extra("setting"))

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        return {"source": "Tramer et al. 2020, wielandbrendel/adaptive_attacks_paper 10_mixup"}
