"""The thread policy (config resources.threads, jobs/threads.py) as Snakemake applies it: dry runs of the
smoke preset at several --cores, and one real train job that runs alone on every core it was given."""

from __future__ import annotations

import re

import pytest
import yaml

from workflow_helpers import SMOKE_JOBS, dry_run_threads, snakemake, workdir_copy, write_config

NARROW = ("attack", "evaluate", "adaptive", "robust")
ERM_MODEL = "results/smoke/synth/erm/model.pt"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workdir_copy(tmp_path_factory.mktemp("threads"))


def test_four_train_jobs_share_16_cores_and_evaluation_jobs_stay_narrow(workdir):
    threads = dry_run_threads(workdir, 16, "--configfile", "config/smoke.yaml")
    assert threads["train"] == [4] * SMOKE_JOBS["train"]
    for rule in NARROW:
        assert threads[rule] == [1] * SMOKE_JOBS[rule], rule


def test_more_train_jobs_than_cores_get_one_thread_each(workdir):
    assert dry_run_threads(workdir, 2, "--configfile", "config/smoke.yaml")["train"] == [1] * SMOKE_JOBS["train"]


def test_a_train_job_that_runs_alone_gets_every_core(workdir):
    assert dry_run_threads(workdir, 2, ERM_MODEL, "--configfile", "config/smoke.yaml")["train"] == [2]
    assert dry_run_threads(workdir, 16, ERM_MODEL, "--configfile", "config/smoke.yaml")["train"] == [16]


def test_a_number_forces_that_count_on_every_job(workdir):
    smoke = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    write_config(workdir, "smoke", "smoke_threads3", resources={**smoke["resources"], "threads": 3})
    threads = dry_run_threads(workdir, 16, "--configfile", "config/smoke_threads3.yaml")
    for rule in ("train", *NARROW):
        assert set(threads[rule]) == {3}, rule
    # Snakemake lowers a forced count to --cores
    assert set(dry_run_threads(workdir, 2, "--configfile", "config/smoke_threads3.yaml")["train"]) == {2}


@pytest.mark.slow
def test_the_lone_train_job_trains_on_the_two_threads_it_was_given(tmp_path):
    """Not only planned: the job's torch runs on them (its log's header, written by job_log)."""
    workdir = workdir_copy(tmp_path)
    snakemake(workdir, ERM_MODEL, "--cores", "2", "--configfile", "config/smoke.yaml")
    header = (workdir / "logs" / "smoke" / "synth" / "erm" / "train.log").read_text().splitlines()[0]
    assert re.search(r"\| threads=2 \|", header), header
