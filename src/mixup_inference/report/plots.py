"""The paper's figures from the aggregated tables (results.csv, detection.csv, components.csv).

* :func:`plot_components` -- Fig. 2: MI-PL / MI-OL output components F_y, F_yhat vs lambda, with the
  ideal-linearity predictions of Table 1 dashed.
* :func:`plot_detection_auc` -- Fig. 3a: detection AUC, MI-PL score vs plain confidence.
* :func:`plot_tradeoff` -- Fig. 3b: adversarial vs clean accuracy over each defense's settings.
* :func:`plot_adaptive` -- Fig. 4: accuracy vs number of adaptive samples N_A.
* :func:`plot_convergence` -- Fig. 5: the robustness evaluation's worst case against the convergence level,
  one small panel per attacked defense setting (issue 25).

Each function takes DataFrames in the formats of :mod:`mixup_inference.report.aggregate` and an output
stem, writes ``stem.png`` (150 dpi) and ``stem.svg`` (text kept as text) and returns both paths.
An empty input gives a figure that says "no data". Figures are built with the object-oriented API
(``matplotlib.figure.Figure``, rendered by Agg), so no pyplot state or backend switch is involved.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .aggregate import ideal_linearity
from ..core.attack_kinds import ROBUST_KINDS, robust_kind
from ..core.attack_specs import ADAPTIVE_KINDS, parse_attack
from ..core.defense_specs import DEFENSES
from ..core.utils import atomic_open
from .tables import attack_display_name

__all__ = [
    "REGIME_LABELS",
    "plot_adaptive",
    "plot_components",
    "plot_convergence",
    "plot_detection_auc",
    "plot_tradeoff",
]

DPI = 150
REGIME_LABELS = {"erm": "ERM", "mixup": "Mixup", "at": "AT", "interpolated_at": "Interpolated AT"}
# Fig. 4 draws the attacks on MI's mixing (rule adaptive); labels and colours come from the specs.
_FIG4_KINDS = tuple(kind for kind, spec in ADAPTIVE_KINDS.items() if spec.rule == "adaptive")
_RC = {"svg.fonttype": "none", "svg.hashsalt": "mixup-inference", "font.size": 9, "axes.titlesize": 9}


# ---------------------------------------------------------------- shared helpers
def _styled(plot):
    """Run a plot function under this module's rcParams (fonts are fixed when artists are created)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return plot(*args, **kwargs)

    return wrapper


def _regime(name: str) -> str:
    return REGIME_LABELS.get(name, name)


def _regime_rank(name: str) -> tuple[int, str]:
    order = list(REGIME_LABELS)
    return (order.index(name) if name in order else len(order), name)


