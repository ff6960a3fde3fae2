"""Snakemake job: a model from a file (config models:) in place of training, written as this project's model.pt."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_import

with job_log(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    run_import(snakemake.input.data, snakemake.input.model_file, snakemake.output.model, snakemake.output.metrics,
               name=p.name, format=p.format, arch=p.arch, sha256=p.sha256, source=p.source, device=p.device)
