"""The training study's design (config ``study:``): which models it trains and how each is trained.

The study (issue 35) asks what MI's gain follows: the training seed, the training length and the
robust-training recipe. Each of its models is one :class:`StudyModel` (regime, recipe, epochs, training
seed). A recipe is a set of overrides of the preset's training of a regime (``study.recipes``; ``{}``
is the preset's own), so a study model differs from the run's model of its regime only in what its
name says. A study model is a model of the run like the four regimes' (the workflow's ``{regime}``
wildcard names models): its name is ``<regime>-<recipe>-e<epochs>-s<seed>`` (``mixup-preset-e80-s0``),
except that the run's seed with the preset's recipe at the preset's epochs *is* the run's model, named
by its regime (``mixup``), so the study reads it from the run instead of training it twice
(:func:`is_run_model`, :func:`model_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re

__all__ = ["StudyModel", "is_run_model", "model_name", "model_training", "parse_model_name", "regime_training",
           "study_models", "study_training"]

_NAME = re.compile(r"(?P<regime>[a-z_]+)-(?P<recipe>[a-z0-9][a-z0-9_]*)-e(?P<epochs>[1-9][0-9]*)-s(?P<seed>[0-9]+)")


@dataclass(frozen=True, order=True)
class StudyModel:
    """One model of the study; ``name`` is its folder under results/<run>/<dataset>/study/."""

    regime: str
    recipe: str
    epochs: int
    seed: int

    @property
    def name(self) -> str:
        """Its model name (results/<run>/<dataset>/<name>/) when it is not the run's own model."""
        return f"{self.regime}-{self.recipe}-e{self.epochs}-s{self.seed}"


def parse_model_name(name: str) -> StudyModel | None:
    """The study model a model name denotes (``mixup-preset-e80-s0``), None for any other name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return StudyModel(match["regime"], match["recipe"], int(match["epochs"]), int(match["seed"]))


def study_models(config: dict[str, Any]) -> list[StudyModel]:
    """Every model ``study.models`` lists, in the config's order (the order a background run trains them),
    each once."""
    seen: dict[StudyModel, None] = {}
    for regime, recipe, epochs, seeds in (config.get("study") or {}).get("models", []):
        for seed in seeds:
            seen.setdefault(StudyModel(regime, recipe, int(epochs), int(seed)))
    return list(seen)


def regime_training(config: dict[str, Any], regime: str) -> dict[str, Any]:
    """The resolved training config of one regime of the preset: the shared keys, then the regime's overrides
    (what the train rule trains)."""
    shared = {k: v for k, v in config["training"].items() if k not in ("at", "regimes")}
    at = config["training"]["at"]
    shared.update(at_eps=at["eps"], at_step_size=at["step_size"], at_steps=at["steps"])
    shared.update(config["training"]["regimes"].get(regime, {}))
    shared.update(regime=regime, seed=config["seed"])
    return shared


def study_training(config: dict[str, Any], model: StudyModel) -> dict[str, Any]:
    """The training config of a study model: its regime's preset training, the recipe's overrides, its
    epochs and its seed."""
    recipes = config["study"]["recipes"]
    if model.recipe not in recipes:
        raise ValueError(f"study: recipe {model.recipe!r} is not under study.recipes "
                         f"(known: {', '.join(sorted(recipes))}); add it there or fix the model's recipe")
    return {**regime_training(config, model.regime), **recipes[model.recipe], "epochs": model.epochs,
            "seed": model.seed}


def is_run_model(config: dict[str, Any], model: StudyModel) -> bool:
    """True where the study model is the run's own model of its regime (same training config exactly)."""
    return study_training(config, model) == regime_training(config, model.regime)


def model_name(config: dict[str, Any], model: StudyModel) -> str:
    """The model name the workflow knows a study model by: its regime where it is the run's own model."""
    return model.regime if is_run_model(config, model) else model.name


def model_training(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The training config of the model the train rule makes under `name`: a study model's
    (:func:`study_training`) where the name is one of ``study.models``, else the preset's of the regime `name`."""
    model = parse_model_name(name)
    if model is not None and model in study_models(config):
        return study_training(config, model)
    return regime_training(config, name)

