"""Checks of a workflow config that a JSON schema cannot express.

The schema (workflow/schemas/config.schema.yaml) catches unknown keys, wrong types and unknown
names; `check_config` catches values that are individually valid but wrong together (a step larger
than eps, a test subset larger than the test split, an attack a table needs but the run never
crafts, ...). Each problem is reported as one line that names the config key and the fix.
"""

from __future__ import annotations

import os
from typing import Any

from .settings import parse_attack, parse_setting

# Test-split sizes of the downloadable data sets, to check n_test before anything is downloaded.
KNOWN_TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000}
SYNTHETIC_DEFAULTS = {"n_train": 2000, "n_test": 500, "num_classes": 10, "image_size": 32, "channels": 3}


def _image_size(dataset: dict) -> int:
    if dataset["source"] == "synthetic":
        return dataset.get("synthetic", {}).get("image_size", SYNTHETIC_DEFAULTS["image_size"])
    return dataset.get("image_size", 32)


def check_setting(defense: str, setting: str, *, image_size: int, key: str) -> None:
    """Raise ValueError if a defense setting is malformed or out of its valid range."""
    try:
        params = parse_setting(defense, setting)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None
    for name in ("lam", "lam_pl", "lam_ol"):
        if name in params and not 0 < params[name] <= 1:
            raise ValueError(f"{key}: {setting} has {name}={params[name]:g} outside (0, 1]; use a mixup ratio in (0, 1]")
    if "threshold" in params and params["threshold"] < 0:
        raise ValueError(f"{key}: {setting} has a negative detection threshold; use a value >= 0")
    if "sigma" in params and params["sigma"] < 0:
        raise ValueError(f"{key}: {setting} has a negative noise std; use sigma >= 0")
    if "max_degrees" in params and not 0 <= params["max_degrees"] <= 180:
        raise ValueError(f"{key}: {setting} rotation range must be within [0, 180] degrees")
    if "min_size" in params:
        lo, hi = params["min_size"], params["max_size"]
        if not 1 <= lo <= hi <= image_size:
            raise ValueError(f"{key}: {setting} needs 1 <= min size <= max size <= image size ({image_size})")


def _check_eps_step(eps: float, step: float, key: str) -> None:
    if eps < 0 or step <= 0:
        raise ValueError(f"{key}: eps must be >= 0 and step_size > 0 (got eps={eps}, step_size={step})")
    if eps > 0 and step > eps:
        raise ValueError(f"{key}: step_size={step} is larger than eps={eps}; use a step size <= eps (paper: 2/255 for 8/255)")


def check_config(config: dict[str, Any]) -> None:
    """Raise ValueError naming the first inconsistent key of a (schema-valid) workflow config."""
    datasets = config["datasets"]
    crafted = set(config["attacks"]["names"])
    _check_eps_step(config["attacks"]["eps"], config["attacks"]["step_size"], "attacks")
    at = config["training"]["at"]
    _check_eps_step(at["eps"], at["step_size"], "training.at")

    for name, ds in datasets.items():
        source = ds["source"]
        if source == "synthetic":
            test_size = ds.get("synthetic", {}).get("n_test", SYNTHETIC_DEFAULTS["n_test"])
        elif source in KNOWN_TEST_SIZES:
            test_size = KNOWN_TEST_SIZES[source]
        else:
            if not os.path.exists(source):
                raise ValueError(f"datasets.{name}.source: {source!r} is neither a known data set "
                                 f"(cifar10, cifar100, synthetic) nor an existing folder or archive; fix the path")
            test_size = None  # known only once the folder is read; prepare/attack check it then
        if test_size is not None and ds["n_test"] > test_size:
            raise ValueError(f"datasets.{name}.n_test={ds['n_test']} exceeds the {test_size} images of its test split; "
                             f"use at most {test_size}")

    def need_dataset(key: str, name: str) -> dict:
        if name not in datasets:
            raise ValueError(f"{key}: dataset {name!r} is not defined under datasets (defined: {', '.join(datasets)})")
        return datasets[name]

    def need_attack(key: str, attack: str) -> None:
        parse_attack(attack)
        if attack != "clean" and attack not in crafted:
            raise ValueError(f"{key}: attack {attack!r} is not in attacks.names; add it there or remove it here")

    for table, spec in config["tables"].items():
        need_dataset(f"tables.{table}.dataset", spec["dataset"])
        for attack in spec["attacks"]:
            need_attack(f"tables.{table}.attacks", attack)

    grids = config["grids"]
    size = _image_size(need_dataset("grids.dataset", grids["dataset"]))
    need_attack("grids.attack", grids["attack"])
    for defense, settings in grids["settings"].items():
        for i, setting in enumerate(settings):
            check_setting(defense, setting, image_size=size, key=f"grids.settings.{defense}[{i}]")

    comp = config["components"]
    need_dataset("components.dataset", comp["dataset"])
    need_attack("components.attack", comp["attack"])

    det = config["detection"]
    size = _image_size(need_dataset("detection.dataset", det["dataset"]))
    for attack in det["attacks"]:
        need_attack("detection.attacks", attack)
    check_setting("mi_pl", det["setting"], image_size=size, key="detection.setting")

    ada = config["adaptive"]
    ds = need_dataset("adaptive.dataset", ada["dataset"])
    for attack in ada["attacks"]:
        parse_attack(attack)
    check_setting(ada["defense"], ada["setting"], image_size=_image_size(ds), key="adaptive.setting")
    if ada["n_test"] > ds["n_test"]:
        raise ValueError(f"adaptive.n_test={ada['n_test']} exceeds datasets.{ada['dataset']}.n_test={ds['n_test']}; "
                         "adaptive attacks use a prefix of the run's test subset")
