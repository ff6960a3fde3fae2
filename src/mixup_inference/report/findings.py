"""The paper's claims, tested on one run: each as a *paired* difference with its 95% interval.

Every comparison below is between two classifiers scored on the same attacked test points (a defense
and the bare model it wraps, MI-OL and a baseline on the same model, two detectors on the same
inputs). Their errors are strongly correlated, so a difference is judged by a paired interval
(:func:`metrics.paired_difference_ci`, :func:`metrics.paired_auc_difference_ci`), not by whether two
separate accuracy intervals overlap, which would be several times too cautious.

The five tables follow the paper's findings, in the order the README states them, and then
ask whether each defense survives an attacker who knows it:

* :func:`defense_gains`: each defended row of Table 2/3 minus its bare model, per attack (findings 1
  and 2: mixup + MI-OL over mixup; the ERM / AT + MI-OL ablations against the mixup-trained models);
* :func:`matched_baselines`: on the Fig. 3b grids, each baseline setting against the MI-OL setting of
  the nearest clean accuracy, under the grid's attack (finding 3);
* :func:`detection_differences`: MI-PL detection AUC minus plain-confidence AUC on the clean-correct
  points, as the paper (finding 4, Fig. 3a);
* :func:`adaptive_levels`: MI under the adaptive attacks minus the bare model under the oblivious
  attack on the same points, and how much of MI's oblivious gain is left (finding 5, Fig. 4);
* :func:`robustness_levels`: every randomized defense the robustness evaluation (`robustness:`) attacked,
  oblivious, strongest single run and worst case per point, against the bare model's worst case under the
  same evaluation for a deterministic model (section 6).

Inputs are evaluation artifacts (:func:`jobs.artifacts.load`), indexed by :func:`index_artifacts`;
:func:`write_findings` writes the five tables as one Markdown/HTML page and one CSV each.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor

from .aggregate import (artifact_key, artifacts_on, defense_groups, detection_masks, detection_scores, last_levels,
                        robust_points, schedule_converged)
from ..jobs.artifacts import correct_points, verdict_repeats, verdict_shares
from ..core.attacks.kinds import ROBUST_KINDS
from ..core.metrics import (detection_auc, holm, paired_auc_difference_ci, paired_counts_ci, paired_difference_ci,
                             worst_case, z_for)
from ..core.defenses.specs import DEFENSES, PLAIN_SETTING
from ..design.paper_tables import RowSpec
from ..core.utils import atomic_write_text, derive_seed, make_generator

__all__ = [
    "FINDINGS",
    "adjust",
    "family_of",
    "adaptive_levels",
    "defense_gains",
    "detection_differences",
    "index_artifacts",
    "matched_baselines",
    "write_findings",
]

#: dataset, regime, attack, defense, setting, adaptive, n_adaptive, eot (aggregate.artifact_key)
Key = tuple[str, str, str, str, str, str, int, int]


def index_artifacts(artifacts: Iterable[dict]) -> dict[Key, dict]:
    """Artifacts by (dataset, regime, attack, defense, setting, adaptive, n_adaptive, eot); duplicates raise."""
    index: dict[Key, dict] = {}
    for artifact in artifacts:
        key = artifact_key(artifact["meta"])
        if key in index:
            raise ValueError(f"two artifacts for {key}; pass each evaluation once")
        index[key] = artifact
    return index


def _get(index: dict[Key, dict], dataset: str, regime: str, attack: str, defense: str, setting: str,
         adaptive: str = "none", n_adaptive: int = 0) -> dict:
    key = (dataset, regime, attack, defense, setting, adaptive, n_adaptive, 0)
    if key not in index:
        raise KeyError(f"no evaluation artifact for {key}; the findings need every evaluation the config lists")
    return index[key]


def _correct(probs: Tensor, y: Tensor) -> Tensor:
    return probs.argmax(1) == y


def _pct(value: float) -> float:
    return round(100.0 * value, 2)


def _rate(correct: Tensor) -> float:
    """Share of True in a bool mask (an accuracy in [0, 1])."""
    return correct.float().mean().item()


def _difference_columns(result: dict) -> dict:
    """A paired accuracy difference's columns: the counts (both right, only the first, only the second) let
    :func:`adjust` widen its interval to the family's adjusted level later."""
    return {"difference": _pct(result["difference"]), "low": _pct(result["low"]), "high": _pct(result["high"]),
            "p": _p(result["p"]), "both": result["both"], "only_first": result["only_a"],
            "only_second": result["only_b"]}


