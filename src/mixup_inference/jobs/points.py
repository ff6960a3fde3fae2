"""What every attack job attacks and with which labels: the run's test points, its MI sample pool,
and the labels untargeted and targeted attacks are given.

All seeded by the config seed only (`derive_seed(seed, <name>)`, drawn on the CPU), so every
regime, attack and defense of a run sees the same points and the same pool, on any device.
"""

from __future__ import annotations

import torch

from ..core.data.datasets import class_counts, select_test_points, to_float
from ..core.defenses.pool import build_pool
from ..core.utils import derive_seed, make_generator, randint

__all__ = ["ATTACK_LABELS", "attack_labels", "attacked_points", "point_subsets", "run_pool", "subset_class_counts"]


def attacked_points(data, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's fixed attacked test points: (indices, x in [0,1], true labels, targeted-attack targets).
    Same for every regime, attack and defense of a run (seeded by the config seed only); class-stratified
    in a random order (core.data.select_test_points), so every prefix a job takes is balanced over classes."""
    indices = select_test_points(data.test_y, n_test, generator=make_generator(derive_seed(seed, "test-points")))
    x = to_float(data.test_x[indices])
    y = data.test_y[indices]
    # A random target different from the true label (uniform over the other classes).
    offset = randint(data.num_classes - 1, (len(y),), generator=make_generator(derive_seed(seed, "targets")),
                     device=y.device)
    target = (y + 1 + offset) % data.num_classes
    return indices, x, y, target


def run_pool(data, per_class: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's MI sample pool (pool.build_pool from the train split, `per_class` images per class,
    seeded by the config seed only) as float images and labels on `device`."""
    pool_x, pool_y = build_pool(data.train_x, data.train_y, per_class=per_class, num_classes=data.num_classes,
                                generator=make_generator(derive_seed(seed, "pool")))
    return to_float(pool_x).to(device), pool_y.to(device)


#: What an untargeted attack pushes away from (config attacks.labels): "prediction", the model's
#: clean prediction (the authors' code, cleverhans y=None), or "true", the true label (robustness
#: benchmarks since, and Tramer et al. 2020 on MI). They differ on points the model gets wrong,
#: where pushing away from the wrong prediction can make the model right.
ATTACK_LABELS = ("prediction", "true")


def attack_labels(attack: dict, clean_pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The labels PGD is given: `target` for a targeted attack; for an untargeted one the clean
    prediction or the true label `y`, as `attack["labels"]` says (default "prediction")."""
    labels = attack.get("labels", "prediction")
    if labels not in ATTACK_LABELS:
        raise ValueError(f"attacks.labels={labels!r} is unknown; use one of {', '.join(ATTACK_LABELS)}")
    if attack["targeted"]:
        return target.to(clean_pred.device)
    return clean_pred if labels == "prediction" else y.to(clean_pred.device)


def point_subsets(config: dict, dataset: str) -> dict[str, int]:
    """The prefixes of the run's test points that the workflow's jobs take on `dataset`, by name -> size: every
    oblivious evaluation's (``datasets.<name>.n_test``), Fig. 4's paper adaptive attack's (``adaptive.n_test``) and
    the robustness evaluation's (``robustness.n_test``) where their section is on this data set."""
    subsets = {"oblivious": int(config["datasets"][dataset]["n_test"])}
    ada = config.get("adaptive") or {}
    if ada.get("dataset") == dataset:
        subsets["adaptive"] = int(ada["n_test"])
    rob = config.get("robustness") or {}
    if rob and rob.get("dataset") == dataset:
        subsets["robustness"] = int(rob["n_test"])
    return subsets


def subset_class_counts(data, config: dict, dataset: str) -> dict[str, dict]:
    """For each of :func:`point_subsets`: {"size", "classes": class name -> count} (provenance.yaml records them, so
    a reader sees that every subset is balanced over the classes)."""
    subsets = point_subsets(config, dataset)
    _, _, y, _ = attacked_points(data, subsets["oblivious"], int(config["seed"]))
    return {name: {"size": size, "classes": class_counts(y[:size], data.classes)} for name, size in subsets.items()}
