"""Snakemake job: train one model for one regime (resumes from its last checkpoint)."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_train

with job_log(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    run_train(snakemake.input.data, snakemake.output.model, snakemake.output.log, snakemake.output.metrics,
              model_name=p.model, training=dict(p.training), checkpoint_dir=p.checkpoint_dir, device=p.device,
              speed=dict(p.speed))