def _p(value: float) -> float:
    """A p-value to 4 significant digits (the CSV and the page print what the verdicts used)."""
    return float(f"{value:.4g}")


def defense_gains(index: dict[Key, dict], rows: Sequence[RowSpec], dataset: str, attacks: Sequence[str]) -> pd.DataFrame:
    """For each defended row of a paper table and each attack: accuracy with the defense minus the bare
    model's on the same (attacked) inputs, both read from the one artifact (``probs`` vs ``plain_probs``)."""
    records = []
    for row in rows:
        if row.defense == "none":
            continue
        for attack in attacks:
            art = _get(index, dataset, row.regime, attack, row.defense, row.setting)
            defended, plain = _correct(art["probs"], art["y"]), _correct(art["plain_probs"], art["y"])
            records.append({
                "method": row.label, "regime": row.regime, "defense": row.defense, "setting": row.setting,
                "attack": attack, "plain": _pct(_rate(plain)), "defended": _pct(_rate(defended)),
                **_difference_columns(paired_difference_ci(defended, plain)), "n": int(defended.numel()),
            })
    return pd.DataFrame(records)


def matched_baselines(index: dict[Key, dict], dataset: str, regimes: Sequence[str], attack: str,
                      settings: dict[str, Sequence[str]], mi_defense: str = "mi_ol") -> pd.DataFrame:
    """Fig. 3b at equal clean accuracy: each baseline setting of the grid against the ``mi_defense``
    setting whose clean accuracy is nearest, by their accuracy difference (MI minus baseline) under
    ``attack`` on the same points. Baselines without an MI setting in the grid are skipped."""
    records = []
    for regime in regimes:
        mi = {}
        for setting in settings.get(mi_defense, ()):
            clean = _get(index, dataset, regime, "clean", mi_defense, setting)
            mi[setting] = _rate(_correct(clean["probs"], clean["y"]))
        if not mi:
            continue
        for baseline in [name for name, spec in DEFENSES.items() if spec.baseline]:
            for setting in settings.get(baseline, ()):
                clean = _get(index, dataset, regime, "clean", baseline, setting)
                clean_acc = _rate(_correct(clean["probs"], clean["y"]))
                mi_setting = min(mi, key=lambda s: (abs(mi[s] - clean_acc), s))
                adv_b = _get(index, dataset, regime, attack, baseline, setting)
                adv_mi = _get(index, dataset, regime, attack, mi_defense, mi_setting)
                ok_b, ok_mi = _correct(adv_b["probs"], adv_b["y"]), _correct(adv_mi["probs"], adv_mi["y"])
                records.append({
                    "regime": regime, "attack": attack, "baseline": baseline, "baseline_setting": setting,
                    "mi_setting": mi_setting, "clean_baseline": _pct(clean_acc), "clean_mi": _pct(mi[mi_setting]),
                    "adv_baseline": _pct(_rate(ok_b)), "adv_mi": _pct(_rate(ok_mi)),
                    **_difference_columns(paired_difference_ci(ok_mi, ok_b)), "n": int(ok_b.numel()),
                })
    return pd.DataFrame(records)


