"""The training study's report (issue 35): what MI's gain follows, over training seeds, training lengths and the
robust-training recipe.

Inputs: the study's models (design.study: regime, recipe, epochs, seed; each known to the workflow by its model name),
their train metrics, and the evaluation artifacts the workflow's evaluate and robust jobs wrote for them on the
run's points (the same class-stratified points for every model: the points are drawn from the config seed, never
from the training seed, so every comparison below is paired point by point).

Outputs (:func:`write_study`): ``training_study.csv``, one row per model x defense x attack (``attack`` =
``worst_case`` for the robustness evaluation's per-point worst case), each section's CSV, the training-length
section's two figures (:data:`FIGURES`) and ``study.md`` with three sections:

1. **Seeds**: each headline difference (an MI row of the study's table minus its bare model, under each attack, and
   the robustness evaluation's worst case minus the bare model) per seed, its mean and standard deviation over the
   seeds, a t interval over the seeds' values, and a two-level bootstrap interval that resamples seeds and points
   together (:func:`seed_point_bootstrap`). A difference *survives the seed spread* when the two-level bootstrap's
   Holm-adjusted p-value (over the section's differences) is below 0.05 with a positive mean.
2. **Training length**: per regime, the preset recipe's models at each length (one seed): clean and PGD-10 accuracy,
   MI-OL's gain under PGD-10 with its paired interval, Fig. 2's F_y at lambda 0.5 and 1 (MI-OL on clean inputs: the
   mean probability of the true class; ideal linearity gives lambda); the gain's slope per doubling of the epochs
   with a bootstrap interval over points, and what it implies for reaching the paper's gain.
3. **Recipe**: FGSM with a random start against the preset's PGD-k at the same epochs: clean accuracy, PGD-10
   accuracy, the paired difference, training core-seconds, and the decision rule stated before the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..core.attacks.specs import PAPER_ATTACKS
from ..core.defenses.specs import DEFENSES, PLAIN_SETTING
from ..core.metrics import holm, paired_difference_ci, wilson_interval, worst_case
from ..core.utils import atomic_write_text, derive_seed, make_generator
from ..design.paper_tables import PAPER_EPOCHS, TABLES, paper_numbers, rows_of
from ..design.study import StudyModel
from ..jobs.artifacts import correct_points

from .aggregate import artifacts_on, defense_groups, robust_points
from .tables import epochs_span, epochs_text

__all__ = ["FIGURES", "StudyEntry", "length_trend", "paper_gains", "recipe_comparison", "seed_point_bootstrap",
           "seed_spread", "study_rows", "training_curves", "write_study"]

#: The attack the training-length and recipe sections read by default (the paper's Fig. 2 / Table 2 column); the
#: workflow passes the first attack of ``study.attacks`` that is not ``clean``.
TREND_ATTACK = "pgd10"
#: Bootstrap resamples of the seed and trend intervals.
RESAMPLES = 2000
#: A model trained with FGSM has catastrophically overfitted (Wong et al. 2020) when its PGD-10 accuracy is below
#: this while its clean accuracy is above COLLAPSE_CLEAN: the final model is checked, not every epoch.
COLLAPSE_PGD, COLLAPSE_CLEAN = 0.05, 0.5
#: The training-length section's figures (report.plots.study), each written as <stem>.png and <stem>.svg: MI-OL's
#: gain against the epochs and against F_y.
FIGURES = {"gain_vs_epochs": "study_gain_vs_epochs", "gain_vs_fy": "study_gain_vs_fy"}


@dataclass(frozen=True)
class StudyEntry:
    """One model of the study: its design and the name the workflow knows it by, with its train metrics."""

    model: StudyModel
    name: str
    metrics: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @property
    def core_seconds(self) -> float:
        """Training core-seconds: the median epoch's seconds x epochs x the threads the job used (1 where not
        recorded). The median, not the mean: the study trains in the background beside other work, and one
        epoch stretched by a pause or a burst of load (the IAT preset model's second epoch: 1,272 s against a
        median of 457) would otherwise decide the recipe comparison's cost side. The mean where the metrics
        carry no per-epoch history."""
        train = self.metrics.get("train", {})
        history = [float(h["seconds"]) for h in train.get("history", []) if "seconds" in h]
        per_epoch = float(np.median(history)) if history else float(train.get("seconds_per_epoch", float("nan")))
        return per_epoch * self.model.epochs * int(train.get("threads", 1))


def _pct(value: float) -> float:
    return round(100.0 * value, 2)


def _correct(probs: Tensor, y: Tensor) -> Tensor:
    return probs.argmax(1) == y


def _index(artifacts: Iterable[dict]) -> dict[tuple[str, str, str, str], dict]:
    """Oblivious artifacts by (model name, attack, defense, setting)."""
    index = {}
    for artifact in artifacts:
        meta = artifact["meta"]
        if meta.get("adaptive", "none") == "none":
            index[meta["regime"], meta["attack"], meta["defense"], meta["setting"]] = artifact
    return index


def _worst_cases(artifacts: Sequence[dict]) -> dict[tuple[str, str, str], tuple[Tensor, Tensor]]:
    """(model name, defense, setting) -> (defended worst case per point, bare model's oblivious worst case per point)
    for every defense setting the robustness evaluation attacked (as findings.robustness_levels)."""
    groups = defense_groups(artifacts)
    out = {}
    for (_, name, defense, setting), group in groups.items():
        robust = robust_points(group)
        if robust is None:
            continue
        y, on_points = robust
        n = len(y)
        bare = artifacts_on(groups.get((group[0]["meta"]["dataset"], name, "none", PLAIN_SETTING), []), y)
        if not bare:
            continue
        defended = worst_case([correct_points(a)[:n] for a in on_points])["survives"]
        out[name, defense, setting] = (defended, worst_case([correct_points(a)[:n] for a in bare])["survives"])
    return out


def study_rows(entries: Sequence[StudyEntry], artifacts: Sequence[dict]) -> pd.DataFrame:
    """training_study.csv: one row per model x defense setting x attack (and ``worst_case`` per attacked setting),
    the defended accuracy with its Wilson interval, the bare model's on the same inputs, the paired difference
    (Newcombe) with its McNemar p, the mean probability of the true class under the defense (F_y on clean inputs),
    and the model's full-test accuracy and training core-seconds."""
    index = _index(artifacts)
    worst = _worst_cases(artifacts)
    records = []
    for entry in entries:
        m = entry.model
        base = {"model": entry.name, "regime": m.regime, "recipe": m.recipe, "epochs": m.epochs, "seed": m.seed,
                "test_accuracy": _pct(entry.test_accuracy), "train_core_seconds": round(entry.core_seconds, 1)}
        for (name, attack, defense, setting), art in sorted(index.items()):
            if name != entry.name:
                continue
            defended, plain = _correct(art["probs"], art["y"]), _correct(art["plain_probs"], art["y"])
            records.append({**base, **_row(defense, setting, attack, defended, plain),
                            "f_y": round(float(art["probs"].gather(1, art["y"][:, None]).mean()), 4)})
        for (name, defense, setting), (defended, bare) in sorted(worst.items()):
            if name == entry.name:
                records.append({**base, **_row(defense, setting, "worst_case", defended, bare), "f_y": float("nan")})
    return pd.DataFrame(records)


def _row(defense: str, setting: str, attack: str, defended: Tensor, plain: Tensor) -> dict[str, Any]:
    n = int(defended.numel())
    low, high = wilson_interval(int(defended.sum()), n)
    diff = paired_difference_ci(defended, plain)
    return {"defense": defense, "setting": setting, "attack": attack, "accuracy": _pct(defended.float().mean().item()),
            "low": _pct(low), "high": _pct(high), "bare": _pct(plain.float().mean().item()),
            "gain": _pct(diff["difference"]), "gain_low": _pct(diff["low"]), "gain_high": _pct(diff["high"]),
            "p": float(f"{diff['p']:.4g}"), "n": n}


def paper_gains(table: str, attack: str = TREND_ATTACK) -> dict[str, float]:
    """regime -> the paper's MI-OL gain under `attack` in `table` (points): its "<model> + MI-OL" row minus its bare
    row, where the paper reports both as numbers (Table 2: mixup +22.5, interpolated AT +17.8 under PGD-10)."""
    if table not in TABLES:
        return {}
    rows, paper = rows_of(table), paper_numbers(table)
    if attack not in PAPER_ATTACKS:  # the paper reports no such column (the smoke preset's pgd5)
        return {}
    column = PAPER_ATTACKS.index(attack)
    gains = {}
    for bare in (r for r in rows if r.defense == "none"):
        mi = [r for r in rows if r.regime == bare.regime and r.defense == "mi_ol"]
        if not mi or bare.label not in paper or mi[0].label not in paper:
            continue
        values = paper[mi[0].label][column], paper[bare.label][column]
        if all(isinstance(v, (int, float)) for v in values):
            gains[bare.regime] = round(values[0] - values[1], 1)
    return gains


# ------------------------------------------------------------------ 1. seeds
def seed_point_bootstrap(differences: Tensor, *, generator: torch.Generator, resamples: int = RESAMPLES,
                         level: float = 0.95) -> dict[str, float]:
    """Two-level percentile bootstrap of the mean of per-point paired differences over seeds and points.

    differences: [k seeds, n points], each entry (defended correct) - (bare correct) in {-1, 0, 1}, the same points
    for every seed. Each resample draws k seeds with replacement and n points with replacement (one draw of points
    for all seeds: they are the same points), and takes the mean over both. Returns {"mean", "low", "high", "p"}: the
    observed mean, the percentile interval, and the two-sided bootstrap p-value of a zero mean (2 x the smaller share
    of resampled means on either side of 0, (count + 1) / (B + 1))."""
    d = differences.double()
    k, n = d.shape
    seeds = torch.randint(k, (resamples, k), generator=generator)
    points = torch.randint(n, (resamples, n), generator=generator)
    per_seed = d[:, points].mean(2)  # [k, B]: each seed's mean over the resampled points
    means = per_seed.gather(0, seeds.T).mean(0)  # [B]
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=means.dtype)).tolist()
    below, above = int((means <= 0).sum()), int((means >= 0).sum())
    return {"mean": float(d.mean()), "low": low, "high": high,
            "p": min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))}


