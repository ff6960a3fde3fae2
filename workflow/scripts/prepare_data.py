"""Snakemake job: prepare one data set into the compact cached tensor file."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_prepare

with job_log(snakemake.log[0]):
    p = snakemake.params
    run_prepare(p.source, snakemake.output.data, download_root=p.download_root, image_size=p.image_size,
                synthetic=p.synthetic, seed=p.seed)
