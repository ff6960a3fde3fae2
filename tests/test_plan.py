"""The study plan (plan.py): the job lists every preset derives from its config."""

from pathlib import Path

import pytest
import yaml

from mixup_inference import plan
from mixup_inference.settings import parse_setting

CONFIG = Path(__file__).resolve().parents[1] / "config"


def load(preset: str) -> dict:
    return yaml.safe_load((CONFIG / f"{preset}.yaml").read_text())


@pytest.mark.parametrize("preset", ["smoke", "config", "paper"])
def test_groups_partition_the_evaluations(preset):
    config = load(preset)
    evaluations = plan.evaluations(config)
    assert len(set(evaluations)) == len(evaluations)
    groups = plan.evaluation_groups(config)
    flat = sorted((*key, *pair) for key, pairs in groups.items() for pair in pairs)
    assert flat == evaluations
    for pairs in groups.values():
        assert len(set(pairs)) == len(pairs)
        for defense, setting in pairs:
            parse_setting(defense, setting)  # every setting is canonical and parses
    assert {(d, r) for d, r, _ in groups} <= set(plan.trained_models(config))


def test_smoke_counts():
    """Counted by hand in tests/test_workflow.py: 73 evaluations over 4 regimes x 3 attacks."""
    config = load("smoke")
    assert len(plan.evaluations(config)) == 73
    assert len(plan.evaluation_groups(config)) == 12
    assert len(plan.adaptive_runs(config)) == 4
    assert plan.trained_models(config) == [("synth", r) for r in sorted(["erm", "mixup", "at", "interpolated_at"])]
    assert plan.used_datasets(config) == ["synth"]


def test_component_lambdas_are_canonical_settings():
    """Fig. 2's lambdas become settings through format_setting: 1.0 and 1 are the one setting lam=1."""
    config = load("smoke")
    config["components"]["lams"] = [1.0, 1, 0.50]
    settings = {s for _d, _r, _a, f, s in plan.evaluations(config) if f == "mi_ol"}
    assert {"lam=1", "lam=0.5"} <= settings and "lam=1.0" not in settings