def detection_differences(index: dict[Key, dict], dataset: str, regimes: Sequence[str], attacks: Sequence[str],
                          setting: str, *, seed: int = 0) -> pd.DataFrame:
    """Fig. 3a as a paired test: AUC of the MI-PL score minus AUC of plain confidence on the points
    whose clean prediction is correct (the paper's protocol), each point's clean version a negative
    and its adversarial version a positive, with a 95% paired bootstrap interval over points
    (:func:`metrics.paired_auc_difference_ci`, seeded by ``derive_seed(seed, "detection-difference",
    dataset, regime, attack)``). The all-points AUCs stand beside it (``*_all``). The detection rows are one family
    (:func:`family_of`), so their adjusted interval (`low_adj`, `high_adj`, at 1 - 0.05 / m for the table's m rows)
    comes from the same bootstrap resamples here; `family_size` records the m used."""
    m = len(regimes) * len(attacks)
    records = []
    for regime in regimes:
        clean = _get(index, dataset, regime, "clean", "mi_pl", setting)
        clean_scores = detection_scores(clean)
        for attack in attacks:
            adv = _get(index, dataset, regime, attack, "mi_pl", setting)
            adv_scores = detection_scores(adv)
            masks = detection_masks(clean, adv)
            mask = masks["clean_correct"]
            generator = make_generator(derive_seed(seed, "detection-difference", dataset, regime, attack))
            diff = paired_auc_difference_ci(clean_scores["mi_pl"][mask], adv_scores["mi_pl"][mask],
                                            clean_scores["confidence"][mask], adv_scores["confidence"][mask],
                                            adjusted_level=1 - ALPHA / m, generator=generator)
            records.append({
                "regime": regime, "attack": attack, "setting": setting,
                "auc_mi_pl": round(diff["auc_a"], 4), "auc_confidence": round(diff["auc_b"], 4),
                "difference": round(diff["difference"], 4), "low": round(diff["low"], 4),
                "high": round(diff["high"], 4), "low_adj": round(diff["low_adj"], 4),
                "high_adj": round(diff["high_adj"], 4), "family_size": m, "p": _p(diff["p"]), "n": diff["n"],
                # plain confidence with its sign flipped (low confidence = adversarial) detects with AUC
                # 1 - auc_confidence: an AUC far below 0.5 is a strong detector read the other way round
                "auc_confidence_flipped": round(1 - diff["auc_b"], 4),
                "auc_mi_pl_all": round(detection_auc(clean_scores["mi_pl"], adv_scores["mi_pl"]), 4),
                "auc_confidence_all": round(detection_auc(clean_scores["confidence"], adv_scores["confidence"]), 4),
                "n_all": int(masks["all"].numel()),
            })
    return pd.DataFrame(records)


def adaptive_levels(index: dict[Key, dict], dataset: str, regime: str, defense: str, setting: str,
                    fig4_kinds: Sequence[str], attacks: Sequence[str], n_adaptive: Sequence[int]) -> pd.DataFrame:
    """For each run of the paper's adaptive attack (Fig. 4; `fig4_kinds`: config adaptive.kinds): MI's accuracy under it, the bare model's under the oblivious
    attack on the same points (the no-MI level of Fig. 4) and MI's under the oblivious attack; the paired
    difference adaptive MI minus no-MI, and the share of MI's oblivious gain that is left."""
    records = []
    for attack in attacks:
        plain = _get(index, dataset, regime, attack, "none", PLAIN_SETTING)
        oblivious = _get(index, dataset, regime, attack, defense, setting)
        for fig4_kind in fig4_kinds:
            for n in n_adaptive:
                art = _get(index, dataset, regime, attack, defense, setting, fig4_kind, int(n))
                m = int(art["y"].numel())
                if not (plain["y"][:m] == art["y"]).all():
                    raise ValueError(f"adaptive {fig4_kind} N_A={n}: its points are not the first {m} of the oblivious "
                                     "evaluation's; rerun both from the same data")
                ok = _correct(art["probs"], art["y"])
                no_mi = _correct(plain["probs"][:m], art["y"])
                ok_oblivious = _correct(oblivious["probs"][:m], art["y"])
                acc, no_mi_acc, obl_acc = _rate(ok), _rate(no_mi), _rate(ok_oblivious)
                gain = obl_acc - no_mi_acc
                records.append({
                    "kind": fig4_kind, "attack": attack, "n_adaptive": int(n), "adaptive_mi": _pct(acc),
                    "no_mi": _pct(no_mi_acc), "oblivious_mi": _pct(obl_acc),
                    **_difference_columns(paired_difference_ci(ok, no_mi)),
                    "gain_left": round((acc - no_mi_acc) / gain, 3) if gain > 0 else float("nan"),
                    "n": m,
                })
    return pd.DataFrame(records)


