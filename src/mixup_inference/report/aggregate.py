"""Evaluation artifacts -> tidy tables (results.csv, detection.csv, components.csv).

The artifacts are what the evaluate, adaptive and robust jobs write: per-point defended and
undefended probabilities, labels, targets and a meta naming the evaluation; their layout, defaults
and validation are in :mod:`jobs.artifacts` (``load``, ``check``), whose on-disk dicts the functions
below take.

Three tables come out of a set of artifacts:

* :func:`result_row` -- one row of ``results.csv`` per artifact (columns :data:`RESULT_COLUMNS`):
  accuracy = mean of ``argmax(probs) == y`` with a 95% Wilson interval; :func:`worst_case_rows` adds
  one row per defense setting (and bare model) the robustness evaluation attacked (the points that
  survive all of its evaluations).
* :func:`detection_rows` -- Fig. 3a: AUC of the MI-PL detection score and of the plain-confidence
  baseline, clean inputs vs oblivious adversarial inputs, on the clean-correct points (the paper's)
  and on all points, with paired bootstrap intervals (columns :data:`DETECTION_COLUMNS`).
* :func:`component_rows` -- Fig. 2: mean MI-PL / MI-OL output components F_y and F_yhat as a
  function of lambda, on clean and adversarial inputs (columns :data:`COMPONENT_COLUMNS`), to be
  compared with the ideal-linearity values of Table 1 (:func:`ideal_linearity`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.metrics import (accuracy_with_ci, confidence_score, mi_pl_detection_score, paired_auc_ci, wilson_interval,
                            worst_case)
from ..core.attacks.kinds import ROBUST_KINDS
from ..core.attacks.specs import parse_attack
from ..core.defenses.specs import parse_setting, setting_param
from ..core.utils import derive_seed, make_generator
from ..jobs.artifacts import check, correct_points, expand_paths, load, repeat_accuracy, verdict_repeats, verdict_shares

__all__ = [
    "COMPONENT_COLUMNS",
    "DETECTION_COLUMNS",
    "DETECTION_POINTS",
    "RESULT_COLUMNS",
    "aggregate",
    "artifact_key",
    "component_rows",
    "detection_rows",
    "ideal_linearity",
    "result_row",
    "last_levels",
    "robust_points",
    "schedule_converged",
    "worst_case_rows",
]

RESULT_COLUMNS = [
    "dataset", "regime", "defense", "setting", "param", "attack", "targeted", "steps",
    "adaptive", "n_adaptive", "eot", "accuracy", "ci_low", "ci_high", "n", "correct", "labels",
    "attacked", "repeats", "mean_accuracy", "level", "converged", "evaluations",
]  # fmt: skip
#: What identifies one row of results.csv (no two rows share it).
ROW_KEY = ["dataset", "regime", "defense", "setting", "attack", "adaptive", "n_adaptive", "eot"]
#: The columns of the robustness evaluation's schedule (issue 25): points the run attacked (a cascade's later
#: runs attack fewer), its R verdict runs, the accuracy averaged over them (worst-case rows: the mean-over-R
#: worst case, `worst_case_rows`), its convergence level, and whether its ladder had converged (worst-case
#: rows: every ladder of the defense setting; empty where there is no ladder).
SCHEDULE_COLUMNS = ["attacked", "repeats", "mean_accuracy", "level", "converged"]
DETECTION_COLUMNS = ["dataset", "regime", "attack", "detector", "setting", "points", "auc", "auc_low", "auc_high",
                     "n_clean", "n_adv"]
#: The point subsets of detection.csv: "clean_correct" (the paper's Fig. 3a: points whose clean
#: prediction is correct, each with its adversarial counterpart) and "all" (every attacked point).
DETECTION_POINTS = ("clean_correct", "all")
#: Bootstrap resamples behind each detection interval.
DETECTION_RESAMPLES = 2000
COMPONENT_COLUMNS = [
    "dataset", "regime", "mode", "lam", "attack", "input", "component", "value", "std", "n", "num_classes",
]  # fmt: skip

_META_KEYS = ("dataset", "regime", "attack", "defense", "setting")
#: The attack and adaptive names of a worst-case row of results.csv.
WORST_CASE = "worst_case"


def _adaptive(meta: dict) -> tuple[str, int]:
    return meta.get("adaptive", "none"), int(meta.get("n_adaptive", 0))


def _eot(meta: dict) -> int:
    """A robust run's EOT draws per gradient (jobs.artifacts.RobustBudget.eot); 0 for any other evaluation."""
    return int(meta.get("eot", 0))