def _t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The t interval of the mean over the seeds' values (df = k - 1); NaN for one seed."""
    from scipy.stats import t

    k = len(values)
    if k < 2:
        return float("nan"), float("nan")
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(t.ppf(0.975, k - 1)) * sd / math.sqrt(k)
    return mean - half, mean + half


def headline_settings(table: str | None) -> set[tuple[str, str, str]] | None:
    """(regime, defense, setting) of the MI rows of paper table `table` (Table 2: mixup + MI-OL and MI-Combined,
    interpolated AT + MI-OL, ...): the study's headline differences. The study's other MI settings (Fig. 2's
    lambda 0.5 and 1 for F_y) are measurements, not claims: MI-OL at lambda 1 mixes nothing and equals the bare
    model by construction. None (every MI setting) for a table the paper lacks."""
    if table not in TABLES:
        return None
    return {(r.regime, r.defense, r.setting) for r in rows_of(table) if DEFENSES[r.defense].needs_pool}


def seed_spread(entries: Sequence[StudyEntry], artifacts: Sequence[dict], *, seed: int = 0,
                headline: set[tuple[str, str, str]] | None = None,
                attacks: Collection[str] | None = None) -> pd.DataFrame:
    """Section 1: every headline difference of every group of models that differ only in their seed (k >= 2): the
    MI rows minus the bare model under each attack (`headline`'s (regime, defense, setting) where given, see
    :func:`headline_settings`; every MI setting evaluated otherwise), and the worst case minus the bare model;
    `attacks`, where given, are the study's own attacks (``study.attacks``): the family is what the design names,
    not whatever else was evaluated (the robustness evaluation's cascade evaluates its targets under every
    attack of the run, and those extra columns would change the Holm family of every other claim);
    per-seed values, mean, SD, t interval over seeds, the two-level bootstrap interval and p, Holm over the
    section, and `survives`."""
    index, worst = _index(artifacts), _worst_cases(artifacts)
    groups: dict[tuple[str, str, int], list[StudyEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.model.regime, entry.model.recipe, entry.model.epochs), []).append(entry)
    records = []
    for (regime, recipe, epochs), members in sorted(groups.items()):
        members = sorted(members, key=lambda e: e.model.seed)
        if len(members) < 2:
            continue
        names = [e.name for e in members]

        def claim(defense: str, setting: str, regime: str = regime) -> bool:
            # an MI row (of the headline table where given): a bare model against itself is 0 by construction
            return DEFENSES[defense].needs_pool and (headline is None or (regime, defense, setting) in headline)

        keys = sorted({(a, d, s) for (nm, a, d, s) in index if nm == names[0] and a != "clean" and claim(d, s)
                       and (attacks is None or a in attacks)})
        cases = []
        for attack, defense, setting in keys:
            if not all((nm, attack, defense, setting) in index for nm in names):
                continue
            arts = [index[nm, attack, defense, setting] for nm in names]
            cases.append((defense, setting, attack, torch.stack(
                [_correct(a["probs"], a["y"]).long() - _correct(a["plain_probs"], a["y"]).long() for a in arts])))
        for defense, setting in sorted({(d, s) for (nm, d, s) in worst if nm == names[0] and claim(d, s)}):
            if all((nm, defense, setting) in worst for nm in names):
                cases.append((defense, setting, "worst_case", torch.stack(
                    [worst[nm, defense, setting][0].long() - worst[nm, defense, setting][1].long() for nm in names])))
        for defense, setting, attack, diffs in cases:
            values = [_pct(v) for v in diffs.double().mean(1).tolist()]
            boot = seed_point_bootstrap(diffs, generator=make_generator(
                derive_seed(seed, "study-seeds", regime, recipe, epochs, defense, setting, attack)))
            t_low, t_high = _t_interval(values)
            records.append({"regime": regime, "recipe": recipe, "epochs": epochs, "defense": defense,
                            "setting": setting, "attack": attack,
                            "seeds": " ".join(str(e.model.seed) for e in members),
                            "per_seed": " ".join(f"{v:+.2f}" for v in values), "mean": _pct(boot["mean"]),
                            "sd": round(float(np.std(values, ddof=1)), 2), "t_low": round(t_low, 2),
                            "t_high": round(t_high, 2), "low": _pct(boot["low"]), "high": _pct(boot["high"]),
                            "p": float(f"{boot['p']:.4g}"), "n": int(diffs.shape[1])})
    frame = pd.DataFrame(records)
    if len(frame):
        frame["p_holm"] = [float(f"{p:.4g}") for p in holm(frame["p"].tolist())]
        frame["survives"] = (frame["p_holm"] < 0.05) & (frame["mean"] > 0)
    return frame


