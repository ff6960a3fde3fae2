"""One registry per kind of name: the library's tuples are the source, and every other place
that lists the names (the config schema, the defense registry, the setting tables, the
workflow's wildcards) agrees with them. Adding a name is a change in one tuple plus what this
file then reports missing."""

import re
from pathlib import Path

import pytest
import yaml

from mixup_inference.core import settings
from mixup_inference.core.defenses import DEFENSES, POOL_DEFENSES
from mixup_inference.core.models import MODEL_NAMES
from mixup_inference.core.training import REGIMES

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_defense_registry_has_exactly_the_defense_names():
    assert tuple(DEFENSES) == settings.DEFENSE_NAMES
    assert POOL_DEFENSES <= set(settings.DEFENSE_NAMES)


def test_schema_grid_settings_accept_exactly_the_defenses_with_a_setting():
    enum = SCHEMA["properties"]["grids"]["properties"]["settings"]["propertyNames"]["enum"]
    assert enum == [name for name in settings.DEFENSE_NAMES if name != "none"]


def test_schema_adaptive_defenses_are_defense_names():
    assert set(SCHEMA["properties"]["adaptive"]["properties"]["defense"]["enum"]) <= set(settings.DEFENSE_NAMES)


@pytest.mark.parametrize("defense", settings.DEFENSE_NAMES)
def test_every_defense_has_a_setting_grammar(defense):
    example = settings._example(defense)
    params = settings.parse_setting(defense, example)
    assert settings.format_setting(defense, params) == example
    if defense != "none":
        assert settings.setting_param(defense, example) is not None


def test_schema_model_and_regime_enums_are_the_library_tuples():
    assert tuple(SCHEMA["properties"]["model"]["enum"]) == MODEL_NAMES
    assert tuple(SCHEMA["$defs"]["regime"]["enum"]) == REGIMES


def test_workflow_defense_wildcard_is_built_from_the_registry():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r'^\s*defense="\|"\.join\(DEFENSE_NAMES\),$', common, re.MULTILINE)
    assert "mi_combined|" not in common  # no second, hand-written list
