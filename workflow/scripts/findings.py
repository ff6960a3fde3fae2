"""Snakemake job: every evaluation artifact -> the paper's findings as paired differences (findings.md/.html/_*.csv)."""
import pandas as pd

from mixup_inference.jobs.artifacts import expand_paths, load
from mixup_inference.report.findings import (adaptive_levels, defense_gains, detection_differences, index_artifacts,
                                      matched_baselines, robustness_levels, write_findings)
from mixup_inference.jobs.joblog import job_log
from mixup_inference.design.plan import table_rows

with job_log(snakemake.log[0]):
    index = index_artifacts(load(p) for p in expand_paths([*snakemake.params.evaluations, *snakemake.input.adaptive,
                                                           *snakemake.params.robust]))
    tables, grids, det, ada = (snakemake.params[k] for k in ("tables", "grids", "detection", "adaptive"))
    gains = pd.concat([defense_gains(index, table_rows(spec), spec["dataset"], spec["attacks"]).assign(table=name)
                       for name, spec in tables.items()], ignore_index=True)
    frames = {
        "gains": gains,
        "matched": matched_baselines(index, grids["dataset"], grids["regimes"], grids["attack"], grids["settings"]),
        "detection": detection_differences(index, det["dataset"], det["regimes"], det["attacks"], det["setting"],
                                           seed=snakemake.params.seed),
        "adaptive": adaptive_levels(index, ada["dataset"], ada["regime"], ada["defense"], ada["setting"],
                                    ada["kinds"], ada["attacks"], ada["n_adaptive"]),
        "robustness": robustness_levels(index),
    }
    write_findings(frames, snakemake.output.markdown.removesuffix(".md"))
    for name, frame in frames.items():
        print(f"## {name}\n{frame.to_string(index=False)}\n")
