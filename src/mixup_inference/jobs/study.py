"""The training study's design (config ``study:``): which models it trains and how each is trained.

The study (issue 35) asks what MI's gain follows: the training seed, the training length and the
robust-training recipe. Each of its models is one :class:`StudyModel` (regime, recipe, epochs, training
seed). A recipe is a set of overrides of the preset's training of a regime (``study.recipes``; ``{}``
is the preset's own), so a study model differs from the run's model of its regime only in what its
name says. The run's seed with the preset's recipe at the preset's epochs *is* the run's model: the
study reads it from the run instead of training it twice (:func:`is_run_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StudyModel", "is_run_model", "regime_training", "study_models", "study_training"]


@dataclass(frozen=True, order=True)
class StudyModel:
    """One model of the study; ``name`` is its folder under results/<run>/<dataset>/study/."""

    regime: str
    recipe: str
    epochs: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.regime}/{self.recipe}-e{self.epochs}-s{self.seed}"


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
