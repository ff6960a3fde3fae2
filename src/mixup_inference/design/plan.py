"""The study plan: which models, attacks, evaluations and adaptive runs a config asks for.

Plain functions of the validated config dict (no Snakemake), so the workflow's common.smk, the
tests and the workflow benchmark all derive the same job lists from one place:

- :func:`evaluations`: every oblivious evaluation (dataset, regime, attack, defense, setting);
- :func:`evaluation_groups`: the same, grouped per (dataset, regime, attack): one evaluate job each;
- :func:`adaptive_runs`; :func:`robust_targets` (from explicit targets and the rows of the configured
  tables, :class:`TableRows`, and their bare models, :func:`bare_targets`) and :func:`robust_runs` (the
  `robustness:` section);
  :func:`trained_models` (every model the run needs), :func:`used_datasets`;
- :func:`model_files`, :func:`imported_models`, :func:`models_to_train`: which of those come from a
  file (config ``models:``, the import_model rule) and which the train rule makes;
- :func:`table_specs`: the paper's tables of the config, and one Table-2-shaped table per user model;
- :func:`study_evaluations`, :func:`study_robust_targets`: what the training study (config ``study:``,
  design.study) evaluates on its models.

Settings are canonical strings (core.defenses.specs), so a config's lambda 0.70 and 0.7 name one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ..core.attacks.kinds import ROBUST_KINDS, RobustRun, robust_kind
from ..core.defenses.specs import DEFENSES, PLAIN_SETTING, format_setting
from ..core.training.config import REGIMES
from .paper_tables import RowSpec, model_rows, paper_numbers, rows_of
from .study import model_name, study_models

__all__ = ["AdaptiveRun", "RobustTarget", "TableRows", "adaptive_runs", "bare_targets", "evaluation_groups",
           "evaluations", "imported_models", "model_files", "models_to_train", "robust_options", "robust_runs",
           "robust_target_item", "robust_targets", "study_evaluations", "study_mi_settings", "study_robust_targets",
           "study_settings", "table_rows", "table_specs", "trained_models", "used_datasets", "user_models",
           "verdict_repeats"]

def model_files(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, model name) -> its entry of the config's ``models:`` section ({file, format, sha256, arch, like})."""
    return {(dataset, name): spec for dataset, models in (config.get("models") or {}).items()
            for name, spec in models.items()}


def user_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, name) of the models from files that are not one of the four training regimes (e.g. `mine`)."""
    return sorted(key for key in model_files(config) if key[1] not in REGIMES)


def table_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every table the run writes: name -> {"rows": [RowSpec], "paper": {label: values}, "dataset", "attacks"}.

    The config's paper tables (``table2``, ``table3``; only the rows of `tables.<table>.regimes` when
    given), and for each of them one table per user model of
    its data set, ``<table>_<model>``: the rows of `models.<dataset>.<model>.like` (default mixup) with the
    user's model in place of the regime, the same attack columns, no paper numbers."""
    specs: dict[str, dict[str, Any]] = {}
    users = user_models(config)
    files = model_files(config)
    for table, spec in config["tables"].items():
        rows, paper = rows_of(table), paper_numbers(table)
        if "regimes" in spec:  # only the rows of these regimes (e.g. no ERM/AT ablations without those models)
            rows = [row for row in rows if row.regime in spec["regimes"]]
        specs[table] = {"rows": rows, "paper": paper, "dataset": spec["dataset"], "attacks": spec["attacks"]}
        for dataset, model in users:
            if dataset == spec["dataset"]:
                specs[f"{table}_{model}"] = {"rows": model_rows(table, model, files[dataset, model].get("like", "mixup")),
                                             "paper": {}, "dataset": dataset, "attacks": spec["attacks"]}
    return specs


def table_rows(spec: dict[str, Any]) -> list[RowSpec]:
    """The RowSpecs of one entry of :func:`table_specs` (as given, or as [label, regime, defense, setting]
    lists after a round trip through Snakemake params)."""
    return [row if isinstance(row, RowSpec) else RowSpec(*row) for row in spec["rows"]]

Evaluation = tuple[str, str, str, str, str]  # dataset, regime, attack, defense, setting


class AdaptiveRun(NamedTuple):
    """One run of the paper's adaptive attack of Fig. 4 (the config's `adaptive:` section; one adaptive job each)."""

    dataset: str
    regime: str
    defense: str
    setting: str
    fig4_kind: str  # an attack kind of the adaptive rule: "paper" (App. B.2 adaptive PGD) or "eot" (EOT PGD on MI's mixed copies)
    attack: str
    n_adaptive: int


