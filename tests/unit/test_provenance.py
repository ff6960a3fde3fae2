"""Provenance: the list of settings in which a run differs from the paper's preset."""

import yaml

from mixup_inference.report.provenance import differences_from_paper
from workflow_helpers import REPO


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


def test_default_preset_names_every_cut_relative_to_the_paper():
    rows = {row["setting"]: (row["this run"], row["paper"])
            for row in differences_from_paper(preset("config"), preset("paper"))}
    assert rows["model"] == ("airbench94_narrow", "resnet50_paper")
    assert rows["datasets.cifar10.n_test"] == (400, 1000)
    assert rows["training.mixup.epochs"] == (40, 200)
    assert rows["training.at.epochs"] == (10, 200)
    # the fast recipe's keys the paper's preset leaves out are compared with TrainConfig's defaults
    assert rows["training.erm.label_smoothing"] == (0.2, 0.0)
    assert rows["training.mixup.lookahead"] == (True, False)
    assert rows["training.at.optimizer"] == ("sgd_decoupled", "sgd")
    assert "training.mixup.label_smoothing" not in rows and "training.mixup.whiten_bias_epochs" not in rows
    assert rows["training.interpolated_at.at.steps"] == (2, 10)
    assert rows["adaptive.n_test"] == (200, 1000)
    # the training attack is listed only for the regimes that use it
    assert "training.mixup.at.steps" not in rows and "training.erm.at.step_size" not in rows
    # what decides speed or output names, not numbers, is not a difference
    assert not any(key.startswith(("resources", "run", "device", "defenses.chunk_size", "attacks.batch_size"))
                   for key in rows)
    # the threat model and N are the paper's
    for key in ("attacks.eps", "attacks.step_size", "attacks.names", "defenses.n_samples", "seed"):
        assert key not in rows


def test_paper_preset_differs_from_itself_nowhere_and_a_changed_data_source_shows():
    paper = preset("paper")
    assert differences_from_paper(paper, paper) == []
    local = yaml.safe_load(yaml.safe_dump(paper))
    local["datasets"]["cifar10"]["source"] = "../shared/data/cifar10-jpeg.tar.gz"
    local["training"]["regimes"]["interpolated_at"]["lr"] = 0.05
    assert differences_from_paper(local, paper) == [
        {"setting": "datasets.cifar10.source", "this run": "../shared/data/cifar10-jpeg.tar.gz", "paper": "cifar10"},
        {"setting": "training.interpolated_at.lr", "this run": 0.05, "paper": 0.1},
    ]


def test_protocol_names_the_switches_and_every_attack_budget():
    from mixup_inference.design.plan import robust_runs
    from mixup_inference.report.provenance import protocol

    config = preset("config")
    p = protocol(config)
    assert p["attack_labels"] == "true" and "sigma/2" in p["gaussian_noise"]
    assert p["detection_points"].startswith("clean_correct")
    budgets = p["attack_budgets"]
    assert set(budgets["oblivious"]) == set(config["attacks"]["names"]) - {"clean"}
    assert budgets["oblivious"]["tpgd50"]["steps"] == 50 and "random label" in budgets["oblivious"]["tpgd50"]["objective"]
    assert budgets["oblivious"]["pgd200"]["objective"] == "away from the true label"
    assert budgets["training"]["interpolated_at"]["steps"] == config["training"]["at"]["steps"]
    assert "erm" not in budgets["training"]
    rob = config["robustness"]
    runs = budgets["robustness"]["runs"]
    # every run of the schedule's cap (plan.robust_runs: each family's levels, Tramer's run), level by level and
    # cheapest first within a level, each saying what it attacks (the bare models' kinds, issue 33)
    expected = robust_runs(rob)
    assert [(r["kind"], r["steps"], r["eot"]) for r in runs] == [(r.kind, r.steps, r.eot) for r in expected]
    assert {r["kind"] for r in runs} == set(rob["kinds"])
    aa = [run for run in runs if run["kind"] == "autoattack_rand"]
    assert aa[0]["steps"] == rob["autoattack"]["n_iter"]
    assert [(r["level"], r["cost"]) for r in runs] == sorted((r["level"], r["cost"]) for r in runs)
    assert {r["kind"] for r in runs if r["against"] == "bare models"} == {"autoattack_standard", "pgd_bare"}
    assert any(" none plain" in target for target in budgets["robustness"]["targets"])
    assert budgets["fig4_adaptive"]["n_adaptive"] == config["adaptive"]["n_adaptive"]
    # the paper preset keeps the clean prediction as the paper; every preset has a protocol
    assert protocol(preset("paper"))["attack_budgets"]["oblivious"]["pgd10"]["objective"].startswith("away from the bare")
    for name in ("smoke", "authors"):
        assert protocol(preset(name))["attack_budgets"]["oblivious"]


