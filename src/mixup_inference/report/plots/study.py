"""The training study's figures (issue 35, not in the paper): MI-OL's gain against the training epochs and
against Fig. 2's F_y, from the frames of :func:`report.study.length_trend`, with the paper's gain marked.

Both take ``lengths`` (one row per regime x epochs: ``gain``, ``gain_low``, ``gain_high`` in points, ``f_y_0.5``,
``f_y_1``) and the paper's gains (regime -> points, :func:`report.study.paper_gains`); the epochs figure also
``trends`` (per regime with >= 3 lengths: the slope per doubling with its bootstrap interval and the epochs the
trend needs for the paper's gain). The study writes its report row by row while its models still train, so an
empty frame gives a figure that says so, a regime with fewer than 3 lengths has its points without a trend, and
an F_y that was not evaluated (NaN) is left out of the F_y figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, NullLocator

from ...design.paper_tables import PAPER_EPOCHS
from ..tables import attack_display_name, epochs_span, epochs_text
from .common import figure, no_data_figure, regime_label, regime_rank, require, require_unique, save, styled

__all__ = ["gain_vs_epochs_figure", "gain_vs_fy_figure", "plot_gain_vs_epochs", "plot_gain_vs_fy"]

NOTHING_YET = "no model evaluated yet"
LENGTH_COLUMNS = ["regime", "epochs", "gain", "gain_low", "gain_high", "f_y_0.5", "f_y_1"]
TREND_COLUMNS = ["regime", "lengths", "slope_per_doubling", "slope_low", "slope_high"]
#: Fig. 2's lambdas whose F_y the study measures: (lambda, column, marker, colour). Ideal linearity gives F_y = lambda.
FY_SERIES = (("0.5", "f_y_0.5", "o", "C0"), ("1", "f_y_1", "s", "C2"))
PAPER_STYLE = {"color": "C3", "ls": "--", "lw": 1.0}
_LABEL_BOX = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.0}


def _attack(lengths: pd.DataFrame) -> str:
    """The attack's display name ("PGD10") where the frame names it."""
    if "attack" in lengths and lengths["attack"].notna().any():
        return attack_display_name(str(lengths["attack"].dropna().iloc[0]))
    return "the study's attack"


def _checked(lengths: pd.DataFrame) -> list[str]:
    """The regimes to draw, in the report's order, after checking the frame."""
    require(lengths, LENGTH_COLUMNS, "lengths")
    require_unique(lengths, ["regime", "epochs"], "lengths")
    return sorted(lengths["regime"].unique(), key=regime_rank)


def _errorbar(ax, x, rows: pd.DataFrame, **style):
    """The gains with their paired 95% intervals (points) as error bars."""
    gain = rows["gain"].to_numpy(float)
    yerr = np.clip([gain - rows["gain_low"].to_numpy(float), rows["gain_high"].to_numpy(float) - gain], 0, None)
    return ax.errorbar(x, gain, yerr=yerr, elinewidth=0.8, capsize=2.5, ms=4.5, **style)


def _paper_gain(paper_gains: dict[str, float], regime: str) -> float | None:
    value = paper_gains.get(regime)
    return None if value is None or math.isnan(value) else float(value)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _trend_text(trend: dict, paper: float | None) -> str:
    """What the trend says, with its uncertainty: the slope and, from it, the epochs for the paper's gain."""
    text = (f"trend: {trend['slope_per_doubling']:+.2f} points per doubling, "
            f"95% [{trend['slope_low']:+.2f}, {trend['slope_high']:+.2f}]")
    if paper is None:
        return text
    needed = trend.get("epochs_for_paper_gain")
    if trend["slope_high"] <= 0:
        return text + f"\nfalling: longer training does not reach {paper:+.1f}"
    if not _finite(needed):
        return text + f"\nnot rising: {paper:+.1f} is not reached at this rate"
    caveat = "" if trend["slope_low"] > 0 else " (interval includes no rise)"
    return text + f"\nreaches {paper:+.1f} at ~{epochs_text(needed)} epochs{epochs_span(trend)}{caveat}"


def _mark_paper(ax, paper: float, epochs: int, *, star: bool) -> None:
    """The paper's gain as a dashed level labelled with its value and epochs, starred at its epochs if `star`."""
    ax.axhline(paper, gid="paper_gain", **PAPER_STYLE)
    label = f"paper: {paper:+.1f} at {epochs} epochs"
    if star:
        ax.plot([epochs], [paper], marker="*", ms=11, color=PAPER_STYLE["color"], ls="none", gid="paper_point")
        ax.annotate(label, (epochs, paper), textcoords="offset points", xytext=(-8, -4), ha="right", va="top",
                    fontsize=7, color=PAPER_STYLE["color"], bbox=_LABEL_BOX)
    else:
        ax.annotate(label, (0.01, paper), xycoords=("axes fraction", "data"), textcoords="offset points",
                    xytext=(0, -4), ha="left", va="top", fontsize=7, color=PAPER_STYLE["color"], bbox=_LABEL_BOX)


