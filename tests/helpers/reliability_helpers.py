"""Helpers of the reliability tests: the smoke config and its keys, tiny image folders, tiny
prepared data sets and training configs, and a job run as a workflow script runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_helpers import REPO

from mixup_inference.design.configcheck import check_config, validate_config
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_prepare

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def smoke_config() -> dict:
    return yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def set_key(config: dict, key: str, value) -> None:
    """config[a][b][c] = value for key "a.b.c"."""
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def config_problem(config: dict) -> str:
    """The message a user sees for `config` (the workflow runs exactly these two checks first)."""
    with pytest.raises(ValueError) as info:
        validate_config(config, SCHEMA)
        check_config(config)
    return str(info.value)


def image_folder(root: Path, classes: dict[str, tuple[int, int]], size: int = 8) -> Path:
    """train/<class>/*.png and test/<class>/*.png with (n_train, n_test) random images per class."""
    rng = np.random.default_rng(0)
    for name, counts in classes.items():
        for split, n in zip(("train", "test"), counts):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def prepared(tmp_path: Path, name: str = "data.pt", num_classes: int = 4, n_train: int = 128) -> Path:
    path = tmp_path / name
    run_prepare("synthetic", path, synthetic={"n_train": n_train, "n_test": 32, "num_classes": num_classes,
                                              "image_size": 16}, seed=0)
    return path


def tiny_training(**changes) -> dict:
    return {"regime": "erm", "epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "onecycle", "seed": 0, **changes}


def job_error(log: Path, job) -> str:
    """Run `job()` as a workflow job script does; return the one-line error its log ends with."""
    with pytest.raises(SystemExit) as info:
        with job_log(log):
            job()
    assert info.value.code == 1
    text = log.read_text()
    assert "Traceback" not in text
    last = text.splitlines()[-1]
    assert last.startswith("ERROR: ")
    return last.removeprefix("ERROR: ")
