"""Fig. 5 (issue 25, not in the paper): the robustness evaluation's worst case against the budget level."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...core.attacks.kinds import ROBUST_KINDS, robust_kind
from ...core.defenses.specs import DEFENSES
from .common import figure, no_data, regime_label, regime_rank, require, require_unique, save, styled

__all__ = ["plot_convergence"]


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


@styled
def plot_convergence(results_df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Fig. 5: the robustness evaluation's convergence (the `robustness:` section, issues 25 and 33), one
    small panel per attacked (dataset, regime, defense, setting), the bare models' (defense none) among them.

    Per attack family (its kind's, core.attacks.kinds: AutoAttack rand; EOT PGD per targeted value and
    start budget; AutoAttack standard and PGD on a bare model; one per kind registered beside them),
    labelled by its kind, each level's accuracy with its 95% Wilson interval against the level (x: the
    budget multiplier 2^level of steps and EOT draws). In a cascade a run attacks only the points the
    oblivious evaluations and every earlier run left, so its accuracy is the worst case up to that run;
    the runs go level by level (design.plan.robust_runs), so a level-k point never includes a break of a
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
        return no_data(stem, title)
    require(results_df, ["dataset", "regime", "defense", "setting", "attack", "targeted", "steps", "adaptive",
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
        return no_data(stem, title, "no robustness evaluation (no robustness: section)")
    require_unique(runs, ["dataset", "regime", "defense", "setting", "attack", "adaptive", "eot"],
                    "results_df (robust rows)")
    worst = df[df["adaptive"] == "worst_case"]
    key = ["dataset", "regime", "defense", "setting"]
    targets = sorted(runs.groupby(key).groups, key=lambda t: (t[0], regime_rank(t[1]), t[2], t[3]))
    fig, axes = figure(len(targets), ncols=4, panel_size=(3.0, 2.6))
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
        ax.set_title(f"{dataset + ' · ' if multi_dataset else ''}{regime_label(regime)} + {name}\n({setting}){verdict}"
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
    return save(fig, stem)
