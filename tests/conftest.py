"""Shared fixtures: one real run of the smoke preset per test session, its HTML report, and
`single_thread` for modules of tiny-model tests, and `workdir`, a scratch copy of the workflow.

The smoke run takes minutes on 2 cores, so every test that needs its outputs shares this one run
(tests/workflow/test_workflow.py's end-to-end test, tests/workflow/test_report_browser.py). Tests may add files to its
working directory (extra configs, the report) but must not change or delete the run's outputs.
A test that only sometimes needs the run (e.g. after checking a prerequisite) can ask for it late
with `request.getfixturevalue("smoke_run")`; a fixture that fails is not re-run by later tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from workflow_helpers import snakemake, workdir_copy


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("single_thread")``):
    its models are tiny, and one thread is faster than two on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow per test module, for runs that fail before or at their first job."""
    return workdir_copy(tmp_path_factory.mktemp("workflow"))


@dataclass(frozen=True)
class SmokeRun:
    """A finished `snakemake --cores 2 --configfile config/smoke.yaml` in a temporary copy."""

    workdir: Path
    seconds: float  # wall time of the run

    @property
    def reports(self) -> Path:
        """The run's reports folder (results.csv, tables/, figures/, provenance)."""
        return self.workdir / "reports" / "smoke"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The smoke preset, run once per session in a temporary copy of the workflow."""
    workdir = workdir_copy(tmp_path_factory.mktemp("smoke_run"))
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2", "--configfile", "config/smoke.yaml")
    return SmokeRun(workdir=workdir, seconds=time.perf_counter() - start)


@pytest.fixture(scope="session")
def smoke_report(smoke_run: SmokeRun) -> Path:
    """The smoke run's Snakemake HTML report (`--report reports/smoke/report.html`), built once."""
    snakemake(smoke_run.workdir, "--configfile", "config/smoke.yaml",
              "--report", "reports/smoke/report.html")
    return smoke_run.reports / "report.html"
