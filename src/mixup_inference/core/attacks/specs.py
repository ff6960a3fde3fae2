"""One spec per attack, and the attack names derived from the specs.

An attack *name* appears in file paths (``attacks/<name>.pt``), in the ``attack`` column of
results.csv and in configs. It reads ``[t]<prefix><steps>``: ``pgd10`` (untargeted L-inf PGD, 10
steps), ``tpgd50`` (targeted), ``aa100`` (AutoAttack's rand protocol, 100 iterations), or ``clean``
(no attack). `parse_attack` turns a name into an `AttackName` (method, targeted, steps) and
`AttackName.name` back, so each attack has one spelling.

How an attack sees the defense is its *attack kind* (README "Glossary"; results.csv's ``adaptive``
column), one `AdaptiveSpec` each:

========================  =========================================================  ==============
kind                      the attack                                                 rule
========================  =========================================================  ==============
``none``                  oblivious: crafted on the bare model                       attack
``paper``                 the paper's adaptive PGD on MI's mixed copies (App. B.2)   adaptive
``eot``                   EOT PGD on MI's mixed copies (`pgd.eot_pgd`)               adaptive
(each robustness kind)    through the whole defense (`core.attacks.kinds`)           robust
========================  =========================================================  ==============

The robustness evaluation's kinds (``autoattack_rand``, ``eot_pgd``, ``tramer``, and any registered at
run time) are specs of `core.attacks.kinds`, which adds each to ADAPTIVE_KINDS when it registers it;
importing the core layer registers the built-in ones (core/__init__.py), so every reader sees them.

Adding an attack method: its function (in pgd.py or defended.py) and one spec below (or
`register_attack` at run time); the config schema's name pattern, the workflow's wildcard, the
tables' column names and the config checks derive from the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from .pgd import adaptive_pgd, eot_pgd, pgd

__all__ = ["ADAPTIVE_KINDS", "ATTACKS", "PAPER_ATTACKS", "AdaptiveSpec", "AttackName", "AttackSpec",
           "attack_pattern", "fig4_craft", "parse_attack", "register_attack"]


@dataclass(frozen=True)
class AttackSpec:
    """An attack method (clean, PGD, AutoAttack): what an attack name's prefix names.

    Attributes:
        method: its key in ATTACKS.
        prefix: names are ``[t]<prefix><steps>``; None for ``clean`` (the one fixed name).
        label: how tables and plots write it (``PGD``, ``AutoAttack``); a targeted name adds a ``t``.
        targetable: a ``t`` before the prefix names its targeted form.
        craft: for an oblivious attack (crafted on the bare model by the `attack` rule):
            ``craft(model, x, labels, *, eps, step_size, steps, targeted, generator)`` -> x_adv;
            None for attacks that need the defense (`robust` rule) and for ``clean``.
    """

    method: str
    prefix: str | None
    label: str
    targetable: bool = False
    craft: Callable[..., Tensor] | None = None


@dataclass(frozen=True)
class AttackName:
    """A parsed attack name: ``parse_attack("tpgd10") == AttackName("pgd", True, 10)``."""

    method: str
    targeted: bool
    steps: int

    def __post_init__(self) -> None:
        if self.method not in ATTACKS:
            raise ValueError(f"attack method {self.method!r} is unknown; use one of {', '.join(ATTACKS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps={self.steps!r} must be a non-negative int (0 means the clean inputs)")
        if (self.steps == 0) != (ATTACKS[self.method].prefix is None):
            raise ValueError(f"a {self.method} attack needs {'0 steps' if self.steps else 'steps >= 1'} "
                             f"(got {self.steps}); 0 steps is the clean input")
        if self.targeted and not ATTACKS[self.method].targetable:
            raise ValueError(f"targeted=True is not a form of the {self.method} attack; "
                             f"targetable methods: {', '.join(k for k, s in ATTACKS.items() if s.targetable)}")

    @property
    def spec(self) -> AttackSpec:
        return ATTACKS[self.method]

    @property
    def name(self) -> str:
        """The canonical name (inverse of `parse_attack`)."""
        spec = self.spec
        return "clean" if spec.prefix is None else f"{'t' if self.targeted else ''}{spec.prefix}{self.steps}"

    @property
    def display(self) -> str:
        """The name as the paper's tables write it: ``Clean``, ``PGD10``, ``tPGD50``, ``AutoAttack100``."""
        return "Clean" if self.spec.prefix is None else f"{'t' if self.targeted else ''}{self.spec.label}{self.steps}"


#: Method -> spec. `clean` and `pgd` are what the `attack` rule crafts (config attacks.names).
ATTACKS: dict[str, AttackSpec] = {spec.method: spec for spec in (
    AttackSpec("clean", None, "Clean"),
    AttackSpec("pgd", "pgd", "PGD", targetable=True, craft=pgd),
    AttackSpec("autoattack", "aa", "AutoAttack"),
)}

