"""Snakemake job: what was run, on what, with what (config, data, models, hardware, versions, commit, timings)."""
from pathlib import Path

import yaml

from mixup_inference.jobs.joblog import job_log
from mixup_inference.report.provenance import write_provenance

with job_log(snakemake.log[0]):
    with open(snakemake.input.paper_preset) as file:
        paper = yaml.safe_load(file)
    write_provenance(snakemake.output.yaml, snakemake.output.html, config=snakemake.params.config,
                     data_paths=list(snakemake.input.data), metrics_paths=list(snakemake.input.metrics),
                     model_paths=list(snakemake.input.models),
                     benchmarks_dir=snakemake.params.benchmarks,
                     # the jobs' logs (their headers say the threads each used): this job's log's folder, logs/<run>
                     logs_dir=Path(snakemake.log[0]).parent, paper_config=paper)
