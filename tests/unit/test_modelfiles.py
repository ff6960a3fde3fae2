"""Model files: checkpoints of another architecture or class count, damaged or foreign files and
pickles with code are refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from reliability_helpers import job_error, prepared, tiny_training

from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.context import JobContext
from mixup_inference.jobs.stages import run_attack, run_train
from mixup_inference.core.models.files import load_model, save_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.utils import load_checkpoint


def test_checkpoints_of_another_architecture_or_class_count_are_refused(tmp_path):
    data4, data3 = prepared(tmp_path, "d4.pt", 4), prepared(tmp_path, "d3.pt", 3)
    out = tmp_path / "out"

    def train_job(data: Path, model_name: str = "tiny_cnn"):
        return lambda: run_train(str(data), out / "model.pt", out / "log.jsonl", out / "metrics.json",
                                 model_name=model_name, training=tiny_training(), checkpoint_dir=out / "ckpt",
                                 device="cpu")

    with job_log(tmp_path / "ok.log"):
        train_job(data4)()
    last = out / "ckpt" / "last.pt"
    # A resumed training run with another model or class count: refused, the checkpoint untouched.
    before = last.read_bytes()
    message = job_error(tmp_path / "arch.log", train_job(data4, "compact_resnet"))
    assert message.startswith(f"checkpoint {last} was written for a different model architecture")
    assert message.endswith(f"use another checkpoint_dir, or delete {last} to start over")
    message = job_error(tmp_path / "classes.log", train_job(data3))
    assert message.startswith(f"checkpoint {last} was written for a different model architecture")
    assert last.read_bytes() == before

    # A trained model used with a data set of another class count.
    model = out / "model.pt"
    message = job_error(tmp_path / "attack.log", lambda: run_attack(
        str(data3), str(model), tmp_path / "adv.pt", attack={"targeted": False, "steps": 1, "eps": 0.03,
                                                              "step_size": 0.01},
        job=JobContext(n_subset=4, device="cpu")))
    assert message == f"model {model} has 4 classes but the data set has 3; retrain it (delete the file) for this data set"
    assert not (tmp_path / "adv.pt").exists()

    # A model file whose recorded architecture does not fit its weights.
    ckpt = load_checkpoint(model)
    torch.save({**ckpt, "model_name": "compact_resnet"}, tmp_path / "relabelled.pt")
    with pytest.raises(ValueError, match=r"does not match architecture 'compact_resnet': .*; delete it and retrain"):
        load_model(tmp_path / "relabelled.pt")


def test_damaged_or_foreign_model_files_are_refused_in_one_line(tmp_path):
    model = build_model("tiny_cnn", 4)
    good = tmp_path / "good.pt"
    save_model(model, good, model_name="tiny_cnn", num_classes=4, in_channels=3)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"^model file {re.escape(str(truncated))} is unreadable \(truncated or "
                                         r"corrupt: RuntimeError: .*\); delete it and rerun to retrain$"):
        load_model(truncated)
    data_file = tmp_path / "data.pt"
    torch.save({"train_x": torch.zeros(1)}, data_file)
    with pytest.raises(ValueError, match=r"is not a model file written by save_model \(needs keys state_dict, "
                                         r"model_name, num_classes, in_channels\)"):
        load_model(data_file)
    with pytest.raises(ValueError, match=r"does not exist; delete it and rerun to retrain"):
        load_model(tmp_path / "missing.pt")


class _Payload:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker, evil = tmp_path / "marker", tmp_path / "model.pt"
    torch.save({"state_dict": _Payload(marker), "model_name": "tiny_cnn", "num_classes": 4, "in_channels": 3}, evil)
    with pytest.raises(ValueError, match=r"holds pickled Python objects, not only tensors; .* is not loaded"):
        load_model(evil)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()
