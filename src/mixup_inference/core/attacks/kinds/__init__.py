"""The attack kinds of the robustness evaluation (config ``robustness.kinds``), one spec per kind.

A kind is an attack of the robustness evaluation (the `robust` rule): through the whole randomized defense,
or, for a deterministic kind, against the bare model (defense ``none``) that findings compare each
defense with (`RobustKind.deterministic`, `.applies_to`: a robust job runs the kinds of its target). Its spec,
one `RobustKind` subclass in one file of this package, holds everything that used to sit in branches
on the kind's name: the keys it reads from the ``robustness:`` section and their JSON schema, its
runs at each budget level (how its budget doubles), its cost per attacked point, how to run it, its
family key and label in Fig. 5, its provenance text and its config checks. The planner
(design.plan.robust_runs), the robust job (jobs.robust), the config check, the plots and the
provenance ask the spec; an unknown kind is an error (`robust_kind`), never a fallback.

=======================  ========================================================  =======================
kind                     the attack                                                its config key
=======================  ========================================================  =======================
``autoattack_rand``      AutoAttack's rand protocol (APGD-CE, APGD-DLR + EOT)      ``autoattack``
``eot_pgd``              EOT PGD, steps and draws swept, untargeted/targeted       ``eot_pgd``
``tramer``               Tramer et al. 2020's PGD-50 through MI-OL (fixed)         (none)
``autoattack_standard``  bare model: AutoAttack standard (APGD-CE/-T, FAB-T, Sq.)  ``autoattack_standard``
``pgd_bare``             bare model: PGD at Tramer et al.'s step size 0.5/255      ``pgd_bare``
=======================  ========================================================  =======================

Adding a kind: one file here with a `RobustKind` subclass and ``register_kind(MyKind())`` (or the same
call at run time, e.g. in a test); README "Adding an attack kind to the robustness evaluation".
Registering it also adds it to `attacks.specs.ADAPTIVE_KINDS` (results.csv's ``adaptive`` column,
rule ``robust``), so the artifacts, the aggregate, the plots and the schema accept it.
"""

from __future__ import annotations

from .autoattack_rand import AutoAttackRand
from .autoattack_standard import AutoAttackStandard
from .base import ROBUST_KINDS, AttackInputs, RobustKind, RobustRun, register_kind, robust_kind
from .eot_pgd import EotPgd
from .pgd_bare import PgdBare
from .tramer import Tramer

__all__ = ["ROBUST_KINDS", "AttackInputs", "AutoAttackRand", "AutoAttackStandard", "EotPgd", "PgdBare", "RobustKind",
           "RobustRun", "Tramer", "register_kind", "robust_kind"]

# The built-in kinds, in the order the robust job lists them (and the report's).
register_kind(AutoAttackRand())
register_kind(EotPgd())
register_kind(Tramer())
register_kind(AutoAttackStandard())  # the bare model's (deterministic kinds)
register_kind(PgdBare())
