"""Snakemake job: one defense with one setting on one attack's examples."""
from mixup_inference.joblog import job_log
from mixup_inference.jobs import run_evaluate

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_evaluate(snakemake.input.data, snakemake.input.model, snakemake.input.examples, snakemake.output.evaluation,
                 defense=p.defense, setting=p.setting, n_samples=p.n_samples, chunk_size=p.chunk_size,
                 pool_per_class=p.pool_per_class, seed=p.seed, device=p.device,
                 meta={"dataset": wc.dataset, "regime": wc.regime})
