"""The workflow deployed into a user's own project as a Snakemake module, the way
`snakedeploy deploy-workflow` deploys it (README "Deploy into your own project"): only config/ and
profiles/ copied, workflow/Snakefile using the clone's workflow/Snakefile as a module (by path, as
an offline user would, in place of github(...)). Outputs go to the project; nothing is written
inside the clone."""

from __future__ import annotations

import shutil

import pytest

from workflow_helpers import SMOKE_JOBS
from workflow_helpers import clone_copy, deploy_module, dry_run_jobs, snakemake, tree_state

PREFIXES = [None, "mi_"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """One clone for the module's tests; each test checks that its runs leave it as it was."""
    return clone_copy(tmp_path_factory.mktemp("clone"))


def smoke_project(clone, dest, prefix):
    """A deployment whose config/config.yaml is the smoke preset (the user's edited config)."""
    project = deploy_module(clone, dest, prefix=prefix)
    shutil.copy2(project / "config" / "smoke.yaml", project / "config" / "config.yaml")
    return project


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deployed_module_plans_the_smoke_preset_and_lints_clean(clone, tmp_path, prefix):
    before = tree_state(clone)
    project = smoke_project(clone, tmp_path / "project", prefix)
    assert dry_run_jobs(project) == {f"{prefix or ''}{rule}": n for rule, n in SMOKE_JOBS.items()}
    # The clone's files lint clean; the project's own Snakefile names the clone by absolute path,
    # which Snakemake's linter reports (a github() source would not be).
    lint = snakemake(project, "--lint", check=False)
    assert f"Lints for snakefile {clone}" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    assert tree_state(clone) == before


@pytest.mark.slow
@pytest.mark.parametrize("prefix", PREFIXES)
def test_deployed_module_runs_the_smoke_preset_like_the_clone(clone, smoke_run, tmp_path, prefix):
    """End to end in the user's project, with and without a rule prefix: results.csv byte-identical
    to the in-place smoke run, the report with its captions, and no file written inside the clone."""
    before = tree_state(clone)
    project = smoke_project(clone, tmp_path / "project", prefix)
    snakemake(project, "--cores", "2")
    results = project / "reports" / "smoke" / "results.csv"
    assert results.read_bytes() == (smoke_run.reports / "results.csv").read_bytes()
    assert dry_run_jobs(project) == {}  # cached: the workflow's own files are found the same way again

    snakemake(project, "--report", "report.html")
    report = (project / "report.html").read_text(errors="replace")
    for name in ("table2.html", "fig4_adaptive.png", "findings.html", "provenance.html", "results.csv"):
        assert name in report
    # the captions (workflow/report/*.rst) and the workflow description, read from the clone
    for caption in ("which attack kind saw the defense", "adversary that knows the", "Mixup Inference: Better Exploiting"):
        assert caption in report, caption
    assert tree_state(clone) == before
