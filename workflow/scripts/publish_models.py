"""Snakemake job: the run's trained models as weights-only files in reports/<run>/models/, with the config
overlay that re-runs everything after training from them (jobs.publish)."""
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.publish import PublishedModel, publish_models

with job_log(snakemake.log[0]):
    models = [PublishedModel(dataset=d, regime=r, model=model, file=file)
              for d, r, model, file in snakemake.params.models]
    publish_models(models, snakemake.output.overlay, run=snakemake.params.run)
