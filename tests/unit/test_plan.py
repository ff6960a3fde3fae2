"""The study plan (plan.py): the job lists every preset derives from its config."""

from pathlib import Path

import pytest
import yaml

from mixup_inference.design import plan
from mixup_inference.design.paper_tables import rows_of
from mixup_inference.core.defenses.specs import DEFENSES, parse_setting

CONFIG = Path(__file__).resolve().parents[2] / "config"


def load(preset: str) -> dict:
    return yaml.safe_load((CONFIG / f"{preset}.yaml").read_text())


@pytest.mark.parametrize("preset", ["smoke", "config", "paper"])
def test_groups_partition_the_evaluations(preset):
    config = load(preset)
    evaluations = plan.evaluations(config)
    assert len(set(evaluations)) == len(evaluations)
    groups = plan.evaluation_groups(config)
    flat = sorted((*key, *pair) for key, pairs in groups.items() for pair in pairs)
    # the groups are the run's evaluations and the training study's (config study:), each once
    assert flat == sorted(set(evaluations) | set(plan.study_evaluations(config)))
    for pairs in groups.values():
        assert len(set(pairs)) == len(pairs)
        for defense, setting in pairs:
            parse_setting(defense, setting)  # every setting is canonical and parses
    study_names = {e[1] for e in plan.study_evaluations(config)}
    assert {(d, r) for d, r, _ in groups if r not in study_names} <= set(plan.trained_models(config))


def test_smoke_counts():
    """Counted by hand in tests/workflow/test_workflow.py: 73 evaluations over 4 regimes x 3 attacks."""
    config = load("smoke")
    assert len(plan.evaluations(config)) == 73
    assert len({e[:3] for e in plan.evaluations(config)}) == 12  # evaluate jobs of the run (the study adds its own)
    assert len(plan.adaptive_runs(config)) == 4
    assert plan.trained_models(config) == [("synth", r) for r in sorted(["erm", "mixup", "at", "interpolated_at"])]
    assert plan.used_datasets(config) == ["synth"]


def test_component_lambdas_are_canonical_settings():
    """Fig. 2's lambdas become settings through format_setting: 1.0 and 1 are the one setting lam=1."""
    config = load("smoke")
    config["components"]["lams"] = [1.0, 1, 0.50]
    settings = {s for _d, _r, _a, f, s in plan.evaluations(config) if f == "mi_ol"}
    assert {"lam=1", "lam=0.5"} <= settings and "lam=1.0" not in settings


@pytest.mark.parametrize("preset", ["config", "paper", "paper-fast", "authors"])
def test_robustness_attacks_every_randomized_row_of_the_presets_tables(preset):
    """The robustness evaluation of the CPU, paper and authors presets targets exactly the randomized
    rows of their tables as configured (Table 4/5's settings; the default preset: the mixup and IAT rows
    only, not the ERM/AT ablations) plus MI-PL at lam 0.5 on each mixup model, and the bare model of
    every regime among them (issue 33: the bare models face the same evaluation)."""
    config = load(preset)
    regimes = {"config": {"mixup", "interpolated_at"}}.get(preset)
    expected = set()
    for name, spec in config["tables"].items():
        allowed = regimes or set(spec.get("regimes", ["erm", "mixup", "at", "interpolated_at"]))
        for row in rows_of(name):
            if row.defense != "none" and row.regime in allowed:
                expected.add((spec["dataset"], row.regime, row.defense, row.setting))
        expected.add((spec["dataset"], "mixup", "mi_pl", "lam=0.5"))
    bare = {(dataset, regime, "none", "plain") for dataset, regime, _defense, _setting in expected}
    assert set(plan.bare_targets(config)) == bare and len(bare) >= 2
    assert set(plan.robust_targets(config)) == expected | bare