def robustness_levels(index: dict[Key, dict]) -> pd.DataFrame:
    """6. Per randomized defense setting the robustness evaluation (the `robustness:` section) attacked, on
    its robust runs' n points: its accuracy under the oblivious attacks (worst case over them, clean
    included), under the strongest single run (`strongest_run`, `strongest`), and the worst case per point
    over every evaluation (metrics.worst_case: oblivious, Fig. 4's adaptive attacks, the robust runs), each
    with its Wilson interval, and `worst_case_mean`, the mean-over-R worst case beside the all-R one
    (aggregate.worst_case_rows); then the worst case minus the bare model's on the same points (Newcombe's
    paired interval) and its McNemar p-value; :func:`adjust` then says, after Holm's adjustment over the
    section's rows, whether the paper's claim that the defense adds robustness to its model holds.

    The bare model's side (issue 33): `bare_worst_case` is the bare model's worst case per point over its
    oblivious evaluations and its own robust runs (the kinds for a deterministic model: AutoAttack standard,
    PGD at Tramer et al.'s step size; same cascade, levels and points), `bare_basis` says so, or, where the
    bare model has no robust runs, that it is its oblivious worst case only. `defense_faced` and `bare_faced`
    list what each side faced (oblivious attacks; each robust family at the last level it ran; Fig. 4's
    attacks), `bare_converged` the bare model's convergence.

    Convergence: a robust run's per-point verdict is jobs.artifacts.correct_points (attacked by its cascade
    and right in all R verdict runs). `levels` is the convergence curve, the worst case over the oblivious
    evaluations and every robust run of levels <= k, for each level k, with its Wilson interval ("L0 41.7
    [32.5, 51.5] | L1 33.3 [24.9, 43.0] | L2 ..."; the run order does not enter it; Fig. 4's attacks enter
    only the final worst case); `converged` is True only when every ladder's last two doublings each moved
    the worst case by no more than the tolerance (the job's flags, jobs.cascade; the number is then
    converged, otherwise an upper bound), `last_doubling` how far the last level moved the curve (points of
    %), and `budget` names the last level each family ran. In a cascade a run's accuracy counts the points
    earlier runs broke as broken (it did not attack them), so the "strongest single run" is the cumulative
    worst case of the runs up to it; `cascade: false` gives each run's own accuracy."""
    groups = defense_groups(index.values())
    records = []
    for (dataset, regime, defense, setting), group in sorted(groups.items()):
        if not DEFENSES[defense].randomized:  # the bare model is every row's reference, not a row
            continue
        robust = robust_points(group)
        if robust is None:
            continue
        y, on_points = robust
        n = len(y)
        oblivious = _correct_of((a for a in on_points if not _saw_defense(a)), n)
        runs = [a for a in on_points if _saw_defense(a)]
        adaptive = _correct_of(runs, n)
        bare_arts = artifacts_on(groups.get((dataset, regime, "none", PLAIN_SETTING), []), y)
        bare = _correct_of(bare_arts, n)
        if not oblivious or not adaptive or not bare:
            continue
        bare_runs = [a for a in bare_arts if _is_robust(a)]
        strongest_key = min(adaptive, key=lambda k: int(adaptive[k].sum()))
        levels = {"oblivious": worst_case(oblivious), "strongest": worst_case([adaptive[strongest_key]]),
                  "worst_case": worst_case({**oblivious, **adaptive})}
        bare_level = worst_case(bare)
        diff = paired_difference_ci(levels["worst_case"]["survives"], bare_level["survives"])
        record = {"dataset": dataset, "regime": regime, "defense": defense, "setting": setting,
                  "strongest_run": _run_name(strongest_key)}
        for name, level in levels.items():
            record.update({name: _pct(level["accuracy"]), f"{name}_low": _pct(level["ci_low"]),
                           f"{name}_high": _pct(level["ci_high"])})
        record["worst_case_mean"] = _pct(_mean_worst_case(on_points, n))
        record.update({"bare_worst_case": _pct(bare_level["accuracy"]), "bare_low": _pct(bare_level["ci_low"]),
                       "bare_high": _pct(bare_level["ci_high"]),
                       "bare_basis": BARE_ROBUST if bare_runs else BARE_OBLIVIOUS,
                       **_difference_columns(diff), "evaluations": levels["worst_case"]["attacks"], "n": n})
        record.update(_convergence(oblivious, [a for a in runs if _is_robust(a)], n))
        record.update({"bare_converged": schedule_converged(bare_runs), "defense_faced": _faced(on_points),
                       "bare_faced": _faced(bare_arts)})
        records.append(record)
    return pd.DataFrame(records)


