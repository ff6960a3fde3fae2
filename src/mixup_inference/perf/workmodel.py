"""The work of a run: every job of the workflow's `all` target with its inputs and its CPU seconds on
one thread, from the study plan (design.plan: the same lists the workflow's common.smk builds its jobs
from) and the unit costs measured on this machine (perf.probes).

Work per job (n: the points it attacks or evaluates; every job pays the measured start-up: Python,
torch and the library imported, the data set loaded):

- train: epochs x (n_train // batch_size) training steps of its regime + the whitening fit and set-up
  + a forward over the test split (its test accuracy);
- attack: n x (steps x a forward+backward at the attack batch + 2 forwards: clean and adversarial
  predictions);
- evaluate: a forward of the n points (the bare model) + for every (defense, setting) of its group,
  n x the defense's cost per point at N = defenses.n_samples executions;
- adaptive (Fig. 4): n x (steps x N_A forward+backward passes + the defense at N + a forward);
- robust: a forward of its n points + for every run of design.plan.robust_runs, the points it attacks
  (:class:`Survivors`) x (its defense passes, cost / executions inside, x the defense's
  forward+backward per point at those executions + R verdicts at N + a forward). Tramer et al.'s run
  attacks through its own defense (the run's ``defense`` extra);
- prepare_data, import_model, aggregate, findings, tables, figures, provenance: the start-up + a
  constant (:data:`SMALL_RULE_WORK`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.attacks.kinds import ROBUST_KINDS
from ..core.attacks.specs import parse_attack
from ..core.data.sources import KNOWN_TEST_SIZES, KNOWN_TRAIN_SIZES, SYNTHETIC_DEFAULTS
from ..design import plan
from ..design.study import model_training
from .schedule import Job

__all__ = ["DEFAULT_SURVIVOR_FRACTION", "PRIORITY", "SMALL_RULE_WORK", "SYNTHETIC_PREPARE_WORK", "DefenseCost",
           "Survivors", "UnitCosts", "run_jobs", "split_sizes", "train_steps"]

#: Each rule's ``priority:`` in workflow/rules/ (train.smk, models.smk, attack.smk); the rest 0.
PRIORITY = {"train": 2, "import_model": 2, "attack": 1}

#: CPU seconds of the small rules' own work beyond the start-up: the committed run's job times
#: (reports/cifar10-jpeg-cpu/provenance.yaml, a 2-core AMD EPYC) less its ~2.2 s median start-up
#: (reports/bench/workflow-smoke.md). prepare_data reads an archive or a download (8.3 s in the committed
#: run); a synthetic source costs almost nothing.
SMALL_RULE_WORK = {"prepare_data": 6.0, "import_model": 0.5, "aggregate": 0.8, "findings": 1.3, "tables": 0.0,
                   "figures": 4.1, "provenance": 0.1}
#: prepare_data's own work for a synthetic source (the smoke preset's: 0.3 s, reports/bench/workflow-smoke.md).
SYNTHETIC_PREPARE_WORK = 0.3

#: The share of a robust job's points that survives the oblivious evaluations where no measured run says
#: otherwise: the committed run's largest (36 of 100 points, interpolated AT + Guo / rotation).
DEFAULT_SURVIVOR_FRACTION = 0.36


@dataclass(frozen=True)
class DefenseCost:
    """CPU seconds of one defense per point at N executions: `fixed` + N x `per_execution` (the bare model
    and MI-Combined, which draws its own 5 + 15 executions, cost `fixed` whatever N is)."""

    per_execution: float = 0.0
    fixed: float = 0.0

    def per_point(self, n_samples: int) -> float:
        return self.fixed + n_samples * self.per_execution


@dataclass(frozen=True)
class UnitCosts:
    """CPU seconds on one thread of each unit of work, measured on one data set (perf.probes).

    Attributes:
        startup: a job's start-up (Python, torch, the library, the data set loaded).
        forward: a forward pass per image (fp32, at the defense chunk size).
        attack_step: a forward+backward per image at the attack batch size (fp32).
        train_step: model name (a regime) -> one training step (its batch, its precision).
        train_setup: model name -> the rest of a train job's first epoch (whitening fit, set-up).
        defense: defense -> its forward cost per point (DefenseCost).
        defense_grad: defense -> its forward+backward cost per point (DefenseCost), inside an attack.
        n_train, n_test_split: images of the data set's train and test splits.
    """

    startup: float
    forward: float
    attack_step: float
    train_step: Mapping[str, float]
    train_setup: Mapping[str, float]
    defense: Mapping[str, DefenseCost]
    defense_grad: Mapping[str, DefenseCost]
    n_train: int
    n_test_split: int


@dataclass(frozen=True)
class Survivors:
    """How many of a robust job's points its runs attack (the cascade starts from the points every oblivious
    evaluation of the setting left; each run attacks what the earlier ones left).

    Attributes:
        measured: target (dataset, regime, defense, setting) -> (the first run's share of the points, the
            later runs' share), from a finished run's results.csv (:meth:`from_results`): the first run
            attacks the oblivious survivors, the later ones at least the final worst case (measured: the
            worst case plus 0-6 points of 100), counted as the worst case.
        oblivious: target -> its lowest accuracy under the file's oblivious attacks, for a target the file ran
            no robustness job on (e.g. a bare model before issue 33): every run attacks that share (the
            per-point worst case is lower and the cascade's cut is not counted: an upper bound, but a far
            tighter one than `fraction` for a model PGD breaks).
        fraction: the share for a target `measured` and `oblivious` lack, every run alike (the cascade's cut not counted:
            an upper bound for that target).
        source: where `measured` comes from, for the report.
    """

    measured: Mapping[tuple[str, str, str, str], tuple[float, float]] = field(default_factory=dict)
    oblivious: Mapping[tuple[str, str, str, str], float] = field(default_factory=dict)
    fraction: float = DEFAULT_SURVIVOR_FRACTION
    source: str = "none"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"the survivor fraction must lie in [0, 1] (got {self.fraction})")

    def shares(self, target: tuple[str, str, str, str]) -> tuple[float, float]:
        target = tuple(target)
        if target in self.measured:
            return self.measured[target]
        share = self.oblivious.get(target, self.fraction)
        return share, share

    @classmethod
    def from_results(cls, path: str | os.PathLike, fraction: float = DEFAULT_SURVIVOR_FRACTION) -> Survivors:
        """The shares of every robustness target of a finished run's results.csv: the largest ``attacked`` of
        its runs (the first run's) and its ``worst_case`` row's ``correct``, over ``n``."""
        first: dict[tuple[str, str, str, str], float] = {}
        final: dict[tuple[str, str, str, str], float] = {}
        oblivious: dict[tuple[str, str, str, str], float] = {}
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                target = (row["dataset"], row["regime"], row["defense"], row["setting"])
                if row["adaptive"] == "none" and row["attack"] != "clean":
                    share = float(row["correct"]) / float(row["n"])
                    oblivious[target] = min(oblivious.get(target, 1.0), share)
                elif row["adaptive"] in ROBUST_KINDS and row.get("attacked"):
                    first[target] = max(first.get(target, 0.0), float(row["attacked"]) / float(row["n"]))
                elif row["adaptive"] == "worst_case":
                    final[target] = float(row["correct"]) / float(row["n"])
        measured = {target: (share, min(share, final.get(target, share))) for target, share in first.items()}
        return cls(measured=measured, oblivious=oblivious, fraction=fraction, source=str(path))


def split_sizes(dataset: Mapping[str, Any]) -> tuple[int, int, int, int, int] | None:
    """(n_train, n_test, classes, channels, image size) of a data set's config before it is prepared;
    None for an image folder or archive (known only once prepared: pass its data.pt)."""
    source = dataset["source"]
    if source == "synthetic":
        opts = {**SYNTHETIC_DEFAULTS, "image_size": dataset.get("image_size", 32), **dataset.get("synthetic", {})}
        return opts["n_train"], opts["n_test"], opts["num_classes"], opts["channels"], opts["image_size"]
    if source in KNOWN_TRAIN_SIZES:
        classes = 100 if source == "cifar100" else 10
        return KNOWN_TRAIN_SIZES[source], KNOWN_TEST_SIZES[source], classes, 3, dataset.get("image_size", 32)
    return None


def train_steps(config: Mapping[str, Any], regime: str, n_train: int) -> int:
    """Training steps of the train job of `regime` (a run's model name): epochs x full batches per epoch."""
    training = model_training(dict(config), regime)
    return int(training["epochs"]) * (n_train // int(training["batch_size"]))


def _name(rule: str, *parts: object) -> str:
    return " ".join([rule, "/".join(str(p) for p in parts)]) if parts else rule


def run_jobs(config: Mapping[str, Any], costs: Mapping[str, UnitCosts], survivors: Survivors) -> list[Job]:
    """Every job of the workflow's `all` target for `config` (a fresh run: no model exists yet), with its
    inputs, priority and work; `costs` per data set name."""
    config = dict(config)
    jobs: list[Job] = []

    def add(rule: str, key: tuple, work: float, inputs: list[str], scaling: str = "other") -> str:
        name = _name(rule, *key)
        jobs.append(Job(name, rule, work, tuple(dict.fromkeys(inputs)), PRIORITY.get(rule, 0), scaling))
        return name

    data: dict[str, str] = {}
    for dataset in plan.used_datasets(config):
        synthetic = config["datasets"][dataset]["source"] == "synthetic"
        extra = SYNTHETIC_PREPARE_WORK if synthetic else SMALL_RULE_WORK["prepare_data"]
        data[dataset] = add("prepare_data", (dataset,), costs[dataset].startup + extra, [])
    models: dict[tuple[str, str], str] = {}
    for dataset, regime in plan.models_to_train(config):
        unit = costs[dataset]
        work = (unit.startup + unit.train_setup[regime] + train_steps(config, regime, unit.n_train) * unit.train_step[regime]
                + unit.n_test_split * unit.forward)
        models[dataset, regime] = add("train", (dataset, regime), work, [data[dataset]], scaling="train")
    for dataset, regime in plan.imported_models(config):
        unit = costs[dataset]
        work = unit.startup + SMALL_RULE_WORK["import_model"] + unit.n_test_split * unit.forward
        models[dataset, regime] = add("import_model", (dataset, regime), work, [data[dataset]])

    n_samples = int(config["defenses"]["n_samples"])
    groups = plan.evaluation_groups(config)  # the study's settings on the run's models join their groups
    evaluate: dict[tuple[str, str, str], str] = {}
    attack: dict[tuple[str, str, str], str] = {}
    for key in sorted({e[:3] for e in plan.evaluations(config)}):
        dataset, regime, name = key
        unit, n = costs[dataset], int(config["datasets"][dataset]["n_test"])
        steps = parse_attack(name).steps
        attack[key] = add("attack", key, unit.startup + n * (steps * unit.attack_step + 2 * unit.forward),
                          [data[dataset], models[dataset, regime]])
        work = unit.startup + n * unit.forward + sum(n * unit.defense[defense].per_point(n_samples)
                                                     for defense, _setting in groups[key])
        evaluate[key] = add("evaluate", key, work, [data[dataset], models[dataset, regime], attack[key]])

    adaptive = []
    n_adaptive_points = int(config["adaptive"]["n_test"]) if config.get("adaptive") else 0
    for run in plan.adaptive_runs(config):
        unit = costs[run.dataset]
        steps = parse_attack(run.attack).steps
        per_point = steps * run.n_adaptive * unit.attack_step + unit.defense[run.defense].per_point(n_samples) + unit.forward
        key = (run.dataset, run.regime, run.defense, run.setting, f"{run.fig4_kind}-{run.attack}-n{run.n_adaptive}")
        adaptive.append(add("adaptive", key, unit.startup + n_adaptive_points * per_point,
                            [data[run.dataset], models[run.dataset, run.regime]]))

    robust = []
    robustness = config.get("robustness") or {}
    for target in plan.robust_targets(config):
        dataset, regime, defense, setting = target
        unit, n = costs[dataset], int(robustness["n_test"])
        options = plan.robust_options(robustness)
        first, later = survivors.shares(target) if options["cascade"] else (1.0, 1.0)
        repeats = plan.verdict_repeats(robustness, defense)
        work = unit.startup + n * unit.forward
        for i, run in enumerate(plan.robust_runs(robustness, defense)):
            through = dict(run.extras).get("defense", defense)  # Tramer et al.'s run attacks through its own
            passes = run.cost / run.n_samples_attack  # defense passes per point: steps x EOT x restarts (x 2 AA)
            per_point = (passes * unit.defense_grad[through].per_point(run.n_samples_attack)
                         + repeats * unit.defense[defense].per_point(n_samples) + unit.forward)
            work += (first if i == 0 else later) * n * per_point
        names = config["attacks"]["names"]
        inputs = [data[dataset], models[dataset, regime], *(evaluate[dataset, regime, a] for a in names),
                  *(attack[dataset, regime, a] for a in names)]
        robust.append(add("robust", target, work, inputs))

    unit = costs[next(iter(costs))]
    finished = [*(evaluate[key] for key in sorted({e[:3] for e in plan.evaluations(config)})), *adaptive, *robust]
    aggregate = add("aggregate", (), unit.startup + SMALL_RULE_WORK["aggregate"], finished)
    add("findings", (), unit.startup + SMALL_RULE_WORK["findings"], finished)
    for table in plan.table_specs(config):
        add("tables", (table,), unit.startup + SMALL_RULE_WORK["tables"], [aggregate])
    add("figures", (), unit.startup + SMALL_RULE_WORK["figures"], [aggregate])
    add("provenance", (), unit.startup + SMALL_RULE_WORK["provenance"], [aggregate, *data.values(), *models.values()])
    return jobs
