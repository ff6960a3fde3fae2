"""The benchmarks: every workload timed against its bare model passes (`python -m
mixup_inference.perf.bench`, rule `bench`) and the workflow's own overheads (`workflow_bench`).
The fast paths they measure live in `core.fastpath` and `core.speed`, where the jobs use them.

May import: every layer (nothing imports `perf`).
"""