def _save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write fig as stem.png and stem.svg (each through utils.atomic_open); deterministic bytes."""
    stem = Path(stem)
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_open(path) as handle:
            fig.savefig(handle, format=fmt, dpi=DPI, metadata=metadata, bbox_inches="tight")
        paths.append(path)
    return paths


def _figure(n_panels: int, *, ncols: int | None = None, panel_size=(3.6, 2.9)) -> tuple[Figure, list]:
    ncols = min(n_panels, ncols or 3) if n_panels else 1
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _no_data(stem: str | Path, title: str, reason: str = "no data") -> list[Path]:
    fig = Figure(figsize=(4.5, 2.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=12, color="0.4", transform=ax.transAxes)
    return _save(fig, stem)


def _require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; pass the frame written by the aggregate step")


def _require_unique(df: pd.DataFrame, key: list[str], name: str) -> None:
    duplicated = df[df.duplicated(key, keep=False)]
    if len(duplicated):
        raise ValueError(f"{name} has several rows for {dict(duplicated.iloc[0][key])}; deduplicate it")


def _attack_order(name: str) -> tuple[bool, int]:
    """Untargeted before targeted, then by steps (the kind is not part of the order: a results.csv
    that mixes kinds at equal steps sorts them by name)."""
    parsed = parse_attack(name)
    return parsed.targeted, parsed.steps


# ---------------------------------------------------------------- Fig. 2
def _component_attack(df: pd.DataFrame) -> str | None:
    """The adversarial attack to draw: the one with the most lambda values; "pgd10" (the paper's) on ties."""
    adversarial = df[df["input"] == "adversarial"]
    if adversarial.empty:
        return None
    counts = adversarial.groupby("attack")["lam"].nunique()
    best = counts.max()
    candidates = sorted(counts[counts == best].index, key=lambda a: (a != "pgd10", _attack_order(a)))
    return candidates[0]


@_styled
def plot_components(components_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 2: mean F_y and F_yhat of the MI output vs lambda, one panel per (dataset, regime, mode).

    Solid lines with markers: measured means (``components.csv``) on clean inputs and on their
    adversarial counterparts; dashed lines: Table 1 under ideal global linearity
    (:func:`aggregate.ideal_linearity`). If several adversarial attacks are present, the one with the
    most lambda values is drawn (PGD-10 on ties) and named in the title.
    """
    title = "Fig. 2: MI output components vs λ"
    if components_df.empty:
        return _no_data(stem, title)
    _require(components_df, ["dataset", "regime", "mode", "lam", "attack", "input", "component", "value",
                             "num_classes"], "components_df")
    attack = _component_attack(components_df)
    df = components_df[(components_df["input"] == "clean") | (components_df["attack"] == attack)]
    panels = sorted(
        df.groupby(["dataset", "regime", "mode"]).groups, key=lambda p: (p[0], _regime_rank(p[1]), p[2] != "pl")
    )
    # MI-PL and MI-OL of a regime side by side, two regimes per row: a wide figure, so the report
    # viewer (which fits the height to the window) shows it whole and legible
    fig, axes = _figure(len(panels), ncols=4 if len(panels) > 2 else 2)
    lam_grid = np.linspace(0.0, 1.0, 101)
    # F_yhat drawn with open markers over F_y: on clean inputs the two mostly coincide (yhat = y)
    styles = {
        ("clean", "y"): ("C0", "o", 6, "clean, $F_y$"),
        ("clean", "yhat"): ("C9", "s", 4, r"clean, $F_{\hat y}$"),
        ("adversarial", "y"): ("C3", "^", 6, "adversarial, $F_y$"),
        ("adversarial", "yhat"): ("C1", "v", 4, r"adversarial, $F_{\hat y}$"),
    }
    multi_dataset = df["dataset"].nunique() > 1
    for ax, (dataset, regime, mode) in zip(axes, panels):
        panel = df[(df["dataset"] == dataset) & (df["regime"] == regime) & (df["mode"] == mode)]
        num_classes = int(panel["num_classes"].iloc[0])
        for (inp, component), (color, marker, size, label) in styles.items():
            points = panel[(panel["input"] == inp) & (panel["component"] == component)].sort_values("lam")
            if not points.empty:
                ax.plot(points["lam"], points["value"], color=color, marker=marker, ms=size, lw=1.3, label=label,
                        mfc="none" if component == "yhat" else color)
            ideal = ideal_linearity(mode, inp, component, lam_grid, num_classes)
            ax.plot(lam_grid, ideal, color=color, ls="--", lw=0.9, alpha=0.8)
        prefix = f"{dataset} · " if multi_dataset else ""
        ax.set_title(f"{prefix}{_regime(regime)} + MI-{mode.upper()}")
        ax.set_xlabel("mixup ratio λ")
        ax.set_ylabel("mean output probability")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", ls="--", lw=0.9))
    labels.append("ideal linearity (Table 1)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), frameon=False)
    inputs = "clean" + (f" and {attack_display_name(attack)} inputs" if attack else " inputs")
    fig.suptitle(f"{title} ({inputs})")
    return _save(fig, stem)


# ---------------------------------------------------------------- Fig. 3a
@_styled
def plot_detection_auc(detection_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 3a: grouped bars of detection AUC per (regime, attack), MI-PL score vs plain confidence,
    one panel per dataset, with the 0.5 chance level dashed and, where `detection_df` has the
    columns auc_low / auc_high, their 95% (paired bootstrap) interval as error bars. With a
    ``points`` column, the bars are the paper's clean-correct points and the all-points AUC is a
    black tick on each bar."""
    title = "Fig. 3a: detecting adversarial inputs"
    if detection_df.empty:
        return _no_data(stem, title)
    _require(detection_df, ["dataset", "regime", "attack", "detector", "setting", "auc"], "detection_df")
    all_points = None
    if "points" in detection_df.columns:
        all_points = detection_df[detection_df["points"] == "all"]
        detection_df = detection_df[detection_df["points"] == "clean_correct"]
        if detection_df.empty:
            return _no_data(stem, title, "no clean-correct rows")
    datasets = sorted(detection_df["dataset"].unique())
    fig, axes = _figure(len(datasets), ncols=1, panel_size=(max(4.0, 1.2 * detection_df.groupby(
        ["regime", "attack", "setting"]).ngroups + 1.5), 3.2))
    detectors = [("mi_pl", "MI-PL: drop of $F_{\\hat y}$", "C0"), ("confidence", "plain confidence", "0.6")]
    width = 0.38
    for ax, dataset in zip(axes, datasets):
        df = detection_df[detection_df["dataset"] == dataset]
        several_settings = df["setting"].nunique() > 1
        groups = sorted(
            df.groupby(["regime", "attack", "setting"]).groups,
            key=lambda g: (_regime_rank(g[0]), _attack_order(g[1]), g[2]),
        )
        x = np.arange(len(groups))
        has_ci = {"auc_low", "auc_high"} <= set(df.columns)
        for offset, (detector, label, color) in zip((-width / 2, width / 2), detectors):
            values, low, high = [], [], []
            for regime, attack, setting in groups:
                hit = df[(df["regime"] == regime) & (df["attack"] == attack) & (df["setting"] == setting)
                         & (df["detector"] == detector)]
                row = hit.iloc[0] if len(hit) else None
                values.append(float(row["auc"]) if row is not None else np.nan)
                low.append(float(row["auc_low"]) if row is not None and has_ci else np.nan)
                high.append(float(row["auc_high"]) if row is not None and has_ci else np.nan)
            # 95% interval as an error bar, when the table has one
            yerr = np.abs(np.array([low, high]) - np.array(values)) if has_ci else None
            ax.bar(x + offset, values, width, yerr=yerr, error_kw={"elinewidth": 0.8, "capsize": 2},
                   label=label, color=color)
            for xi, value, top in zip(x + offset, values, np.fmax(values, high)):  # above the error bar
                if not np.isnan(value):
                    ax.text(xi, top + 0.015, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
            if all_points is not None and len(all_points):
                everyone = []
                for regime, attack, setting in groups:
                    hit = all_points[(all_points["dataset"] == dataset) & (all_points["regime"] == regime)
                                     & (all_points["attack"] == attack) & (all_points["setting"] == setting)
                                     & (all_points["detector"] == detector)]
                    everyone.append(float(hit.iloc[0]["auc"]) if len(hit) else np.nan)
                ax.scatter(x + offset, everyone, marker="_", s=120, color="k", linewidths=1.2, zorder=3,
                           label="all points" if detector == "mi_pl" else None)
        ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance (0.5)")
        ax.set_xticks(x, [
            f"{_regime(r)}\n{attack_display_name(a)}" + (f"\nMI-PL {s}" if several_settings else "")
            for r, a, s in groups
        ])
        ax.set_ylim(0.0, 1.22)  # head room for the legend above AUC = 1 bars
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.set_ylabel("AUC, clean-correct points" if all_points is not None else "AUC (clean vs adversarial)")
        settings = "" if several_settings else f", MI-PL {df['setting'].iloc[0]}"
        ax.set_title(f"{dataset}{settings}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", fontsize=7, ncols=3, frameon=False)
    fig.suptitle(title)
    return _save(fig, stem)


# ---------------------------------------------------------------- Fig. 3b
def _param_label(defense: str, param: float) -> str:
    if defense == "none" or pd.isna(param):
        return ""
    return format(float(param), "g")


@_styled
def plot_tradeoff(results_df: pd.DataFrame, stem: str | Path, attack: str = "pgd10") -> list[Path]:
    """Fig. 3b: adversarial accuracy (under oblivious ``attack``) vs clean accuracy, one point per
    setting of each defense, joined in order of the defense's main parameter (annotated next to each
    point: lambda, sigma, degrees, lower size, lambda_OL); one panel per (dataset, regime).
    Error bars are the 95% Wilson intervals."""
    title = f"Fig. 3b: {attack_display_name(attack)} accuracy vs clean accuracy"
    if results_df.empty:
        return _no_data(stem, title)
    _require(results_df, ["dataset", "regime", "defense", "setting", "param", "attack", "adaptive", "accuracy",
                          "ci_low", "ci_high"], "results_df")
    parse_attack(attack)
    oblivious = results_df[results_df["adaptive"] == "none"]
    key = ["dataset", "regime", "defense", "setting"]
    clean = oblivious[oblivious["attack"] == "clean"]
    adv = oblivious[oblivious["attack"] == attack]
    for part in (clean, adv):
        _require_unique(part, key + ["attack"], "results_df (oblivious rows)")
    pairs = clean.merge(adv, on=key, suffixes=("_clean", "_adv"))
    if pairs.empty:
        return _no_data(stem, title, f"no setting evaluated on both clean and {attack} inputs")
    panels = sorted(pairs.groupby(["dataset", "regime"]).groups, key=lambda p: (p[0], _regime_rank(p[1])))
    fig, axes = _figure(len(panels), ncols=2, panel_size=(4.4, 3.6))
    multi_dataset = pairs["dataset"].nunique() > 1
    for ax, (dataset, regime) in zip(axes, panels):
        panel = pairs[(pairs["dataset"] == dataset) & (pairs["regime"] == regime)]
        for defense in [d for d in DEFENSES if d in set(panel["defense"])]:
            points = panel[panel["defense"] == defense].sort_values(["param_clean", "setting"])
            xs, ys = 100 * points["accuracy_clean"], 100 * points["accuracy_adv"]
            xerr = 100 * np.vstack([points["accuracy_clean"] - points["ci_low_clean"],
                                    points["ci_high_clean"] - points["accuracy_clean"]])
            yerr = 100 * np.vstack([points["accuracy_adv"] - points["ci_low_adv"],
                                    points["ci_high_adv"] - points["accuracy_adv"]])
            color = DEFENSES[defense].color
            marker = "*" if defense == "none" else "o"
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, color=color, marker=marker, ms=7 if defense == "none" else 4,
                        lw=1.2, elinewidth=0.5, alpha=0.9, capsize=0, label=DEFENSES[defense].label)
            for x, y, param in zip(xs, ys, points["param_clean"]):
                text = _param_label(defense, param)
                if text:
                    ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, color=color)
        prefix = f"{dataset} · " if multi_dataset else ""
        ax.set_title(f"{prefix}{_regime(regime)}")
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(f"{attack_display_name(attack)} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return _save(fig, stem)


# ---------------------------------------------------------------- Fig. 4
def _points(rows: pd.DataFrame) -> str:
    """", n points" for a legend label: Fig. 4's lines are measured on different prefixes of the test
    subset (oblivious: all of it, adaptive: adaptive.n_test, worst case: robustness.n_test), so each
    says how many points it is on; nothing where the rows have no "n" column or several sizes."""
    sizes = rows["n"].unique() if "n" in rows else []
    return f", {int(sizes[0])} points" if len(sizes) == 1 else ""


@_styled
def plot_adaptive(results_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 4: accuracy vs number of adaptive samples N_A, one panel per attack (adaptive PGD-10/50/200,
    one row of panels per attacked (dataset, regime, defense, setting)), one line per adaptive kind
    ("paper": App. B.2, Eq. 24; "eot"), 95% Wilson error bars. Dashed: the model without MI under
    the same oblivious attack (defense none, same dataset and regime), as in the paper."""
    title = "Fig. 4: adaptive attacks"
    if results_df.empty:
        return _no_data(stem, title)
    _require(results_df, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "n_adaptive",
                          "accuracy", "ci_low", "ci_high"], "results_df")
    worst = results_df[results_df["adaptive"] == "worst_case"]  # aggregate.worst_case_rows
    adaptive = results_df[results_df["adaptive"].isin(_FIG4_KINDS)]
    if adaptive.empty:
        return _no_data(stem, title, "no adaptive attacks evaluated")
    targets = sorted(adaptive.groupby(["dataset", "regime", "defense", "setting"]).groups)
    attacks = sorted(adaptive["attack"].unique(), key=_attack_order)
    fig, axes = _figure(len(targets) * len(attacks), ncols=len(attacks), panel_size=(3.4, 2.9))
    _require_unique(adaptive, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "n_adaptive"],
                    "results_df (adaptive rows)")
    plain = results_df[(results_df["adaptive"] == "none") & (results_df["defense"] == "none")]
    _require_unique(plain, ["dataset", "regime", "setting", "attack"], "results_df (undefended rows)")
    panels = [(t, a) for t in targets for a in attacks]
    for ax, ((dataset, regime, defense, setting), attack) in zip(axes, panels):
        rows = adaptive[(adaptive["dataset"] == dataset) & (adaptive["regime"] == regime)
                        & (adaptive["defense"] == defense) & (adaptive["setting"] == setting)
                        & (adaptive["attack"] == attack)]
        for i, kind in enumerate(sorted(rows["adaptive"].unique(), key=lambda k: (k != "paper", k))):
            line = rows[rows["adaptive"] == kind].sort_values("n_adaptive")
            acc = 100 * line["accuracy"]
            err = 100 * np.vstack([line["accuracy"] - line["ci_low"], line["ci_high"] - line["accuracy"]])
            ax.errorbar(line["n_adaptive"], acc, yerr=err, marker="os^v"[i % 4], ms=4, lw=1.3, capsize=2,
                        color=f"C{i}", label=ADAPTIVE_KINDS[kind].label + _points(line))
        level = plain[(plain["dataset"] == dataset) & (plain["regime"] == regime) & (plain["attack"] == attack)]
        if len(level):
            ax.axhline(100 * float(level["accuracy"].iloc[0]), color="k", ls="--", lw=1.0,
                       label=f"no MI, oblivious {attack_display_name(attack)}{_points(level)}")
        level = worst[(worst["dataset"] == dataset) & (worst["regime"] == regime) & (worst["defense"] == defense)
                      & (worst["setting"] == setting)]
        if len(level):  # the share of points surviving every attack, oblivious and adaptive
            # evaluations combined: results.csv's `evaluations` (before issue 33: its `n_adaptive`)
            combined = int(level["evaluations" if "evaluations" in level else "n_adaptive"].iloc[0])
            ax.axhline(100 * float(level["accuracy"].iloc[0]), color="C3", ls=":", lw=1.2,
                       label=f"worst case per point ({combined} attacks){_points(level)}")
        ax.set_title(f"{_regime(regime)} + {DEFENSES[defense].label if defense in DEFENSES else defense} ({setting})\n"
                     f"adaptive {attack_display_name(attack)}" + (f" · {dataset}" if len(targets) > 1 else ""))
        ax.set_xlabel("adaptive samples $N_A$")
        ax.set_ylabel("accuracy (%)")
        if len(rows):
            ax.set_xticks(sorted(rows["n_adaptive"].unique()))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return _save(fig, stem)


# ---------------------------------------------------------------- Fig. 5 (issue 25)
def _flag(value) -> bool | None:
    """results.csv's ``converged``: True / False / empty (None), also after a CSV round trip ("True")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return bool(value)


def _family(row) -> tuple:
    """The ladder a robust run belongs to, from its results.csv row: its kind's key (`RobustKind.family`,
    e.g. one per (targeted, start steps, start draws) for EOT PGD), whose first item is the kind."""
    return robust_kind(row["adaptive"]).family(row)


def _family_label(family: tuple) -> str:
    return robust_kind(family[0]).family_label(family)


@_styled
def plot_convergence(results_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 5: the robustness evaluation's convergence (the `robustness:` section, issues 25 and 33), one
    small panel per attacked (dataset, regime, defense, setting), the bare models' (defense none) among them.

    Per attack family (its kind's, core.attack_kinds: AutoAttack rand; EOT PGD per targeted value and
    start budget; AutoAttack standard and PGD on a bare model; one per kind registered beside them),
    labelled by its kind, each level's accuracy with its 95% Wilson interval against the level (x: the
    budget multiplier 2^level of steps and EOT draws). In a cascade a run attacks only the points the
    oblivious evaluations and every earlier run left, so its accuracy is the worst case up to that run;
    the runs go level by level (jobs.plan.robust_runs), so a level-k point never includes a break of a
    higher level, and the lowest point at level k is findings' L_k (the worst case over every run of
    levels <= k). A family's last level is filled where it converged (each of its last two doublings
    moved the worst case by no more than the tolerance: results.csv ``converged`` True) and open where
    it did not (an upper bound); no such marker without a ladder (one level, or a results.csv from
    before issue 25). A kind with a fixed budget (`RobustKind.fixed`: Tramer et al.'s run) is a
    dash-dotted level; the worst case per point over every evaluation is the black dotted line with its
    interval shaded, and the panel title says "converged" or "upper bound" (the worst-case row's
    ``converged``)."""
    title = "Fig. 5: robustness evaluation, worst case vs attack budget"
    if results_df.empty:
        return _no_data(stem, title)
    _require(results_df, ["dataset", "regime", "defense", "setting", "attack", "targeted", "steps", "adaptive",
                          "n_adaptive", "accuracy", "ci_low", "ci_high", "n"], "results_df")
    df = results_df.copy()
    for column, default in (("level", 0), ("converged", None)):  # results.csv from before issue 25 lacks them
        if column not in df:
            df[column] = default
    if "eot" not in df:  # before issue 33 a robust run's EOT draws were its `n_adaptive`
        df["eot"] = df["n_adaptive"]
    df["level"] = df["level"].fillna(0).astype(int)
    runs = df[df["adaptive"].isin(list(ROBUST_KINDS))]
    if runs.empty:
        return _no_data(stem, title, "no robustness evaluation (no robustness: section)")
    _require_unique(runs, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "eot"],
                    "results_df (robust rows)")
    worst = df[df["adaptive"] == "worst_case"]
    key = ["dataset", "regime", "defense", "setting"]
    targets = sorted(runs.groupby(key).groups, key=lambda t: (t[0], _regime_rank(t[1]), t[2], t[3]))
    fig, axes = _figure(len(targets), ncols=4, panel_size=(3.0, 2.6))
    # the ladders first, then the runs with a fixed budget (Tramer et al.'s)
    families = sorted({_family(r) for r in runs.to_dict("records")}, key=lambda f: (robust_kind(f[0]).fixed, f))
    colors = {family: f"C{i % 10}" for i, family in enumerate(families)}
    top = int(runs["level"].max())
    multi_dataset = runs["dataset"].nunique() > 1
    handles: dict[str, Line2D] = {}
    for ax, target in zip(axes, targets):
        rows = runs[(runs[key] == pd.Series(target, index=key)).all(axis=1)]
        records = rows.to_dict("records")
        for family in families:
            line = sorted((r for r in records if _family(r) == family), key=lambda r: r["level"])
            if not line:
                continue
            color, label = colors[family], _family_label(family)
            acc = np.array([100 * r["accuracy"] for r in line])
            err = 100 * np.array([[r["accuracy"] - r["ci_low"] for r in line], [r["ci_high"] - r["accuracy"] for r in line]])
            if robust_kind(family[0]).fixed:
                ax.axhline(acc[0], color=color, ls="-.", lw=1.0)
                handles.setdefault(label, Line2D([], [], color=color, ls="-.", lw=1.0))
                continue
            levels = [r["level"] for r in line]
            ax.errorbar(levels, acc, yerr=err, color=color, marker="o", ms=3.5, lw=1.1, elinewidth=0.6, capsize=2)
            converged = _flag(line[-1]["converged"])
            if converged is not None:  # the family's last level: filled if converged, open (an upper bound) if not
                ax.plot(levels[-1], acc[-1], marker="o", ms=7, color=color, mfc=color if converged else "white",
                        mew=1.3)
            handles.setdefault(label, Line2D([], [], color=color, marker="o", ms=3.5, lw=1.1))
        level = worst[(worst[key] == pd.Series(target, index=key)).all(axis=1)]
        verdict = ""
        if len(level):
            w = level.iloc[0]
            ax.axhline(100 * w["accuracy"], color="k", ls=":", lw=1.3)
            ax.axhspan(100 * w["ci_low"], 100 * w["ci_high"], color="k", alpha=0.07, lw=0)
            handles.setdefault("worst case per point (95% interval shaded)", Line2D([], [], color="k", ls=":", lw=1.3))
            converged = _flag(w["converged"])
            verdict = {True: ": converged", False: ": upper bound", None: ""}[converged]
        dataset, regime, defense, setting = target
        name = DEFENSES[defense].label if defense in DEFENSES else defense
        ax.set_title(f"{dataset + ' · ' if multi_dataset else ''}{_regime(regime)} + {name}\n({setting}){verdict}"
                     f", {int(rows['n'].iloc[0])} points", fontsize=8)
        ax.set_xticks(range(top + 1), [f"L{k} ×{2 ** k}" for k in range(top + 1)])
        ax.set_xlim(-0.3, top + 0.3)
        ax.set_xlabel("level: budget × start")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles["last level converged"] = Line2D([], [], color="0.3", marker="o", ms=7, ls="none")
    handles["last level not converged (upper bound)"] = Line2D([], [], color="0.3", marker="o", ms=7, ls="none",
                                                               mfc="white", mew=1.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)),
               frameon=False, fontsize=7)
    fig.suptitle(title)
    return _save(fig, stem)
