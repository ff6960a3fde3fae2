"""Snakemake job: one adaptive attack against an MI defense, then that defense on its examples."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_adaptive

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_adaptive(snakemake.input.data, snakemake.input.model, snakemake.output.evaluation, attack=dict(p.attack),
                 attack_name=wc.attack, kind=p.kind, defense=p.defense, setting=p.setting, n_adaptive=p.n_adaptive,
                 n_test=p.n_test, n_subset=p.n_subset, n_samples=p.n_samples, chunk_size=p.chunk_size,
                 pool_per_class=p.pool_per_class, batch_size=p.batch_size, seed=p.seed, device=p.device,
                 meta={"dataset": wc.dataset, "regime": wc.regime}, speed=dict(p.speed))
