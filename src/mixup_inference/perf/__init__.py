"""The benchmarks: every workload timed against its bare model passes (`python -m
mixup_inference.perf.bench`, rule `bench`), the training frontier of accuracy against core-seconds
(`frontier`, rule `frontier`) and the workflow's own overheads (`workflow_bench`).
The fast paths they measure live in `core.models.fastpath` and `core.models.speed`, where the jobs use them.

May import: every layer (nothing imports `perf`).
"""
