"""Snakemake job: oblivious adversarial examples of one attack on one bare model."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_attack

with job_log(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    run_attack(snakemake.input.data, snakemake.input.model, snakemake.output.examples, attack=dict(p.attack),
               n_test=p.n_test, batch_size=p.batch_size, seed=p.seed, device=p.device,
               name=snakemake.wildcards.attack, speed=dict(p.speed))
