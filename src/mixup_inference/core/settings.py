"""Canonical names of defense settings and attacks: the one place that maps them to strings and back.

A *setting* is the string form of a defense's parameters. It appears in file paths
(``results/<run>/<dataset>/<regime>/eval/<attack>/<defense>/<setting>.pt``) and in the
``setting`` column of ``results.csv``, so every setting has exactly one spelling:

=============  ==========================  ==============================================
defense        setting                     keyword arguments of the defense (defenses.py)
=============  ==========================  ==============================================
none           ``plain``                   ``{}``
mi_pl, mi_ol   ``lam=0.5``                 ``{"lam": 0.5}``
mi_combined    ``pl=0.5_ol=0.4_th=0.2``    ``{"lam_pl": 0.5, "lam_ol": 0.4, "threshold": 0.2}``
gaussian       ``sigma=0.04``              ``{"sigma": 0.04}`` (the paper's Table 4 number: a std on
                                           the authors' [-1, 1] image scale, i.e. noise of std
                                           sigma / 2 on [0, 1] pixels, not clamped)
rotation       ``deg=40``                  ``{"max_degrees": 40.0}`` (angles in [-40, 40])
xie, guo,      ``size=16-24``              ``{"min_size": 16, "max_size": 24}`` (pixels; xie: crop
xie_resize                                 and zero-pad, the paper's; xie_resize: resize and pad)
=============  ==========================  ==============================================

The grammar is :data:`SETTING_PATTERN` (a regular expression): the config schema's ``setting``
pattern is this string (a test checks it), so any setting this module formats is a valid config value.

Numbers are written with ``format(value, "g")``. Formatting refuses values that "g" cannot write
exactly (more than six significant digits), and parsing refuses any string that is not the
canonical spelling of its value (``lam=0.50``, ``lam=.5``, keys out of order), so
``format_setting(d, parse_setting(d, s)) == s`` and ``parse_setting(d, format_setting(d, p)) == p``
always hold and one evaluation never lives under two paths.

Attacks are named ``clean``, ``pgd{steps}`` (untargeted L-inf PGD) and ``tpgd{steps}`` (targeted).
"""

from __future__ import annotations

import math
import re

__all__ = [
    "ATTACKS",
    "DEFENSE_NAMES",
    "PLAIN_SETTING",
    "ROBUST_KINDS",
    "SETTING_PATTERN",
    "attack_name",
    "format_setting",
    "parse_attack",
    "parse_setting",
    "setting_param",
]

#: Every defense name: the one list the workflow's `defense` wildcard is built from. Adding a defense:
#: its name here, its function in `defenses.DEFENSES`, its setting grammar below; then
#: tests/test_registry.py says whether the schema's enum and every table agree.
DEFENSE_NAMES: tuple[str, ...] = ("none", "mi_pl", "mi_ol", "mi_combined", "gaussian", "rotation", "xie",
                                   "xie_resize", "guo")

#: The setting string of the undefended model.
PLAIN_SETTING = "plain"
# Joins the parts of a multi-parameter setting (mi_combined). Not a comma: a setting is a wildcard
# value, and Snakemake passes a job's wildcards to cluster jobs as `--target-jobs rule:k=v,k=v`,
# split on commas, so a comma inside a value breaks every remotely executed job (SLURM).
PART_SEPARATOR = "_"
#: Every non-plain setting string matches this (anchored) pattern: ``size=<int>-<int>`` or
#: ``key=<number>`` parts joined by PART_SEPARATOR. workflow/schemas/config.schema.yaml's
#: ``$defs.setting.pattern`` is exactly this string (tests/test_settings.py checks it).
SETTING_PATTERN = r"^(size=[0-9]+-[0-9]+|[a-z]+=[0-9.eE+-]+(_[a-z]+=[0-9.eE+-]+)*)$"

#: The attack kinds of the config's `robustness:` section (adaptive.py): AutoAttack's rand protocol and
#: EOT PGD. An artifact's meta ``adaptive`` names its kind; their presence for a defense setting asks
#: for its worst-case row (aggregate.worst_case_rows).
ROBUST_KINDS: tuple[str, ...] = ("autoattack_rand", "eot_pgd")