#: The oblivious attacks of the paper's Tables 2 and 3, in the paper's column order.
PAPER_ATTACKS: tuple[str, ...] = ("clean", "pgd10", "pgd50", "pgd200", "tpgd10", "tpgd50", "tpgd200")


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add an attack method (a researcher's own); its prefix must not clash with another's."""
    prefixes = {s.prefix for s in ATTACKS.values()}
    if spec.method in ATTACKS or not spec.prefix or not re.fullmatch(r"[a-z]+", spec.prefix) or spec.prefix in prefixes \
            or ("t" + spec.prefix) in prefixes or any(p and ("t" + p) == spec.prefix for p in prefixes):
        raise ValueError(f"attack method {spec.method!r} with prefix {spec.prefix!r} must be new and not clash with "
                         f"the prefixes {sorted(p for p in prefixes if p)}")
    ATTACKS[spec.method] = spec
    return spec


def attack_pattern(oblivious_only: bool = False) -> str:
    """The regular expression (unanchored) of every attack name; with `oblivious_only`, of the names
    the `attack` rule crafts (clean and the methods with a `craft`). The workflow's wildcard and the
    config schema's name patterns are built from it."""
    parts = []
    for spec in ATTACKS.values():
        if oblivious_only and spec.prefix is not None and spec.craft is None:
            continue
        parts.append("clean" if spec.prefix is None else f"{'t?' if spec.targetable else ''}{spec.prefix}[1-9][0-9]*")
    return "|".join(parts)


def parse_attack(name: str) -> AttackName:
    """The `AttackName` of ``name``: ``"clean"`` -> (clean, False, 0), ``"pgd10"`` -> (pgd, False, 10),
    ``"tpgd50"`` -> (pgd, True, 50), ``"aa100"`` -> (autoattack, False, 100). Steps are a positive
    integer without leading zeros; anything else is a ValueError naming the forms."""
    if name == "clean":
        return AttackName("clean", False, 0)
    if isinstance(name, str):
        for spec in ATTACKS.values():
            if spec.prefix is None:
                continue
            match = re.fullmatch(rf"({'t?' if spec.targetable else ''}){spec.prefix}([1-9][0-9]*)", name)
            if match:
                return AttackName(spec.method, match.group(1) == "t", int(match.group(2)))
    forms = ", ".join(["'clean'"] + [f"'{'[t]' if s.targetable else ''}{s.prefix}<steps>'"
                                     for s in ATTACKS.values() if s.prefix])
    raise ValueError(f"attack={name!r} is malformed; use {forms} (e.g. 'tpgd10')")


@dataclass(frozen=True)
class AdaptiveSpec:
    """An attack kind: how an attack sees the defense (results.csv's ``adaptive`` column).

    Attributes:
        kind: the column's value.  label: how Fig. 4 and findings name it.
        rule: the workflow rule whose jobs run it (``attack``: oblivious examples, evaluated by
            ``evaluate``; ``adaptive``: the paper's adaptive attack of Fig. 4 on MI's mixed copies, the
            config's ``adaptive:`` section; ``robust``: the robustness evaluation, through the whole
            defense, the config's ``robustness:`` section).
        craft: for a kind of the ``adaptive`` rule, ``craft(model, x, y, pool_x, pool_y, *, lam, mode,
            n_adaptive, eps, step_size, steps, targeted, generator)`` -> x_adv; None for the others
            (the ``robust`` rule's kinds craft through their `core.attacks.kinds` spec).
    """

    kind: str
    label: str
    rule: str
    craft: Callable[..., Tensor] | None = None


#: Kind -> spec, in the order the report lists them; core.attacks.kinds.register_kind adds the robust kinds.
ADAPTIVE_KINDS: dict[str, AdaptiveSpec] = {spec.kind: spec for spec in (
    AdaptiveSpec("none", "oblivious", "attack"),
    AdaptiveSpec("paper", "adaptive PGD (paper, Eq. 24)", "adaptive", craft=adaptive_pgd),
    AdaptiveSpec("eot", "EOT PGD", "adaptive", craft=eot_pgd),
)}


def fig4_craft(kind: str) -> Callable[..., Tensor]:
    """The function that crafts the paper's adaptive attack (Fig. 4, rule ``adaptive``) of attack kind
    `kind` (config ``adaptive.kinds``); a ValueError naming the kinds of that rule otherwise."""
    spec = ADAPTIVE_KINDS.get(kind)
    if spec is None or spec.rule != "adaptive" or spec.craft is None:
        raise ValueError(f"attack kind {kind!r} is not one of the paper's adaptive attack (Fig. 4); use one of "
                         f"{', '.join(k for k, s in ADAPTIVE_KINDS.items() if s.rule == 'adaptive')}")
    return spec.craft