def _is_robust(meta: dict) -> bool:
    """Whether an artifact is a run of the robustness evaluation (a core.attacks.kinds kind)."""
    return meta.get("adaptive", "none") in ROBUST_KINDS


def artifact_key(meta: dict) -> tuple[str, str, str, str, str, str, int, int]:
    """What identifies one evaluation: (dataset, regime, attack, defense, setting, adaptive, n_adaptive, eot)."""
    return (*(meta[key] for key in _META_KEYS), *_adaptive(meta), _eot(meta))


def result_row(artifact: dict) -> dict:
    """The ``results.csv`` row of one artifact: its meta, the defense's main scalar, the attack's
    (targeted, steps) and the accuracy of ``argmax(probs)`` against ``y`` with its 95% Wilson CI."""
    check(artifact)
    meta = artifact["meta"]
    parsed = parse_attack(meta["attack"])
    targeted, steps = parsed.targeted, parsed.steps
    adaptive, n_adaptive = _adaptive(meta)
    if artifact.get("repeat_correct") is None:
        acc = accuracy_with_ci(artifact["probs"], artifact["y"])
        attacked, repeats = len(artifact["y"]), 1
    else:  # a robust run: robust = attacked and right in all R verdict runs (jobs.artifacts.correct_points)
        correct = correct_points(artifact)
        n, k = int(correct.numel()), int(correct.sum())
        low, high = wilson_interval(k, n)
        acc = {"accuracy": k / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n, "correct": k}
        attacked, repeats = int(artifact["attacked"].sum()), verdict_repeats(artifact)
    return {
        "dataset": meta["dataset"],
        "regime": meta["regime"],
        "defense": meta["defense"],
        "setting": meta["setting"],
        "param": setting_param(meta["defense"], meta["setting"]),
        "attack": meta["attack"],
        "targeted": bool(targeted),
        "steps": int(steps),
        "adaptive": adaptive,
        "n_adaptive": n_adaptive,
        "eot": _eot(meta),
        "accuracy": float(acc["accuracy"]),
        "ci_low": float(acc["ci_low"]),
        "ci_high": float(acc["ci_high"]),
        "n": int(acc["n"]),
        "correct": int(acc["correct"]),
        # what untargeted attacks pushed away from (attacks.labels); artifacts without it predate
        # the option and used the clean prediction
        "labels": meta.get("labels", "prediction"),
        "attacked": attacked,
        "repeats": repeats,
        "mean_accuracy": repeat_accuracy(artifact),
        "level": int(meta.get("level", 0)),
        "converged": meta.get("converged"),
        "evaluations": 1,
    }


def defense_groups(artifacts: Iterable[dict]) -> dict[tuple[str, str, str, str], list[dict]]:
    """The artifacts by (dataset, regime, defense, setting): every evaluation of one defense setting."""
    groups: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for artifact in artifacts:
        meta = artifact["meta"]
        groups[tuple(meta[key] for key in ("dataset", "regime", "defense", "setting"))].append(artifact)
    return dict(groups)


def artifacts_on(group: Iterable[dict], y: torch.Tensor) -> list[dict]:
    """The artifacts of `group` whose first len(y) points are the points labelled `y` (the robust
    runs' points, a prefix of the run's test subset); those with fewer points are left out, and one
    holding other points is a ValueError (evaluations made from other data)."""
    n, kept = len(y), []
    for artifact in group:
        if len(artifact["y"]) < n:
            continue
        if not torch.equal(artifact["y"][:n], y):
            meta = artifact["meta"]
            raise ValueError(f"{meta['dataset']} {meta['regime']} {meta['defense']} {meta['setting']}: the evaluation "
                             f"of {meta['attack']} holds other points than the robust runs; rerun it from the same "
                             "data")
        kept.append(artifact)
    return kept


def robust_points(group: Sequence[dict]) -> tuple[torch.Tensor, list[dict]] | None:
    """For one defense setting's (or bare model's) artifacts (`defense_groups`): None unless the robustness
    evaluation (ROBUST_KINDS) attacked it; else (y of the robust runs' points, `artifacts_on` those points)."""
    robust = [a for a in group if _is_robust(a["meta"])]
    if not robust:
        return None
    y = robust[0]["y"]
    return y, artifacts_on(group, y)


