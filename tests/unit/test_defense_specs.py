"""Defense specs and their setting grammar: exact round trips, rejection of every other spelling,
and a defense registered at run time accepted by every place that reads the registry."""

import math

import pytest

from mixup_inference.core.defenses.specs import DEFENSES, format_setting, parse_setting, setting_param

CANONICAL = [
    ("none", "plain", {}),
    ("mi_pl", "lam=0.5", {"lam": 0.5}),
    ("mi_ol", "lam=1", {"lam": 1.0}),
    ("mi_ol", "lam=0.05", {"lam": 0.05}),
    ("mi_combined", "pl=0.5_ol=0.4_th=0.2", {"lam_pl": 0.5, "lam_ol": 0.4, "threshold": 0.2}),
    ("mi_combined", "pl=0.5_ol=0.4_th=0", {"lam_pl": 0.5, "lam_ol": 0.4, "threshold": 0.0}),
    ("gaussian", "sigma=0.04", {"sigma": 0.04}),
    ("gaussian", "sigma=0.0313725", {"sigma": 0.0313725}),
    ("gaussian", "sigma=1e-05", {"sigma": 1e-05}),
    ("rotation", "deg=40", {"max_degrees": 40.0}),
    ("rotation", "deg=12.5", {"max_degrees": 12.5}),
    ("xie", "size=16-24", {"min_size": 16, "max_size": 24}),
    ("xie_resize", "size=16-24", {"min_size": 16, "max_size": 24}),
    ("guo", "size=24-32", {"min_size": 24, "max_size": 32}),
    ("guo", "size=32-32", {"min_size": 32, "max_size": 32}),
]


@pytest.mark.parametrize("defense,setting,params", CANONICAL)
def test_setting_round_trip_is_exact(defense, setting, params):
    parsed = parse_setting(defense, setting)
    assert parsed == params
    assert format_setting(defense, parsed) == setting
    assert format_setting(defense, params) == setting


def test_parsed_sizes_are_ints_and_scalars_floats():
    sizes = parse_setting("xie", "size=16-24")
    assert all(type(v) is int for v in sizes.values())
    assert type(parse_setting("rotation", "deg=40")["max_degrees"]) is float


def test_format_accepts_ints_and_normalises_them():
    assert format_setting("mi_ol", {"lam": 1}) == "lam=1"
    assert format_setting("rotation", {"max_degrees": 30}) == "deg=30"
    assert format_setting("xie", {"min_size": 16.0, "max_size": 24}) == "size=16-24"
    assert format_setting("gaussian", {"sigma": -0.0}) == "sigma=0"


def test_every_defense_has_a_round_trip_case():
    assert {defense for defense, _, _ in CANONICAL} == set(DEFENSES)


@pytest.mark.parametrize("defense,setting,params", CANONICAL)
def test_setting_survives_snakemake_remote_job_arguments(defense, setting, params):
    """A cluster job (SLURM) gets its wildcards back through `--target-jobs rule:k=v,...`, which
    Snakemake splits on commas: the setting must come out of that round trip unchanged."""
    from snakemake.target_jobs import parse_target_jobs_cli_args
    from snakemake_interface_executor_plugins.utils import TargetSpec, encode_target_jobs_cli_args

    wildcards = {"dataset": "cifar10", "regime": "mixup", "attack": "pgd10", "defense": defense,
                 "setting": format_setting(defense, params)}
    (spec,) = parse_target_jobs_cli_args(encode_target_jobs_cli_args([TargetSpec("evaluate", wildcards)]))
    assert spec.wildcards_dict == wildcards


