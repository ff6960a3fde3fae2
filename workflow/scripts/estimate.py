"""Snakemake job: the measured estimate of this run's core-seconds and wall time (reports/<run>/estimate.md, .json)."""
import os
from pathlib import Path

from mixup_inference.jobs.joblog import job_log
from mixup_inference.perf.estimate import estimate, write
from mixup_inference.perf.workmodel import Survivors

with job_log(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    survivors = Survivors.from_results(p.survivors) if os.path.exists(p.survivors) else Survivors()
    result = estimate(dict(p.config), p.cores, data=dict(p.data), survivors=survivors)
    write(result, Path(snakemake.output.markdown).parent, command="snakemake estimate")
