"""Snakemake job: every run of the robustness evaluation that applies to one defense setting or bare model."""
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.robust import run_robust

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_robust(snakemake.input.data, snakemake.input.model, snakemake.output.runs,
               target=(wc.dataset, wc.regime, p.defense, p.setting), robustness=dict(p.robustness),
               attack=dict(p.attack), job=JobContext(**p.job), oblivious=list(p.oblivious))
