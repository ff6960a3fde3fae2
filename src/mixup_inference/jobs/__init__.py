"""The job layer: one function per workflow job.

`stages` holds the jobs (`run_prepare`, `run_train`, `run_import`, `run_attack`, `run_evaluate_group`,
`run_adaptive`) and `robust` the robust job (`run_robust`, its convergence schedule run by
`cascade`), each reading its input files, calling `core`, and writing its artifact atomically;
`context` what the attack and evaluation jobs share (`JobContext`, the settings built once from the
config; the eval model; the attacked points); `artifacts` is the evaluation artifact the evaluate,
adaptive and robust jobs write and the report reads; `points` the run's attacked test points, MI
pool and attack labels; `batching` the batch and chunk sizes; `threads` sizes each job's threads from
`--cores` (config `resources.threads`); `joblog` turns a failing job into one `ERROR:` line and
records the threads it ran on. What a config asks for (the plan, the paper's tables, the config
check) is the `design` layer's. The Snakemake scripts of the rules that compute (workflow/scripts/)
call these; the report's rules call `report`.

May import: `core`, `design` and `jobs`.
"""
