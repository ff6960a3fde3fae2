"""Snakemake job: the training frontier (reports/bench/frontier.md, frontier.json, frontier.png)."""
from pathlib import Path

from mixup_inference.jobs.joblog import job_log
from mixup_inference.perf.frontier import main

with job_log(snakemake.log[0], snakemake.threads):
    out = Path(snakemake.output.markdown).parent
    main(["--data", snakemake.input.data, "--out", str(out), "--grid", snakemake.params.grid,
          "--device", snakemake.params.device,
          "--threads", str(snakemake.threads)])
