"""Snakemake job: one table (a paper table beside the paper's numbers, or a user model's) as Markdown, CSV, LaTeX, HTML."""
from pathlib import Path

import pandas as pd

from mixup_inference.jobs.joblog import job_log
from mixup_inference.design.plan import table_rows
from mixup_inference.report.tables import build_table, write_table

with job_log(snakemake.log[0]):
    spec = snakemake.params.table
    results = pd.read_csv(snakemake.input.results)
    table = build_table(results, table_rows(spec), spec["paper"], spec["dataset"], attacks=spec["attacks"])
    write_table(table, Path(snakemake.output.markdown).with_suffix(""))
    print(table.to_string())
