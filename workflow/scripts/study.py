"""Snakemake job: the training study's models, metrics and evaluation artifacts -> training_study.csv, the
sections' CSVs, the training-length figures (PNG and SVG) and study.md."""
import json
from pathlib import Path

from mixup_inference.jobs.artifacts import expand_paths, load
from mixup_inference.jobs.joblog import job_log
from mixup_inference.design.study import StudyModel
from mixup_inference.report.study import StudyEntry, headline_settings, paper_gains, write_study

with job_log(snakemake.log[0]):
    p = snakemake.params
    entries = [StudyEntry(StudyModel(regime, recipe, int(epochs), int(seed)), name, json.loads(Path(m).read_text()))
               for (name, regime, recipe, epochs, seed), m in zip(p.entries, snakemake.input.metrics)]
    artifacts = [load(path) for path in expand_paths([*p.evaluations, *p.robust])]
    paths = write_study(entries, artifacts, Path(snakemake.output.markdown).parent,
                        paper_gains=paper_gains(p.table, p.attack), seed=p.seed, attack=p.attack,
                        headline=headline_settings(p.table), attacks=p.attacks)
    print("\n".join(f"wrote {path}" for path in paths.values()))