def evaluations(config: dict[str, Any]) -> list[Evaluation]:
    """Every oblivious evaluation as (dataset, regime, attack, defense, setting), deduplicated and
    sorted: the tables' rows x attacks (user models' tables too), the Fig. 3b grids (clean and attacked), the Fig. 2 lambda
    grid of MI-PL and MI-OL, the Fig. 3a detection setting, and the oblivious levels of Fig. 4."""
    jobs: set[Evaluation] = set()
    for spec in table_specs(config).values():
        for row in spec["rows"]:
            for attack in spec["attacks"]:
                jobs.add((spec["dataset"], row.regime, attack, row.defense, row.setting))
    grids = config["grids"]
    for regime in grids["regimes"]:
        for attack in ("clean", grids["attack"]):
            jobs.add((grids["dataset"], regime, attack, "none", PLAIN_SETTING))
            for defense, settings in grids["settings"].items():
                for setting in settings:
                    jobs.add((grids["dataset"], regime, attack, defense, setting))
    comp = config["components"]
    for regime in comp["regimes"]:
        for attack in ("clean", comp["attack"]):
            for defense in ("mi_pl", "mi_ol"):
                for lam in comp["lams"]:
                    jobs.add((comp["dataset"], regime, attack, defense, format_setting(defense, {"lam": lam})))
    det = config["detection"]
    for regime in det["regimes"]:
        for attack in ["clean", *det["attacks"]]:
            jobs.add((det["dataset"], regime, attack, "mi_pl", det["setting"]))
    ada = config["adaptive"]
    for attack in ada["attacks"]:  # the oblivious levels drawn beside the adaptive curves
        jobs.add((ada["dataset"], ada["regime"], attack, "none", PLAIN_SETTING))
        jobs.add((ada["dataset"], ada["regime"], attack, ada["defense"], ada["setting"]))
    for dataset, regime, defense, setting in robust_targets(config):  # oblivious runs of the worst case
        for attack in config["attacks"]["names"]:
            jobs.add((dataset, regime, attack, defense, setting))
            jobs.add((dataset, regime, attack, "none", PLAIN_SETTING))
    return sorted(jobs)


def evaluation_groups(config: dict[str, Any]) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """The evaluations grouped per (dataset, regime, attack) -> sorted [(defense, setting), ...].

    The workflow runs one evaluate job per group: the job loads the model, the examples and the MI
    pool once and writes every setting's artifact (see jobs.run_evaluate_group). The training study's
    evaluations (:func:`study_evaluations`) join the groups: on the run's own models they are a few more
    settings of the run's jobs, on the study's models jobs of their own that only the study target asks for."""
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for dataset, regime, attack, defense, setting in sorted(set(evaluations(config)) | set(study_evaluations(config))):
        groups.setdefault((dataset, regime, attack), []).append((defense, setting))
    return groups


# ------------------------------------------------------------------ what the study evaluates
def study_mi_settings(config: dict[str, Any], regime: str) -> list[tuple[str, str]]:
    """(defense, setting) of every MI row (a defense that takes the MI pool) of ``study.table`` (as configured under
    ``tables:``) for `regime`: Table 4's settings, the rows the study's headline differences are about."""
    spec = table_specs(config)[config["study"]["table"]]
    return [(row.defense, row.setting) for row in spec["rows"]
            if row.regime == regime and DEFENSES[row.defense].needs_pool]


def study_settings(config: dict[str, Any], regime: str) -> list[tuple[str, str]]:
    """Every (defense, setting) the study evaluates on a model of `regime`: the bare model, the MI rows of its
    regime (:func:`study_mi_settings`) and ``study.settings`` (Fig. 2's MI-OL at lambda 0.5 and 1, for F_y)."""
    settings = [("none", PLAIN_SETTING), *study_mi_settings(config, regime)]
    settings += [(defense, setting) for defense, values in config["study"].get("settings", {}).items()
                 for setting in values]
    return list(dict.fromkeys(settings))


