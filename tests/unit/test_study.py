"""The training study's design (design.study): which models it trains, each one's training config, and the
run's own model recognised instead of trained twice."""

from __future__ import annotations

import yaml
from reliability_helpers import config_problem, smoke_config
from workflow_helpers import REPO

from mixup_inference.core.training.config import TrainConfig
from mixup_inference.design.study import StudyModel, is_run_model, regime_training, study_models, study_training


def _config() -> dict:
    config = smoke_config()
    config["study"] = {"dataset": "synth", "recipes": {"preset": {}, "fgsm_rs": {"at_steps": 1, "at_step_size": 10 / 255}},
                       "models": [["mixup", "preset", 3, [0, 1]], ["at", "fgsm_rs", 2, [0]], ["mixup", "preset", 3, [1]]],
                       "attacks": ["clean", "pgd5"], "table": "table2", "settings": {"mi_ol": ["lam=0.5", "lam=1"]},
                       "robustness": [["mixup", "preset", 3, "mi_ol", "lam=0.5"]]}
    return config


def test_models_in_config_order_each_once():
    assert study_models(_config()) == [StudyModel("mixup", "preset", 3, 0), StudyModel("mixup", "preset", 3, 1),
                                       StudyModel("at", "fgsm_rs", 2, 0)]


def test_training_is_the_regimes_with_the_recipe_epochs_and_seed():
    config = _config()
    model = StudyModel("at", "fgsm_rs", 2, 5)
    training = study_training(config, model)
    assert training == {**regime_training(config, "at"), "at_steps": 1, "at_step_size": 10 / 255, "epochs": 2, "seed": 5}
    # Wong et al.'s FGSM-RS step (1.25 eps) is a valid training config
    assert TrainConfig(**training).at_step_size > TrainConfig(**training).at_eps


def test_the_runs_own_model_is_recognised():
    config = _config()
    epochs = regime_training(config, "mixup")["epochs"]
    assert is_run_model(config, StudyModel("mixup", "preset", epochs, config["seed"]))
    assert not is_run_model(config, StudyModel("mixup", "preset", epochs, config["seed"] + 1))
    assert not is_run_model(config, StudyModel("mixup", "preset", epochs + 1, config["seed"]))
    assert not is_run_model(config, StudyModel("at", "fgsm_rs", regime_training(config, "at")["epochs"], config["seed"]))


def test_bad_study_configs_name_the_model_and_the_fix():
    config = _config()
    config["study"]["models"].append(["mixup", "wong", 3, [0]])
    assert "study.models (mixup-wong-e3-s0)" in config_problem(config)
    assert "study.recipes" in config_problem(config)
    config = _config()
    config["study"]["recipes"]["fgsm_rs"]["at_step_size"] = 0.5
    assert config_problem(config).startswith("study.models (at-fgsm_rs-e2-s0): at_step_size must be in")
    config = _config()
    config["study"]["recipes"]["fgsm_rs"]["at_stepsize"] = 0.01
    assert "at_stepsize" in config_problem(config)


def test_default_preset_study_is_valid():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    models = study_models(config)
    assert {m.seed for m in models if (m.regime, m.recipe, m.epochs) == ("mixup", "preset", 40)} == {0, 1, 2}
    assert sum(is_run_model(config, m) for m in models) == 3  # mixup, interpolated AT and AT of the run itself


def test_model_names_round_trip_and_pick_the_training():
    from mixup_inference.design.study import model_name, model_training, parse_model_name

    config = _config()
    model = StudyModel("at", "fgsm_rs", 2, 0)
    assert model.name == "at-fgsm_rs-e2-s0" and parse_model_name(model.name) == model
    assert parse_model_name("mixup") is None and parse_model_name("interpolated_at") is None
    assert model_training(config, model.name) == study_training(config, model)
    assert model_training(config, "mixup") == regime_training(config, "mixup")
    epochs = regime_training(config, "mixup")["epochs"]
    assert model_name(config, StudyModel("mixup", "preset", epochs, config["seed"])) == "mixup"
    assert model_name(config, StudyModel("mixup", "preset", epochs, 1)) == f"mixup-preset-e{epochs}-s1"