def _flag(value) -> bool | None:
    """A True / False / missing (None, NaN, "") flag of a findings row, also after a CSV round trip."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


#: `bare_basis` of a robustness row: what the bare model's worst case is over.
BARE_ROBUST = "its own robustness evaluation (deterministic kinds) and its oblivious attacks"
BARE_OBLIVIOUS = ("its oblivious attacks only (the bare model has no robustness runs: robustness.kinds names no kind "
                  "for it)")


def _saw_defense(artifact: dict) -> bool:
    """A robust run or one of Fig. 4's adaptive attacks: an attack that saw the defense."""
    return artifact["meta"].get("adaptive", "none") != "none"


def _is_robust(artifact: dict) -> bool:
    return artifact["meta"].get("adaptive", "none") in ROBUST_KINDS


def _correct_of(artifacts: Iterable[dict], n: int) -> dict[tuple, Tensor]:
    """The per-point verdicts (bool [n]) of each artifact, by (attack, kind, N_A, EOT draws)."""
    return {(a["meta"]["attack"], a["meta"].get("adaptive", "none"), int(a["meta"].get("n_adaptive", 0)),
             int(a["meta"].get("eot", 0))): correct_points(a)[:n] for a in artifacts}


def _run_name(key: tuple) -> str:
    """How findings name a run: "autoattack_rand aa100 EOT 20", "paper pgd10 N_A 5"."""
    attack, kind, n_adaptive, eot = key
    return f"{kind} {attack}" + (f" EOT {eot}" if eot else "") + (f" N_A {n_adaptive}" if n_adaptive else "")


def _mean_worst_case(artifacts: Sequence[dict], n: int) -> float:
    """The mean-over-R worst case on the first n points (aggregate.worst_case_rows' ``mean_accuracy``)."""
    return torch.stack([verdict_shares(a)[:n] for a in artifacts]).min(0).values.mean().item()


def _faced(artifacts: Sequence[dict]) -> str:
    """What one side faced: its oblivious attacks, each robust family at the last level it ran (with its
    EOT draws), and Fig. 4's adaptive attacks per (kind, attack) with their N_A values."""
    oblivious = sorted({a["meta"]["attack"] for a in artifacts if not _saw_defense(a)})
    robust = [f"{m['adaptive']} {m['attack']}" + (f" EOT {m['eot']}" if int(m.get("eot", 0)) > 1 else "")
              + f" (L{int(m.get('level', 0))})"
              for _, m in sorted(last_levels([a for a in artifacts if _is_robust(a)]).items())]
    fig4: dict[tuple[str, str], list[int]] = {}
    for a in artifacts:
        if _saw_defense(a) and not _is_robust(a):
            meta = a["meta"]
            fig4.setdefault((meta["adaptive"], meta["attack"]), []).append(int(meta.get("n_adaptive", 0)))
    adaptive = [f"{kind} {attack} N_A {'/'.join(map(str, sorted(values)))}"
                for (kind, attack), values in sorted(fig4.items())]
    return "; ".join([f"oblivious {', '.join(oblivious)}", *robust, *adaptive])