def study_robust_targets(config: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(dataset, model name, defense, setting) the robustness evaluation (``robustness:``) attacks among the study's
    models: every seed of each ``study.robustness`` group [regime, recipe, epochs, defense, setting], and each such
    model's bare target (defense "none") where the run's bare models face the robustness evaluation
    (:func:`bare_targets`), so that each seed's worst-case difference, like the run's, sets a defense against a bare
    model that faced the same strongest attacks, not the oblivious ones only."""
    spec = config.get("study") or {}
    bare = bool(bare_targets(config))
    targets = []
    for regime, recipe, epochs, defense, setting in spec.get("robustness", []):
        for model in study_models(config):
            if (model.regime, model.recipe, model.epochs) == (regime, recipe, int(epochs)):
                targets.append((spec["dataset"], model_name(config, model), defense, setting))
                if bare:
                    targets.append((spec["dataset"], model_name(config, model), "none", PLAIN_SETTING))
    return sorted(set(targets))


def study_evaluations(config: dict[str, Any]) -> list[Evaluation]:
    """Every oblivious evaluation of the study: each model under ``study.attacks`` with :func:`study_settings`, and
    the robust targets' oblivious evaluations (every attack of ``attacks.names``, defended and bare: the
    robustness evaluation's cascade starts from them, as in the run)."""
    spec = config.get("study")
    if not spec:
        return []
    jobs: set[Evaluation] = set()
    for model in study_models(config):
        name = model_name(config, model)
        for attack in spec["attacks"]:
            for defense, setting in study_settings(config, model.regime):
                jobs.add((spec["dataset"], name, attack, defense, setting))
    for dataset, name, defense, setting in study_robust_targets(config):
        for attack in config["attacks"]["names"]:
            jobs.add((dataset, name, attack, defense, setting))
            jobs.add((dataset, name, attack, "none", PLAIN_SETTING))
    return sorted(jobs)


def adaptive_runs(config: dict[str, Any]) -> list[AdaptiveRun]:
    """Every run of the paper's adaptive attack as (dataset, regime, defense, setting, fig4_kind, attack, n_adaptive)."""
    ada = config["adaptive"]
    return [
        AdaptiveRun(ada["dataset"], ada["regime"], ada["defense"], ada["setting"], fig4_kind, attack, n)
        for fig4_kind in ada["kinds"]
        for attack in ada["attacks"]
        for n in ada["n_adaptive"]
    ]


RobustTarget = tuple[str, str, str, str]  # dataset, regime, defense, setting: one robust job


@dataclass(frozen=True)
class TableRows:
    """An item of `robustness.targets` naming a paper table: every row of the table as configured in
    `tables:` (its data set; only its `regimes` when given) whose defense is randomized
    (DefenseSpec.randomized), optionally only the rows of `regimes` and of `defenses`.

    Written ``table2`` or ``{table: table2, regimes: [mixup, interpolated_at], defenses: [mi_ol]}``."""

    table: str
    regimes: tuple[str, ...] | None = None
    defenses: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, item: str | dict[str, Any]) -> TableRows:
        if isinstance(item, str):
            return cls(item)
        regimes, defenses = item.get("regimes"), item.get("defenses")
        return cls(item["table"], None if regimes is None else tuple(regimes),
                   None if defenses is None else tuple(defenses))

    def selects(self, row: RowSpec) -> bool:
        return (DEFENSES[row.defense].randomized and (self.regimes is None or row.regime in self.regimes)
                and (self.defenses is None or row.defense in self.defenses))

    def targets(self, config: dict[str, Any]) -> list[RobustTarget]:
        """The selected rows as robust targets, in row order; ValueError naming the fix if the table is
        not under `tables:`."""
        if self.table not in config["tables"]:
            raise ValueError(f"table {self.table!r} is not under tables: (configured: {', '.join(config['tables'])}); "
                             f"add tables.{self.table} or name a configured table")
        spec = table_specs(config)[self.table]
        return [(spec["dataset"], row.regime, row.defense, row.setting) for row in spec["rows"] if self.selects(row)]


def robust_target_item(config: dict[str, Any], item: str | dict[str, Any] | list[str]) -> list[RobustTarget]:
    """The targets one item of `robustness.targets` names: [regime, defense, setting] (on robustness.dataset)
    or [dataset, regime, defense, setting] one each; a table (``table2``, or a mapping with `table` and
    optional `regimes`/`defenses` filters) its selected randomized rows (:class:`TableRows`)."""
    if isinstance(item, list):
        return [tuple(item) if len(item) == 4 else (config["robustness"]["dataset"], *item)]
    return TableRows.parse(item).targets(config)


def robust_targets(config: dict[str, Any]) -> list[RobustTarget]:
    """(dataset, regime, defense, setting) of every target of the robustness evaluation (the `robustness:`
    section; one robust job each, running the section's kinds that apply to it), sorted, each once; []
    without the section. The defenses its `targets` name (items may mix tables and explicit targets:
    config/config.yaml, Table 2's randomized mixup and interpolated-AT rows plus MI-PL on mixup;
    config/paper.yaml, Tables 2 and 3), and :func:`bare_targets`, the bare models they are compared with."""
    rob = config.get("robustness")
    if not rob:
        return []
    named = {target for item in rob["targets"] for target in robust_target_item(config, item)}
    return sorted(named | set(bare_targets(config)))


