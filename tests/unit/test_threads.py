"""The thread policy (jobs/threads.py) and the thread count a job's log records (jobs/joblog.py)."""

from __future__ import annotations

import pytest
import torch

from mixup_inference.jobs.joblog import job_log, logged_threads
from mixup_inference.jobs.threads import AUTO, job_threads, models_for_targets, train_threads

RUN = ["results/r/d/erm/model.pt", "results/r/d/mixup/model.pt"]
STUDY = ["results/r/d/mixup/model.pt", "results/r/d/mixup-preset-e5-s1/model.pt"]  # the run's mixup model is one


@pytest.mark.parametrize("cores, train_jobs, expected", [(16, 4, 4), (2, 4, 1), (2, 1, 2), (16, 3, 5), (7, 0, 7)])
def test_auto_shares_the_cores_among_the_train_jobs(cores, train_jobs, expected):
    assert train_threads(AUTO, cores=cores, train_jobs=train_jobs) == expected


def test_auto_keeps_every_core_busy_and_never_oversubscribes():
    for cores in range(1, 33):
        for train_jobs in range(1, 9):
            threads = train_threads(AUTO, cores=cores, train_jobs=train_jobs)
            assert threads >= 1 and (threads * train_jobs <= cores or threads == 1)
            assert threads == cores or (threads + 1) * train_jobs > cores  # no whole share left unused


def test_auto_is_one_thread_for_every_other_job_and_on_a_cluster():
    assert job_threads(AUTO) == 1
    assert train_threads(AUTO, cores=None, train_jobs=1) == 1


def test_a_number_forces_that_count():
    assert job_threads(3) == 3
    assert train_threads(3, cores=16, train_jobs=4) == 3 and train_threads(3, cores=None, train_jobs=1) == 3


@pytest.mark.parametrize("setting", [0, -2, "4", "all", 2.5, True, None])
def test_a_bad_setting_is_an_error_naming_the_fix(setting):
    with pytest.raises(ValueError, match="resources.threads.*use auto"):
        job_threads(setting)


def test_the_models_to_train_follow_the_targets():
    assert models_for_targets([], RUN, STUDY) == RUN  # no target: rule all
    assert models_for_targets(["all"], RUN, STUDY) == RUN
    assert models_for_targets(["reports/r/results.csv"], RUN, STUDY) == RUN
    assert models_for_targets(["study_models"], RUN, STUDY) == STUDY
    assert models_for_targets(["study"], RUN, STUDY) == STUDY  # the study's report
    assert models_for_targets(["mi_study_models"], RUN, STUDY) == STUDY  # a deployment's rule prefix
    assert models_for_targets(["./results/r/d/erm/model.pt"], RUN, STUDY) == [RUN[0]]
    assert models_for_targets([STUDY[1]], RUN, STUDY) == [STUDY[1]]
    both = models_for_targets(["all", "study_models"], RUN, STUDY)  # the shared mixup model once
    assert sorted(both) == sorted(set(RUN) | set(STUDY)) and len(both) == 3


def test_the_log_records_the_threads_of_each_start_and_the_last_one_is_read(tmp_path):
    log = tmp_path / "job.log"
    assert logged_threads(log) is None
    previous = torch.get_num_threads()
    try:
        with job_log(log, threads=1):
            pass
        assert logged_threads(log) == 1
        with job_log(log, threads=2):  # a resumed job appends a second header
            pass
    finally:
        torch.set_num_threads(previous)
    assert log.read_text().count("# job started") == 2 and logged_threads(log) == 2
