"""Reproducibility and resume: a job's random choices come from the config seed, training killed
mid-run resumes to the identical model, and the smoke preset interrupted and rerun repeats its
results exactly (slow)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from reliability_helpers import prepared, tiny_training
from workflow_helpers import snakemake, snakemake_bin, workdir_copy

from mixup_inference.jobs.stages import run_prepare, run_train
from mixup_inference.core.utils import load_checkpoint

# ================================================================ reproducibility of a job's choices


def test_model_initialisation_comes_from_the_config_seed(tmp_path):
    data = prepared(tmp_path)

    def trained(seed: int, name: str) -> dict:
        out = tmp_path / name
        run_train(str(data), out / "model.pt", out / "log.jsonl", out / "metrics.json", model_name="tiny_cnn",
                  training=tiny_training(seed=seed), checkpoint_dir=out / "ckpt", device="cpu")
        return load_checkpoint(out / "model.pt")["state_dict"]

    torch.manual_seed(1)
    a = trained(0, "a")
    torch.manual_seed(2)  # the global RNG state of the caller must not matter
    b = trained(0, "b")
    c = trained(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.head.2.weight"], c["net.head.2.weight"])


# ================================================================ training killed mid-run resumes exactly

TRAIN_SCRIPT = """
import json, sys
from mixup_inference.jobs.joblog import job_log
from mixup_inference.jobs.stages import run_train
data, out = sys.argv[1], sys.argv[2]
with job_log(out + "/train.log", threads=1):
    run_train(data, out + "/model.pt", out + "/train_log.jsonl", out + "/metrics.json", model_name="tiny_cnn",
              training=json.loads(sys.argv[3]), checkpoint_dir=out + "/checkpoints", device="cpu")