def worst_case_rows(artifacts: Iterable[dict]) -> list[dict]:
    """One ``results.csv`` row (attack and adaptive ``"worst_case"``) per (dataset, regime, defense,
    setting) that the robustness evaluation attacked (artifacts of the ROBUST_KINDS; the bare models', defense
    ``none``, too): the share of its n points (the robust runs' points, a prefix of the run's test subset)
    that survive EVERY evaluation of that setting, oblivious (clean included: x itself is in the eps-ball),
    Fig. 4's adaptive attacks and the robust runs (metrics.worst_case: the per-point AND, Wilson interval).
    Every artifact with at least n points takes part through its first n, which must hold the same labels;
    ``evaluations`` is the number of evaluations combined. A robust run's per-point verdict is
    jobs.artifacts.correct_points: a point its cascade did not attack was broken by an earlier run and
    counts as broken, and a point is robust only if all R verdict runs are right, so the AND is the exact
    per-point worst case. ``mean_accuracy``: the mean-over-R worst case, per point the smallest share of
    verdict runs that are right over the evaluations that judged it (jobs.artifacts.verdict_shares; an
    oblivious evaluation's one verdict is 0 or 1), averaged over the points; it is >= the all-R
    ``accuracy``. ``converged``: whether every ladder of the setting's convergence schedule converged (None
    without ladders); ``repeats``: the largest R."""
    rows = []
    for (dataset, regime, defense, setting), group in sorted(defense_groups(artifacts).items()):
        robust = robust_points(group)
        if robust is None:
            continue
        y, on_points = robust
        n = len(y)
        result = worst_case([correct_points(artifact)[:n] for artifact in on_points])
        shares = torch.stack([verdict_shares(artifact)[:n] for artifact in on_points]).min(0).values
        robust_runs = [a for a in on_points if _is_robust(a["meta"])]
        labels = robust_runs[0]["meta"].get("labels", "prediction")
        rows.append({"dataset": dataset, "regime": regime, "defense": defense, "setting": setting,
                     "param": setting_param(defense, setting), "attack": WORST_CASE, "targeted": False, "steps": 0,
                     "adaptive": WORST_CASE, "n_adaptive": 0, "eot": 0, "accuracy": float(result["accuracy"]),
                     "ci_low": float(result["ci_low"]), "ci_high": float(result["ci_high"]), "n": result["n"],
                     "correct": result["correct"], "labels": labels, "attacked": n,
                     "repeats": max(verdict_repeats(a) for a in robust_runs),
                     "mean_accuracy": float(shares.mean()) if n else float("nan"),
                     "level": max(int(a["meta"].get("level", 0)) for a in robust_runs),
                     "converged": schedule_converged(robust_runs), "evaluations": result["attacks"]})
    return rows


def last_levels(robust_runs: Sequence[dict]) -> dict[str, dict]:
    """The meta of each attack family's highest level that ran, by family (design.plan.robust_runs;
    artifacts from before issue 25 have no family: each run is its own)."""
    last: dict[str, dict] = {}
    for artifact in robust_runs:
        meta = artifact["meta"]
        family = meta.get("family") or f"{meta['adaptive']}-{meta['attack']}-e{_eot(meta)}"
        if family not in last or int(meta.get("level", 0)) > int(last[family].get("level", 0)):
            last[family] = meta
    return last


def schedule_converged(robust_runs: Sequence[dict]) -> bool | None:
    """Whether every ladder (family) of a defense setting's convergence schedule converged: the job's flag
    on the last level each ran (jobs.cascade: each of the family's last two doublings moved the worst case
    by no more than the tolerance; before issue 33, the last one). None without ladders (artifacts from
    before issue 25, or a schedule of one level and fixed runs only)."""
    flags = [meta["converged"] for meta in last_levels(robust_runs).values() if meta.get("converged") is not None]
    return all(flags) if flags else None


def detection_masks(clean: dict, adv: dict) -> dict[str, torch.Tensor]:
    """The point subsets of :data:`DETECTION_POINTS` for one clean and one attacked artifact of the
    same points (bool [n] each): "clean_correct" where the bare model's clean prediction is right."""
    if not torch.equal(clean["y"], adv["y"]):
        raise ValueError("the clean and the attacked evaluation hold different points; rerun both from the same data")
    correct = clean["plain_probs"].argmax(1) == clean["y"]
    return {"clean_correct": correct, "all": torch.ones_like(correct)}


def detection_scores(artifact: dict) -> dict[str, torch.Tensor]:
    """Detection scores [n] of one MI-PL artifact: "mi_pl" (the drop of the predicted-class probability)
    and "confidence" (minus the plain max probability); higher = more suspicious."""
    return {"mi_pl": mi_pl_detection_score(artifact["plain_probs"], artifact["probs"]),
            "confidence": confidence_score(artifact["plain_probs"])}


