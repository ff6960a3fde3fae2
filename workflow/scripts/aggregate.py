"""Snakemake job: every evaluation artifact -> tidy results.csv, detection.csv, components.csv."""
from mixup_inference.aggregate import aggregate
from mixup_inference.pipeline import job_log

with job_log(snakemake.log[0]):
    results, detection, components = aggregate([*snakemake.input.evaluations, *snakemake.input.adaptive],
                                             component_attack=snakemake.params.component_attack)
    results.to_csv(snakemake.output.results, index=False)
    detection.to_csv(snakemake.output.detection, index=False)
    components.to_csv(snakemake.output.components, index=False)
    print(f"{len(results)} result rows, {len(detection)} detection rows, {len(components)} component rows")