def _draw_trend(ax, fitted: pd.DataFrame, trend: dict, right: float, handles: dict) -> None:
    """The least-squares line of `fitted`'s gains on log2(epochs): through their mean at `trend`'s slope (the same
    line: report.study's fit is least squares on the same gains), solid over the lengths measured, dotted beyond
    them up to `right`; the slope's interval as a band pivoting at the mean."""
    x0, y0 = float(np.log2(fitted["epochs"].to_numpy(float)).mean()), float(fitted["gain"].mean())

    def line(x, slope):
        return y0 + slope * (np.log2(x) - x0)

    inside = np.array([fitted["epochs"].min(), fitted["epochs"].max()], dtype=float)
    ax.plot(inside, line(inside, trend["slope_per_doubling"]), color="C0", lw=1.2, gid="trend")
    handles["trend (least squares on log2 epochs)"] = Line2D([], [], color="C0", lw=1.2)
    if right > inside[1]:
        beyond = np.array([inside[1], right])
        ax.plot(beyond, line(beyond, trend["slope_per_doubling"]), color="C0", lw=1.0, ls=":", gid="extrapolation")
        handles["trend, extrapolated"] = Line2D([], [], color="C0", lw=1.0, ls=":")
    grid = np.geomspace(inside[0], right, 64)
    ax.fill_between(grid, line(grid, trend["slope_low"]), line(grid, trend["slope_high"]), color="C0", alpha=0.12,
                    lw=0)
    handles["slope's 95% bootstrap interval"] = Patch(color="C0", alpha=0.12, lw=0)


@styled
def gain_vs_epochs_figure(lengths: pd.DataFrame, trends: pd.DataFrame, paper_gains: dict[str, float], *,
                          paper_epochs: int = PAPER_EPOCHS) -> Figure:
    """MI-OL's gain under the study's attack against the training epochs (log2 axis), one panel per regime: each
    length's gain with its paired 95% interval; where the regime has a trend (>= 3 lengths) its least-squares line
    on log2(epochs) (through the points' mean, at `trends`' slope), dotted beyond the lengths measured up to the
    paper's epochs, and the slope's bootstrap interval as a band pivoting at that mean (an approximation: the
    bootstrap's intercepts vary too); the paper's gain dashed, starred at `paper_epochs`; the trend's slope and the
    epochs it needs for the paper's gain in the corner."""
    title = "Training study: MI-OL's gain vs training epochs"
    if lengths.empty:
        return no_data_figure(title, NOTHING_YET)
    regimes = _checked(lengths)
    if len(trends):
        require(trends, TREND_COLUMNS, "trends")
    fig, axes = figure(len(regimes), ncols=2, panel_size=(4.2, 3.4))
    handles: dict[str, object] = {}
    for ax, regime in zip(axes, regimes):
        rows = lengths[lengths["regime"] == regime].sort_values("epochs")
        epochs = rows["epochs"].to_numpy(float)
        _errorbar(ax, epochs, rows, color="C0", marker="o", ls="none", label="gain")
        handles["measured gain, paired 95% interval"] = Line2D([], [], color="C0", marker="o", ls="none")
        paper = _paper_gain(paper_gains, regime)
        right = max(epochs.max(), paper_epochs if paper is not None else 0.0)
        trend = trends[trends["regime"] == regime].to_dict("records") if len(trends) else []
        t = trend[0] if trend else None
        fitted = rows[rows["epochs"].isin([int(e) for e in str(t["lengths"]).split()])] if t else rows.iloc[:0]
        if t and len(fitted):
            _draw_trend(ax, fitted, t, right, handles)
            note = _trend_text(t, paper)
        else:
            note = f"{len(rows)} length{'s' if len(rows) != 1 else ''}: no trend (it needs 3)"
        if paper is not None:
            _mark_paper(ax, paper, paper_epochs, star=True)
            handles["the paper's gain"] = Line2D([], [], marker="*", ms=9, **PAPER_STYLE)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log", base=2)
        ticks = sorted({int(e) for e in epochs} | ({paper_epochs} if paper is not None else set()))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(epochs.min() / 1.5, right * 1.5)
        ax.set_xlabel("training epochs (log scale)")
        ax.set_ylabel(f"MI-OL's gain under {_attack(lengths)} (points)")
        # the trend's note under the title: inside the axes it would cover the band or the paper's level
        ax.set_title(f"{_panel_title(regime, rows)}\n{note}", fontsize=8)
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)),
               frameon=False, fontsize=7)
    fig.suptitle(f"Training study: MI-OL's gain under {_attack(lengths)} vs training epochs")
    return fig


