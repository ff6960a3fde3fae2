"""The study's design: what a config asks for, before any job runs.

`plan` expands a config into the jobs it asks for (evaluations, adaptive and robust runs, models to
train or import, tables); `paper_tables` holds the paper's Tables 2-5 as data (the rows, and the
paper's published numbers apart); `study` names the training study's models
(`<regime>-<recipe>-e<epochs>-s<seed>`); `configcheck` validates a config against the schema and
the registries. Plain functions of the config dict: the workflow's common.smk, the jobs, the
report and the tests all derive the same lists from here.

May import: `core` and `design`.
"""