def _convergence(oblivious: dict, runs: list[dict], n: int) -> dict:
    """The convergence columns of one defense setting's findings row (see `robustness_levels`); `runs`: its
    robust runs."""
    top = max((int(a["meta"].get("level", 0)) for a in runs), default=0)
    curve, accuracies = [], []
    for k in range(top + 1):
        upto = [correct_points(a)[:n] for a in runs if int(a["meta"].get("level", 0)) <= k]
        level = worst_case([*oblivious.values(), *upto])
        accuracies.append(_pct(level["accuracy"]))
        curve.append(f"L{k} {_pct(level['accuracy']):.1f} [{_pct(level['ci_low']):.1f}, {_pct(level['ci_high']):.1f}]")
    budget = "; ".join(f"{m['adaptive']} {m['attack']} EOT {m.get('eot', 0)} x{m.get('n_samples_attack', '?')} "
                       f"(L{int(m.get('level', 0))})"
                       for _, m in sorted(last_levels(runs).items()))
    repeats = max((verdict_repeats(a) for a in runs), default=1)
    return {"converged": bool(schedule_converged(runs)), "levels": " | ".join(curve),
            "last_doubling": round(accuracies[-2] - accuracies[-1], 2) if top else float("nan"), "budget": budget,
            "repeats": repeats}


def robustness_statement(frame: pd.DataFrame) -> str:
    """One plain sentence per attacked defense, computed from `robustness_levels`' numbers."""
    if not len(frame):
        return "No defense was attacked by the robustness evaluation (no `robustness:` section)."
    if "verdict" not in frame:  # not yet adjusted: Holm over this table's rows alone
        frame = adjust({"robustness": frame})["robustness"]
    lines = []
    for r in frame.to_dict("records"):
        verdict = {HOLDS: "holds: the defense keeps more points than the bare model under every attack (Holm-adjusted "
                            f"p = {r['p_holm']:.3g})",
                   REVERSED: "is reversed: the worst case is below the bare model's, beyond chance (Holm-adjusted p = "
                             f"{r['p_holm']:.3g})",
                   NO_EVIDENCE: "has no evidence at this scale: the difference is within chance after Holm's adjustment "
                                f"(p = {r['p_holm']:.3g})"}[r["verdict"]]
        defended = (f"- {r['regime']} + {r['defense']} ({r['setting']}): oblivious {r['oblivious']:.1f}% "
                    f"[{r['oblivious_low']:.1f}, {r['oblivious_high']:.1f}], strongest single run "
                    f"{r['strongest']:.1f}% [{r['strongest_low']:.1f}, {r['strongest_high']:.1f}] ({r['strongest_run']}), worst case "
                    f"{r['worst_case']:.1f}% [{r['worst_case_low']:.1f}, {r['worst_case_high']:.1f}] (all R = "
                    f"{r['repeats']} verdicts right; averaged over the R verdicts {r['worst_case_mean']:.1f}%) on "
                    f"{r['n']} points")
        bare = (f"the bare model's worst case {r['bare_worst_case']:.1f}% [{r['bare_low']:.1f}, {r['bare_high']:.1f}] "
                f"(over {r['bare_basis']})")
        difference = f"defense minus bare model {r['difference']:+.1f} [{r['low']:.1f}, {r['high']:.1f}]"
        if not math.isnan(r.get("low_adj", float("nan"))):
            difference += (f" (adjusted for the section's {int(r['family_size'])} claims: [{r['low_adj']:.1f}, "
                           f"{r['high_adj']:.1f}])")
        if r["converged"]:
            convergence = (f"The worst case is converged (each of the last two doublings within the tolerance; levels "
                           f"{r['levels']}) at {r['budget']}")
        else:
            convergence = (f"The worst case is an upper bound: not converged (a family's last two doublings did not "
                           f"both stay within the tolerance); the last doubling moved it by {r['last_doubling']:.1f} "
                           f"points (levels {r['levels']}) at {r['budget']}")
        bare_converged = _flag(r.get("bare_converged"))
        if bare_converged is not None:
            convergence += f"; the bare model's is {'converged' if bare_converged else 'an upper bound'}"
        lines.append(f"{defended}; {bare}; {difference}: the claim {verdict}. {convergence}.")
    return "\n".join(lines)


