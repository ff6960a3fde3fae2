"""The robust job: the robustness evaluation of one defense setting (issue 25; the `robust` rule).

The attack runs of the config's `robustness:` section that apply to the target (design.plan.robust_runs;
each run's kind, a core.attacks.kinds spec, crafts it: the randomized-defense kinds against a defense, the
deterministic kinds against the bare model) go in a cascade (jobs.cascade.run_schedule), budgets doubled
until the worst case stops falling, and every final example is judged by R verdict runs of the defense
(one for the bare model, whose verdicts cannot differ).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from ..core.attacks.kinds import AttackInputs, RobustRun, robust_kind
from ..core.defenses.averaging import predict_probs
from ..core.attacks.defended import repeated_verdicts
from ..core.defenses.specs import DEFENSES
from ..core.utils import atomic_write_text, derive_seed, make_generator
from . import artifacts
from .artifacts import Evaluation, EvaluationMeta, RobustBudget, RobustSchedule
from .batching import batches
from .cascade import RunOutcome, run_schedule
from .context import AttackedPoints, JobContext, load_attacked_points
from ..design.plan import robust_options, robust_runs, verdict_repeats

__all__ = ["run_robust"]

#: The keys of each run that schedule.json lists, in its order.
_SCHEDULE_KEYS = ("file", "kind", "attack", "targeted", "steps", "eot", "n_samples_attack", "family", "level", "ladder",
                  "cost", "ran", "attacked", "new_broken", "survivors", "converged")


def _surviving(points: AttackedPoints, oblivious: Sequence[str | os.PathLike]) -> torch.Tensor:
    """bool [n] on the device: the points every oblivious evaluation of the setting left (the cascade's
    first step), after checking each holds this job's points."""
    n = len(points.y)
    alive = torch.ones(n, dtype=torch.bool, device=points.device)
    for path in oblivious:
        artifact = artifacts.load(path)
        if len(artifact["y"]) < n or not torch.equal(artifact["y"][:n], points.y):
            raise ValueError(f"{path}: the oblivious evaluation holds other points than this job; rerun it from "
                             "the same data and config")
        alive &= artifacts.correct_points(artifact)[:n].to(points.device)
    return alive


