"""The Snakemake workflow: lint, DAGs of every preset, and a real end-to-end smoke run with caching
and selective reruns."""

from __future__ import annotations

import shlex

import pandas as pd
import pytest
import yaml

from mixup_inference.core.attacks.kinds import ROBUST_KINDS
from mixup_inference.design import plan
from workflow_helpers import (
    SMOKE_JOBS,
    REPO,
    SHARED_CIFAR,
    dry_run_jobs,
    dry_run_wildcards,
    snakemake,
    workdir_copy,
    write_config,
)

# Jobs per rule of the smoke preset, counted by hand from config/smoke.yaml:
# 4 regimes x {clean, pgd5, tpgd5} attacks; evaluations: Table 2's 15 rows x 3 attacks = 45,
# plus Fig. 3b grid settings not already in the table (lam=0.7, sigma=0.08, deg=20, xie size=20-28,
# xie_resize size=20-28) x 2 = 10,
# plus Fig. 2 MI-PL lam 0.4/0.7/1 and MI-OL lam 0.4/1 x 2 = 10, plus Fig. 3a MI-PL on 4 regimes x 2 = 8:
# 73 evaluations, run as one evaluate job per (dataset, regime, attack) = 4 x 3 = 12.
SMOKE_EVALUATIONS = 73


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workdir_copy(tmp_path_factory.mktemp("workflow"))


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", "--configfile", "config/smoke.yaml")
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_smoke_dag_has_expected_jobs_per_rule(workdir):
    assert dry_run_jobs(workdir, "--configfile", "config/smoke.yaml") == SMOKE_JOBS


def test_benchmark_is_a_rule_of_its_own_outside_all(workdir):
    assert dry_run_jobs(workdir, "bench") == {"bench": 1}
    assert "bench" not in dry_run_jobs(workdir, "--configfile", "config/smoke.yaml")


