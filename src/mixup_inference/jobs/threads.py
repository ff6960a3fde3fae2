"""How many CPU threads a workflow job runs on (config ``resources.threads``; issue 34).

``auto`` (the default presets') lets a job's threads follow ``--cores`` so that no core idles while
work is ready:

- **train jobs share the cores** among the models this invocation trains (the study's too): ``cores // train jobs``, at
  least 1; a train job that runs alone gets every core (``--cores 2`` and one missing model: 2
  threads). Training is the long head of every chain (each model's attacks and evaluations wait on
  it) and it scales with threads: 2 threads trained ~2.2x faster than 1 (issue 34, a 2-core AVX2 CPU).
- **every other job runs on 1 thread** (attack, evaluate, adaptive, robust, import_model): they are
  many, short and ready side by side (the default preset: 28 attack, 28 evaluate, 12 robust and 8
  adaptive jobs, each under 2 minutes), and separate processes use every core fully, while one job's
  threads split small batches and sequential attack steps, which never scales better than linearly.
- **on a cluster executor** (SLURM) each job is an allocation of its own: there is no ``--cores`` to
  share, so ``auto`` asks for 1 CPU per job, what schedules soonest. Ask for more with
  ``resources.threads: N`` or per rule with Snakemake's ``--set-threads train=N``.

A number forces that count on every one of these jobs; Snakemake lowers it to ``--cores``.

The train jobs' count is decided once per invocation, from the models that are missing when the
workflow starts (:func:`models_for_targets` and the workflow's ``train_jobs_to_run``), so the same
machine, ``--cores``, config and files give the same thread counts, hence the same floating-point sums.
"""

from __future__ import annotations

import os
from typing import Collection, Sequence

__all__ = ["AUTO", "STUDY_TARGETS", "job_threads", "models_for_targets", "train_threads"]

AUTO = "auto"
#: The workflow's targets that train the study's models (config study:; a deployment may prefix them: mi_study).
STUDY_TARGETS = ("study_models", "study")


def _forced(setting: int | str) -> int | None:
    """The count a numeric ``resources.threads`` forces; None for auto; an error for anything else."""
    if setting == AUTO:
        return None
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"resources.threads: {setting!r} is neither {AUTO!r} nor a whole number >= 1; "
                         f"use {AUTO} (threads follow --cores) or a thread count")
    return setting


def job_threads(setting: int | str) -> int:
    """Threads of a job that is not training (attack, evaluate, adaptive, robust, import_model): 1 under
    ``auto`` (many such jobs run side by side), else the forced count."""
    forced = _forced(setting)
    return 1 if forced is None else forced


def train_threads(setting: int | str, *, cores: int | None, train_jobs: int) -> int:
    """Threads of one train job: under ``auto``, ``cores // train_jobs`` (at least 1) where ``cores`` is
    the local run's ``--cores``, 1 where it is None (a cluster executor: each job its own allocation);
    else the forced count."""
    forced = _forced(setting)
    if forced is not None:
        return forced
    if cores is None:
        return 1
    return max(1, cores // max(1, train_jobs))


def models_for_targets(targets: Collection[str], run_models: Sequence[str], study_models: Sequence[str]) -> list[str]:
    """The model files that a Snakemake invocation with these ``targets`` may train, each once: a target
    that is a model file names itself; the study's targets (rules ``study_models`` and ``study``, prefixed
    or not) the study's models; any other target (none: rule ``all``; a rule; a report file) the run's."""
    chosen: dict[str, None] = {}
    for target in targets or ["all"]:
        path = os.path.normpath(target)
        if path in run_models or path in study_models:
            chosen.setdefault(path)
        elif target.endswith(STUDY_TARGETS):
            chosen.update(dict.fromkeys(study_models))
        else:
            chosen.update(dict.fromkeys(run_models))
    return list(chosen)
