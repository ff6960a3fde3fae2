"""The benchmarks: every workload timed against its bare model passes (`python -m
mixup_inference.perf.bench`, rule `bench`), the training frontier of accuracy against core-seconds
(`frontier`, rule `frontier`), the workflow's own overheads (`workflow_bench`), and the measured estimate
of a run's core-seconds and wall time before it starts (`estimate`, rule `estimate`: `probes` time this
machine, `workmodel` multiplies by the plan's work, `schedule` runs the DAG at --cores N).
The fast paths they measure live in `core.models.fastpath` and `core.models.speed`, where the jobs use them.

May import: every layer (nothing imports `perf`).
"""
