"""Snakemake job: every (defense, setting) of one (dataset, regime, attack), one artifact file each."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_evaluate_group

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_evaluate_group(snakemake.input.data, snakemake.input.model, snakemake.input.examples,
                       {(defense, setting): path for defense, setting, path in p.settings},
                       n_samples=p.n_samples, chunk_size=p.chunk_size, pool_per_class=p.pool_per_class, seed=p.seed,
                       device=p.device, meta={"dataset": wc.dataset, "regime": wc.regime}, speed=dict(p.speed))
