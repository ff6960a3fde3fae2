"""The robust job's schedule (issue 25): attack runs in a cascade, budgets doubled until the worst case
stops falling.

AutoAttack (Croce and Hein 2020) runs its attacks in sequence, each only on the points that are still
robust: the per-point worst case over the attacks is then exactly what running every attack on every
point gives, at a fraction of the cost, because a point counts as robust only if it survives every
attack and a point broken once stays broken whatever the later attacks do. :func:`run_schedule` does
that for the `robustness:` section's runs (design.plan.robust_runs: level by level, cheapest first within a
level), starting from the points the oblivious evaluations left, and grows each family's budget (Carlini
et al. 2019, "On Evaluating Adversarial Robustness": accuracy must be flat as the attack grows). A family
has **converged** once each of its last two doublings moved the worst case by no more than the
tolerance (one flat doubling can be luck: issue 33), and then stops; its level k runs otherwise.

The schedule is separate from the attacks (a callback), so the decisions are testable without a model,
and the same decisions drive the cascade and the `cascade: false` mode (every run on every point): a
run's "new breaks" are the points it breaks that survived everything before it, in both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["RunOutcome", "ScheduledRun", "run_schedule"]


class ScheduledRun(Protocol):
    """What the schedule reads of a run (core.attacks.kinds.RobustRun has it)."""

    family: str
    level: int
    ladder: bool


@dataclass(frozen=True)
class RunOutcome:
    """What one run of the schedule did.

    Attributes:
        run: the run.  ran: False if its family had converged, so it was skipped.
        attacked: points attacked.  new_broken: points it broke that survived every earlier run.
        survivors: the worst case's correct count after it (None if nothing ran yet).
        converged: ladders only: whether its family's last two doublings, this run and the family's run
            one level below, each broke at most the tolerance (a skipped run's family had: True); None
            otherwise.
    """

    run: Any
    ran: bool
    attacked: int
    new_broken: int
    survivors: int | None
    converged: bool | None

    def as_dict(self) -> dict[str, Any]:
        """The run's fields (`as_dict`) and the outcome's, as schedule.json lists them."""
        return {**self.run.as_dict(), "ran": self.ran, "attacked": self.attacked, "new_broken": self.new_broken,
                "survivors": self.survivors, "converged": self.converged}


def run_schedule(runs: Sequence[ScheduledRun], alive: Tensor, attack: Callable[[Any, Tensor], Tensor], *,
                 cascade: bool, tolerance: float,
                 record: Callable[[Any, Tensor, Tensor, RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Run `runs` in order against one defense setting and return one outcome per run.

    Args:
        runs: design.plan.robust_runs (each with family, level, ladder).
        alive: bool [n] on the attack's device: the points no earlier evaluation broke (the oblivious ones).
        attack: ``attack(run, idx) -> correct`` attacks the points ``idx`` (int64 [m], on alive's device)
            and returns bool [m] on that device: whether each final example survives (all R verdicts).
        cascade: attack only the points still alive (True), or every point (False).
        tolerance: a doubling (a run of level >= 1) is flat when it breaks at most tolerance * n points
            that survived every earlier run; a family converges, and skips its higher levels, once two
            consecutive doublings are flat (so a family needs three levels to converge).
        record: called after each run that ran, ``record(run, idx, correct, outcome)`` (e.g. to write its
            artifact with outcome.converged).

    Returns:
        One `RunOutcome` per run. Per run only two numbers come back from the device (new breaks and
        survivors), which decide whether the family goes on; survivors are selected on the device.
    """
    alive = alive.to(torch.bool).clone()
    n = alive.numel()
    everything = torch.arange(n, device=alive.device)
    converged_families: set[str] = set()
    flat_families: set[str] = set()  # the families whose latest doubling was flat
    survivors = None
    results = []
    for run in runs:
        if run.family in converged_families:
            results.append(RunOutcome(run, ran=False, attacked=0, new_broken=0, survivors=survivors, converged=True))
            continue
        idx = alive.nonzero().squeeze(1) if cascade else everything
        correct_sub = attack(run, idx).to(torch.bool)
        correct = torch.zeros(n, dtype=torch.bool, device=alive.device)
        correct[idx] = correct_sub
        after = alive & correct  # a point survives only if it survives everything so far
        new_broken, survivors = (int(v) for v in torch.stack([(alive & ~after).sum(), after.sum()]).tolist())
        alive = after
        converged = None
        if run.ladder:
            flat = run.level >= 1 and new_broken <= tolerance * n
            converged = flat and run.family in flat_families
            if flat:
                flat_families.add(run.family)
            else:
                flat_families.discard(run.family)
            if converged:
                converged_families.add(run.family)
        result = RunOutcome(run, ran=True, attacked=int(idx.numel()), new_broken=new_broken, survivors=survivors,
                            converged=converged)
        if record is not None:
            record(run, idx, correct_sub, result)
        results.append(result)
    return results
