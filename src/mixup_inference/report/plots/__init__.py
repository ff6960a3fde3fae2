"""The paper's figures from the aggregated tables (results.csv, detection.csv, components.csv).

* :func:`plot_components` -- Fig. 2: MI-PL / MI-OL output components F_y, F_yhat vs lambda, with the
  ideal-linearity predictions of Table 1 dashed.
* :func:`plot_detection_auc` -- Fig. 3a: detection AUC, MI-PL score vs plain confidence.
* :func:`plot_tradeoff` -- Fig. 3b: adversarial vs clean accuracy over each defense's settings.
* :func:`plot_adaptive` -- Fig. 4: accuracy vs number of adaptive samples N_A.
* :func:`plot_convergence` -- Fig. 5: the robustness evaluation's worst case against the convergence level,
  one small panel per attacked defense setting (issue 25).
* :func:`plot_gain_vs_epochs` / :func:`plot_gain_vs_fy` -- the training study's (issue 35): MI-OL's gain
  against the training epochs and against F_y, from :func:`report.study.length_trend`'s frames.

Each function takes DataFrames in the formats of :mod:`mixup_inference.report.aggregate` and an output
stem, writes ``stem.png`` (150 dpi) and ``stem.svg`` (text kept as text) and returns both paths.
An empty input gives a figure that says "no data". Figures are built with the object-oriented API
(``matplotlib.figure.Figure``, rendered by Agg), so no pyplot state or backend switch is involved.
Figs. 2-4 live in `paper`, Fig. 5 in `convergence`, the study's in `study`, what they share (style, files,
panels, checks) in `common`.
"""

from .common import REGIME_LABELS
from .convergence import plot_convergence
from .paper import plot_adaptive, plot_components, plot_detection_auc, plot_tradeoff
from .study import plot_gain_vs_epochs, plot_gain_vs_fy

__all__ = [
    "REGIME_LABELS",
    "plot_adaptive",
    "plot_components",
    "plot_convergence",
    "plot_detection_auc",
    "plot_gain_vs_epochs",
    "plot_gain_vs_fy",
    "plot_tradeoff",
]
