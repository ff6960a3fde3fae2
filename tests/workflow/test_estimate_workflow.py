"""The estimate against the workflow itself: its rule sits outside `all`, and the jobs its work model plans
for a preset are the jobs Snakemake's dry run plans, rule by rule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from mixup_inference.core.defenses.specs import DEFENSES
from mixup_inference.core.training.config import REGIMES
from mixup_inference.perf.workmodel import DefenseCost, Survivors, UnitCosts, run_jobs
from workflow_helpers import REPO, dry_run_jobs, snakemake, workdir_copy


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workdir_copy(tmp_path_factory.mktemp("estimate"))


def test_the_estimate_rule_runs_by_name_only(workdir):
    assert dry_run_jobs(workdir, "estimate", "--configfile", "config/smoke.yaml") == {"estimate": 1, "prepare_data": 1}
    assert "estimate" not in dry_run_jobs(workdir, "--configfile", "config/smoke.yaml")


@pytest.mark.parametrize("preset", ["smoke", "config", "paper"])
def test_the_work_model_plans_the_jobs_of_the_dry_run(workdir, preset):
    config = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())
    unit = UnitCosts(startup=1.0, forward=0.0, attack_step=0.0, train_step=dict.fromkeys(REGIMES, 0.0),
                     train_setup=dict.fromkeys(REGIMES, 0.0), defense=dict.fromkeys(DEFENSES, DefenseCost(0.0)),
                     defense_grad=dict.fromkeys(DEFENSES, DefenseCost(0.0)), n_train=50_000, n_test_split=10_000)
    planned = Counter(job.rule for job in run_jobs(config, dict.fromkeys(config["datasets"], unit), Survivors()))
    assert planned + Counter(all=1) == dry_run_jobs(workdir, "--configfile", f"config/{preset}.yaml")


@pytest.mark.slow
def test_the_estimate_rule_writes_its_report_with_the_invocations_cores(tmp_path):
    """The rule end to end on the smoke preset (its data set prepared first): --cores 3 joins 2, 8, 16 and 32."""
    workdir = workdir_copy(tmp_path)
    snakemake(workdir, "estimate", "--cores", "3", "--configfile", "config/smoke.yaml")
    report = json.loads((workdir / "reports" / "smoke" / "estimate.json").read_text())
    assert [row["cores"] for row in report["cores"]] == [2, 3, 8, 16, 32]
    assert report["core_seconds"] > 0 and (workdir / "reports" / "smoke" / "estimate.md").exists()
    # its log and benchmark stay out of the run's own (provenance.yaml sums benchmarks/<run>/ per rule)
    assert (workdir / "logs" / "estimate" / "smoke.log").exists()
    assert (workdir / "benchmarks" / "estimate" / "smoke.tsv").exists()
    assert not list((workdir / "benchmarks" / "smoke").rglob("estimate*"))
