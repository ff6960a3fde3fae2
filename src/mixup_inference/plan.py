"""The study plan: which models, attacks, evaluations and adaptive runs a config asks for.

Plain functions of the validated config dict (no Snakemake), so the workflow's common.smk, the
tests and the workflow benchmark all derive the same job lists from one place:

- :func:`evaluations`: every oblivious evaluation (dataset, regime, attack, defense, setting);
- :func:`evaluation_groups`: the same, grouped per (dataset, regime, attack): one evaluate job each;
- :func:`adaptive_runs`, :func:`trained_models`, :func:`used_datasets`.

Settings are canonical strings (settings.py), so a config's lambda 0.70 and 0.7 name one job.
"""

from __future__ import annotations

from typing import Any

from .settings import PLAIN_SETTING, format_setting
from .tables import TABLE_SPECS

__all__ = ["adaptive_runs", "evaluation_groups", "evaluations", "trained_models", "used_datasets"]

Evaluation = tuple[str, str, str, str, str]  # dataset, regime, attack, defense, setting
AdaptiveRun = tuple[str, str, str, str, str, str, int]  # dataset, regime, defense, setting, kind, attack, n_adaptive


def evaluations(config: dict[str, Any]) -> list[Evaluation]:
    """Every oblivious evaluation as (dataset, regime, attack, defense, setting), deduplicated and
    sorted: the tables' rows x attacks, the Fig. 3b grids (clean and attacked), the Fig. 2 lambda
    grid of MI-PL and MI-OL, the Fig. 3a detection setting, and the oblivious levels of Fig. 4."""
    jobs: set[Evaluation] = set()
    for table, spec in config["tables"].items():
        rows, _paper = TABLE_SPECS[table]
        for row in rows:
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
    return sorted(jobs)


def evaluation_groups(config: dict[str, Any]) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """The evaluations grouped per (dataset, regime, attack) -> sorted [(defense, setting), ...].

    The workflow runs one evaluate job per group: the job loads the model, the examples and the MI
    pool once and writes every setting's artifact (see jobs.run_evaluate_group)."""
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for dataset, regime, attack, defense, setting in evaluations(config):
        groups.setdefault((dataset, regime, attack), []).append((defense, setting))
    return groups


def adaptive_runs(config: dict[str, Any]) -> list[AdaptiveRun]:
    """Every adaptive-attack run as (dataset, regime, defense, setting, kind, attack, n_adaptive)."""
    ada = config["adaptive"]
    return [
        (ada["dataset"], ada["regime"], ada["defense"], ada["setting"], kind, attack, n)
        for kind in ada["kinds"]
        for attack in ada["attacks"]
        for n in ada["n_adaptive"]
    ]


def trained_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, regime) pairs that some evaluation or adaptive run needs."""
    pairs = {(d, r) for d, r, *_ in evaluations(config)}
    pairs |= {(d, r) for d, r, *_ in adaptive_runs(config)}
    return sorted(pairs)


def used_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets that some model is trained on."""
    return sorted({d for d, _ in trained_models(config)})
