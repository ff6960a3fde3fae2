"""Snakemake job: every evaluation artifact -> tidy results.csv, detection.csv, components.csv."""
from mixup_inference.report.aggregate import aggregate
from mixup_inference.jobs.joblog import job_log
from mixup_inference.core.utils import atomic_write_text

with job_log(snakemake.log[0]):
    results, detection, components = aggregate([*snakemake.params.evaluations, *snakemake.input.adaptive, *snakemake.params.robust],
                                             component_attack=snakemake.params.component_attack,
                                             seed=snakemake.params.seed)
    for frame, path in ((results, snakemake.output.results), (detection, snakemake.output.detection),
                        (components, snakemake.output.components)):
        atomic_write_text(path, frame.to_csv(index=False))  # a killed job leaves no half-written CSV
    print(f"{len(results)} result rows, {len(detection)} detection rows, {len(components)} component rows")