"""
# mixup + augmentation + a per-batch one-cycle schedule: every piece of state a resume must restore.
KILL_TRAINING = {"regime": "mixup", "epochs": 8, "batch_size": 64, "lr": 0.05, "schedule": "onecycle",
                 "weight_decay": 5e-4, "augment": True, "seed": 3}


def train_process(tmp: Path, data: Path, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    script = tmp / "train_job.py"
    script.write_text(TRAIN_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(data), str(out), json.dumps(KILL_TRAINING)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoint_epoch(path: Path) -> int:
    return load_checkpoint(path)["epoch"] if path.exists() else 0


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    """A data set (1,024 images of 32x32: about half a second per epoch) and the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("kill")
    data = tmp / "data.pt"
    run_prepare("synthetic", data, synthetic={"n_train": 1024, "n_test": 128, "num_classes": 4}, seed=0)
    proc = train_process(tmp, data, tmp / "straight")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return tmp, data, tmp / "straight"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_training_killed_mid_run_resumes_to_the_identical_model(kill_setup, sig):
    tmp, data, straight = kill_setup
    out = tmp / sig.name
    proc = train_process(tmp, data, out)
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while checkpoint_epoch(last) < 1:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Into the middle of the next epoch (as long as half an epoch of the uninterrupted run).
    time.sleep(0.5 * json.loads((straight / "train_log.jsonl").read_text().splitlines()[1])["seconds"])
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    killed_at = checkpoint_epoch(last)
    assert 1 <= killed_at < KILL_TRAINING["epochs"] and not (out / "model.pt").exists(), "kill landed too late"
    if sig == signal.SIGTERM:  # stopped as an exception: the log says so, no temporary file is left
        assert (out / "train.log").read_text().splitlines()[-1].startswith("ERROR: job stopped by SIGTERM")
        assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]
    else:  # at most a hidden temporary file, never a complete-looking one
        assert all(p.name == "last.pt" or re.fullmatch(r"\.last\.pt\..+\.tmp", p.name) for p in last.parent.iterdir())

    rerun = train_process(tmp, data, out)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    reference = json.loads((straight / "metrics.json").read_text())
    assert metrics["train"]["resumed_from_epoch"] == killed_at
    assert metrics["test"] == reference["test"]
    a, b = load_checkpoint(straight / "model.pt")["state_dict"], load_checkpoint(out / "model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["loss"], r["accuracy"], r["lr"]) for r in rows] == \
           [(r["epoch"], r["loss"], r["accuracy"], r["lr"]) for r in ref_rows]


# ================================================================ the real workflow: interrupted, rerun, repeated


def start_snakemake(workdir: Path, *args: str, log: Path) -> subprocess.Popen:
    """Snakemake in its own process group (so a signal reaches it and all its jobs, like Ctrl-C or scancel)."""
    with open(log, "a") as handle:
        return subprocess.Popen([snakemake_bin(), *args], cwd=workdir, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_until(proc: subprocess.Popen, condition, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"snakemake ended before the interruption:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, "timed out waiting to interrupt"
        time.sleep(0.02)


def workflow_jobs(workdir: Path, script: str = "") -> list[psutil.Process]:
    """Running job processes of the workflow in `workdir` (each runs a script copied into its
    .snakemake/scripts/, e.g. tmpab12cd.evaluate.py), optionally only those of one rule's script."""
    scripts = str(workdir / ".snakemake" / "scripts")
    return [p for p in psutil.process_iter(["cmdline"])
            if any(arg.startswith(scripts) and arg.endswith(f"{script}.py") for arg in p.info["cmdline"] or [])]


def stop_group(proc: subprocess.Popen, sig: signal.Signals, workdir: Path) -> None:
    """Send `sig` to Snakemake's process group; wait until Snakemake and all its jobs are gone."""
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    deadline = time.monotonic() + 60
    while workflow_jobs(workdir):
        assert time.monotonic() < deadline, "jobs outlived their snakemake"
        time.sleep(0.1)


SMOKE = ("--cores", "2", "--configfile", "config/smoke.yaml")


@pytest.mark.slow
def test_smoke_preset_interrupted_and_rerun_repeats_results_exactly(smoke_run, tmp_path):
    """A second run of the smoke preset, in a fresh copy, stopped twice on the way: with SIGTERM
    while an adversarially trained model trains (as Ctrl-C or scancel would), then with SIGKILL
    while evaluations run (as the OOM killer or a node failure would). Its results.csv equals the
    first run's (the session's shared, uninterrupted `smoke_run`, same command) byte for byte:
    every random choice is seeded from the config and training resumes exactly."""
    workdir = workdir_copy(tmp_path / "smoke_b")
    results = workdir / "results" / "smoke" / "synth"
    log = tmp_path / "snakemake.log"

    def training_mid_run() -> str | None:
        for regime in ("at", "interpolated_at"):
            if checkpoint_epoch(results / regime / "checkpoints" / "last.pt") >= 1 \
                    and not (results / regime / "model.pt").exists():
                return regime
        return None

    # 1. SIGTERM: Snakemake stops its jobs, removes their outputs and its lock; the same command continues.
    proc = start_snakemake(workdir, *SMOKE, log=log)
    wait_until(proc, training_mid_run, log)
    regime = training_mid_run()
    stop_group(proc, signal.SIGTERM, workdir)
    assert proc.returncode != 0 and not (results / regime / "model.pt").exists()
    interrupted_at = checkpoint_epoch(results / regime / "checkpoints" / "last.pt")

    # 2. The same command again; SIGKILL while an evaluation job runs: lock and incomplete markers stay.
    proc = start_snakemake(workdir, *SMOKE, log=log)
    wait_until(proc, lambda: workflow_jobs(workdir, "evaluate"), log)
    stop_group(proc, signal.SIGKILL, workdir)
    assert (workdir / ".snakemake" / "incomplete").exists() and any((workdir / ".snakemake" / "incomplete").iterdir())

    # 3. Snakemake 9 refuses to continue blindly and says how to: --unlock, then --rerun-incomplete.
    refused = snakemake(workdir, *SMOKE, check=False, timeout=300)
    assert refused.returncode != 0
    assert "--rerun-incomplete" in refused.stdout + refused.stderr or "--unlock" in refused.stdout + refused.stderr
    snakemake(workdir, "--unlock", "--configfile", "config/smoke.yaml", timeout=300)
    snakemake(workdir, *SMOKE, "--rerun-incomplete", timeout=1200)

    metrics = json.loads((results / regime / "train_metrics.json").read_text())
    assert metrics["train"]["resumed_from_epoch"] >= interrupted_at >= 1
    assert (workdir / "reports" / "smoke" / "results.csv").read_bytes() == \
        (smoke_run.reports / "results.csv").read_bytes()
