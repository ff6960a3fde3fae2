"""Bad input inside a job: the job log ends with one `ERROR:` line (no traceback for bad input,
the traceback kept for a bug), for unreadable image folders, corrupt downloads and a NaN loss; the
workflow shows that line and its log."""

from __future__ import annotations

import re
import tarfile

import pytest
import torch
import yaml
from reliability_helpers import (
    image_folder,
    job_error,
    prepared,
    smoke_config,
    tiny_training,
)
from torch import nn
from workflow_helpers import snakemake

from mixup_inference.core.data import datasets
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_prepare
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.training.loop import train
from mixup_inference.core.training.config import TrainConfig
from mixup_inference.core.utils import load_checkpoint

# ================================================================ bad input inside a job


def test_job_log_ends_with_one_error_line_for_bad_input(tmp_path, capfd):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as info:
        with job_log(log):
            print("working")
            raise ValueError("datasets.x: something is wrong; fix it like this")
    assert info.value.code == 1
    lines = log.read_text().splitlines()
    assert lines[0].startswith("# job started") and lines[1] == "working"
    assert lines[-1] == "ERROR: datasets.x: something is wrong; fix it like this"
    assert "Traceback" not in log.read_text()
    err = capfd.readouterr().err  # what Snakemake shows under the failed job
    assert err == f"ERROR: datasets.x: something is wrong; fix it like this\n(log: {log})\n"


def test_job_log_keeps_the_traceback_of_a_bug_and_still_ends_with_one_line(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(ZeroDivisionError):
        with job_log(log):
            1 / 0
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert text.splitlines()[-1] == "ERROR: ZeroDivisionError: division by zero"


def test_image_folder_problems_end_the_prepare_job_with_one_line(tmp_path):
    mismatch = image_folder(tmp_path / "mismatch", {"cat": (2, 1), "dog": (2, 1)})
    image_folder(mismatch, {"fish": (0, 1)})
    (mismatch / "train" / "fish").rmdir()
    message = job_error(tmp_path / "a.log", lambda: run_prepare(str(mismatch), tmp_path / "a.pt"))
    assert message == (f"train and test class folders of {mismatch} differ: only in train [], only in test ['fish']; "
                       "make both splits have the same class folders")

    empty = image_folder(tmp_path / "empty", {"cat": (2, 1), "dog": (0, 1)})
    message = job_error(tmp_path / "b.log", lambda: run_prepare(str(empty), tmp_path / "b.pt"))
    assert message == f"class folder train/dog in {empty} has no images; add images or remove the folder"

    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder(tmp_path / "good", {"cat": (20, 5), "dog": (20, 5)}), arcname=".")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    message = job_error(tmp_path / "c.log", lambda: run_prepare(str(cut), tmp_path / "c.pt"))
    assert re.fullmatch(rf"archive {re.escape(str(cut))} is corrupted or truncated: .+; re-download it", message)
    assert not any((tmp_path / f"{x}.pt").exists() for x in "abc")


def test_workflow_shows_a_failed_jobs_one_line_error_and_its_log(workdir, tmp_path):
    """What only reading the data reveals fails the first job (prepare), not six hours in."""
    folder = image_folder(tmp_path / "imgs", {"cat": (3, 2), "dog": (3, 2)})
    image_folder(folder, {"fish": (0, 1)})
    (folder / "train" / "fish").rmdir()
    config = smoke_config()
    config.update(run="badfolder", datasets={"synth": {"source": str(folder), "n_test": 4, "pool_per_class": 1}})
    config["adaptive"]["n_test"] = config["robustness"]["n_test"] = 4
    (workdir / "config" / "badfolder.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "--cores", "1", "--configfile", "config/badfolder.yaml", check=False, timeout=300)
    output = proc.stdout + proc.stderr
    message = (f"ERROR: train and test class folders of {folder} differ: only in train [], only in test ['fish']; "
               "make both splits have the same class folders")
    log = "logs/badfolder/synth/prepare_data.log"
    assert proc.returncode == 1
    assert f"{message}\n(log: {log})" in output and f"log: {log} (check log file(s) for error details)" in output
    assert "Traceback" not in output
    assert (workdir / log).read_text().splitlines()[-1] == message
    assert not (workdir / "results" / "badfolder" / "synth" / "data.pt").exists()
    assert not (workdir / "logs" / "badfolder" / "synth" / "erm").exists()  # no training started


# ================================================================ downloads


def test_corrupt_or_partial_cifar_archive_is_refused_and_moved_aside(tmp_path, monkeypatch):
    # Route every request to a closed local port so the failure is immediate, with or without internet.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "downloads"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08" + bytes(5000))  # a gzip header and then nothing: a cut-off download
    with pytest.raises(ValueError) as info:
        datasets.prepare_dataset("cifar10", tmp_path / "out.pt", download_root=root)
    message = str(info.value)
    assert "\n" not in message
    assert (f"the archive at {archive} failed its md5 check (partial or corrupt) and was moved to "
            f"{archive}.corrupt") in message
    assert "place cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    # Nothing that looks like a good download or a prepared data set is left behind.
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz.corrupt"]
    assert not (tmp_path / "out.pt").exists()


# ================================================================ NaN / inf loss inside a job


class _Diverges(nn.Module):
    """A model whose `at`-th training forward pass returns NaN logits."""

    def __init__(self, net: nn.Module, at: int) -> None:
        super().__init__()
        self.net, self.at, self.calls = net, at, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                return out * float("nan")
        return out


def test_nan_loss_stops_the_job_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    data = datasets.load_dataset(prepared(tmp_path))  # 128 images: 4 batches of 32 per epoch
    torch.manual_seed(0)
    model = _Diverges(build_model("tiny_cnn", 4), at=4 + 3)
    log = tmp_path / "train.log"
    with pytest.raises(SystemExit) as stopped:
        with job_log(log):
            train(model, data.train_x, data.train_y, TrainConfig(**tiny_training(epochs=3)),
                  checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert stopped.value.code == 1
    assert "Traceback" not in log.read_text()
    assert re.fullmatch(r"ERROR: training stopped: loss is nan at epoch 2/3, batch 3/4 .*; the last "
                        rf"good checkpoint {re.escape(str(tmp_path / 'ckpt' / 'last.pt'))} is kept; lower lr or check "
                        r"the data", log.read_text().splitlines()[-1])
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["epoch"] == 1
