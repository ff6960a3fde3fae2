"""One spec per defense, and everything derived from the specs: the setting grammar, the checks,
the names, and the labels and colours the report draws.

A *setting* is the string form of a defense's parameters. It appears in file paths
(``results/<run>/<dataset>/<regime>/eval/<attack>/<defense>/<setting>.pt``) and in the
``setting`` column of ``results.csv``, so every setting has exactly one spelling:

=============  ==========================  ==============================================
defense        setting                     keyword arguments of the defense function
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

Numbers are written with ``format(value, "g")``. Formatting refuses values that "g" cannot write
exactly (more than six significant digits), and parsing refuses any string that is not the
canonical spelling of its value (``lam=0.50``, ``lam=.5``, keys out of order), so
``format_setting(d, parse_setting(d, s)) == s`` and ``parse_setting(d, format_setting(d, p)) == p``
always hold and one evaluation never lives under two paths.

Adding a defense: its function (tensors in, [B, C] averaged probabilities out, keyword arguments
``generator``, ``chunk_size``, ``grad``), and one `DefenseSpec` in `DEFENSES` below (or
`register_defense` at run time). The config schema's defense enums, the config checks, the
workflow's wildcards, the plots' labels and colours, the findings' baselines and the benchmark's
rows all read the registry.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .averaging import predict_probs
from .baselines import gaussian_noise, random_crop_pad, random_crop_resize, random_resize_pad, random_rotation
from .mi import mi_combined, mi_ol, mi_pl

__all__ = ["DEFENSES", "PARAM_RANGES", "PLAIN_SETTING", "SETTING_PATTERN", "DefenseSetting", "DefenseSpec", "Param",
           "apply_defense", "defense_spec", "format_setting", "parse_setting", "register_defense", "setting_param"]

#: The setting string of the undefended model.
PLAIN_SETTING = "plain"
# Joins the parts of a multi-parameter setting (mi_combined). Not a comma: a setting is a wildcard
# value, and Snakemake passes a job's wildcards to cluster jobs as `--target-jobs rule:k=v,k=v`,
# split on commas, so a comma inside a value breaks every remotely executed job (SLURM).
PART_SEPARATOR = "_"
#: Every non-plain setting string matches this (anchored) pattern: ``size=<int>-<int>`` or
#: ``key=<number>`` parts joined by PART_SEPARATOR. workflow/schemas/config.schema.yaml's
#: ``$defs.setting.pattern`` is exactly this string (a test checks it).
SETTING_PATTERN = r"^(size=[0-9]+-[0-9]+|[a-z]+=[0-9.eE+-]+(_[a-z]+=[0-9.eE+-]+)*)$"

#: A parameter's valid range -> (the range as a predicate, in words for error messages).
PARAM_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "ratio": (lambda v: 0.0 < v <= 1.0, "in (0, 1] (a mixup ratio)"),
    "prob": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (a difference of probabilities)"),
    "nonneg": (lambda v: v >= 0.0, ">= 0"),
    "degrees": (lambda v: 0.0 <= v <= 180.0, "in [0, 180] degrees"),
}


@dataclass(frozen=True)
class Param:
    """One scalar parameter of a defense: its keyword argument, its key in the setting string and
    its valid range (a key of PARAM_RANGES)."""

    kwarg: str
    key: str
    valid_range: str


@dataclass(frozen=True)
class DefenseSpec:
    """Everything the library, the workflow and the report know about one defense.

    Attributes:
        name: the name in configs, paths and results.csv.
        function: ``function(model, x[, pool_x, pool_y], *, <params>, [n_samples,] generator, chunk_size,
            grad)`` -> [B, C] probabilities averaged over the defense's random executions.
        label, color: how plots and tables show it (a matplotlib colour).
        params: its scalar parameters in setting order (``key=value`` parts joined by ``_``), or
        size_range: True for a ``size=<min>-<max>`` setting over (min_size, max_size) in pixels,
            each <= the image size.
        main_param: the kwarg plotted on Fig. 3b's x axis (`setting_param`); None for no defense.
        example: a valid setting (documentation, error messages, tests).
        needs_pool: takes the MI sample pool (pool_x, pool_y) after x.
        baseline: one of the paper's baseline input transformations (Tables 4/5), which the
            findings compare MI against.
        randomized: a random forward pass (every built-in defense but ``none``): what the paper's
            adaptive attack and the robustness evaluation attack; a registered defense is one unless
            it says otherwise.
    """

    name: str
    function: Callable[..., Tensor]
    label: str
    color: str
    params: tuple[Param, ...] = ()
    size_range: bool = False
    main_param: str | None = None
    example: str = PLAIN_SETTING
    needs_pool: bool = False
    baseline: bool = False
    randomized: bool = True

    @property
    def kwargs(self) -> tuple[str, ...]:
        """The keyword arguments a setting holds, in setting order."""
        return ("min_size", "max_size") if self.size_range else tuple(p.kwarg for p in self.params)

    @property
    def takes_n_samples(self) -> bool:
        return "n_samples" in inspect.signature(self.function).parameters

    def __call__(self, *args, **kwargs) -> Tensor:
        """The defense itself: ``DEFENSES["mi_ol"](model, x, pool_x, pool_y, lam=0.5, n_samples=30)``."""
        return self.function(*args, **kwargs)


def _no_defense(model: nn.Module, x: Tensor, *, generator: torch.Generator | None = None,
                chunk_size: int | None = None, grad: bool = False) -> Tensor:
    """`predict_probs` with the common keyword interface of DEFENSES (generator is unused)."""
    return predict_probs(model, x, chunk_size=chunk_size, grad=grad)


_LAM = (Param("lam", "lam", "ratio"),)

#: Name -> spec, in the order plots and tables list them.
DEFENSES: dict[str, DefenseSpec] = {spec.name: spec for spec in (
    DefenseSpec("none", _no_defense, "no defense", "0.3", randomized=False),
    DefenseSpec("mi_pl", mi_pl, "MI-PL", "C0", _LAM, main_param="lam", example="lam=0.5", needs_pool=True),
    DefenseSpec("mi_ol", mi_ol, "MI-OL", "C3", _LAM, main_param="lam", example="lam=0.5", needs_pool=True),
    DefenseSpec("mi_combined", mi_combined, "MI-Combined", "C4",
                (Param("lam_pl", "pl", "ratio"), Param("lam_ol", "ol", "ratio"), Param("threshold", "th", "prob")),
                main_param="lam_ol", example="pl=0.5_ol=0.4_th=0.2", needs_pool=True),
    DefenseSpec("gaussian", gaussian_noise, "Gaussian noise", "C1", (Param("sigma", "sigma", "nonneg"),),
                main_param="sigma", example="sigma=0.04", baseline=True),
    DefenseSpec("rotation", random_rotation, "Random rotation", "C2", (Param("max_degrees", "deg", "degrees"),),
                main_param="max_degrees", example="deg=40", baseline=True),
    DefenseSpec("xie", random_crop_pad, "Xie et al.", "C5", size_range=True, main_param="min_size",
                example="size=16-24", baseline=True),
    DefenseSpec("xie_resize", random_resize_pad, "Xie et al. (resize)", "C8", size_range=True,
                main_param="min_size", example="size=16-24", baseline=True),
    DefenseSpec("guo", random_crop_resize, "Guo et al.", "C6", size_range=True, main_param="min_size",
                example="size=22-30", baseline=True),
)}


def register_defense(spec: DefenseSpec) -> DefenseSpec:
    """Add a defense to the registry (for a researcher's own defense; the built-in ones are above).
    Its example must parse, so its grammar is checked here, once."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name) or spec.name in DEFENSES:
        raise ValueError(f"defense name {spec.name!r} must be new and lower_snake_case")
    DEFENSES[spec.name] = spec
    try:
        parse_setting(spec.name, spec.example)
    except ValueError:
        del DEFENSES[spec.name]
        raise
    return spec


def defense_spec(defense: str) -> DefenseSpec:
    """The spec of `defense`; ValueError naming the known ones otherwise."""
    try:
        return DEFENSES[defense]
    except (KeyError, TypeError):
        raise ValueError(f"defense={defense!r} is unknown; use one of {', '.join(DEFENSES)}") from None


def _check_value(defense: str, name: str, value: float, valid_range: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{defense} {name}={value!r} must be a finite number")
    valid, words = PARAM_RANGES[valid_range]
    if not valid(value):
        raise ValueError(f"{defense} {name}={value:g} must lie {words}" if words.startswith("in")
                         else f"{defense} {name}={value:g} must be {words}")


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


def _check_sizes(defense: str, min_size: int, max_size: int, image_size: int | None = None) -> None:
    top = image_size if image_size is not None else max_size
    if not 1 <= min_size <= max_size <= top:
        limit = f"<= image size ({image_size})" if image_size is not None else ""
        raise ValueError(f"{defense} sizes {min_size}-{max_size} must satisfy 1 <= min_size <= max_size {limit}".rstrip())


def format_setting(defense: str, params: dict) -> str:
    """The canonical setting string of ``defense`` called with keyword arguments ``params``.

    ``params`` must hold exactly the defense's setting kwargs (see the module table), e.g.
    ``format_setting("mi_combined", {"lam_pl": 0.5, "lam_ol": 0.4, "threshold": 0.2})``
    returns ``"pl=0.5_ol=0.4_th=0.2"`` and ``format_setting("none", {})`` returns ``"plain"``.
    """
    spec = defense_spec(defense)
    if set(params) != set(spec.kwargs):
        raise ValueError(
            f"params for defense {defense!r} must have exactly the keys {list(spec.kwargs)}, got {sorted(params)}"
        )
    if spec.size_range:
        sizes = []
        for name in spec.kwargs:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
                raise ValueError(f"{defense} {name}={value!r} must be an integer number of pixels")
            sizes.append(int(value))
        _check_sizes(defense, *sizes)
        return f"size={sizes[0]}-{sizes[1]}"
    if not spec.params:
        return PLAIN_SETTING
    parts = []
    for param in spec.params:
        text = _format_number(defense, param.kwarg, params[param.kwarg])
        _check_value(defense, param.kwarg, float(text), param.valid_range)
        parts.append(f"{param.key}={text}")
    return PART_SEPARATOR.join(parts)


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


def parse_setting(defense: str, setting: str, *, image_size: int | None = None) -> dict:
    """The defense's keyword arguments encoded by the canonical ``setting`` string.

    ``parse_setting("mi_ol", "lam=0.5") == {"lam": 0.5}``; ``parse_setting("xie", "size=16-24") ==
    {"min_size": 16, "max_size": 24}``; ``parse_setting("none", "plain") == {}``. Raises ValueError on
    any other spelling (unknown keys, wrong order, non-canonical numbers, values outside their valid
    range; with `image_size`, sizes larger than the image).
    """
    spec = defense_spec(defense)
    if not isinstance(setting, str):
        raise ValueError(f"setting={setting!r} must be a string such as {spec.example!r}")
    bad = f"setting {setting!r} is malformed for defense {defense!r}; expected the form {spec.example!r}"
    if spec.size_range:
        match = re.fullmatch(r"size=([0-9]+)-([0-9]+)", setting)
        if match is None:
            raise ValueError(bad)
        low, high = (int(group) for group in match.groups())
        if f"size={low}-{high}" != setting:
            raise ValueError(f"{bad} (no leading zeros)")
        _check_sizes(defense, low, high, image_size)
        return {"min_size": low, "max_size": high}
    if not spec.params:
        if setting != PLAIN_SETTING:
            raise ValueError(bad)
        return {}
    parts = setting.split(PART_SEPARATOR)
    if len(parts) != len(spec.params):
        raise ValueError(bad)
    params = {}
    for part, param in zip(parts, spec.params):
        name, sep, text = part.partition("=")
        if not sep or name != param.key:
            raise ValueError(bad)
        value = _parse_number(defense, setting, text)
        _check_value(defense, param.kwarg, value, param.valid_range)
        params[param.kwarg] = value
    return params


def setting_param(defense: str, setting: str) -> float:
    """The setting's main scalar (`DefenseSpec.main_param`), the x coordinate of Fig. 3b: lam for
    MI-PL/MI-OL, lam_ol for MI-Combined, sigma for Gaussian noise, max degrees for rotation, the
    lower size for Xie/Guo; NaN for no defense."""
    params = parse_setting(defense, setting)
    main = DEFENSES[defense].main_param
    return math.nan if main is None else float(params[main])


@dataclass(frozen=True)
class DefenseSetting:
    """A defense with its setting string parsed once, callable like `apply_defense` (for a caller that
    runs the same setting many times, e.g. an attack step after step).

    Attributes:
        spec: the defense's spec.  setting: its canonical setting string.
        params: the keyword arguments the setting encodes (`parse_setting`).
    """

    spec: DefenseSpec
    setting: str
    params: dict

    @classmethod
    def parse(cls, defense: str, setting: str) -> DefenseSetting:
        """ValueError for an unknown defense or a malformed setting (see `parse_setting`)."""
        return cls(defense_spec(defense), setting, parse_setting(defense, setting))

    def __call__(self, model: nn.Module, x: Tensor, *, pool: tuple[Tensor, Tensor], n_samples: int,
                 chunk_size: int | None, generator: torch.Generator | None, grad: bool = False,
                 plain: Tensor | None = None, groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """The defense's averaged softmax on x: see `apply_defense`."""
        spec, kwargs = self.spec, dict(self.params)
        args = (model, x, *pool) if spec.needs_pool else (model, x)
        if spec.takes_n_samples:
            kwargs["n_samples"] = n_samples
        if spec.needs_pool:
            kwargs.update(plain=plain, groups=groups)
        return spec.function(*args, **kwargs, generator=generator, chunk_size=chunk_size, grad=grad)


def apply_defense(model: nn.Module, x: Tensor, defense: str, setting: str, *, pool: tuple[Tensor, Tensor],
                  n_samples: int, chunk_size: int | None, generator: torch.Generator | None,
                  grad: bool = False, plain: Tensor | None = None,
                  groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Averaged softmax of `defense` with its canonical `setting` on inputs x.

    Pool defenses get the MI pool, and every defense that takes `n_samples` gets N = n_samples
    (MI-Combined's 5 + 15 executions are its own). `grad=True`: differentiable in x (see
    averaging.averaged_softmax). `plain`: the model's plain softmax on x when the caller has it
    (MI's predicted label and MI-Combined's switch use it, never differentiated); `groups`: the
    pool's class groups (see defenses.mixup_inference); defenses without the pool ignore both.
    A caller running one setting many times parses it once: `DefenseSetting.parse(defense, setting)`."""
    return DefenseSetting.parse(defense, setting)(model, x, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                                                  generator=generator, grad=grad, plain=plain, groups=groups)
