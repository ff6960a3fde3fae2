"""What every figure shares: its style, its file formats, its panel grid, the frame checks and the
orders and labels of regimes and attacks."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from ...core.attacks.specs import parse_attack
from ...core.utils import atomic_open

__all__ = ["DPI", "REGIME_LABELS", "attack_order", "figure", "no_data", "no_data_figure", "regime_label",
           "regime_rank", "require", "require_unique", "save", "styled"]

DPI = 150
REGIME_LABELS = {"erm": "ERM", "mixup": "Mixup", "at": "AT", "interpolated_at": "Interpolated AT"}
_RC = {"svg.fonttype": "none", "svg.hashsalt": "mixup-inference", "font.size": 9, "axes.titlesize": 9}


def styled(plot):
    """Run a plot function under the figures' rcParams (fonts are fixed when artists are created)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return plot(*args, **kwargs)

    return wrapper


def regime_label(name: str) -> str:
    return REGIME_LABELS.get(name, name)


def regime_rank(name: str) -> tuple[int, str]:
    order = list(REGIME_LABELS)
    return (order.index(name) if name in order else len(order), name)


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write fig as stem.png and stem.svg (each through core.utils.atomic_open); deterministic bytes."""
    stem = Path(stem)
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_open(path) as handle:
            fig.savefig(handle, format=fmt, dpi=DPI, metadata=metadata, bbox_inches="tight")
        paths.append(path)
    return paths


def figure(n_panels: int, *, ncols: int | None = None, panel_size=(3.6, 2.9)) -> tuple[Figure, list]:
    ncols = min(n_panels, ncols or 3) if n_panels else 1
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def no_data_figure(title: str, reason: str = "no data") -> Figure:
    """A figure with no axes that says why there is nothing to draw."""
    fig = Figure(figsize=(4.5, 2.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=12, color="0.4", transform=ax.transAxes)
    return fig


def no_data(stem: str | Path, title: str, reason: str = "no data") -> list[Path]:
    return save(no_data_figure(title, reason), stem)


def require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; pass the frame written by the aggregate step")


def require_unique(df: pd.DataFrame, key: list[str], name: str) -> None:
    duplicated = df[df.duplicated(key, keep=False)]
    if len(duplicated):
        raise ValueError(f"{name} has several rows for {dict(duplicated.iloc[0][key])}; deduplicate it")


def attack_order(name: str) -> tuple[bool, int]:
    """Untargeted before targeted, then by steps (the kind is not part of the order: a results.csv
    that mixes kinds at equal steps sorts them by name)."""
    parsed = parse_attack(name)
    return parsed.targeted, parsed.steps
