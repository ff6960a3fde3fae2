"""The paper's figures (Figs. 2, 3a, 3b and 4) from the aggregated tables; `report.plots` lists them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...core.attacks.specs import ADAPTIVE_KINDS, parse_attack
from ...core.defenses.specs import DEFENSES
from ..aggregate import ideal_linearity
from ..tables import attack_display_name
from .common import attack_order, figure, no_data, regime_label, regime_rank, require, require_unique, save, styled

__all__ = ["plot_adaptive", "plot_components", "plot_detection_auc", "plot_tradeoff"]

# Fig. 4 draws the paper's adaptive attack on MI's mixed copies (rule adaptive), in the registry's order; labels
# come from the specs.
_FIG4_KINDS = tuple(kind for kind, spec in ADAPTIVE_KINDS.items() if spec.rule == "adaptive")


# ---------------------------------------------------------------- Fig. 2
def _component_attack(df: pd.DataFrame) -> str | None:
    """The adversarial attack to draw: the one with the most lambda values; "pgd10" (the paper's) on ties."""
    adversarial = df[df["input"] == "adversarial"]
    if adversarial.empty:
        return None
    counts = adversarial.groupby("attack")["lam"].nunique()
    best = counts.max()
    candidates = sorted(counts[counts == best].index, key=lambda a: (a != "pgd10", attack_order(a)))
    return candidates[0]


@styled
def plot_components(components_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 2: mean F_y and F_yhat of the MI output vs lambda, one panel per (dataset, regime, mode).

    Solid lines with markers: measured means (``components.csv``) on clean inputs and on their
    adversarial counterparts; dashed lines: Table 1 under ideal global linearity
    (:func:`aggregate.ideal_linearity`). If several adversarial attacks are present, the one with the
    most lambda values is drawn (PGD-10 on ties) and named in the title.
    """
    title = "Fig. 2: MI output components vs λ"
    if components_df.empty:
        return no_data(stem, title)
    require(components_df, ["dataset", "regime", "mode", "lam", "attack", "input", "component", "value",
                             "num_classes"], "components_df")
    attack = _component_attack(components_df)
    df = components_df[(components_df["input"] == "clean") | (components_df["attack"] == attack)]
    panels = sorted(
        df.groupby(["dataset", "regime", "mode"]).groups, key=lambda p: (p[0], regime_rank(p[1]), p[2] != "pl")
    )
    # MI-PL and MI-OL of a regime side by side, two regimes per row: a wide figure, so the report
    # viewer (which fits the height to the window) shows it whole and legible
    fig, axes = figure(len(panels), ncols=4 if len(panels) > 2 else 2)
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
        ax.set_title(f"{prefix}{regime_label(regime)} + MI-{mode.upper()}")
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
    return save(fig, stem)


# ---------------------------------------------------------------- Fig. 3a
@styled
def plot_detection_auc(detection_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 3a: grouped bars of detection AUC per (regime, attack), MI-PL score vs plain confidence,
    one panel per dataset, with the 0.5 chance level dashed and, where `detection_df` has the
    columns auc_low / auc_high, their 95% (paired bootstrap) interval as error bars. With a
    ``points`` column, the bars are the paper's clean-correct points and the all-points AUC is a
    black tick on each bar."""
    title = "Fig. 3a: detecting adversarial inputs"
    if detection_df.empty:
        return no_data(stem, title)
    require(detection_df, ["dataset", "regime", "attack", "detector", "setting", "auc"], "detection_df")
    all_points = None
    if "points" in detection_df.columns:
        all_points = detection_df[detection_df["points"] == "all"]
        detection_df = detection_df[detection_df["points"] == "clean_correct"]
        if detection_df.empty:
            return no_data(stem, title, "no clean-correct rows")
    datasets = sorted(detection_df["dataset"].unique())
    fig, axes = figure(len(datasets), ncols=1, panel_size=(max(4.0, 1.2 * detection_df.groupby(
        ["regime", "attack", "setting"]).ngroups + 1.5), 3.2))
    detectors = [("mi_pl", "MI-PL: drop of $F_{\\hat y}$", "C0"), ("confidence", "plain confidence", "0.6")]
    width = 0.38
    for ax, dataset in zip(axes, datasets):
        df = detection_df[detection_df["dataset"] == dataset]
        several_settings = df["setting"].nunique() > 1
        groups = sorted(
            df.groupby(["regime", "attack", "setting"]).groups,
            key=lambda g: (regime_rank(g[0]), attack_order(g[1]), g[2]),
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
            f"{regime_label(r)}\n{attack_display_name(a)}" + (f"\nMI-PL {s}" if several_settings else "")
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
    return save(fig, stem)


# ---------------------------------------------------------------- Fig. 3b
def _param_label(defense: str, param: float) -> str:
    if defense == "none" or pd.isna(param):
        return ""
    return format(float(param), "g")


@styled
def plot_tradeoff(results_df: pd.DataFrame, stem: str | Path, attack: str = "pgd10") -> list[Path]:
    """Fig. 3b: adversarial accuracy (under oblivious ``attack``) vs clean accuracy, one point per
    setting of each defense, joined in order of the defense's main parameter (annotated next to each
    point: lambda, sigma, degrees, lower size, lambda_OL); one panel per (dataset, regime).
    Error bars are the 95% Wilson intervals."""
    title = f"Fig. 3b: {attack_display_name(attack)} accuracy vs clean accuracy"
    if results_df.empty:
        return no_data(stem, title)
    require(results_df, ["dataset", "regime", "defense", "setting", "param", "attack", "adaptive", "accuracy",
                          "ci_low", "ci_high"], "results_df")
    parse_attack(attack)
    oblivious = results_df[results_df["adaptive"] == "none"]
    key = ["dataset", "regime", "defense", "setting"]
    clean = oblivious[oblivious["attack"] == "clean"]
    adv = oblivious[oblivious["attack"] == attack]
    for part in (clean, adv):
        require_unique(part, key + ["attack"], "results_df (oblivious rows)")
    pairs = clean.merge(adv, on=key, suffixes=("_clean", "_adv"))
    if pairs.empty:
        return no_data(stem, title, f"no setting evaluated on both clean and {attack} inputs")
    panels = sorted(pairs.groupby(["dataset", "regime"]).groups, key=lambda p: (p[0], regime_rank(p[1])))
    fig, axes = figure(len(panels), ncols=2, panel_size=(4.4, 3.6))
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
        ax.set_title(f"{prefix}{regime_label(regime)}")
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(f"{attack_display_name(attack)} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return save(fig, stem)


# ---------------------------------------------------------------- Fig. 4
def _points(rows: pd.DataFrame) -> str:
    """", n points" for a legend label: Fig. 4's lines are measured on different prefixes of the test
    subset (oblivious: all of it, adaptive: adaptive.n_test, worst case: robustness.n_test), so each
    says how many points it is on; nothing where the rows have no "n" column or several sizes."""
    sizes = rows["n"].unique() if "n" in rows else []
    return f", {int(sizes[0])} points" if len(sizes) == 1 else ""


@styled
def plot_adaptive(results_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 4: accuracy vs number of adaptive samples N_A, one panel per attack (adaptive PGD-10/50/200,
    one row of panels per attacked (dataset, regime, defense, setting)), one line per attack kind of
    the paper's adaptive attack ("paper": App. B.2, Eq. 24; "eot"), 95% Wilson error bars. Dashed: the model without MI under
    the same oblivious attack (defense none, same dataset and regime), as in the paper."""
    title = "Fig. 4: adaptive attacks"
    if results_df.empty:
        return no_data(stem, title)
    require(results_df, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "n_adaptive",
                          "accuracy", "ci_low", "ci_high"], "results_df")
    worst = results_df[results_df["adaptive"] == "worst_case"]  # aggregate.worst_case_rows
    adaptive = results_df[results_df["adaptive"].isin(_FIG4_KINDS)]
    if adaptive.empty:
        return no_data(stem, title, "no adaptive attacks evaluated")
    targets = sorted(adaptive.groupby(["dataset", "regime", "defense", "setting"]).groups)
    attacks = sorted(adaptive["attack"].unique(), key=attack_order)
    fig, axes = figure(len(targets) * len(attacks), ncols=len(attacks), panel_size=(3.4, 2.9))
    require_unique(adaptive, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "n_adaptive"],
                    "results_df (adaptive rows)")
    plain = results_df[(results_df["adaptive"] == "none") & (results_df["defense"] == "none")]
    require_unique(plain, ["dataset", "regime", "setting", "attack"], "results_df (undefended rows)")
    panels = [(t, a) for t in targets for a in attacks]
    for ax, ((dataset, regime, defense, setting), attack) in zip(axes, panels):
        rows = adaptive[(adaptive["dataset"] == dataset) & (adaptive["regime"] == regime)
                        & (adaptive["defense"] == defense) & (adaptive["setting"] == setting)
                        & (adaptive["attack"] == attack)]
        present = set(rows["adaptive"])
        for i, fig4_kind in enumerate(k for k in _FIG4_KINDS if k in present):  # the registry's order: paper first
            line = rows[rows["adaptive"] == fig4_kind].sort_values("n_adaptive")
            acc = 100 * line["accuracy"]
            err = 100 * np.vstack([line["accuracy"] - line["ci_low"], line["ci_high"] - line["accuracy"]])
            ax.errorbar(line["n_adaptive"], acc, yerr=err, marker="os^v"[i % 4], ms=4, lw=1.3, capsize=2,
                        color=f"C{i}", label=ADAPTIVE_KINDS[fig4_kind].label + _points(line))
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
        ax.set_title(f"{regime_label(regime)} + {DEFENSES[defense].label if defense in DEFENSES else defense} ({setting})\n"
                     f"adaptive {attack_display_name(attack)}" + (f" · {dataset}" if len(targets) > 1 else ""))
        ax.set_xlabel("adaptive samples $N_A$")
        ax.set_ylabel("accuracy (%)")
        if len(rows):
            ax.set_xticks(sorted(rows["n_adaptive"].unique()))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return save(fig, stem)
