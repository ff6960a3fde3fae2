"""Snakemake job: every (defense, setting) of one (dataset, regime, attack), one artifact file each."""
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_evaluate_group

with job_log(snakemake.log[0], snakemake.threads):
    p, wc = snakemake.params, snakemake.wildcards
    run_evaluate_group(snakemake.input.data, snakemake.input.model, snakemake.input.examples,
                       {(defense, setting): path for defense, setting, path in p.settings}, job=JobContext(**p.job),
                       meta={"dataset": wc.dataset, "regime": wc.regime})