def test_rule_timings_groups_every_rule_of_the_benchmark_layout(tmp_path):
    from mixup_inference.report.provenance import rule_timings

    files = {"aggregate.tsv": 3, "cifar10/prepare_data.tsv": 12, "cifar10/mixup/train.tsv": 100,
             "cifar10/mixup/eval/pgd10.tsv": 5, "cifar10/mixup/attack/pgd10.tsv": 7,
             "cifar10/mixup/adaptive/mi_ol/lam=0.6/eot-pgd10-n5.tsv": 9,
             "cifar10/mixup/robust/mi_combined/pl=0.5_ol=0.4_th=0.2.tsv": 20, "cifar10/mixup/robust/xie/size=16-24.tsv": 10,
             "cifar10/mine/import_model.tsv": 2, "download_model/data/cifar10/mine/model.pt.tsv": 4, "tables/table2.tsv": 1}
    for name, seconds in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")
    timings = rule_timings(tmp_path).set_index("rule")
    assert set(timings.index) == {"aggregate", "prepare_data", "train", "evaluate", "attack", "adaptive", "robust",
                                  "import_model", "download_model", "tables"}
    assert timings.loc["robust", "jobs"] == 2 and timings.loc["robust", "total_s"] == 30
    assert "threads" not in timings  # without the jobs' logs


def test_rule_timings_read_the_threads_of_each_job_from_its_log(tmp_path):
    from mixup_inference.report.provenance import rule_timings

    benchmarks, logs = tmp_path / "benchmarks", tmp_path / "logs"
    header = "# job started 2026-12-06 10:00:00 on host | SLURM_JOB_ID=none | threads={} | torch 2 | cuda=False\n"
    jobs = {"cifar10/erm/train.tsv": [1, 4], "cifar10/mixup/train.tsv": [2], "cifar10/erm/eval/pgd10.tsv": [1],
            "cifar10/mixup/eval/pgd10.tsv": [1], "aggregate.tsv": []}
    for name, starts in jobs.items():
        for root, text in ((benchmarks, "s\th:m:s\n10\t0:00:10\n"), (logs, "".join(map(header.format, starts)))):
            path = (root / name).with_suffix(".tsv" if root == benchmarks else ".log")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    timings = rule_timings(benchmarks, logs).set_index("rule")
    # a resumed job counts with its last start's threads; a job whose log has no header adds none
    assert timings.loc["train", "threads"] == [2, 4] and timings.loc["train", "jobs"] == 2
    assert timings.loc["evaluate", "threads"] == [1] and timings.loc["aggregate", "threads"] == []


def test_git_commit_is_dirty_for_code_changes_not_for_a_runs_own_reports(tmp_path):
    import subprocess

    from mixup_inference.report.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "reports" / "run").mkdir(parents=True)
    (tmp_path / "src" / "code.py").write_text("a = 1\n")
    (tmp_path / "reports" / "run" / "results.csv").write_text("x\n1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert git_commit(tmp_path / "src")["dirty"] is False
    (tmp_path / "reports" / "run" / "results.csv").write_text("x\n2\n")  # a re-run rewrites its reports
    assert git_commit(tmp_path / "src")["dirty"] is False
    (tmp_path / "src" / "code.py").write_text("a = 2\n")
    assert git_commit(tmp_path / "src")["dirty"] is True


def test_every_subset_of_a_class_ordered_image_folder_is_balanced(tmp_path):
    """An image folder is read class by class (test images in blocks of one class): the oblivious points, Fig. 4's
    prefix and the robustness evaluation's prefix each hold every class within +-1, and provenance.yaml lists the
    counts (issue 33)."""
    from reliability_helpers import image_folder, smoke_config

    from mixup_inference.core.data.datasets import load_dataset
    from mixup_inference.jobs.stages import run_prepare
    from mixup_inference.report.provenance import collect_provenance

    classes = {name: (2, 12) for name in ("ant", "bee", "cat", "dog", "eel")}
    run_prepare(str(image_folder(tmp_path / "folder", classes)), tmp_path / "ds" / "data.pt", image_size=8)
    assert load_dataset(tmp_path / "ds" / "data.pt").test_y[:12].unique().numel() == 1  # ordered by class
    config = smoke_config()
    name = next(iter(config["datasets"]))
    config["datasets"] = {"ds": {**config["datasets"][name], "n_test": 40}}
    config["adaptive"] = {**config["adaptive"], "dataset": "ds", "n_test": 17}
    config["robustness"] = {**config["robustness"], "dataset": "ds", "n_test": 23}
    prov = collect_provenance(config=config, data_paths=[str(tmp_path / "ds" / "data.pt")], metrics_paths=[],
                              benchmarks_dir=tmp_path / "none")
    points = prov["datasets"]["ds"]["points"]
    assert {k: v["size"] for k, v in points.items()} == {"oblivious": 40, "adaptive": 17, "robustness": 23}
    for subset in points.values():
        counts = subset["classes"]
        assert set(counts) == set(classes) and sum(counts.values()) == subset["size"]
        assert max(counts.values()) - min(counts.values()) <= 1, counts
