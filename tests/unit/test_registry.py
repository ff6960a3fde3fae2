"""One registry per kind of name: the library's registries are the source, and every other place
that lists the names (the config schema, the workflow's wildcards, the plots, the findings, the
benchmark) agrees with them or reads them. A defense registered at run time is accepted everywhere."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from mixup_inference.core.defenses.baselines import gaussian_noise
from mixup_inference.core.defenses.specs import (DEFENSES, SETTING_PATTERN, DefenseSpec, Param, apply_defense,
                                                format_setting, parse_setting, register_defense, setting_param)
from mixup_inference.core.models.networks import MODEL_NAMES
from mixup_inference.core.training.config import REGIMES
from mixup_inference.design.configcheck import check_config, schema_with_registries, validate_config
from mixup_inference.design import paper_tables, plan
from mixup_inference.design.paper_tables import TABLES

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
RANDOMIZED = [name for name, spec in DEFENSES.items() if spec.randomized]


def test_the_schema_file_lists_what_the_registries_generate():
    """The file's enums and patterns are documentation for its readers; validation fills them from the
    registries (schema_with_registries), and for the built-in names the two agree."""
    generated = schema_with_registries(yaml.safe_load(SCHEMA_PATH.read_text()))
    assert generated == SCHEMA
    assert SCHEMA["$defs"]["robust_defense"]["enum"] == RANDOMIZED
    assert SCHEMA["$defs"]["setting"]["pattern"] == SETTING_PATTERN
    assert SCHEMA["$defs"]["table"]["enum"] == list(TABLES)


def test_a_table_added_to_the_registry_is_a_valid_config_table(monkeypatch):
    """tables: and robustness.targets accept the tables of design.paper_tables.TABLES, not a second list."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["tables"]["table9"] = config["tables"]["table2"]
    config["robustness"]["targets"] = ["table9"]
    with pytest.raises(ValueError, match="unknown table 'table9'"):
        validate_config(config, SCHEMA_PATH)
    monkeypatch.setitem(TABLES, "table9", "a table of our own")
    monkeypatch.setattr(paper_tables, "ROWS", [*paper_tables.ROWS, ("Mixup + Xie", "mixup", "xie", {"table9": "size=16-24"})])
    validate_config(config, SCHEMA_PATH)
    check_config(config)
    assert plan.robust_targets(config) == [("synth", "mixup", "none", "plain"), ("synth", "mixup", "xie", "size=16-24")]


def test_schema_adaptive_defenses_are_defense_names():
    assert set(SCHEMA["properties"]["adaptive"]["properties"]["defense"]["enum"]) <= set(DEFENSES)


@pytest.mark.parametrize("defense", DEFENSES)
def test_every_defense_spec_is_complete(defense):
    spec = DEFENSES[defense]
    params = parse_setting(defense, spec.example)
    assert format_setting(defense, params) == spec.example
    assert set(params) == set(spec.kwargs)
    assert (spec.main_param is None) == (defense == "none")
    assert spec.label and spec.color
    assert len({s.color for s in DEFENSES.values()}) == len(DEFENSES)  # one colour each, or Fig. 3b mixes them up


def test_schema_model_and_regime_enums_are_the_library_tuples():
    assert tuple(SCHEMA["properties"]["model"]["enum"]) == MODEL_NAMES
    assert tuple(SCHEMA["$defs"]["regime"]["enum"]) == REGIMES


def test_workflow_wildcards_are_built_from_the_registries():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r'^\s*defense="\|"\.join\(DEFENSES\),$', common, re.MULTILINE)
    assert re.search(r"^\s*attack=attack_pattern\(oblivious_only=True\),$", common, re.MULTILINE)
    assert "mi_combined|" not in common and "t?pgd" not in common  # no second, hand-written list


# ---------------------------------------------------------------- a defense added at run time
def _noise_std(model, x, *, std, n_samples, generator=None, chunk_size=None, grad=False):
    """A researcher's own defense: Gaussian noise with its std given on [0, 1] pixels."""
    return gaussian_noise(model, x, sigma=2 * std, n_samples=n_samples, generator=generator, chunk_size=chunk_size,
                          grad=grad)


