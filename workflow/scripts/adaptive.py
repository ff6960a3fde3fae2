"""Snakemake job: one adaptive attack against an MI defense, then that defense on its examples."""
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.joblog import job_log
from mixup_inference.design.plan import AdaptiveRun
from mixup_inference.jobs.stages import run_adaptive

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_adaptive(snakemake.input.data, snakemake.input.model, snakemake.output.evaluation,
                 run=AdaptiveRun(wc.dataset, wc.regime, p.defense, p.setting, p.fig4_kind, wc.attack, p.n_adaptive),
                 attack=dict(p.attack), n_test=p.n_test, job=JobContext(**p.job))
