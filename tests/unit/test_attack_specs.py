"""Attack specs and attack names: exact round trips, rejection of every other spelling, and an
attack method registered at run time accepted by the grammar, the wildcard pattern and the schema."""

import dataclasses
import re

import pytest

from mixup_inference.core.attacks import specs as attack_specs
from mixup_inference.core.attacks.kinds import ROBUST_KINDS
from mixup_inference.core.attacks.specs import (ADAPTIVE_KINDS, ATTACKS, PAPER_ATTACKS, AttackName,
                                               AttackSpec, attack_pattern, fig4_craft, parse_attack,
                                               register_attack)
from mixup_inference.core.attacks.pgd import adaptive_pgd, eot_pgd, pgd


@pytest.mark.parametrize(
    "name,parsed",
    [("clean", ("clean", False, 0)), ("pgd10", ("pgd", False, 10)), ("pgd5", ("pgd", False, 5)),
     ("tpgd200", ("pgd", True, 200)), ("tpgd1", ("pgd", True, 1)), ("aa100", ("autoattack", False, 100))],
)
def test_attack_round_trip(name, parsed):
    assert parse_attack(name) == AttackName(*parsed)
    assert AttackName(*parsed).name == name


def test_paper_attacks_parse_and_display_as_the_paper_writes_them():
    assert [parse_attack(a).display for a in PAPER_ATTACKS] == [
        "Clean", "PGD10", "PGD50", "PGD200", "tPGD10", "tPGD50", "tPGD200"]
    assert parse_attack("aa20").display == "AutoAttack20"


@pytest.mark.parametrize("name", ["", "pgd", "pgd0", "pgd010", "tpgd", "PGD10", "pgd-5", "fgsm", "tclean", "pgd10 ",
                                  "taa10", "aa0", "aa"])
def test_parse_attack_rejects_malformed(name):
    with pytest.raises(ValueError, match="attack"):
        parse_attack(name)


def test_attack_name_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        AttackName("pgd", False, -1)
    with pytest.raises(ValueError, match="steps"):
        AttackName("pgd", False, 2.0)
    with pytest.raises(ValueError, match="0 steps"):
        AttackName("pgd", True, 0)
    with pytest.raises(ValueError, match="targeted"):
        AttackName("autoattack", True, 10)
    with pytest.raises(ValueError, match="unknown"):
        AttackName("fgsm", False, 1)


def test_oblivious_pattern_is_what_the_attack_rule_crafts():
    pattern = re.compile(attack_pattern(oblivious_only=True))
    assert all(pattern.fullmatch(a) for a in PAPER_ATTACKS)
    assert not pattern.fullmatch("aa100")  # AutoAttack needs the defense: rule robust, not rule attack
    assert re.compile(attack_pattern()).fullmatch("aa100")
    assert ATTACKS["pgd"].craft is pgd


def test_robust_kinds_are_the_adaptive_kinds_of_the_robust_rule():
    assert tuple(ROBUST_KINDS) == ("autoattack_rand", "eot_pgd", "tramer", "autoattack_standard", "pgd_bare")
    assert [k for k, s in ADAPTIVE_KINDS.items() if s.rule == "robust"] == list(ROBUST_KINDS)
    assert [k for k, s in ADAPTIVE_KINDS.items() if s.rule == "adaptive"] == ["paper", "eot"]


@pytest.fixture
def fgsm_method(monkeypatch):
    """A new oblivious attack method (FGSM as one full-size PGD step), registered for one test."""
    monkeypatch.setattr(attack_specs, "ATTACKS", dict(ATTACKS))

    def fgsm(model, x, y, *, eps, step_size, steps, targeted, generator=None):
        return pgd(model, x, y, eps=eps, step_size=eps, steps=1, targeted=targeted, random_start=False)

    return register_attack(AttackSpec("fgsm", "fgsm", "FGSM", targetable=True, craft=fgsm))


def test_a_registered_attack_method_is_parsed_named_and_accepted_by_the_config_schema(fgsm_method, tmp_path):
    import yaml

    from mixup_inference.design.configcheck import validate_config

    from mixup_inference.report.tables import attack_display_name

    assert parse_attack("tfgsm1") == AttackName("fgsm", True, 1)
    assert parse_attack("fgsm1").spec.craft is fgsm_method.craft  # what run_attack crafts it with
    assert attack_display_name("tfgsm1") == "tFGSM1"  # the tables' and plots' column name
    assert re.compile(attack_pattern(oblivious_only=True)).fullmatch("fgsm1")
    schema = tmp_path / "schema.yaml"
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    schema.write_text((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = yaml.safe_load((repo / "config" / "smoke.yaml").read_text())
    config["attacks"]["names"] = [*config["attacks"]["names"], "fgsm1"]
    validate_config(config, schema)  # the schema's attack pattern comes from the registry
    config["attacks"]["names"].append("xyz1")
    with pytest.raises(ValueError, match="xyz1"):
        validate_config(config, schema)


def test_register_attack_refuses_a_clashing_prefix():
    with pytest.raises(ValueError, match="prefix"):
        register_attack(dataclasses.replace(ATTACKS["pgd"], method="pgd2"))
    with pytest.raises(ValueError, match="prefix"):
        register_attack(AttackSpec("tp", "tpgd", "x"))


def test_the_paper_adaptive_kinds_craft_with_their_functions():
    """Fig. 4's kinds dispatch through their spec (`fig4_craft`), any other kind is an error naming them."""
    assert fig4_craft("paper") is adaptive_pgd and fig4_craft("eot") is eot_pgd
    for kind in ("none", "autoattack_rand", "eot_pgd", "paperr"):
        with pytest.raises(ValueError, match="use one of paper, eot"):
            fig4_craft(kind)
