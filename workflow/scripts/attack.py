"""Snakemake job: oblivious adversarial examples of one attack on one bare model."""
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_attack

with job_log(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    run_attack(snakemake.input.data, snakemake.input.model, snakemake.output.examples, attack=dict(p.attack),
               job=JobContext(**p.job), name=snakemake.wildcards.attack)