def test_bad_study_evaluation_keys_name_the_fix():
    config = _config()
    config["study"]["attacks"] = ["clean", "pgd50"]
    assert "study.attacks: attack 'pgd50' is not in attacks.names" in config_problem(config)
    config = _config()
    config["study"]["table"] = "table3"
    assert config_problem(config).startswith("study.table: 'table3' is not under tables")
    config = _config()
    config["study"]["robustness"] = [["mixup", "preset", 7, "mi_ol", "lam=0.5"]]
    assert config_problem(config).startswith("study.robustness[0]: no study model is mixup-preset-e7")
    config = _config()
    config["study"]["settings"] = {"mi_ol": ["lam=1.5"]}
    assert "study.settings.mi_ol[0]" in config_problem(config)


def test_study_evaluations_cover_every_model_and_the_robust_targets():
    from mixup_inference.design import plan

    config = _config()
    evaluations = plan.study_evaluations(config)
    names = {e[1] for e in evaluations}
    epochs = regime_training(config, "mixup")["epochs"]
    expected = {("mixup" if epochs == 3 else "mixup-preset-e3-s0"), "mixup-preset-e3-s1", "at-fgsm_rs-e2-s0"}
    assert names == expected
    for name in expected:
        regime = name.split("-")[0]
        for attack in ("clean", "pgd5"):
            for defense, setting in plan.study_settings(config, regime):
                assert ("synth", name, attack, defense, setting) in evaluations
    # every seed of the robustness group is a target, with the oblivious evaluations its cascade starts from
    targets = plan.study_robust_targets(config)
    mixups = sorted(n for n in expected if n.startswith("mixup"))
    # each seed's defense and its bare model, which faces the run's strongest deterministic attacks as in the run
    # (the worst-case difference would otherwise set the defense against an oblivious-only bare side)
    assert plan.bare_targets(config), "the smoke preset's robustness gives its bare models the strong attacks"
    defended = [t for t in targets if t[2] != "none"]
    assert [t[1] for t in defended] == mixups
    assert sorted(t[1] for t in targets if t[2:] == ("none", "plain")) == mixups
    without = {**config, "robustness": {**config["robustness"], "kinds": [
        k for k in config["robustness"]["kinds"] if not plan.robust_kind(k).applies_to("none")]}}
    assert not plan.bare_targets(without) and all(t[2] != "none" for t in plan.study_robust_targets(without))
    for _, name, defense, setting in targets:
        for attack in config["attacks"]["names"]:
            assert ("synth", name, attack, defense, setting) in evaluations
            assert ("synth", name, attack, "none", "plain") in evaluations
    # the study joins the evaluate jobs' groups, not the run's own evaluations (its report reads only those)
    groups = plan.evaluation_groups(config)
    assert all((d, n, a) in groups and (f, s) in groups[d, n, a] for d, n, a, f, s in evaluations)
    assert not {e[1] for e in plan.evaluations(config)} & {"mixup-preset-e3-s1", "at-fgsm_rs-e2-s0"}


def test_the_published_overlay_keeps_the_study_valid_and_a_shadowed_study_model_is_refused():
    """The committed run's published overlay imports models named after their regimes: those are the run's own
    models (the study's seed 0), not a clash (the overlay failed at parse time before). An import named like a
    study model of its own would hide that model and is still refused."""
    from mixup_inference.design.configcheck import check_config, validate_config
    from reliability_helpers import SCHEMA

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "reports" / "cifar10-jpeg-cpu" / "models" / "published.yaml").read_text())
    merged = {**config, **overlay}
    merged["datasets"] = {"cifar10": {**config["datasets"]["cifar10"], "source": "synthetic"}}
    validate_config(merged, SCHEMA)
    check_config(merged)
    merged["models"]["cifar10"]["mixup-preset-e40-s1"] = dict(merged["models"]["cifar10"]["mixup"])
    message = config_problem(merged)
    assert message.startswith("study.models (mixup-preset-e40-s1): models.cifar10 has a model of the same name")
