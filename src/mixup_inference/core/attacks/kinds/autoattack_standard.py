"""AutoAttack's standard version (Croce and Hein 2020, version='standard') against the bare model: APGD-CE,
then APGD-T (targeted DLR), FAB-T and Square, each on the points the earlier ones left; the strongest
attack for a deterministic model, and what the bare model faces where findings compare a defense with it.
Config: ``robustness.autoattack_standard: {n_iter, n_queries}`` (the protocol's 100 and 5,000:
AUTOATTACK_STANDARD); one ladder doubling the iterations (APGD-CE, APGD-T, FAB-T) and Square's queries per
level. A deterministic kind: it attacks only defense ``none`` (`RobustKind.applies_to`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..pgd import check_labels, project_to_ball
from ...checks import check_positive_int
from ..defended import configure_apgd
from ...utils import derive_seed, eval_mode
from .base import AttackInputs, RobustKind, RobustRun

__all__ = ["AUTOATTACK_STANDARD", "AutoAttackStandard", "autoattack_standard"]

#: AutoAttack's version='standard' for L-inf (pyautoattack AutoAttack._set_version): APGD-CE (1 restart),
#: APGD-T and FAB-T over the 9 most likely other classes (1 restart each), Square with 5,000 queries; 100
#: iterations each. `target_classes` is at most the data set's classes - 1.
AUTOATTACK_STANDARD = {"n_iter": 100, "n_queries": 5000, "target_classes": 9}

_POSITIVE = {"$ref": "#/$defs/positive_int"}


def autoattack_standard(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, seed: int, n_iter: int = 100,
                        n_queries: int = 5000, batch_size: int | None = None) -> Tensor:
    """AutoAttack, version='standard' (https://arxiv.org/abs/2003.01690), on a deterministic logits model:
    APGD-CE, APGD-T, FAB-T and Square in sequence, each on the points the earlier ones did not break,
    L-inf radius eps; `n_iter` iterations for the first three, `n_queries` for Square (the defaults are the
    protocol's, AUTOATTACK_STANDARD). The targeted attacks take the min(9, C - 1) most likely other classes;
    with fewer than 4 classes APGD-T is left out (its targeted DLR loss reads the 4 largest logits).

    The reference implementation (PyPI pyautoattack 0.2.0, fra31/auto-attack) runs unchanged except that
    its APGD schedules are reset for n_iter (core.attacks.defended.configure_apgd) and its seeding of torch's
    global generator happens inside torch.random.fork_rng (the caller's state is untouched).

    Returns:
        Detached images [B, C, H, W]: AutoAttack's adversarial example where it found one, else x
        (max |x_adv - x| <= eps, pixels in [0, 1]).
    """
    from pyautoattack import AutoAttack  # optional at import time: only the AutoAttack kinds need it

    check_labels(x, y)
    check_positive_int(n_iter, "n_iter")
    check_positive_int(n_queries, "n_queries")
    x = x.detach()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), eval_mode(model):
        with torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
        targets = min(AUTOATTACK_STANDARD["target_classes"], num_classes - 1)
        attack = AutoAttack(model, norm="Linf", eps=float(eps), version="standard", device=x.device, seed=int(seed))
        if num_classes < 4:  # APGD-T's targeted DLR loss reads the 4 largest logits
            print(f"AutoAttack standard: {num_classes} classes, APGD-T left out (its loss needs at least 4)")
            attack.attacks_to_run = [name for name in attack.attacks_to_run if name != "apgd-t"]
        configure_apgd(attack.apgd, n_iter=n_iter, eot_iter=1, n_restarts=1)
        configure_apgd(attack.apgd_targeted, n_iter=n_iter, eot_iter=1, n_restarts=1)
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = targets
        attack.fab.n_iter = int(n_iter)
        attack.square.n_queries = int(n_queries)
        x_adv, _ = attack.run_standard_evaluation(x, y.to(x.device), batch_size=int(batch_size or x.shape[0]))
    return project_to_ball(x_adv.detach().to(x.dtype), x, eps)


class AutoAttackStandard(RobustKind):
    name = "autoattack_standard"
    label = "AutoAttack standard on the bare model"
    config_key = "autoattack_standard"
    schema = {"type": "object", "additionalProperties": False, "required": ["n_iter", "n_queries"],
              "properties": {"n_iter": _POSITIVE, "n_queries": _POSITIVE}}
    attack_kind = "autoattack"  # its runs are named aa<n_iter>
    deterministic = True

    def runs(self, robustness: Mapping[str, Any], *, levels: int, n_samples: int) -> list[RobustRun]:
        """Level k: 2^k times the start's iterations and Square queries; no EOT draws, no executions inside."""
        section = robustness[self.config_key]
        return [self.run(family=self.name, targeted=False, steps=int(section["n_iter"]) * 2 ** k, eot=1,
                         n_samples_attack=1, level=k, ladder=levels > 1,
                         extras=(("n_queries", int(section["n_queries"]) * 2 ** k),))
                for k in range(levels)]

    def cost(self, run: RobustRun) -> int:
        """APGD-CE's iterations, APGD-T's for each of 9 target classes, FAB-T's for each at 3 forward+backward
        passes (its projection onto the decision boundary; measured 2.6), and Square's queries at one each
        (a forward and its bookkeeping; measured 0.7): pyautoattack 0.2.0 on this project's CPU
        (config/README.md "Budget notes"). An upper bound, as each attack runs only on what the earlier
        ones left."""
        targets = AUTOATTACK_STANDARD["target_classes"]
        return run.steps * (1 + 4 * targets) + int(run.extra("n_queries"))

    def threat(self, run: RobustRun, attack: Mapping[str, Any]) -> dict[str, Any]:
        """The config's eps and labels; no step size (APGD and FAB adapt their own)."""
        return {**attack, "step_size": None, "targeted": run.targeted}

    def craft(self, run: RobustRun, inputs: AttackInputs) -> Tensor:
        # its random starts come from its own seed, as AutoAttack rand's; the model has no draws
        return autoattack_standard(inputs.model, inputs.points, inputs.labels, eps=inputs.threat["eps"],
                                   n_iter=run.steps, n_queries=int(run.extra("n_queries")),
                                   seed=derive_seed(inputs.seed, "robust-aa-standard"), batch_size=inputs.batch_size)

    def family_label(self, family: tuple) -> str:
        return "AutoAttack standard (bare model)"

    def provenance(self, run: RobustRun, attacks: Mapping[str, Any]) -> dict[str, Any]:
        return {"version": "standard", "package": "pyautoattack (APGD-CE, APGD-T, FAB-T, Square)",
                "target_classes": AUTOATTACK_STANDARD["target_classes"]}