def detection_rows(artifacts: Iterable[dict], *, seed: int = 0, n_resamples: int = DETECTION_RESAMPLES) -> list[dict]:
    """Fig. 3a: detection AUCs of the MI-PL score and of the plain-confidence baseline.

    For every (dataset, regime, setting) of defense ``mi_pl`` that has a ``"clean"`` artifact and
    oblivious (``adaptive == "none"``) attacked artifacts, and for each attacked artifact, one row per
    detector and point subset:

    * detector ``"mi_pl"``: score = F_yhat(x) - F_MI-PL,yhat(x) with yhat = argmax F(x)
      (:func:`metrics.mi_pl_detection_score`), the drop of the predicted-class probability;
    * detector ``"confidence"``: score = -max F(x) (:func:`metrics.confidence_score`);
    * points ``"clean_correct"``: the paper's number. As the authors' code, only points whose clean
      prediction is correct count, each with its clean version (negative) and its adversarial
      version (positive), whether or not the attack succeeded on it;
    * points ``"all"``: every attacked point (the two groups again paired point by point).

    The interval is the 95% percentile bootstrap over points (:func:`metrics.paired_auc_ci`, which
    keeps each point's clean and adversarial scores together; DeLong's variance would assume them
    independent), seeded by ``derive_seed(seed, "detection", dataset, regime, setting, attack,
    points)``. Artifacts of other defenses and adaptive artifacts are ignored.
    """
    groups: dict[tuple[str, str, str], dict[str, dict]] = defaultdict(dict)
    for artifact in artifacts:
        check(artifact)
        meta = artifact["meta"]
        if meta["defense"] != "mi_pl" or _adaptive(meta)[0] != "none":
            continue
        key = (meta["dataset"], meta["regime"], meta["setting"])
        if meta["attack"] in groups[key]:
            raise ValueError(f"two mi_pl artifacts for {key} attack {meta['attack']!r}; keep one per evaluation")
        groups[key][meta["attack"]] = artifact
    rows = []
    for (dataset, regime, setting), by_attack in sorted(groups.items()):
        clean = by_attack.get("clean")
        if clean is None:
            continue
        clean_scores = detection_scores(clean)
        for attack in sorted(a for a in by_attack if a != "clean"):
            adv = by_attack[attack]
            adv_scores = detection_scores(adv)
            for points, mask in detection_masks(clean, adv).items():
                if not bool(mask.any()):
                    continue
                for detector in ("mi_pl", "confidence"):
                    generator = make_generator(derive_seed(seed, "detection", dataset, regime, setting, attack, points))
                    result = paired_auc_ci(clean_scores[detector][mask], adv_scores[detector][mask],
                                           n_resamples=n_resamples, generator=generator)
                    rows.append({
                        "dataset": dataset, "regime": regime, "attack": attack, "detector": detector,
                        "setting": setting, "points": points, "auc": result["auc"], "auc_low": result["auc_low"],
                        "auc_high": result["auc_high"], "n_clean": result["n"], "n_adv": result["n"],
                    })
    return rows


def component_rows(artifacts: Iterable[dict], attack: str | None = None) -> list[dict]:
    """Fig. 2: mean MI output components over the points of each MI-PL / MI-OL artifact.

    Uses the oblivious artifacts of defenses ``mi_pl`` (mode ``"pl"``) and ``mi_ol`` (mode ``"ol"``)
    on attack ``"clean"`` (input ``"clean"``) and on the adversarial ``attack`` (input
    ``"adversarial"``; the paper uses untargeted PGD-10, ``"pgd10"``). ``attack=None`` keeps every
    untargeted oblivious attack (column ``attack`` tells them apart). For each artifact two rows:
    component ``"y"``, F_MI,y(x) of the true label, and ``"yhat"``, F_MI,yhat(x) of the label the
    undefended model predicts on the same input (yhat = argmax plain_probs). ``value`` is the mean
    over all points (the paper averages over 100 clean test points and their adversarial
    counterparts, successful or not), ``std`` the sample standard deviation over points (NaN for a
    single point), ``n`` the number of points, ``num_classes`` C (for :func:`ideal_linearity`).
    """
    if attack is not None:
        parsed = parse_attack(attack)
        if parsed.steps == 0 or parsed.targeted:
            raise ValueError(f"attack={attack!r} must be an untargeted attack such as 'pgd10' (or None for all)")

    def wanted(name: str) -> bool:
        if name == "clean" or name == attack:
            return True
        return attack is None and not parse_attack(name).targeted

    rows = []
    for artifact in artifacts:
        check(artifact)
        meta = artifact["meta"]
        if meta["defense"] not in ("mi_pl", "mi_ol") or _adaptive(meta)[0] != "none":
            continue
        if not wanted(meta["attack"]):
            continue
        probs, y = artifact["probs"].double(), artifact["y"].long()
        yhat = artifact["plain_probs"].argmax(dim=1)
        index = torch.arange(len(y))
        for component, labels in (("y", y), ("yhat", yhat)):
            values = probs[index, labels].numpy()
            rows.append(
                {
                    "dataset": meta["dataset"],
                    "regime": meta["regime"],
                    "mode": meta["defense"].removeprefix("mi_"),
                    "lam": float(parse_setting(meta["defense"], meta["setting"])["lam"]),
                    "attack": meta["attack"],
                    "input": "clean" if meta["attack"] == "clean" else "adversarial",
                    "component": component,
                    "value": float(values.mean()) if len(values) else float("nan"),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                    "n": int(len(values)),
                    "num_classes": int(probs.shape[1]),
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["regime"], r["mode"], r["attack"], r["component"], r["lam"]))
    return rows