def _panel_title(regime: str, rows: pd.DataFrame) -> str:
    parts = [regime_label(regime)]
    if "seed" in rows:
        parts.append(f"seed {int(rows['seed'].iloc[0])}")
    if "n" in rows:
        parts.append(f"{int(rows['n'].iloc[0])} points")
    return ", ".join(parts)


@styled
def gain_vs_fy_figure(lengths: pd.DataFrame, paper_gains: dict[str, float], *,
                      paper_epochs: int = PAPER_EPOCHS) -> Figure:
    """MI-OL's gain under the study's attack (paired 95% interval) against F_y, the mean probability of the true
    class under MI-OL on clean inputs (Fig. 2), at lambda 0.5 (circles) and 1 (squares), one panel per regime; each
    point labelled with its epochs and the points of one lambda joined in the order of the epochs. Ideal
    linearity gives F_y = lambda (dashed verticals); the paper's gain is the red dashed level."""
    title = "Training study: MI-OL's gain vs F_y"
    if lengths.empty:
        return no_data_figure(title, NOTHING_YET)
    regimes = _checked(lengths)
    fig, axes = figure(len(regimes), ncols=2, panel_size=(4.2, 3.4))
    handles: dict[str, object] = {}
    for ax, regime in zip(axes, regimes):
        rows = lengths[lengths["regime"] == regime].sort_values("epochs")
        gain = rows["gain"].to_numpy(float)
        drawn = False
        for lam, column, marker, color in FY_SERIES:
            f_y = rows[column].to_numpy(float)
            ax.axvline(float(lam), color=color, ls="--", lw=0.8, gid=f"ideal_{lam}")
            handles[f"ideal linearity at λ = {lam}: $F_y$ = {lam}"] = Line2D([], [], color=color, ls="--", lw=0.8)
            if np.isnan(f_y).all():
                continue
            drawn = True
            ax.plot(f_y, gain, color=color, lw=0.6, alpha=0.5)
            _errorbar(ax, f_y, rows, color=color, marker=marker, ls="none", label=f"λ = {lam}")
            handles[f"$F_y$ at λ = {lam}"] = Line2D([], [], color=color, marker=marker, ls="none")
            for x, y, e in zip(f_y, gain, rows["epochs"]):
                if math.isfinite(x):
                    ax.annotate(f"{int(e)}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6.5,
                                color=color)
        if not drawn:
            ax.text(0.5, 0.5, "$F_y$ not evaluated yet\n(MI-OL on clean inputs at λ 0.5 and 1)", ha="center",
                    va="center", fontsize=8, color="0.4", transform=ax.transAxes)
        paper = _paper_gain(paper_gains, regime)
        if paper is not None:
            _mark_paper(ax, paper, paper_epochs, star=False)
            handles["the paper's gain"] = Line2D([], [], **PAPER_STYLE)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlim(0.0, 1.05)
        ax.set_xlabel("$F_y$: MI-OL on clean inputs, mean p(true class)")
        ax.set_ylabel(f"MI-OL's gain under {_attack(lengths)} (points)")
        ax.set_title(_panel_title(regime, rows) + " (labels: epochs)")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)),
               frameon=False, fontsize=7)
    fig.suptitle(f"Training study: MI-OL's gain under {_attack(lengths)} vs $F_y$")
    return fig


def plot_gain_vs_epochs(lengths: pd.DataFrame, trends: pd.DataFrame, paper_gains: dict[str, float],
                        stem: str | Path, *, paper_epochs: int = PAPER_EPOCHS) -> list[Path]:
    """:func:`gain_vs_epochs_figure` as stem.png and stem.svg."""
    return save(gain_vs_epochs_figure(lengths, trends, paper_gains, paper_epochs=paper_epochs), stem)


@styled
def plot_gain_vs_fy(lengths: pd.DataFrame, paper_gains: dict[str, float], stem: str | Path, *,
                    paper_epochs: int = PAPER_EPOCHS) -> list[Path]:
    """:func:`gain_vs_fy_figure` as stem.png and stem.svg."""
    return save(gain_vs_fy_figure(lengths, paper_gains, paper_epochs=paper_epochs), stem)
