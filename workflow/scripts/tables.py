"""Snakemake job: one of the paper's tables (our numbers beside the paper's) as Markdown, CSV, LaTeX, HTML."""
from pathlib import Path

import pandas as pd

from mixup_inference.joblog import job_log
from mixup_inference.tables import TABLE_SPECS, build_table, write_table

with job_log(snakemake.log[0]):
    rows, paper = TABLE_SPECS[snakemake.wildcards.table]
    results = pd.read_csv(snakemake.input.results)
    table = build_table(results, rows, paper, snakemake.params.dataset, attacks=snakemake.params.attacks)
    write_table(table, Path(snakemake.output.markdown).with_suffix(""))
    print(table.to_string())