def ideal_linearity(mode: str, input: str, component: str, lam, num_classes: int):
    """The MI output component predicted by Table 1 under ideal global linearity (G = 0).

    ============  =========  =====================  =============
    mode          input      F_y                    F_yhat
    ============  =========  =====================  =============
    ``"pl"``      clean      1                      1
    ``"pl"``      adversarial lam                   1 - lam
    ``"ol"``      clean      lam                    lam
    ``"ol"``      adversarial lam + (1-lam)/(C-1)   0
    ============  =========  =====================  =============

    On clean inputs yhat = y. On adversarial inputs yhat != y; MI-PL mixes x with a sample of class
    yhat, MI-OL with a sample of a class drawn uniformly from the C - 1 labels other than yhat, which
    is y with probability 1/(C-1) (Sec. 3.2.2). ``lam`` may be a float (returns a float) or an array.
    """
    if mode not in ("pl", "ol"):
        raise ValueError(f"mode={mode!r} must be 'pl' (MI-PL) or 'ol' (MI-OL)")
    if input not in ("clean", "adversarial"):
        raise ValueError(f"input={input!r} must be 'clean' or 'adversarial'")
    if component not in ("y", "yhat"):
        raise ValueError(f"component={component!r} must be 'y' (true label) or 'yhat' (predicted label)")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} must be >= 2")
    lam_arr = np.asarray(lam, dtype=float)
    if mode == "pl" and input == "clean":
        value = np.ones_like(lam_arr)
    elif mode == "pl":
        value = lam_arr if component == "y" else 1.0 - lam_arr
    elif input == "clean":
        value = lam_arr.copy()
    elif component == "y":
        value = lam_arr + (1.0 - lam_arr) / (num_classes - 1)
    else:
        value = np.zeros_like(lam_arr)
    return float(value) if value.ndim == 0 else value


def aggregate(
    artifact_paths: Sequence[str | Path], *, component_attack: str | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Load every artifact and return ``(results_df, detection_df, components_df)``.

    Columns are :data:`RESULT_COLUMNS`, :data:`DETECTION_COLUMNS`, :data:`COMPONENT_COLUMNS` (also
    for empty frames). ``component_attack`` is the adversarial attack of Fig. 2 (paper: ``"pgd10"``;
    None keeps every untargeted attack and :func:`plots.plot_components` picks one). ``seed`` (the
    config seed) seeds the detection bootstrap.
    Two artifacts with the same :data:`ROW_KEY` (dataset, regime, defense, setting, attack, adaptive,
    n_adaptive, eot) raise ValueError: every evaluation must be counted once.
    """
    artifacts = [load(path) for path in expand_paths(list(artifact_paths))]
    rows = [result_row(a) for a in artifacts] + worst_case_rows(artifacts)
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    key = ROW_KEY
    duplicated = results[results.duplicated(key, keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        raise ValueError(f"duplicate evaluations for {dict(first[key])}; pass each artifact once")
    results = results.sort_values(key, kind="stable").reset_index(drop=True)
    results = results.astype({"targeted": bool, "steps": int, "n_adaptive": int, "eot": int, "n": int, "correct": int,
                              "attacked": int, "repeats": int, "level": int, "evaluations": int})
    detection = pd.DataFrame(detection_rows(artifacts, seed=seed), columns=DETECTION_COLUMNS)
    components = pd.DataFrame(component_rows(artifacts, attack=component_attack), columns=COMPONENT_COLUMNS)
    return results, detection, components