@pytest.mark.parametrize(
    "defense,setting",
    [
        ("none", "-"),
        ("none", ""),
        ("none", "lam=0.5"),
        ("mi_ol", "lam=0.50"),  # not canonical
        ("mi_ol", "lam=.5"),
        ("mi_ol", "lam=5e-1"),
        ("mi_ol", "lambda=0.5"),
        ("mi_ol", "lam=0.5,"),
        ("mi_ol", "lam="),
        ("mi_ol", "lam=abc"),
        ("mi_ol", "lam=nan"),
        ("mi_ol", "lam=0"),  # lam must be in (0, 1]
        ("mi_ol", "lam=1.5"),
        ("mi_pl", "plain"),
        ("mi_combined", "ol=0.4_pl=0.5_th=0.2"),  # order is part of the spelling
        ("mi_combined", "pl=0.5,ol=0.4"),
        ("mi_combined", "pl=0.5,ol=0.4,th=0.2"),  # commas break cluster jobs (defenses.specs.PART_SEPARATOR)
        ("mi_combined", "pl=0.5_ol=0.4_th=1.2"),
        ("mi_combined", "pl=0.5_ ol=0.4_ th=0.2"),
        ("gaussian", "sigma=-0.1"),
        ("gaussian", "sigma=inf"),
        ("gaussian", "std=0.04"),
        ("rotation", "deg=-10"),
        ("rotation", "degrees=40"),
        ("xie", "size=24-16"),
        ("xie", "size=016-24"),
        ("xie", "size=16.5-24"),
        ("xie", "size=16"),
        ("guo", "size=0-8"),
        ("guo", "16-24"),
    ],
)
def test_parse_rejects_malformed(defense, setting):
    with pytest.raises(ValueError, match="setting|lam|sigma|deg|size|threshold|must"):
        parse_setting(defense, setting)


def test_unknown_defense_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="mi_combined"):
        parse_setting("jpeg", "q=75")
    with pytest.raises(ValueError, match="unknown"):
        format_setting("MI-OL", {"lam": 0.5})


@pytest.mark.parametrize(
    "defense,params",
    [
        ("none", {"lam": 0.5}),
        ("mi_ol", {}),
        ("mi_ol", {"lam": 0.5, "n_samples": 30}),
        ("mi_ol", {"lam": 0.1234567}),  # 7 significant digits: "g" cannot write it exactly
        ("mi_ol", {"lam": "0.5"}),
        ("mi_ol", {"lam": True}),
        ("mi_combined", {"lam_pl": 0.5, "lam_ol": 0.4}),
        ("xie", {"min_size": 16.5, "max_size": 24}),
        ("guo", {"min_size": 30, "max_size": 20}),
    ],
)
def test_format_rejects_bad_params(defense, params):
    with pytest.raises(ValueError):
        format_setting(defense, params)


def test_setting_param_main_scalar():
    assert math.isnan(setting_param("none", "plain"))
    assert setting_param("mi_pl", "lam=0.3") == 0.3
    assert setting_param("mi_combined", "pl=0.5_ol=0.4_th=0.2") == 0.4
    assert setting_param("gaussian", "sigma=0.075") == 0.075
    assert setting_param("rotation", "deg=30") == 30.0
    assert setting_param("xie", "size=20-28") == 20.0
    assert setting_param("guo", "size=22-30") == 22.0


# ---------------------------------------------------------------- one grammar: defenses.specs and the schema
def _schema():
    import yaml
    from pathlib import Path

    return yaml.safe_load((Path(__file__).parents[2] / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_schema_setting_pattern_is_the_specs_grammar():
    from mixup_inference.core.defenses.specs import SETTING_PATTERN

    assert _schema()["$defs"]["setting"]["pattern"] == SETTING_PATTERN


def test_every_formatted_setting_passes_the_schema_and_a_comma_does_not():
    import itertools
    import re

    import jsonschema

    validator = jsonschema.Draft202012Validator({**_schema()["$defs"]["setting"], "$defs": _schema()["$defs"]})
    values = {"lam": [0.05, 0.5, 1], "lam_pl": [0.5, 1], "lam_ol": [0.4, 1e-05], "threshold": [0, 0.2, 1],
              "sigma": [0, 0.04, 1e-05, 12.5], "max_degrees": [0, 40, 12.5, 180], "min_size": [1, 16], "max_size": [24, 320]}
    produced = 0
    for defense in DEFENSES:
        if defense == "none":
            continue
        names = DEFENSES[defense].kwargs
        for combo in itertools.product(*(values[name] for name in names)):
            setting = format_setting(defense, dict(zip(names, combo)))
            assert validator.is_valid(setting), (defense, setting)
            assert re.fullmatch(r"[a-z]+=[^/]+", setting)  # and the workflow's wildcard constraint
            produced += 1
    assert produced > 30
    assert validator.is_valid("pl=0.5_ol=0.4_th=0.2")  # the MI-Combined grid entry that used to be refused
    assert not validator.is_valid("pl=0.5,ol=0.4,th=0.2")
