"""Reliability: bad input gets a clear one-line error before (or, for what only reading the data can
reveal, at the start of) any job; interrupted training and workflow runs resume to the same result;
artifacts are written atomically; nothing unpickles untrusted data; the smoke preset repeats exactly.

CPU only: tiny_cnn, small synthetic data sets. The two real-workflow runs of the smoke preset are
marked slow (a few minutes); everything else takes about a minute.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from mixup_inference import data as data_module
from mixup_inference.configcheck import check_config, validate_config
from mixup_inference.models import build_model
from mixup_inference.joblog import job_log
from mixup_inference.jobs import run_attack, run_prepare, run_train
from mixup_inference.modelfiles import load_model, save_model
from mixup_inference.training import TrainConfig, train
from mixup_inference.utils import atomic_save, atomic_write_text, load_checkpoint
from workflow_helpers import REPO, snakemake, snakemake_bin, workdir_copy

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


# ================================================================ bad config: one line per problem


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


REGIMES = "erm, mixup, at, interpolated_at"
ATTACK_HELP = "clean, pgdK (untargeted PGD with K >= 1 steps) or tpgdK (targeted PGD with K >= 1 steps), e.g. pgd10, tpgd50"

# (config key, bad value, the exact message). The workflow prints it after "invalid config: ".
BAD_CONFIGS = [
    ("training.regimes.ermm", {},
     f"config key training.regimes.ermm: unknown regime 'ermm'; expected one of {REGIMES}"),
    ("grids.regimes", ["mixupp"],
     f"config key grids.regimes[0]: unknown regime 'mixupp'; expected one of {REGIMES}"),
    ("adaptive.regime", "iat",
     f"config key adaptive.regime: unknown regime 'iat'; expected one of {REGIMES}"),
    ("attacks.names", ["clean", "pgdx"],
     f"config key attacks.names[1]: 'pgdx' is not a valid attack; expected {ATTACK_HELP}"),
    ("tables.table2.attacks", ["clean", "pgd7"],
     "tables.table2.attacks: attack 'pgd7' is not in attacks.names; add it there or remove it here"),
    ("grids.settings.mi_xx", ["lam=0.5"],
     "config key grids.settings.mi_xx: unknown defense 'mi_xx'; expected one of mi_pl, mi_ol, mi_combined, "
     "gaussian, rotation, xie, xie_resize, guo"),
    ("adaptive.defense", "mi_combined",
     "config key adaptive.defense: unknown defense 'mi_combined'; expected one of mi_pl, mi_ol"),
    ("grids.settings.gaussian", ["sigma=abc"],
     "config key grids.settings.gaussian[0]: 'sigma=abc' is not a valid defense setting; expected canonical "
     "defense setting, e.g. lam=0.5, sigma=0.04, deg=40, size=16-24, pl=0.5_ol=0.4_th=0.2"),
    ("model", "resnet18",
     "config key model: unknown model 'resnet18'; expected one of resnet50_paper, preact_resnet18, compact_resnet, "
     "tiny_cnn"),
    ("tables.table2.dataset", "cifar11",
     "tables.table2.dataset: dataset 'cifar11' is not defined under datasets (defined: synth)"),
    ("datasets.synth.source", "cifar11",
     "datasets.synth.source: 'cifar11' is neither a known data set (cifar10, cifar100, synthetic) nor an existing "
     "folder or archive; fix the path"),
    ("datasets.synth.source", "/nonexistent/cifar.tar.gz",
     "datasets.synth.source: '/nonexistent/cifar.tar.gz' is neither a known data set (cifar10, cifar100, synthetic) "
     "nor an existing folder or archive; fix the path"),
    ("grids.settings.mi_ol", ["lam=1.5"], "grids.settings.mi_ol[0]: mi_ol lam=1.5 must lie in (0, 1] (a mixup ratio)"),
    ("detection.setting", "lam=0", "detection.setting: mi_pl lam=0 must lie in (0, 1] (a mixup ratio)"),
    ("adaptive.setting", "lam=-0.5", "adaptive.setting: mi_ol lam=-0.5 must lie in (0, 1] (a mixup ratio)"),
    ("components.lams", [0.4, 1.5], "config key components.lams[1]: 1.5 is above the maximum 1; use a value <= 1"),
    ("components.lams", [0, 0.5], "config key components.lams[0]: 0 must be greater than 0"),
    ("attacks.eps", -0.1, "config key attacks.eps: -0.1 is below the minimum 0; use a value >= 0"),
    ("training.at.eps", -0.1, "config key training.at.eps: -0.1 is below the minimum 0; use a value >= 0"),
    ("attacks.step_size", -0.01, "config key attacks.step_size: -0.01 must be greater than 0"),
    ("attacks.step_size", 0.1,
     "attacks: step_size=0.1 is larger than eps=0.0313725; use a step size <= eps (paper: 2/255 for 8/255)"),
    ("training.at.step_size", 0.1,
     "training.at: step_size=0.1 is larger than eps=0.0313725; use a step size <= eps (paper: 2/255 for 8/255)"),
    ("attacks.names", ["clean", "pgd0"],
     f"config key attacks.names[1]: 'pgd0' is not a valid attack; expected {ATTACK_HELP}"),
    ("training.at.steps", 0, "config key training.at.steps: 0 is below the minimum 1; use a value >= 1"),
    ("defenses.n_samples", 0, "config key defenses.n_samples: 0 is below the minimum 1; use a value >= 1"),
    ("defenses.chunk_size", "big",
     "config key defenses.chunk_size: 'big' is not valid; expected a whole number >= 1, or auto (a per-device default)"),
    ("attacks.batch_size", 0,
     "config key attacks.batch_size: 0 is not valid; expected a whole number >= 1, or auto (a per-device default)"),
    ("adaptive.n_adaptive", [0, 1], "config key adaptive.n_adaptive[0]: 0 is below the minimum 1; use a value >= 1"),
    ("datasets.synth.n_test", 500,
     "datasets.synth.n_test=500 exceeds the 200 images of its test split; use at most 200"),
    ("adaptive.n_test", 100,
     "adaptive.n_test=100 exceeds datasets.synth.n_test=40; adaptive attacks use a prefix of the run's test subset"),
    ("attacks.stepsize", 0.01,
     "config key attacks.stepsize is not allowed (misspelled? did you mean step_size?); allowed keys: eps, step_size, "
     "labels, names, batch_size"),
    ("sead", 1,
     "config key sead is not allowed (misspelled? did you mean seed?); allowed keys: run, seed, device, datasets, "
     "model, training, attacks, defenses, tables, grids, components, detection, adaptive, speed, resources"),
    ("datasets.synth.ntest", 40,
     "config key datasets.synth.ntest is not allowed (misspelled? did you mean n_test?); allowed keys: source, "
     "download_root, image_size, synthetic, n_test, pool_per_class"),
    ("training.epochs", "ten", "config key training.epochs: expected an integer, got a string 'ten'"),
    ("attacks.eps", "8e-3",
     "config key attacks.eps: expected a number, got a string '8e-3' (YAML reads a number like 8e-3 as text: "
     "write 0.008 or 8.0e-3)"),
    ("attacks.names", ["clean", "pgd5", "pgd5", "tpgd5"],
     "config key attacks.names: has duplicate entries ['pgd5']; list each once"),
]


@pytest.mark.parametrize("key, value, message", BAD_CONFIGS, ids=[f"{k}={v!r}" for k, v, _ in BAD_CONFIGS])
def test_bad_config_gets_one_line_naming_the_key_and_fix(key, value, message):
    config = smoke_config()
    set_key(config, key, value)
    assert config_problem(config) == message


def test_missing_key_and_several_problems_give_one_line_each():
    config = smoke_config()
    del config["attacks"]["names"]
    assert config_problem(config) == "config key attacks.names is missing; add it (config/config.yaml shows every key)"
    config = smoke_config()
    config["sead"] = 1
    config["attacks"]["eps"] = -1
    config["training"]["regimes"]["ermm"] = {}
    lines = config_problem(config).splitlines()
    assert len(lines) == 3
    assert [line.split(":")[0].split(" is ")[0] for line in lines] == [
        "config key sead", "config key attacks.eps", "config key training.regimes.ermm"]


def test_every_preset_is_valid():
    for preset in ("config", "paper", "smoke"):
        config = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())
        validate_config(config, SCHEMA)


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


def test_image_folder_with_too_few_test_images_is_caught_before_any_job(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"cat": (4, 3), "dog": (4, 2)})
    config = smoke_config()
    config["datasets"]["synth"] = {"source": str(folder), "n_test": 10, "pool_per_class": 2}
    assert config_problem(config) == "datasets.synth.n_test=10 exceeds the 5 images of its test split; use at most 5"
    config["datasets"]["synth"]["n_test"] = 5
    config["adaptive"]["n_test"] = 5
    check_config(config)


# ---------------------------------------------------------------- what the workflow prints


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workdir_copy(tmp_path_factory.mktemp("reliability"))


@pytest.mark.parametrize("key, value, message", [
    ("attacks.stepsize", 0.01, "config key attacks.stepsize is not allowed (misspelled? did you mean step_size?)"),
    ("training.regimes.ermm", {}, f"config key training.regimes.ermm: unknown regime 'ermm'; expected one of {REGIMES}"),
    ("attacks.step_size", 0.1, "attacks: step_size=0.1 is larger than eps=0.0313725; use a step size <= eps"),
])
def test_workflow_stops_on_bad_config_with_the_message_and_no_traceback(workdir, key, value, message):
    config = smoke_config()
    set_key(config, key, value)
    config["run"] = "badconfig"
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "--cores", "1", "--configfile", "config/bad.yaml", check=False, timeout=300)
    output = proc.stdout + proc.stderr  # Snakemake 9 logs to stderr (to stdout in a dry run)
    assert proc.returncode == 1
    assert f"invalid config: {message}" in output
    assert "Traceback" not in output and "Failed validating" not in output
    assert not (workdir / "results" / "badconfig").exists()  # no job ran


def test_a_config_file_missing_a_key_is_an_error_not_filled_from_the_default(workdir):
    """--configfile replaces the default preset; it is not merged over it (a key missing from the
    user's file would otherwise silently take config/config.yaml's value)."""
    config = smoke_config()
    del config["seed"]
    config["run"] = "missingkey"
    (workdir / "config" / "missing.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "-n", "--configfile", "config/missing.yaml", check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "invalid config: config key seed is missing; add it (config/config.yaml shows every key)" in output
    assert "Traceback" not in output


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
    config["adaptive"]["n_test"] = 4
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
                                                              "step_size": 0.01}, n_test=4, device="cpu"))
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


# ================================================================ no unpickling, atomic writes (static)


def project_python_files() -> list[Path]:
    return sorted([*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.py")])


def calls(path: Path) -> list[tuple[str, ast.Call]]:
    """(dotted name of the called function, call node) for every call in a Python file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def test_nothing_unpickles_untrusted_data():
    """Every torch.load passes weights_only=True; no pickle/np/pandas/yaml call that can run code."""
    unsafe = []
    for path in project_python_files():
        for name, node in calls(path):
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if re.fullmatch(r"(pickle|cPickle|dill|joblib|marshal|shelve)\.\w+|.*\.Unpickler|.*read_pickle", name) \
                    and not name.endswith(("dumps", "dump", "PicklingError", "UnpicklingError")):
                unsafe.append(f"{path}:{node.lineno} {name}")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                unsafe.append(f"{path}:{node.lineno} {name}")
            if name.endswith("np.load") or name == "numpy.load":
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    unsafe.append(f"{path}:{node.lineno} np.load(allow_pickle=...)")
    for path in [REPO / "Snakefile", *(REPO / "workflow").rglob("*.smk")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load|pickle\.|read_pickle|yaml\.load\(", line):
                unsafe.append(f"{path}:{number} {line.strip()}")
    assert unsafe == []


def test_artifacts_are_only_written_through_temporary_files():
    """torch.save only inside utils.atomic_save; DataFrame.to_csv only to a string; savefig only to
    a temporary name (plots._save renames it); open(..., 'w') only for a job's log."""
    direct = []
    for path in project_python_files():
        for name, node in calls(path):
            where = f"{path.relative_to(REPO)} {ast.unparse(node)}"
            if name == "torch.save" and path.name != "utils.py":
                direct.append(where)
            if name.endswith(".to_csv") and (node.args or any(k.arg == "path_or_buf" for k in node.keywords)):
                direct.append(where)
            if name.endswith(".savefig") and not (node.args and ast.unparse(node.args[0]) == "tmp"):
                direct.append(where)
            if name == "open" and len(node.args) > 1 and re.search(r"[wax+]", ast.unparse(node.args[1])):
                direct.append(where)
    assert direct == ["src/mixup_inference/joblog.py open(path, 'a', buffering=1)"]  # job_log's log file


def test_atomic_writes_keep_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "artifact.pt"
    atomic_save({"x": torch.arange(3)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda cannot be pickled: fails half-way
        atomic_save({"x": torch.arange(5), "f": lambda: 0}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    text = tmp_path / "results.csv"
    atomic_write_text(text, "a,b\n1,2\n")
    with pytest.raises(TypeError):
        atomic_write_text(text, None)
    assert text.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.pt", "results.csv"]  # no temporary left


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
        data_module.prepare_dataset("cifar10", tmp_path / "out.pt", download_root=root)
    message = str(info.value)
    assert "\n" not in message
    assert (f"the archive at {archive} failed its md5 check (partial or corrupt) and was moved to "
            f"{archive}.corrupt") in message
    assert f"place cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    # Nothing that looks like a good download or a prepared data set is left behind.
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz.corrupt"]
    assert not (tmp_path / "out.pt").exists()


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
    data = data_module.load_dataset(prepared(tmp_path))  # 128 images: 4 batches of 32 per epoch
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


# ================================================================ training killed mid-run resumes exactly

TRAIN_SCRIPT = """
import json, sys
from mixup_inference.joblog import job_log
from mixup_inference.jobs import run_train
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