# ------------------------------------------------------------------ 2. training length
def length_trend(entries: Sequence[StudyEntry], artifacts: Sequence[dict], paper_gains: dict[str, float], *,
                 seed: int = 0, attack: str = TREND_ATTACK) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Section 2: per regime, the preset recipe's models of one seed (the smallest) at each length: clean and
    PGD-10 accuracy, MI-OL's gain under PGD-10 (the regime's MI-OL row of the table; the first MI-OL setting the
    models share otherwise) with its paired interval, F_y at lambda 0.5 and 1. Then per regime with >= 3 lengths:
    the least-squares slope of the gain on log2(epochs) (points per doubling) with a bootstrap interval over points
    (every model scored on the same resampled points), and, from the paper's gain `paper_gains[regime]` (points),
    the epochs the trend would need to reach it where the slope is positive."""
    index = _index(artifacts)
    by_regime: dict[str, list[StudyEntry]] = {}
    for entry in entries:
        if entry.model.recipe == "preset":
            by_regime.setdefault(entry.model.regime, []).append(entry)
    rows, trends = [], []
    for regime, members in sorted(by_regime.items()):
        first_seed = min(e.model.seed for e in members)
        members = sorted((e for e in members if e.model.seed == first_seed), key=lambda e: e.model.epochs)
        setting = _mi_ol_setting(index, [e.name for e in members], attack)
        if setting is None:
            continue
        diffs = []
        for entry in members:
            art = index.get((entry.name, attack, "mi_ol", setting))
            if art is None:
                continue
            ok, plain = _correct(art["probs"], art["y"]), _correct(art["plain_probs"], art["y"])
            diff = paired_difference_ci(ok, plain)
            diffs.append((entry.model.epochs, ok.long() - plain.long()))
            f_y = {lam: _f_y(index, entry.name, lam) for lam in ("0.5", "1")}
            rows.append({"regime": regime, "epochs": entry.model.epochs, "seed": entry.model.seed, "model": entry.name,
                         "test_accuracy": _pct(entry.test_accuracy), "attack": attack,
                         "adv_bare": _pct(plain.float().mean().item()), "mi_ol_setting": setting,
                         "adv_mi_ol": _pct(ok.float().mean().item()),
                         "gain": _pct(diff["difference"]), "gain_low": _pct(diff["low"]),
                         "gain_high": _pct(diff["high"]), "f_y_0.5": f_y["0.5"], "f_y_1": f_y["1"],
                         "n": int(ok.numel())})
        if len(diffs) >= 3:
            trends.append({"regime": regime, **_slope(diffs, paper_gains.get(regime), make_generator(
                derive_seed(seed, "study-trend", regime)))})
    return pd.DataFrame(rows), pd.DataFrame(trends)


def _mi_ol_setting(index: dict, names: Sequence[str], attack: str) -> str | None:
    settings = [s for (nm, a, d, s) in index if nm == names[0] and a == attack and d == "mi_ol"]
    shared = [s for s in sorted(settings) if all((nm, attack, "mi_ol", s) in index for nm in names)]
    # the table's row (Table 4's lambda) is the one that is not one of Fig. 2's F_y settings, where there is one
    preferred = [s for s in shared if s not in ("lam=0.5", "lam=1")]
    return (preferred or [s for s in shared if s == "lam=0.5"] or shared or [None])[0]


def _f_y(index: dict, name: str, lam: str) -> float:
    art = index.get((name, "clean", "mi_ol", f"lam={lam}"))
    if art is None:
        return float("nan")
    return round(float(art["probs"].gather(1, art["y"][:, None]).mean()), 4)


def _slope(diffs: Sequence[tuple[int, Tensor]], paper_gain: float | None, generator: torch.Generator) -> dict:
    x = torch.tensor([math.log2(e) for e, _ in diffs], dtype=torch.float64)
    d = torch.stack([v.double() for _, v in diffs])  # [m models, n points]
    n = d.shape[1]

    def fit(gains: Tensor) -> tuple[Tensor, Tensor]:  # gains [..., m] -> (intercept, slope) per row
        xc = x - x.mean()
        slope = (gains - gains.mean(-1, keepdim=True)) @ xc / (xc @ xc)
        return gains.mean(-1) - slope * x.mean(), slope

    intercept, slope = fit(d.mean(1))
    points = torch.randint(n, (RESAMPLES, n), generator=generator)
    boot_i, boot_s = fit(d[:, points].mean(2).T)  # [B]
    low, high = torch.quantile(boot_s, torch.tensor([0.025, 0.975], dtype=boot_s.dtype)).tolist()
    out = {"lengths": " ".join(str(e) for e, _ in diffs), "slope_per_doubling": _pct(float(slope)),
           "slope_low": _pct(low), "slope_high": _pct(high), "paper_gain": paper_gain,
           "share_of_resamples_not_rising": round(float((boot_s <= 0).double().mean()), 3)}
    if paper_gain is not None:
        target = paper_gain / 100
        if float(slope) > 0:
            out["epochs_for_paper_gain"] = round(2 ** float((target - intercept) / slope))
            rising = boot_s > 0
            needed = 2 ** ((target - boot_i[rising]) / boot_s[rising]) if rising.any() else torch.tensor([float("nan")])
            q = torch.quantile(needed, torch.tensor([0.025, 0.975], dtype=needed.dtype)).tolist()
            out["epochs_low"], out["epochs_high"] = round(q[0]), (round(q[1]) if math.isfinite(q[1]) else q[1])
        else:
            out["epochs_for_paper_gain"] = float("nan")
    return out


# ------------------------------------------------------------------ 3. recipe
def recipe_comparison(entries: Sequence[StudyEntry], artifacts: Sequence[dict], *, candidate: str = "fgsm_rs",
                      reference: str = "preset", attack: str = TREND_ATTACK) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Section 3: per regime with both recipes at the same epochs and seed: clean (full test) and PGD-10 accuracy
    (bare model, the study's points) of each, the paired PGD-10 difference (candidate minus reference), training
    core-seconds and PGD-10 points per 1,000 core-seconds, and whether the candidate collapsed (catastrophic
    overfitting of the final model: COLLAPSE_PGD / COLLAPSE_CLEAN).

    The decision, stated before any result (issue 35): the default preset switches to the candidate if, in EVERY
    regime compared, its PGD-10 accuracy on the stratified points is higher (point estimate) at no more training
    core-seconds. Returns (rows, {"switch": bool, "reason": str})."""
    index = _index(artifacts)
    by_key = {(e.model.regime, e.model.recipe, e.model.epochs, e.model.seed): e for e in entries}
    rows = []
    for (regime, recipe, epochs, seed), cand in sorted(by_key.items()):
        ref = by_key.get((regime, reference, epochs, seed))
        if recipe != candidate or ref is None:
            continue
        arts = [index.get((e.name, attack, "none", PLAIN_SETTING)) for e in (cand, ref)]
        if any(a is None for a in arts):
            continue
        ok_c, ok_r = (_correct(a["probs"], a["y"]) for a in arts)
        diff = paired_difference_ci(ok_c, ok_r)
        acc_c, acc_r = ok_c.float().mean().item(), ok_r.float().mean().item()
        rows.append({"regime": regime, "epochs": epochs, "seed": seed,
                     f"clean_{candidate}": _pct(cand.test_accuracy), f"clean_{reference}": _pct(ref.test_accuracy),
                     "attack": attack, f"adv_{candidate}": _pct(acc_c), f"adv_{reference}": _pct(acc_r),
                     "difference": _pct(diff["difference"]), "low": _pct(diff["low"]), "high": _pct(diff["high"]),
                     f"core_s_{candidate}": round(cand.core_seconds), f"core_s_{reference}": round(ref.core_seconds),
                     f"adv_per_kcs_{candidate}": round(100 * acc_c / cand.core_seconds * 1000, 3),
                     f"adv_per_kcs_{reference}": round(100 * acc_r / ref.core_seconds * 1000, 3),
                     "collapsed": bool(acc_c < COLLAPSE_PGD and cand.test_accuracy > COLLAPSE_CLEAN),
                     "n": int(ok_c.numel())})
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame, {"switch": False, "reason": "no regime has both recipes evaluated yet"}
    better = frame[f"adv_{candidate}"] > frame[f"adv_{reference}"]
    cheaper = frame[f"core_s_{candidate}"] <= frame[f"core_s_{reference}"]
    switch = bool((better & cheaper).all())
    reason = "; ".join(
        f"{r['regime']}: {attack} {r[f'adv_{candidate}']:.1f}% vs {r[f'adv_{reference}']:.1f}% "
        f"({r['difference']:+.1f} [{r['low']:.1f}, {r['high']:.1f}]), {r[f'core_s_{candidate}']:,} vs "
        f"{r[f'core_s_{reference}']:,} core-seconds" for r in frame.to_dict("records"))
    return frame, {"switch": switch, "reason": reason}