def bare_targets(config: dict[str, Any]) -> list[RobustTarget]:
    """(dataset, regime, "none", "plain") for the model of every regime the `robustness:` targets name:
    findings compare each defense with its bare model, so the bare model faces the strongest attacks for a
    deterministic model (the kinds of ``robustness.kinds`` whose `RobustKind.deterministic` is set:
    AutoAttack standard, PGD at Tramer et al.'s step size), with the same cascade, levels and points.
    [] when the section names no such kind (findings then fall back to the bare model's oblivious worst case)."""
    rob = config.get("robustness")
    if not rob or not any(robust_kind(name).applies_to("none") for name in rob["kinds"]):
        return []
    models = {(dataset, regime) for item in rob["targets"]
              for dataset, regime, _defense, _setting in robust_target_item(config, item)}
    return sorted((dataset, regime, "none", PLAIN_SETTING) for dataset, regime in models)


#: Defaults of the `robustness:` section's cascade, verdict and convergence keys (schema and config/README).
ROBUST_DEFAULTS = {"cascade": True, "repeats": 10, "convergence": {"levels": 1, "tolerance": 0.01}}


def robust_options(robustness: dict[str, Any]) -> dict[str, Any]:
    """The section's `cascade` (bool), `repeats` (R, the verdict runs per final example) and
    `convergence` ({levels, tolerance}) with their defaults (ROBUST_DEFAULTS)."""
    convergence = {**ROBUST_DEFAULTS["convergence"], **(robustness.get("convergence") or {})}
    return {"cascade": bool(robustness.get("cascade", ROBUST_DEFAULTS["cascade"])),
            "repeats": int(robustness.get("repeats", ROBUST_DEFAULTS["repeats"])),
            "convergence": {"levels": int(convergence["levels"]), "tolerance": float(convergence["tolerance"])}}


def verdict_repeats(robustness: dict[str, Any], defense: str) -> int:
    """The verdict runs per final example of a robust job against `defense`: the section's R for a randomized
    defense, 1 for a deterministic one (the bare model: another run could only repeat the same answer)."""
    return robust_options(robustness)["repeats"] if DEFENSES[defense].randomized else 1


def robust_runs(robustness: dict[str, Any], defense: str | None = None) -> list[RobustRun]:
    """Every attack run of the config's `robustness:` section against `defense` (its kinds that apply to it,
    `RobustKind.applies_to`: the randomized-defense kinds for a randomized defense, the deterministic ones
    for the bare model ``none``; None: every kind's runs, as the provenance lists them), in the order the
    robust job runs them (jobs.robust.run_robust): level by level, cheapest first within a level
    (`RobustKind.cost`; ties by family). So a cascade's expensive runs see only the points the cheap ones
    left, and the worst case after the last run of level k is every run of levels <= k: no level-k number
    includes a break of a higher level (Fig. 5's curves and findings' `levels` read the same).

    Each kind of ``robustness.kinds`` (core.attacks.kinds, in the registry's order) gives its runs
    (`RobustKind.runs`): with convergence.levels = L > 1 (Carlini et al. 2019's check that accuracy is
    flat as the attack grows) each family gets levels 0..L-1, level k with 2^k times the start's steps and
    EOT draws (`RobustKind.at_level`); a kind with fixed parameters (Tramer et al.'s) gives one run at level
    0, no ladder. Which levels actually run is the job's decision (a family stops once two consecutive
    doublings each moved the worst case by no more than the tolerance: jobs.cascade); the list is the
    schedule's cap. An unknown kind is a ValueError naming the registered ones."""
    levels = robust_options(robustness)["convergence"]["levels"]
    asked = {robust_kind(name).name for name in robustness["kinds"]}
    runs = [run for name, kind in ROBUST_KINDS.items()
            if name in asked and (defense is None or kind.applies_to(defense))
            for run in kind.runs(robustness, levels=levels, n_samples=int(robustness["n_samples"]))]
    return sorted(runs, key=lambda run: (run.level, run.cost, run.family))


def trained_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, regime) pairs that some evaluation or adaptive run needs (trained or from a file)."""
    pairs = {(d, r) for d, r, *_ in evaluations(config)}
    pairs |= {(d, r) for d, r, *_ in adaptive_runs(config)}
    pairs |= {(d, r) for d, r, *_ in robust_targets(config)}
    return sorted(pairs)


def imported_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The needed (dataset, regime) pairs whose model comes from a file (import_model rule), not training."""
    files = model_files(config)
    return [pair for pair in trained_models(config) if pair in files]


def models_to_train(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The needed (dataset, regime) pairs the train rule makes (no file for them under ``models:``)."""
    files = model_files(config)
    return [pair for pair in trained_models(config) if pair not in files]


def used_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets that some model is trained on."""
    return sorted({d for d, _ in trained_models(config)})
