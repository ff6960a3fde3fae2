"""The attack kinds of the robustness evaluation (config ``robustness.kinds``), one spec per kind.

A kind is an attack that runs through the whole randomized defense (the `robust` rule). Its spec,
one `RobustKind` subclass in one file of this package, holds everything that used to sit in branches
on the kind's name: the keys it reads from the ``robustness:`` section and their JSON schema, its
runs at each budget level (how its budget doubles), its cost per attacked point, how to run it, its
family key and label in Fig. 5, its provenance text and its config checks. The planner
(design.plan.robust_runs), the robust job (jobs.robust), the config check, the plots and the
provenance ask the spec; an unknown kind is an error (`robust_kind`), never a fallback.

=====================  ====================================================  =================
kind                   the attack                                            its config key
=====================  ====================================================  =================
``autoattack_rand``    AutoAttack's rand protocol (APGD-CE, APGD-DLR + EOT)  ``autoattack``
``eot_pgd``            EOT PGD, steps and draws swept, untargeted/targeted   ``eot_pgd``
``tramer``             Tramer et al. 2020's PGD-50 through MI-OL (fixed)     (none)
=====================  ====================================================  =================

Adding a kind: one file here with a `RobustKind` subclass and ``register_kind(MyKind())`` (or the same
call at run time, e.g. in a test); README "Adding an attack kind to the robustness evaluation".
Registering it also adds it to `attacks.specs.ADAPTIVE_KINDS` (results.csv's ``adaptive`` column,
rule ``robust``), so the artifacts, the aggregate, the plots and the schema accept it.
"""

from __future__ import annotations

from .autoattack_rand import AutoAttackRand
from .base import ROBUST_KINDS, AttackInputs, RobustKind, RobustRun, register_kind, robust_kind
from .eot_pgd import EotPgd
from .tramer import Tramer

__all__ = ["ROBUST_KINDS", "AttackInputs", "AutoAttackRand", "EotPgd", "RobustKind", "RobustRun", "Tramer",
           "register_kind", "robust_kind"]

# The built-in kinds, in the order the robust job lists them (and the report's).
register_kind(AutoAttackRand())
register_kind(EotPgd())
register_kind(Tramer())