#: The oblivious attacks of the paper's Tables 2 and 3, in the paper's column order.
ATTACKS: tuple[str, ...] = ("clean", "pgd10", "pgd50", "pgd200", "tpgd10", "tpgd50", "tpgd200")

# Per defense: (setting key, kwarg name, kind) for each scalar, in canonical order.
# kind "unit": in (0, 1]; "nonneg": >= 0; "prob": in [0, 1]; "size": an integer >= 1.
_SCALARS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "mi_pl": (("lam", "lam", "unit"),),
    "mi_ol": (("lam", "lam", "unit"),),
    "mi_combined": (("pl", "lam_pl", "unit"), ("ol", "lam_ol", "unit"), ("th", "threshold", "prob")),
    "gaussian": (("sigma", "sigma", "nonneg"),),
    "rotation": (("deg", "max_degrees", "nonneg"),),
}
_SIZE_DEFENSES = ("xie", "xie_resize", "guo")
# The kwarg that setting_param reports for each defense (the scalar plotted in Fig. 3b).
_MAIN_PARAM = {
    "mi_pl": "lam",
    "mi_ol": "lam",
    "mi_combined": "lam_ol",
    "gaussian": "sigma",
    "rotation": "max_degrees",
    "xie": "min_size",
    "xie_resize": "min_size",
    "guo": "min_size",
}

_ATTACK_RE = re.compile(r"(t?)pgd([1-9][0-9]*)")


def _check_defense(defense: str) -> None:
    if defense not in DEFENSE_NAMES:
        raise ValueError(f"defense={defense!r} is unknown; use one of {', '.join(DEFENSE_NAMES)}")


def _kwarg_names(defense: str) -> tuple[str, ...]:
    if defense == "none":
        return ()
    if defense in _SIZE_DEFENSES:
        return ("min_size", "max_size")
    return tuple(kwarg for _key, kwarg, _kind in _SCALARS[defense])


