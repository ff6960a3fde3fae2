"""Snakemake job: every adaptive attack run of the `robustness:` section against one defense setting."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_robust

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_robust(snakemake.input.data, snakemake.input.model, snakemake.output.runs, defense=p.defense, setting=p.setting,
               robustness=dict(p.robustness), attack=dict(p.attack), n_subset=p.n_subset, n_samples=p.n_samples,
               chunk_size=p.chunk_size, pool_per_class=p.pool_per_class, batch_size=p.batch_size, seed=p.seed,
               device=p.device, oblivious=list(p.oblivious), meta={"dataset": wc.dataset, "regime": wc.regime}, speed=dict(p.speed))