def training_curves(entries: Sequence[StudyEntry], recipes: Sequence[str] = ("fgsm_rs", "preset"),
                    regimes: Sequence[str] = ("at", "interpolated_at")) -> pd.DataFrame:
    """The recipe section's watch for catastrophic overfitting during training: per model of a robust regime
    trained with one of `recipes`, its training accuracy (on the batches it trained on, i.e. under its own training
    attack) at each epoch. Catastrophic overfitting shows there as a training accuracy climbing towards clean
    accuracy, above the PGD-k model's: FGSM's examples stop being adversarial while PGD's accuracy collapses
    (Wong et al. 2020, Fig. 2; a sudden jump in their runs, a steady climb in the study's IAT run). Only the final
    model is attacked with PGD; this table is what the training logged, one row per model, one column per epoch."""
    rows = []
    for e in entries:
        if e.model.regime not in regimes or e.model.recipe not in recipes:
            continue
        history = e.metrics.get("train", {}).get("history", [])
        row = {"model": e.name, "regime": e.model.regime, "recipe": e.model.recipe}
        row.update({f"e{int(h['epoch'])}": _pct(float(h["accuracy"])) for h in history if "accuracy" in h})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the page
def write_study(entries: Sequence[StudyEntry], artifacts: Sequence[dict], out_dir: str | Path, *,
                paper_gains: dict[str, float], seed: int = 0, attack: str = TREND_ATTACK,
                headline: set[tuple[str, str, str]] | None = None,
                attacks: Collection[str] | None = None) -> dict[str, Path]:
    """training_study.csv, the sections' CSVs, the training-length section's figures (:data:`FIGURES`, PNG and
    SVG: report.plots.study) and study.md in `out_dir`, each written atomically; returns the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = study_rows(entries, artifacts)
    seeds = seed_spread(entries, artifacts, seed=seed, headline=headline, attacks=attacks)
    lengths, trends = length_trend(entries, artifacts, paper_gains, seed=seed, attack=attack)
    recipes, decision = recipe_comparison(entries, artifacts, attack=attack)
    paths = {"csv": out / "training_study.csv", "seeds": out / "study_seeds.csv", "lengths": out / "study_lengths.csv",
             "recipes": out / "study_recipes.csv", "md": out / "study.md"}
    for key, frame in (("csv", rows), ("seeds", seeds), ("lengths", lengths), ("recipes", recipes)):
        atomic_write_text(paths[key], frame.to_csv(index=False))
    from .plots.study import plot_gain_vs_epochs, plot_gain_vs_fy  # matplotlib only where the figures are drawn

    paths["gain_vs_epochs"], paths["gain_vs_epochs_svg"] = plot_gain_vs_epochs(
        lengths, trends, paper_gains, out / FIGURES["gain_vs_epochs"])
    paths["gain_vs_fy"], paths["gain_vs_fy_svg"] = plot_gain_vs_fy(lengths, paper_gains, out / FIGURES["gain_vs_fy"])
    curves = training_curves(entries)
    atomic_write_text(paths["md"], _markdown(entries, seeds, lengths, trends, recipes, decision, curves, paper_gains,
                                             attack))
    return paths


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if len(frame) else "(no rows yet: the models are not all trained and evaluated)"


def _markdown(entries, seeds, lengths, trends, recipes, decision, curves, paper_gains, attack) -> str:
    models = pd.DataFrame([{"model": e.name, "regime": e.model.regime, "recipe": e.model.recipe,
                            "epochs": e.model.epochs, "seed": e.model.seed, "test_accuracy": _pct(e.test_accuracy),
                            "train_core_seconds": round(e.core_seconds)} for e in entries])
    parts = ["# The training study: what MI's gain follows", __doc__.split("\n\n")[1].replace("\n", " "),
             "## Models (full test split)", _table(models),
             "## 1. Seeds: each headline difference per training seed",
             "`per_seed`: the difference (points) for each seed; `mean`, `sd` over the seeds; `t_low`/`t_high`: the t "
             "interval over the seeds' values; `low`/`high`: the two-level bootstrap over seeds and points (95%); "
             "`p_holm`: Holm over this table; `survives`: the claim survives the seed spread (p_holm < 0.05, mean > 0).",
             _table(seeds)]
    if len(seeds):
        kept = seeds[seeds["survives"]]
        parts.append(f"{len(kept)} of {len(seeds)} headline differences survive the seed spread: "
                     + (", ".join(f"{r['regime']} + {r['defense']} ({r['setting']}) under {r['attack']} "
                                  f"{r['mean']:+.1f} [{r['low']:.1f}, {r['high']:.1f}]"
                                  for r in kept.to_dict("records")) or "none") + ".")
    parts += [f"## 2. Training length: MI-OL's gain under {attack} against epochs and F_y",
              f"The paper's gains under {attack} (Table 2): "
              f"{', '.join(f'{k} {v:+.1f}' for k, v in paper_gains.items()) or 'not reported'} points. `adv_*`: "
              f"accuracy under {attack} on the study's points. F_y: MI-OL on clean inputs, mean probability of the "
              "true class (ideal linearity: lambda).",
              _table(lengths), _table(_readable_trends(trends))]
    for t in trends.to_dict("records") if len(trends) else []:
        parts.append(_trend_sentence(t))
    parts += [f"Figures: [the gain against the epochs]({FIGURES['gain_vs_epochs']}.png) (log2 axis; the trend with "
              f"its slope's interval, the paper's gain starred at its {PAPER_EPOCHS} epochs) and "
              f"[the gain against F_y]({FIGURES['gain_vs_fy']}.png) (at lambda 0.5 and 1, each point labelled with its "
              "epochs; ideal linearity dashed).",
              f"![MI-OL's gain against the epochs]({FIGURES['gain_vs_epochs']}.png)\n"
              f"![MI-OL's gain against F_y]({FIGURES['gain_vs_fy']}.png)"]
    parts += ["## 3. Recipe: FGSM with a random start against the preset's PGD-k",
              "Decided before the result: the default preset switches to FGSM with a random start if in every regime "
              f"compared its accuracy under {attack} on the stratified points is higher at no more training "
              "core-seconds (`adv_per_kcs`: accuracy points per 1,000 core-seconds); the "
              "paper preset keeps the paper's PGD-10. Catastrophic overfitting is checked on the final model only "
              f"(PGD-10 below {COLLAPSE_PGD:.0%} with clean accuracy above {COLLAPSE_CLEAN:.0%}).",
              _table(recipes),
              f"Decision: {'switch' if decision['switch'] else 'keep the preset recipe'} ({decision['reason']}).",
              "Training accuracy per epoch (%, on the batches each model trained on: under its own training attack). "
              "Catastrophic overfitting during training shows as a training accuracy climbing towards clean accuracy, "
              "above the PGD-k model's (the training attack's examples stop being adversarial); the final model's "
              "PGD accuracy above is the check.",
              _table(curves)]
    return "\n\n".join(parts) + "\n"


def _readable_trends(trends: pd.DataFrame) -> pd.DataFrame:
    """The trend table as the page shows it: the extrapolated epochs as :func:`epochs_text` (the CSV keeps them raw)."""
    shown = trends.copy()
    for column in ("epochs_for_paper_gain", "epochs_low", "epochs_high"):
        if column in shown:
            shown[column] = shown[column].map(epochs_text)
    return shown


def _trend_sentence(t: dict) -> str:
    head = (f"- {t['regime']} (epochs {t['lengths']}): the gain changes by {t['slope_per_doubling']:+.2f} points per "
            f"doubling of the epochs [{t['slope_low']:.2f}, {t['slope_high']:.2f}] "
            f"({t['share_of_resamples_not_rising']:.0%} of the resamples do not rise)")
    paper = t.get("paper_gain")
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return head + "."
    needed = t.get("epochs_for_paper_gain", float("nan"))
    if t["slope_high"] <= 0:
        return head + f": the trend points the other way; more epochs would not reach the paper's {paper:+.1f}."
    if needed is None or (isinstance(needed, float) and math.isnan(needed)):
        return head + f": no rising trend; the paper's {paper:+.1f} is not reached by longer training at this rate."
    caveat = "" if t["slope_low"] > 0 else " (the slope's interval includes no rise)"
    return head + (f": at this rate the paper's {paper:+.1f} needs about {epochs_text(needed)} epochs{epochs_span(t)}"
                   f"{caveat}, an extrapolation far beyond the lengths measured.")