def test_table_targets_follow_the_tables_rows_and_filters():
    """`table2` is every row of tables.table2 (its data set, its regimes) whose defense is randomized; a
    mapping filters it by regimes and defenses; explicit targets mix in, each target once, sorted."""
    config = load("smoke")
    rob = config["robustness"]
    rob["kinds"] = [kind for kind in rob["kinds"] if kind not in ("autoattack_standard", "pgd_bare")]  # no bare targets
    randomized = [row for row in rows_of("table2") if DEFENSES[row.defense].randomized]
    rob["targets"] = ["table2"]
    assert plan.robust_targets(config) == sorted(("synth", r.regime, r.defense, r.setting) for r in randomized)
    config["tables"]["table2"]["regimes"] = ["interpolated_at"]  # the table as configured
    assert {r for _d, r, _f, _s in plan.robust_targets(config)} == {"interpolated_at"}
    del config["tables"]["table2"]["regimes"]
    mixup_mi_ol = ("synth", "mixup", "mi_ol", next(r.setting for r in randomized if (r.regime, r.defense) == ("mixup", "mi_ol")))
    rob["targets"] = [{"table": "table2", "regimes": ["mixup"], "defenses": ["mi_ol"]}, list(mixup_mi_ol[1:]),
                      ["other", "mixup", "mi_pl", "lam=0.5"]]
    assert plan.robust_targets(config) == [("other", "mixup", "mi_pl", "lam=0.5"), mixup_mi_ol]
    rob["targets"] = ["table3"]
    with pytest.raises(ValueError, match="table 'table3' is not under tables:"):
        plan.robust_targets(config)


def test_the_smoke_preset_attacks_one_defense_of_each_transform_kind():
    """Mixing (MI-OL), switch (MI-Combined), gather (Xie) and grid_sample (Guo), at Table 4's settings, and
    the bare mixup model."""
    config = load("smoke")
    settings = {(r.regime, r.defense): r.setting for r in rows_of("table2")}
    assert plan.robust_targets(config) == sorted([("synth", "mixup", "none", "plain")]
                                                 + [("synth", "mixup", d, settings["mixup", d])
                                                    for d in ("mi_ol", "mi_combined", "xie", "guo")])


def test_the_bare_models_face_the_deterministic_kinds_and_the_defenses_the_others():
    """A robust job runs the kinds that apply to its target: AutoAttack standard and PGD against the bare
    model, AutoAttack rand, EOT PGD and Tramer et al.'s against a defense; level by level, cheapest first
    within a level. Without a deterministic kind there are no bare targets."""
    config = load("config")
    rob = config["robustness"]
    bare, defended = plan.robust_runs(rob, "none"), plan.robust_runs(rob, "mi_ol")
    assert {run.kind for run in bare} == {"autoattack_standard", "pgd_bare"}
    assert {run.kind for run in defended} == {"autoattack_rand", "eot_pgd", "tramer"}
    assert all(run.eot == 1 and run.n_samples_attack == 1 for run in bare)
    for runs in (bare, defended):
        assert [(run.level, run.cost) for run in runs] == sorted((run.level, run.cost) for run in runs)
    assert sorted(plan.robust_runs(rob), key=lambda r: r.file) == sorted(bare + defended, key=lambda r: r.file)
    rob["kinds"] = ["autoattack_rand", "eot_pgd"]
    assert plan.bare_targets(config) == [] and all(t[2] != "none" for t in plan.robust_targets(config))


def test_the_default_ladders_reach_the_protocols_at_their_top_level():
    """Issue 33: at least 3 levels, the top one at least AutoAttack rand's protocol (100 iterations, 20 EOT
    draws), 50 EOT PGD steps, AutoAttack standard's (100 iterations, 5,000 queries) and a PGD-50."""
    rob = load("config")["robustness"]
    levels = plan.robust_options(rob)["convergence"]["levels"]
    assert levels >= 3
    top = {(run.kind, run.targeted): run for run in plan.robust_runs(rob) if run.level == levels - 1}
    aa = top["autoattack_rand", False]
    assert aa.steps >= 100 and aa.eot >= 20
    assert top["eot_pgd", False].steps >= 50 and top["eot_pgd", True].steps >= 50
    standard = top["autoattack_standard", False]
    assert standard.steps >= 100 and standard.extra("n_queries") >= 5000
    assert top["pgd_bare", False].steps >= 50


def test_a_robustness_target_may_name_its_dataset():
    config = load("smoke")
    config["robustness"]["kinds"] = ["eot_pgd"]
    config["robustness"]["targets"] = [["mixup", "mi_ol", "lam=0.5"], ["other", "mixup", "xie", "size=16-24"]]
    assert plan.robust_targets(config) == [("other", "mixup", "xie", "size=16-24"), ("synth", "mixup", "mi_ol", "lam=0.5")]
