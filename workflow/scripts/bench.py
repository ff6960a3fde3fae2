"""Snakemake job: the performance benchmark (reports/bench/bench.md, bench.json, scaling.png)."""
from pathlib import Path

from mixup_inference.perf.bench import main
from mixup_inference.jobs.joblog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    out = Path(snakemake.output.markdown).parent
    main(["--out", str(out), "--device", snakemake.params.device, "--threads", str(snakemake.threads)])
