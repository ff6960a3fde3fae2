"""Snakemake job: download one model file (URL in the config) once into the data folder, sha256-checked."""
from mixup_inference.core.models.downloads import fetch_file
from mixup_inference.jobs.joblog import job_log

with job_log(snakemake.log[0]):
    digest = fetch_file(snakemake.params.url, snakemake.output.model_file, snakemake.params.sha256)
    print(f"downloaded {snakemake.params.url} -> {snakemake.output.model_file} (sha256 {digest})")