def run_robust(data_path: str, model_path: str, out_dir: str | os.PathLike, *, target: tuple[str, str, str, str],
               robustness: dict, attack: dict, job: JobContext,
               oblivious: Sequence[str | os.PathLike] = ()) -> list[RunOutcome]:
    """The robustness evaluation of one defense setting or bare model (issue 25, 33): the attack runs of
    `robustness` that apply to it (plan.robust_runs: level by level, cheapest first within a level) in a
    cascade, with budgets doubled until the worst case stops falling (jobs.cascade.run_schedule) and every
    final example judged by R verdict runs.

    `target`: (dataset, regime, defense, setting), as plan.robust_targets lists them. `attack`: the
    config's threat model (eps, step_size, labels); a kind may bring its own (`RobustKind.threat`).
    `job`: the shared job settings (n_samples = N, n_subset, pool_per_class, batch and chunk sizes,
    seed, device, speed).

    Points: the first robustness["n_test"] of the run's test subset (so they are among the oblivious
    evaluation's points). The cascade starts from the points that survive every oblivious evaluation of
    this setting (`oblivious`: their artifacts, the evaluate jobs'); each run attacks only the points every
    earlier run left (`cascade: false`: every point). The attacks see the defense with the run's
    n_samples_attack executions inside it; untargeted runs push away from the run's labels (attack["labels"],
    or the kind's own), targeted ones toward the run's targets.

    Verdicts: each final example is classified by R = robustness["repeats"] independent runs of the
    defense with its full N = job.n_samples executions (the first with the defense's evaluation generator,
    as every oblivious evaluation; the others from the run's verdict generator); a point is robust only
    if all R are correct (core.attacks.defended.repeated_verdicts). A deterministic target (the bare model) gets
    R = 1: its runs would all agree.

    Writes one evaluation artifact per run that ran, `out_dir/<file>` (with ``attacked`` and
    ``repeat_correct``, jobs.artifacts), and `out_dir/schedule.json` (every run of the schedule: ran or
    skipped, points attacked, new breaks, survivors, converged). Returns the schedule's outcomes.

    Randomness: every run draws from generators named by the run and the setting only
    (`derive_seed(seed, "robust" | "robust-start" | "verdict", kind, attack, eot, defense, setting)`),
    never by which other runs exist. The random starts are drawn for all n points up front and
    indexed by point, so a point's start does not depend on which other points a cascade attacks
    with it. The defense's own draws inside an attack and in the verdicts come from one generator per
    run and batch: for a randomized defense they do depend on which points share the batch (a
    per-point generator would need a Python loop per point), so the cascade's per-point verdicts equal
    the un-cascaded ones exactly when the defense's draws do not change its output (the test uses
    Gaussian noise with sigma 0), and in distribution otherwise.
    """
    dataset, regime, defense, setting = target
    options = robust_options(robustness)
    repeats = verdict_repeats(robustness, defense)
    runs = robust_runs(robustness, defense)
    if not runs:
        raise ValueError(f"robustness.kinds={robustness['kinds']} has no kind that attacks {defense!r} "
                         f"({'a randomized defense' if DEFENSES[defense].randomized else 'a deterministic model'}); "
                         "add one (core.attacks.kinds) or drop the target")
    n_samples = job.need("n_samples")
    points = load_attacked_points(data_path, model_path, n_test=int(robustness["n_test"]), job=job)
    x, n = points.x, len(points.y)
    y_device = points.y.to(points.device)
    num_classes = int(predict_probs(points.model, x[:1]).shape[1])
    alive = _surviving(points, oblivious)
    os.makedirs(out_dir, exist_ok=True)
    finals: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def attack_run(run: RobustRun, idx: torch.Tensor) -> torch.Tensor:
        """Attack the points idx with `run` (its kind crafts it), judge them by R verdict runs; bool [m] (all R correct)."""
        name = (run.kind, run.attack, run.eot, defense, setting)
        m = int(idx.numel())
        if m == 0:
            finals[run.file] = (torch.empty(0, 0), torch.empty(0, 0), torch.empty(repeats, 0, dtype=torch.bool))
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        kind = robust_kind(run.kind)
        threat = kind.threat(run, attack)
        inputs = AttackInputs(
            model=points.model, x=x, idx=idx, labels=points.labels(threat).to(points.device)[idx], threat=threat,
            defense=defense, setting=setting, pool=points.pool, n_samples=run.n_samples_attack,
            # bounds the copies held for one gradient
            batch_size=max(1, points.batch_size // run.n_samples_attack), chunk_size=points.chunk_size,
            generator=make_generator(derive_seed(job.seed, "robust", *name), points.device), seed=job.seed, name=name)
        x_adv = kind.craft(run, inputs)
        probs = points.defend(x_adv, defense, setting, n_samples)
        plain = predict_probs(points.model, x_adv).float().cpu()
        correct = [probs.argmax(1).to(points.device) == y_device[idx]]
        if repeats > 1:
            verdict_gen = make_generator(derive_seed(job.seed, "verdict", *name), points.device)
            correct += list(torch.cat([
                repeated_verdicts(points.model, x_adv[s], defense, setting, repeats=repeats - 1, n_samples=n_samples,
                                  pool=points.pool, generator=verdict_gen, chunk_size=points.chunk_size).argmax(2)
                for s in batches(m, max(1, points.batch_size // (repeats - 1)))
            ], dim=1) == y_device[idx])
        verdicts = torch.stack(correct)  # [R, m] on the device
        finals[run.file] = (probs, plain, verdicts.cpu())
        return verdicts.all(0)

    def record(run: RobustRun, idx: torch.Tensor, _correct: torch.Tensor, result: RunOutcome) -> None:
        probs_sub, plain_sub, verdicts = finals.pop(run.file)
        idx = idx.cpu()
        probs = torch.full((n, num_classes), float("nan"))
        plain = probs.clone()
        attacked = torch.zeros(n, dtype=torch.bool)
        repeat_correct = torch.zeros(repeats, n, dtype=torch.bool)
        if len(idx):
            probs[idx], plain[idx], attacked[idx], repeat_correct[:, idx] = probs_sub, plain_sub, True, verdicts
        kind = robust_kind(run.kind)
        threat = kind.threat(run, attack)
        budget = RobustBudget(n_samples_attack=run.n_samples_attack, eps=threat["eps"], step_size=threat["step_size"],
                              n_restarts=kind.restarts(run), eot=run.eot)
        schedule = RobustSchedule(cascade=options["cascade"], repeats=repeats, family=run.family, level=run.level,
                                  converged=result.converged)
        info = EvaluationMeta(defense=defense, setting=setting, adaptive=run.kind,
                              n_samples=n_samples, attack=run.attack, labels=threat.get("labels", "prediction"),
                              robust=budget, schedule=schedule, dataset=dataset, regime=regime)
        target_labels = points.target if run.targeted else torch.full_like(points.y, -1)
        artifacts.save(Evaluation(probs, plain, points.y, target_labels, info, attacked=attacked,
                                  repeat_correct=repeat_correct), os.path.join(out_dir, run.file))
        print(f"{run.kind} {run.attack} EOT {run.eot} x{run.n_samples_attack} inside (level "
              f"{run.level}) vs {defense} {setting}: attacked {result.attacked}, broke {result.new_broken} "
              f"new, worst case {result.survivors}/{n}"
              + ("" if result.converged is None else f", converged: {result.converged}"))

    start_alive = int(alive.sum())
    print(f"{defense} {setting}: {start_alive}/{n} points survive the {len(oblivious)} oblivious evaluations")
    results = run_schedule(runs, alive, attack_run, cascade=options["cascade"],
                           tolerance=options["convergence"]["tolerance"], record=record)
    summary = {"cascade": options["cascade"], "repeats": repeats, "convergence": options["convergence"], "n": n,
               "oblivious": len(oblivious), "oblivious_survivors": start_alive,
               "runs": [{key: outcome.as_dict()[key] for key in _SCHEDULE_KEYS} for outcome in results]}
    atomic_write_text(os.path.join(out_dir, "schedule.json"), json.dumps(summary, indent=2) + "\n")
    return results
