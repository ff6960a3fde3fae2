"""The measured estimate (perf.estimate): the list scheduler on DAGs whose answer is known, the work model
against the plan's job counts, the survivors read from a results.csv, the config overrides, and the
command on the smoke preset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mixup_inference.perf.estimate import apply_overrides, calibrate, main, schedules
from mixup_inference.perf.schedule import Job, ThreadScaling, critical_path, simulate
from mixup_inference.perf.workflow_bench import preset_jobs
from mixup_inference.perf.workmodel import DefenseCost, Survivors, UnitCosts, run_jobs, train_steps
from workflow_helpers import SMOKE_JOBS

CONFIG = Path(__file__).resolve().parents[2] / "config"
LINEAR = ThreadScaling(train_efficiency=1.0)
AUTO = {"resources": {"threads": "auto"}}


def preset(name: str) -> dict:
    return yaml.safe_load((CONFIG / f"{name}.yaml").read_text())


def four_trainings_and_ten_evaluations() -> list[Job]:
    """4 train jobs of 100 s, then 10 one-thread jobs of 10 s, job i waiting for train job i % 4."""
    train = [Job(f"train {i}", "train", 100.0, priority=2, scaling="train") for i in range(4)]
    rest = [Job(f"evaluate {i}", "evaluate", 10.0, inputs=(f"train {i % 4}",)) for i in range(10)]
    return train + rest


def test_two_cores_run_the_trainings_two_by_two_then_the_evaluations():
    jobs = four_trainings_and_ten_evaluations()
    two = schedules(AUTO, jobs, [2], LINEAR)[0]
    # 2 // 4 train jobs -> 1 thread each: two waves of 100 s (priority 2 keeps the ready evaluations waiting),
    # then 10 x 10 s on 2 cores; every core busy the whole time
    assert two.wall == pytest.approx(250.0)
    assert two.utilisation == pytest.approx(1.0)
    starts = sorted(p.start for p in two.placements if p.rule == "train")
    assert starts == [0.0, 0.0, 100.0, 100.0]
    assert min(p.start for p in two.placements if p.rule == "evaluate") == pytest.approx(200.0)


def test_sixteen_cores_give_each_training_four_threads_and_end_on_the_critical_path():
    jobs = four_trainings_and_ten_evaluations()
    sixteen = schedules(AUTO, jobs, [16], LINEAR)[0]
    assert {p.threads for p in sixteen.placements if p.rule == "train"} == {4}
    assert {p.threads for p in sixteen.placements if p.rule == "evaluate"} == {1}
    assert sixteen.wall == pytest.approx(100.0 / 4 + 10.0)
    assert sixteen.critical_seconds == pytest.approx(sixteen.wall)
    assert sixteen.critical_path[0].startswith("train") and sixteen.critical_path[-1].startswith("evaluate")
    # issue 34's 2.2x on 2 threads (efficiency 1.1) shortens each training to 100 / (4 x 1.1)
    assert schedules(AUTO, jobs, [16], ThreadScaling(1.1))[0].wall == pytest.approx(100.0 / 4.4 + 10.0)
    # threads beyond 2 adding half a thread each: 4 threads run 2 x 1.1 + 2 x 0.5 = 3.2x faster
    assert schedules(AUTO, jobs, [16], ThreadScaling(1.1, beyond_two=0.5))[0].wall == pytest.approx(100.0 / 3.2 + 10.0)


def test_a_forced_thread_count_is_lowered_to_the_cores():
    jobs = [Job("wide", "train", 40.0, priority=2, scaling="train"), Job("other", "attack", 30.0, priority=1)]
    placed = {p.job: p for p in simulate(jobs, 2, lambda job: 8 if job.rule == "train" else 1, LINEAR).placements}
    assert placed["wide"].threads == 2 and placed["wide"].end == pytest.approx(20.0)
    assert placed["other"].start == pytest.approx(20.0)


def test_a_job_wider_than_the_free_cores_waits_and_narrower_ones_pass_it():
    jobs = [Job("gate", "attack", 10.0, priority=1), Job("long", "evaluate", 50.0),
            Job("wide", "train", 40.0, inputs=("gate",), priority=2, scaling="train"), Job("narrow", "evaluate", 5.0)]
    schedule = simulate(jobs, 2, lambda job: 2 if job.rule == "train" else 1, LINEAR)
    placed = {p.job: p for p in schedule.placements}
    assert placed["narrow"].start == pytest.approx(10.0)  # the wide train job, ready at 10, needs both cores
    assert placed["wide"].start == pytest.approx(50.0) and schedule.wall == pytest.approx(70.0)


def test_the_critical_path_is_the_longest_chain_and_a_broken_dag_is_an_error():
    jobs = [Job("a", "r", 5.0), Job("b", "r", 1.0, inputs=("a",)), Job("c", "r", 7.0), Job("d", "r", 2.0, inputs=("b", "c"))]
    assert critical_path(jobs, lambda job: job.work) == (("c", "d"), 9.0)
    with pytest.raises(ValueError, match="not in the DAG"):
        simulate([Job("x", "r", 1.0, inputs=("missing",))], 2, lambda job: 1)
    with pytest.raises(ValueError, match="cycle"):
        critical_path([Job("x", "r", 1.0, inputs=("y",)), Job("y", "r", 1.0, inputs=("x",))], lambda job: job.work)


def unit_costs(n_train: int = 50_000, **overrides) -> UnitCosts:
    """Every unit 1 s (the start-up 0 unless given), so the work is a count of units."""
    defenses = ("none", "mi_pl", "mi_ol", "mi_combined", "gaussian", "rotation", "xie", "xie_resize", "guo")
    values = dict(startup=0.0, forward=0.0, attack_step=1.0, train_step={}, train_setup={},
                  defense={d: DefenseCost(fixed=1.0) if d in ("none", "mi_combined") else DefenseCost(1.0)
                           for d in defenses},
                  defense_grad={d: DefenseCost(fixed=1.0) if d == "mi_combined" else DefenseCost(1.0) for d in defenses},
                  n_train=n_train, n_test_split=10_000)
    values.update(overrides)
    return UnitCosts(**values)


def costs_for(config: dict, **overrides) -> dict[str, UnitCosts]:
    regimes = {r: 1.0 for r in ("erm", "mixup", "at", "interpolated_at")}
    return {name: unit_costs(train_step=regimes, train_setup={r: 0.0 for r in regimes}, **overrides)
            for name in config["datasets"]}


@pytest.mark.parametrize("name", ["smoke", "config", "paper"])
def test_the_work_model_plans_the_jobs_the_plan_counts(name):
    config = preset(name)
    jobs = run_jobs(config, costs_for(config), Survivors())
    counted = Counter(job.rule for job in jobs)
    planned = {rule: n for rule, n in preset_jobs(config).items() if n}
    assert dict(counted) == planned
    if name == "smoke":  # tests/workflow counts the smoke preset's dry run by hand
        assert dict(counted) == {rule: n for rule, n in SMOKE_JOBS.items() if rule != "all"}


def test_the_work_model_waits_where_the_workflow_waits_and_counts_the_units():
    config = preset("config")
    jobs = {job.name: job for job in run_jobs(config, costs_for(config), Survivors(fraction=0.5))}
    # training: epochs x full batches per epoch, one unit a step (mixup: 40 x 50,000 // 512)
    assert jobs["train cifar10/mixup"].work == 40 * 97 == train_steps(config, "mixup", 50_000)
    assert jobs["train cifar10/mixup"].priority == 2 and jobs["attack cifar10/mixup/pgd50"].priority == 1
    # attack: 400 points x 50 steps; evaluate waits for its attack and its model
    assert jobs["attack cifar10/mixup/pgd50"].work == 400 * 50
    assert set(jobs["evaluate cifar10/mixup/pgd50"].inputs) >= {"attack cifar10/mixup/pgd50", "train cifar10/mixup"}
    # a robust job waits for the evaluations and examples of every attack of its model
    robust = jobs["robust cifar10/interpolated_at/mi_ol/lam=0.6"]
    assert {f"evaluate cifar10/interpolated_at/{a}" for a in config["attacks"]["names"]} <= set(robust.inputs)
    # the report waits for every evaluation, adaptive and robust job
    waited = set(jobs["aggregate"].inputs)
    assert {name for name, job in jobs.items() if job.rule in ("evaluate", "adaptive", "robust")} == waited


def test_the_robust_work_follows_the_survivors():
    config = preset("smoke")
    target = ("synth", "mixup", "mi_ol", "lam=0.5")
    name = "robust " + "/".join(target)
    none = {job.name: job.work for job in run_jobs(config, costs_for(config), Survivors(fraction=0.0))}
    half = {job.name: job.work for job in run_jobs(config, costs_for(config), Survivors(fraction=0.5))}
    measured = Survivors(measured={target: (0.5, 0.0)}, fraction=0.0)
    first_only = {job.name: job.work for job in run_jobs(config, costs_for(config), measured)}
    assert none[name] == 0.0 and half[name] > 0.0  # no start-up, no forward: only the attacked points cost
    assert 0.0 < first_only[name] < half[name]  # the later runs attack none of them
    assert none["robust synth/mixup/xie/size=16-24"] == first_only["robust synth/mixup/xie/size=16-24"] == 0.0


def test_survivors_read_the_first_run_and_the_worst_case_of_each_target(tmp_path):
    rows = ["dataset,regime,defense,setting,attack,adaptive,n,correct,attacked",
            "c,iat,guo,size=20-28,pgd10,eot_pgd,100,28,36",  # the first (cheapest) run: the oblivious survivors
            "c,iat,guo,size=20-28,aa40,autoattack_rand,100,22,23",
            "c,iat,guo,size=20-28,worst_case,worst_case,100,22,100",
            "c,iat,mi_ol,lam=0.6,pgd10,paper,200,81,200",  # Fig. 4's adaptive runs are no robust run
            "c,iat,mi_ol,lam=0.6,pgd10,eot_pgd,100,24,34",
            "c,iat,mi_ol,lam=0.6,worst_case,worst_case,100,21,100",
            "c,mixup,none,plain,clean,none,100,90,100",  # a bare model with no robust job: its oblivious minimum
            "c,mixup,none,plain,pgd10,none,100,4,100",
            "c,mixup,none,plain,tpgd10,none,100,30,100"]
    path = tmp_path / "results.csv"
    path.write_text("\n".join(rows) + "\n")
    survivors = Survivors.from_results(path, fraction=0.3)
    assert survivors.shares(("c", "iat", "guo", "size=20-28")) == (0.36, 0.22)
    assert survivors.shares(("c", "iat", "mi_ol", "lam=0.6")) == (0.34, 0.21)
    assert survivors.shares(("c", "mixup", "none", "plain")) == (0.04, 0.04)
    assert survivors.shares(("c", "mixup", "guo", "size=20-28")) == (0.3, 0.3)
    with pytest.raises(ValueError, match="survivor fraction"):
        Survivors(fraction=1.5)


def test_overrides_merge_as_snakemake_config_and_set_reads_yaml():
    config = {"run": "a", "datasets": {"cifar10": {"source": "cifar10", "n_test": 400}}, "speed": {"train_bf16": "auto"}}
    apply_overrides(config, ['datasets={"cifar10": {"source": "x.tar.gz"}}', "run=b"],
                    ["speed.train_bf16=false", "training.epochs=5"])
    assert config["datasets"]["cifar10"] == {"source": "x.tar.gz", "n_test": 400}  # merged, not replaced
    assert config["run"] == "b" and config["speed"]["train_bf16"] is False and config["training"] == {"epochs": 5}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["run"])


def test_the_command_on_the_smoke_preset_writes_its_estimate(tmp_path):
    main(["--configfile", str(CONFIG / "smoke.yaml"), "--cores", "2", "16", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "estimate.json").read_text())
    at = {row["cores"]: row for row in report["cores"]}
    assert at[2]["train_threads"] == 1 and at[16]["train_threads"] == 16 // SMOKE_JOBS["train"]
    assert at[16]["wall_s"] < at[2]["wall_s"]
    assert at[16]["critical_path_s"] <= at[16]["wall_s"] + 1e-6 and at[2]["critical_path_s"] <= at[2]["wall_s"] + 1e-6
    # the busy 2 cores cannot beat half the work
    assert at[2]["wall_s"] >= report["core_seconds"] / 2 - 1e-6
    assert {row["rule"]: row["jobs"] for row in report["rules"]} == {r: n for r, n in SMOKE_JOBS.items() if r != "all"}
    units = report["units"]["synth"]
    assert units["startup"] > 0 and all(v > 0 for v in units["train_step"].values())
    assert set(units["train_step"]) == {"erm", "mixup", "at", "interpolated_at"}
    text = (tmp_path / "estimate.md").read_text()
    assert "| 16 | 4 |" in text and "Assumptions" in text


def test_calibrating_to_a_finished_run_scales_each_rule_to_its_measured_core_seconds(tmp_path):
    config = preset("smoke")
    costs = costs_for(config, startup=1.0)
    jobs = run_jobs(config, costs, Survivors())
    totals = Counter()
    for job in jobs:
        totals[job.rule] += job.work
    # the run took 2x the estimate per rule; its train jobs ran on 2 threads, each second 2 x 1.5 core-seconds
    rows = [{"rule": rule, "jobs": 1, "total_s": 2 * total, "max_s": 0.0, "threads": [1]} for rule, total in totals.items()]
    rows[[r["rule"] for r in rows].index("train")].update(total_s=totals["train"] / 1.5, threads=[2])
    provenance = tmp_path / "provenance.yaml"
    provenance.write_text(yaml.safe_dump({"run": "smoke", "config": config, "wall_time_per_rule_s": rows}))
    calibrated, info = calibrate(jobs, costs, Survivors(), provenance, ThreadScaling(train_efficiency=1.5))
    after = Counter()
    for job in calibrated:
        after[job.rule] += job.work
    assert info["factors"]["train"] == pytest.approx(2.0) and info["factors"]["evaluate"] == pytest.approx(2.0)
    assert after == pytest.approx({rule: 2 * total for rule, total in totals.items()})
    assert [job.name for job in calibrated] == [job.name for job in jobs]
