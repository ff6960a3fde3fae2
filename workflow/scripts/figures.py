"""Snakemake job: the paper's figures (Fig. 2, 3a, 3b, 4) and the robustness evaluation's convergence (Fig. 5)
from the aggregated CSVs."""
from pathlib import Path

import pandas as pd

from mixup_inference.jobs.joblog import job_log
from mixup_inference.report.plots import (plot_adaptive, plot_components, plot_convergence, plot_detection_auc,
                                          plot_tradeoff)

with job_log(snakemake.log[0]):
    out = snakemake.output
    results = pd.read_csv(snakemake.input.results)
    stem = lambda path: Path(path).with_suffix("")  # noqa: E731 (the PNG and SVG outputs share a stem)
    plot_components(pd.read_csv(snakemake.input.components), stem(out.fig2))
    plot_detection_auc(pd.read_csv(snakemake.input.detection), stem(out.fig3a))
    plot_tradeoff(results, stem(out.fig3b), attack=snakemake.params.tradeoff_attack)
    plot_adaptive(results, stem(out.fig4))
    plot_convergence(results, stem(out.fig5))