@pytest.fixture
def noise_std():
    spec = register_defense(DefenseSpec("noise_std", _noise_std, "Pixel noise", "C9", (Param("std", "std", "nonneg"),),
                                        main_param="std", example="std=0.02", baseline=True))
    yield spec
    del DEFENSES[spec.name]


def test_a_registered_deterministic_defense_is_no_robustness_target():
    """`randomized` is the spec's own field: a defense that says it is deterministic is a defense of the
    config (and of the workflow's wildcard) but not one the robustness evaluation may attack."""
    spec = register_defense(DefenseSpec("identity", DEFENSES["none"].function, "Identity", "C7",
                                        randomized=False))
    try:
        generated = schema_with_registries(yaml.safe_load(SCHEMA_PATH.read_text()))
        assert parse_setting("identity", "plain") == {}  # a defense of the registry
        assert "identity" not in generated["$defs"]["robust_defense"]["enum"]
        assert "gaussian" in generated["$defs"]["robust_defense"]["enum"]
        assert not spec.randomized and DEFENSES["gaussian"].randomized and not DEFENSES["none"].randomized
    finally:
        del DEFENSES[spec.name]


def test_a_registered_defense_has_a_grammar_and_runs(noise_std):
    assert parse_setting("noise_std", "std=0.05") == {"std": 0.05}
    assert setting_param("noise_std", "std=0.05") == 0.05
    with pytest.raises(ValueError, match="noise_std std=-1 must be >= 0"):
        parse_setting("noise_std", "std=-1")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.rand(3, 3, 8, 8)
    probs = apply_defense(model, x, "noise_std", "std=0.05", pool=(), n_samples=5, chunk_size=None,
                          generator=torch.Generator().manual_seed(0))
    expected = gaussian_noise(model, x, sigma=0.1, n_samples=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(probs, expected)


def test_a_registered_defense_is_accepted_by_the_config_checks(noise_std):
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["grids"]["settings"]["noise_std"] = ["std=0.02", "std=0.05"]
    config["robustness"]["targets"].append(["mixup", "noise_std", "std=0.02"])
    validate_config(config, SCHEMA_PATH)
    check_config(config)
    config["grids"]["settings"]["noise_std"] = ["std=-0.1"]
    with pytest.raises(ValueError, match=r"grids.settings.noise_std\[0\]: noise_std std=-0.1 must be >= 0"):
        check_config(config)
    config["grids"]["settings"]["noise_stx"] = ["std=0.1"]
    with pytest.raises(ValueError, match="noise_stx"):
        validate_config(config, SCHEMA_PATH)


def test_a_registered_defense_is_drawn_and_compared(noise_std, tmp_path):
    from test_findings import Y, art  # the findings tests' artifact builder
    from test_plots import check_outputs, row

    from mixup_inference.perf.bench.report import row_label
    from mixup_inference.report.findings import index_artifacts, matched_baselines
    from mixup_inference.report.plots import plot_tradeoff

    rows = [row("mixup", "none", "plain", "clean", 0.9), row("mixup", "none", "plain", "pgd10", 0.1),
            row("mixup", "noise_std", "std=0.02", "clean", 0.8), row("mixup", "noise_std", "std=0.02", "pgd10", 0.3)]
    import pandas as pd
    svg = check_outputs(plot_tradeoff(pd.DataFrame(rows), tmp_path / "fig3b", attack="pgd10"), tmp_path / "fig3b")
    assert "Pixel noise" in svg

    wrong = [(v + 1) % 3 for v in Y]
    arts = [art(Y, Y, attack="clean", setting="lam=0.5"), art(Y[:4] + wrong[4:], Y, setting="lam=0.5"),
            art(Y, Y, attack="clean", defense="noise_std", setting="std=0.02"),
            art(Y[:2] + wrong[2:], Y, defense="noise_std", setting="std=0.02")]
    out = matched_baselines(index_artifacts(arts), "d", ["mixup"], "pgd10", {"mi_ol": ["lam=0.5"],
                                                                             "noise_std": ["std=0.02"]})
    assert list(out.baseline) == ["noise_std"] and out.iloc[0].difference == 25.0
    assert row_label("noise_std") == "Pixel noise baseline"