@pytest.mark.parametrize("preset", ["config", "paper"])
def test_full_presets_build_their_dag(workdir, preset):
    config = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())
    jobs = dry_run_jobs(workdir, "--configfile", f"config/{preset}.yaml")
    table_datasets = {spec["dataset"] for spec in config["tables"].values()}
    assert jobs["prepare_data"] == len(table_datasets)
    # Table 2 needs all four regimes; Table 3 (paper preset, CIFAR-100) only mixup and interpolated AT.
    assert jobs["train"] == 4 + (2 if "table3" in config["tables"] else 0)
    table2 = config["tables"]["table2"]
    assert jobs["attack"] >= 4 * len(table2["attacks"])
    # one evaluate job per (dataset, regime, attack) of the run (the study's models' groups are the study target's)
    groups = {key: pairs for key, pairs in plan.evaluation_groups(config).items()
              if key in {e[:3] for e in plan.evaluations(config)}}
    assert jobs["evaluate"] == len(groups) and len(groups) >= 4 * len(table2["attacks"])
    assert sum(map(len, groups.values())) >= 15 * len(table2["attacks"])
    ada = config["adaptive"]
    assert jobs["adaptive"] == len(ada["kinds"]) * len(ada["attacks"]) * len(ada["n_adaptive"])
    for rule in ("aggregate", "findings", "figures", "provenance"):
        assert jobs[rule] == 1
    assert jobs["tables"] == len(config["tables"])


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="../shared/data/cifar10-jpeg.tar.gz is not beside the repo")
def test_readme_offline_command_plans_the_default_preset_on_the_local_copy(workdir):
    """README's offline command (the default preset with its data source switched to the local
    CIFAR-10 copy) validates and plans exactly the default preset's jobs."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("snakemake --cores all --config run="))
    args = shlex.split(line)[3:]  # after `snakemake --cores all`
    assert args[0] == "--config" and args[1] == "run=cifar10-jpeg-cpu"
    source = yaml.safe_load(args[2].split("=", 1)[1])["cifar10"]["source"]
    assert (REPO / source).resolve() == SHARED_CIFAR.resolve()
    (workdir / source).parent.mkdir(parents=True, exist_ok=True)  # the path is relative to the clone
    if not (workdir / source).exists():
        (workdir / source).symlink_to(SHARED_CIFAR)
    assert dry_run_jobs(workdir, *args) == dry_run_jobs(workdir)


@pytest.mark.slow
def test_smoke_run_end_to_end_caches_and_reruns_selectively(smoke_run, smoke_report):
    # The smoke run and its report are session fixtures (tests/conftest.py), shared with
    # tests/workflow/test_report_browser.py.
    workdir = smoke_run.workdir
    print(f"smoke preset: {smoke_run.seconds:.0f} s")

    reports = workdir / "reports" / "smoke"
    results = pd.read_csv(reports / "results.csv")
    assert {"dataset", "regime", "defense", "setting", "attack", "accuracy", "ci_low", "ci_high", "n"} <= set(results)
    # each defense's robust job: AutoAttack rand and EOT PGD untargeted/targeted, each at 3 convergence levels
    # (converging takes two flat doublings, so with 3 levels every level runs), and Tramer et al.'s run = 10 runs;
    # the bare mixup model's (issue 33): AutoAttack standard and PGD at 3 levels = 6 runs; each plus its worst case
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    defended, bare = plan.robust_runs(smoke["robustness"], "mi_ol"), plan.robust_runs(smoke["robustness"], "none")
    assert (len(defended), len(bare)) == (10, 6)
    assert len(results) == (SMOKE_EVALUATIONS + SMOKE_JOBS["adaptive"]
                            + (SMOKE_JOBS["robust"] - 1) * (len(defended) + 1) + len(bare) + 1)
    assert set(ROBUST_KINDS) | {"worst_case"} <= set(results.adaptive)
    robust = results[results.adaptive.isin(list(ROBUST_KINDS))]
    assert set(robust.level) == {0, 1, 2} and (robust[robust.defense == "none"].repeats == 1).all()
    for row in results[results.adaptive == "worst_case"].itertuples():
        same = robust[(robust.regime == row.regime) & (robust.defense == row.defense) & (robust.setting == row.setting)]
        # a cascaded run counts the points an earlier run broke as broken: the worst case is its last run's
        assert len(same) == len(bare if row.defense == "none" else defended)
        assert row.accuracy <= same.accuracy.min() and row.n == same.n.iloc[0]
        assert row.accuracy <= row.mean_accuracy <= 1  # the mean over the R verdicts beside the all-R worst case
    assert "none" in set(results[results.adaptive == "worst_case"].defense)
    assert ((results.ci_low <= results.accuracy) & (results.accuracy <= results.ci_high)).all()
    assert set(results.regime) == {"erm", "mixup", "at", "interpolated_at"}
    # PGD must actually attack: the undefended mixup model loses accuracy under pgd5.
    plain = results[(results.defense == "none") & (results.regime == "mixup")].set_index("attack").accuracy
    assert plain["pgd5"] < plain["clean"]
    for ext in ("md", "csv", "tex", "html"):
        assert (reports / "tables" / f"table2.{ext}").stat().st_size > 0
    table2 = (reports / "tables" / "table2.md").read_text(encoding="utf-8")
    assert "Worst case (all R)" in table2 and "Worst case (mean over R)" in table2
    robustness = pd.read_csv(reports / "findings_robustness.csv")  # every defense against its bare model's worst case
    assert len(robustness) == SMOKE_JOBS["robust"] - 1 and "none" not in set(robustness.defense)
    assert robustness.bare_basis.str.startswith("its own robustness evaluation").all()
    for fig in ("fig2_components", "fig3a_detection", "fig3b_tradeoff", "fig4_adaptive", "fig5_convergence"):
        for ext in ("png", "svg"):
            assert (reports / "figures" / f"{fig}.{ext}").stat().st_size > 1000
    gains = pd.read_csv(reports / "findings_gains.csv")  # every defended Table 2 row x attack, paired
    assert len(gains) == 13 * 3 and ((gains.low <= gains.difference) & (gains.difference <= gains.high)).all()
    for name in ("matched", "detection", "adaptive"):
        assert len(pd.read_csv(reports / f"findings_{name}.csv")) > 0
    provenance = yaml.safe_load((reports / "provenance.yaml").read_text())
    assert provenance["config"]["run"] == "smoke"
    assert {row["rule"] for row in provenance["wall_time_per_rule_s"]} >= {"train", "attack", "evaluate"}
    # the threads each rule's jobs ran on, from their logs: at --cores 2 the 4 train jobs get 1 each (threads: auto)
    threads = {row["rule"]: row["threads"] for row in provenance["wall_time_per_rule_s"]}
    assert threads["train"] == threads["attack"] == threads["evaluate"] == threads["robust"] == [1]

    # Cached: a second run has nothing to do.
    assert dry_run_jobs(workdir, "--configfile", "config/smoke.yaml") == {}

    # One changed MI lambda reruns only the evaluate jobs that hold it (mixup on clean and pgd5), and
    # what aggregates them.
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    grids = config["grids"]
    grids["settings"]["mi_ol"] = ["lam=0.5", "lam=0.8"]  # was [lam=0.5, lam=0.7]; 0.7 stays in Fig. 2
    write_config(workdir, "smoke", "smoke_changed", grids=grids)
    jobs = dry_run_jobs(workdir, "--configfile", "config/smoke_changed.yaml")
    assert jobs == {"evaluate": 2, "aggregate": 1, "findings": 1, "tables": 1, "figures": 1, "provenance": 1, "all": 1}
    changed = dry_run_wildcards(workdir, "evaluate", "--configfile", "config/smoke_changed.yaml")
    assert sorted(", ".join(sorted(w.split(", "))) for w in changed) == [
        "attack=clean, dataset=synth, regime=mixup", "attack=pgd5, dataset=synth, regime=mixup"]

    # The report holds every table and figure.
    report = smoke_report.read_text(errors="replace")
    assert len(report) > 100_000
    for name in ("table2.html", "fig2_components.png", "fig4_adaptive.png", "findings.html", "provenance.html",
                 "results.csv"):
        assert name in report


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="../shared/data/cifar10-jpeg.tar.gz is not beside the repo")
def test_smoke_on_real_cifar10_jpeg_images(tmp_path):
    """The real-image path: the smoke preset with its data source pointed at the CIFAR-10 JPEG copy."""
    workdir = workdir_copy(tmp_path / "cifar")
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    config["run"] = "smoke-cifar"
    config["datasets"] = {"synth": {"source": str(SHARED_CIFAR), "n_test": 40, "pool_per_class": 10}}
    config["training"]["epochs"] = 1
    (workdir / "config" / "cifar.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(workdir, "--cores", "2", "--configfile", "config/cifar.yaml", timeout=1500)
    results = pd.read_csv(workdir / "reports" / "smoke-cifar" / "results.csv")
    assert (results.n == 40).sum() > 0
    provenance = yaml.safe_load((workdir / "reports" / "smoke-cifar" / "provenance.yaml").read_text())
    data = provenance["datasets"]["synth"]
    assert data["n_train"] == 50_000 and data["n_test"] == 10_000


def test_study_target_trains_its_models_and_writes_its_report(smoke_run):
    """`snakemake study` after the smoke run: it trains only the study's own models (the run's seed-0 models are
    reused), evaluates them with the run's jobs, and writes training_study.csv and study.md with every model, and the
    training-length figures."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    jobs = dry_run_jobs(smoke_run.workdir, "study", "--configfile", "config/smoke.yaml")
    from mixup_inference.design.study import model_name, study_models

    models = study_models(config)
    new = [m for m in models if model_name(config, m) != m.regime]
    assert jobs["train"] == len(new) == 5
    snakemake(smoke_run.workdir, "study", "--cores", "2", "--configfile", "config/smoke.yaml")
    out = smoke_run.reports / "study"
    rows = pd.read_csv(out / "training_study.csv")
    assert set(rows["model"]) == {model_name(config, m) for m in models}
    assert {"worst_case", "clean", "pgd5"} <= set(rows["attack"])
    text = (out / "study.md").read_text()
    assert "## 1. Seeds" in text and "## 2. Training length" in text and "## 3. Recipe" in text
    seeds = pd.read_csv(out / "study_seeds.csv")
    assert set(seeds["regime"]) == {"mixup", "interpolated_at"} and (seeds["seeds"] == "0 1").all()
    assert (seeds["attack"] == "worst_case").sum() == 1  # mixup + MI-OL's robustness evaluation on both seeds
    recipes = pd.read_csv(out / "study_recipes.csv")
    assert list(recipes["regime"]) == ["at"]
    # the training-length section's figures, linked from study.md (one length per regime here: no trend drawn)
    for figure in ("study_gain_vs_epochs", "study_gain_vs_fy"):
        assert (out / f"{figure}.png").read_bytes().startswith(b"\x89PNG") and (out / f"{figure}.svg").exists()
        assert f"]({figure}.png)" in text
    # nothing of the run itself is redone by the study
    assert dry_run_jobs(smoke_run.workdir, "--configfile", "config/smoke.yaml") == {}