# ------------------------------------------------------------------ multiplicity (issue 33)
#: The verdict words. A claim "holds" only where its Holm-adjusted p-value is below ALPHA with the claimed sign;
#: where the adjusted p-value is not, there is "no evidence" either way (never "gone").
HOLDS, REVERSED, NO_EVIDENCE = "holds", "reversed", "no evidence"
ALPHA = 0.05


def family_of(name: str, row: dict) -> str:
    """The family a findings row is adjusted in (Holm within each): the Table-2 rows split into MI's gains (MI on
    the mixup-trained or interpolated-AT model), the ablations (MI on ERM or AT models) and the baselines (input
    transformations); the matched baselines of Fig. 3b, the detection AUCs, Fig. 4's paper adaptive attack and the
    robustness evaluation are one family each. Every row claims the first side is better (a defense over its bare
    model, MI-OL over a baseline, MI-PL's AUC over confidence's)."""
    if name == "gains":
        if DEFENSES[row["defense"]].baseline:
            return "baselines"
        return "ablations" if row["regime"] in ("erm", "at") else "mi_gains"
    return name


def adjust(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every findings table with `family`, `family_size` (m: the family's rows with a p-value), `p_holm` (Holm's
    adjustment of `p` within the family, across the tables: :func:`family_of`), `verdict` (:data:`HOLDS` where
    p_holm < ALPHA and the difference is > 0, :data:`REVERSED` where p_holm < ALPHA and it is < 0,
    :data:`NO_EVIDENCE` otherwise) and the adjusted interval `low_adj`, `high_adj`: the row's interval at level
    1 - ALPHA / m (Bonferroni), so that all of a family's adjusted intervals cover their differences together with
    95% confidence. Accuracy rows widen Newcombe's interval from their counts (`both`, `only_first`,
    `only_second`); detection rows bring theirs from their bootstrap (:func:`detection_differences`).

    Holm's test, which decides the verdicts, rejects at least what Bonferroni rejects, so a row can hold while
    its adjusted interval touches 0 (never the other way round, up to the test/interval mismatch of McNemar's
    exact test and Newcombe's interval)."""
    out = {name: frame.copy() for name, frame in frames.items()}
    # the m a builder computed its own adjusted intervals for (detection), checked against the family's below
    given = {name: frame.pop("family_size") for name, frame in out.items() if "family_size" in frame}
    members: dict[str, list[tuple[str, int]]] = {}
    for name, frame in out.items():
        if not len(frame) or "p" not in frame:
            continue
        frame["family"] = [family_of(name, row) for row in frame.to_dict("records")]
        for i, family in enumerate(frame["family"]):
            members.setdefault(family, []).append((name, i))
        if "low_adj" not in frame:  # beside the raw interval
            at = frame.columns.get_loc("high") + 1 if "high" in frame else len(frame.columns)
            frame.insert(at, "low_adj", float("nan"))
            frame.insert(at + 1, "high_adj", float("nan"))
        frame["family_size"] = 0
        frame["p_holm"] = float("nan")
    for family, where in members.items():
        p_values = [out[name]["p"].iat[i] for name, i in where]
        m = sum(not math.isnan(p) for p in p_values)
        z = z_for(1 - ALPHA / m) if m else float("nan")
        for (name, i), value in zip(where, holm(p_values)):
            frame = out[name]
            row = frame.iloc[i]
            frame.iat[i, frame.columns.get_loc("p_holm")] = _p(value)
            frame.iat[i, frame.columns.get_loc("family_size")] = m
            if "both" in frame and not math.isnan(row["p"]):
                counts = [int(row["both"]), int(row["only_first"]), int(row["only_second"])]
                low, high = paired_counts_ci(*counts, int(row["n"]) - sum(counts), z)
                frame.iat[i, frame.columns.get_loc("low_adj")] = _pct(low)
                frame.iat[i, frame.columns.get_loc("high_adj")] = _pct(high)
            elif name in given and int(given[name].iat[i]) != m:
                raise ValueError(f"the {name} rows' adjusted intervals were computed for a family of "
                                 f"{int(given[name].iat[i])} claims, but family {family!r} has {m}: "
                                 "family_of and the table's builder disagree")
    for frame in out.values():
        if "p_holm" in frame:
            significant = frame["p_holm"] < ALPHA
            frame["verdict"] = [HOLDS if sig and d > 0 else REVERSED if sig and d < 0 else NO_EVIDENCE
                                for sig, d in zip(significant, frame["difference"])]
    return out


FINDINGS = ("gains", "matched", "detection", "adaptive", "robustness")
_TITLES = {
    "gains": "1-2. Each defense minus its bare model, same attacked points (Table 2 rows)",
    "matched": "3. MI-OL minus each baseline at the nearest clean accuracy (Fig. 3b grids)",
    "detection": "4. Detection: AUC of MI-PL minus AUC of plain confidence on the clean-correct points (Fig. 3a); "
                 "*_all: on every point",
    "adaptive": "5. Adaptive attacks: MI under the adaptive attack minus the bare model under the oblivious one "
                "(Fig. 4); gain_left = (adaptive MI - no-MI) / (oblivious MI - no-MI)",
    "robustness": "6. The robustness evaluation: every randomized defense against an attacker who knows it (AutoAttack "
                  "rand, EOT PGD, Tramer et al.'s attack), oblivious, strongest single run and worst case per point "
                  "(all-R and mean over R verdicts), minus the bare model's worst case under the strongest attacks "
                  "for a deterministic model (AutoAttack standard, PGD); what each side faced",
}
_INTRO = ("`difference` is (first) minus (second) on the same points, in % (AUCs: in [0, 1]); `low`/`high` bound "
          "it with 95% confidence: Newcombe's paired score interval for accuracies, a bootstrap over points for AUCs "
          "(each point's clean and adversarial scores, and both detectors, resampled together). The intervals are "
          "raw (each at 95% on its own). `p` is the raw two-sided p-value of no difference (exact McNemar test for "
          "accuracies, the bootstrap for AUCs) and `p_holm` its Holm adjustment within the row's `family` (MI gains, "
          "ablations and baselines among the Table-2 rows; the matched baselines; detection; Fig. 4's adaptive "
          "attack; the robustness evaluation), which bounds the chance of any false claim in a family at 5%. "
          "`low_adj`/`high_adj` is the interval adjusted for the family's `family_size` m claims: at level 1 - 0.05/m "
          "(Bonferroni), so all of a family's adjusted intervals hold together with 95% confidence (`both`, "
          "`only_first`, `only_second`: the paired counts an accuracy interval is computed from). "
          f"`verdict`: '{HOLDS}' where p_holm < 0.05 and the difference is positive (the paper's direction), "
          f"'{REVERSED}' where p_holm < 0.05 and it is negative, '{NO_EVIDENCE}' otherwise.")


def write_findings(frames: dict[str, pd.DataFrame], stem: str | Path) -> list[Path]:
    """The five tables (keys :data:`FINDINGS`), adjusted for multiplicity (:func:`adjust`), as ``stem.md`` and
    ``stem.html`` (one page, a section each) and ``stem_<name>.csv`` (one per table), each written atomically."""
    frames = adjust(frames)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md = ["# The paper's findings on this run: paired differences with 95% intervals", _INTRO]
    page = [f"<p>{html.escape(_INTRO)}</p>"]
    texts = {}
    for name in FINDINGS:
        frame = frames[name]
        md += [f"## {_TITLES[name]}", frame.to_markdown(index=False) if len(frame) else "(no rows)"]
        page += [f"<h3>{html.escape(_TITLES[name])}</h3>", frame.to_html(index=False) if len(frame) else "<p>(no rows)</p>"]
        if name == "robustness":  # the plain statement, computed from the numbers above
            md.append(robustness_statement(frame))
            page.append(f"<pre>{html.escape(robustness_statement(frame))}</pre>")
        texts[stem.with_name(f"{stem.name}_{name}.csv")] = frame.to_csv(index=False)
    texts[stem.with_name(stem.name + ".md")] = "\n\n".join(md) + "\n"
    texts[stem.with_name(stem.name + ".html")] = "\n".join(page) + "\n"
    for path, text in texts.items():
        atomic_write_text(path, text)
    return list(texts)