def _check_value(defense: str, name: str, value: float, kind: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{defense} {name}={value!r} must be a finite number")
    if kind == "unit" and not 0.0 < value <= 1.0:
        raise ValueError(f"{defense} {name}={value:g} must lie in (0, 1] (a mixup ratio)")
    if kind == "prob" and not 0.0 <= value <= 1.0:
        raise ValueError(f"{defense} {name}={value:g} must lie in [0, 1] (a difference of probabilities)")
    if kind == "nonneg" and value < 0.0:
        raise ValueError(f"{defense} {name}={value:g} must be >= 0")


def _format_number(defense: str, name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{defense} {name}={value!r} must be a number")
    value = float(value) + 0.0  # +0.0 turns -0.0 into 0.0
    text = format(value, "g")
    if float(text) != value:
        raise ValueError(
            f"{defense} {name}={value!r} cannot be written exactly with format(v, 'g') (6 significant "
            f"digits); round it, e.g. to {text}"
        )
    return text


def format_setting(defense: str, params: dict) -> str:
    """The canonical setting string of ``defense`` called with keyword arguments ``params``.

    ``params`` must hold exactly the defense's setting kwargs (see the module table), e.g.
    ``format_setting("mi_combined", {"lam_pl": 0.5, "lam_ol": 0.4, "threshold": 0.2})``
    returns ``"pl=0.5_ol=0.4_th=0.2"`` and ``format_setting("none", {})`` returns ``"plain"``.
    """
    _check_defense(defense)
    expected = _kwarg_names(defense)
    if set(params) != set(expected):
        raise ValueError(
            f"params for defense {defense!r} must have exactly the keys {list(expected)}, got {sorted(params)}"
        )
    if defense == "none":
        return PLAIN_SETTING
    if defense in _SIZE_DEFENSES:
        sizes = []
        for name in expected:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
                raise ValueError(f"{defense} {name}={value!r} must be an integer number of pixels")
            sizes.append(int(value))
        _check_sizes(defense, *sizes)
        return f"size={sizes[0]}-{sizes[1]}"
    parts = []
    for key, kwarg, kind in _SCALARS[defense]:
        text = _format_number(defense, kwarg, params[kwarg])
        _check_value(defense, kwarg, float(text), kind)
        parts.append(f"{key}={text}")
    return PART_SEPARATOR.join(parts)


def _check_sizes(defense: str, min_size: int, max_size: int) -> None:
    if not 1 <= min_size <= max_size:
        raise ValueError(f"{defense} sizes {min_size}-{max_size} must satisfy 1 <= min_size <= max_size")


def _parse_number(defense: str, setting: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"setting {setting!r} for defense {defense!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"setting {setting!r} for defense {defense!r}: {text!r} must be a finite number")
    if format(value + 0.0, "g") != text:
        raise ValueError(
            f"setting {setting!r} for defense {defense!r} is not canonical: write numbers with format(v, 'g'), "
            f"e.g. {format(value + 0.0, 'g')!r} instead of {text!r}"
        )
    return value + 0.0


def _example(defense: str) -> str:
    return {
        "none": "plain",
        "mi_pl": "lam=0.5",
        "mi_ol": "lam=0.5",
        "mi_combined": "pl=0.5_ol=0.4_th=0.2",
        "gaussian": "sigma=0.04",
        "rotation": "deg=40",
        "xie": "size=16-24",
        "xie_resize": "size=16-24",
        "guo": "size=22-30",
    }[defense]


def parse_setting(defense: str, setting: str) -> dict:
    """The defense's keyword arguments encoded by the canonical ``setting`` string.

    ``parse_setting("mi_ol", "lam=0.5") == {"lam": 0.5}``; ``parse_setting("xie", "size=16-24") ==
    {"min_size": 16, "max_size": 24}``; ``parse_setting("none", "plain") == {}``. Raises ValueError on
    any other spelling (unknown keys, wrong order, non-canonical numbers, out-of-range values).
    """
    _check_defense(defense)
    if not isinstance(setting, str):
        raise ValueError(f"setting={setting!r} must be a string such as {_example(defense)!r}")
    bad = f"setting {setting!r} is malformed for defense {defense!r}; expected the form {_example(defense)!r}"
    if defense == "none":
        if setting != PLAIN_SETTING:
            raise ValueError(bad)
        return {}
    if defense in _SIZE_DEFENSES:
        match = re.fullmatch(r"size=([0-9]+)-([0-9]+)", setting)
        if match is None:
            raise ValueError(bad)
        low, high = (int(group) for group in match.groups())
        if f"size={low}-{high}" != setting:
            raise ValueError(f"{bad} (no leading zeros)")
        _check_sizes(defense, low, high)
        return {"min_size": low, "max_size": high}
    spec = _SCALARS[defense]
    parts = setting.split(PART_SEPARATOR)
    if len(parts) != len(spec):
        raise ValueError(bad)
    params = {}
    for part, (key, kwarg, kind) in zip(parts, spec):
        name, sep, text = part.partition("=")
        if not sep or name != key:
            raise ValueError(bad)
        value = _parse_number(defense, setting, text)
        _check_value(defense, kwarg, value, kind)
        params[kwarg] = value
    return params


def setting_param(defense: str, setting: str) -> float:
    """The setting's main scalar, used as the x coordinate/annotation in plots.

    lam for MI-PL/MI-OL, lam_ol for MI-Combined, sigma for Gaussian noise, max degrees for rotation,
    the lower size for Xie/Guo (and xie_resize), NaN for no defense.
    """
    params = parse_setting(defense, setting)
    if defense == "none":
        return math.nan
    return float(params[_MAIN_PARAM[defense]])


def parse_attack(name: str) -> tuple[bool, int]:
    """``(targeted, steps)`` of an attack name: ``"clean"`` -> (False, 0), ``"pgd10"`` -> (False, 10),
    ``"tpgd50"`` -> (True, 50). Steps must be a positive integer without leading zeros."""
    if name == "clean":
        return False, 0
    match = _ATTACK_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"attack={name!r} is malformed; use 'clean', 'pgd<steps>' or 'tpgd<steps>' (e.g. 'tpgd10')")
    return match.group(1) == "t", int(match.group(2))


def attack_name(targeted: bool, steps: int) -> str:
    """Inverse of :func:`parse_attack`: ``attack_name(False, 0) == "clean"``, ``attack_name(True, 10) ==
    "tpgd10"``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative int (0 means the clean inputs)")
    if steps == 0:
        if targeted:
            raise ValueError("targeted=True needs steps >= 1: a targeted attack with 0 steps is not an attack")
        return "clean"
    return f"{'t' if targeted else ''}pgd{steps}"
