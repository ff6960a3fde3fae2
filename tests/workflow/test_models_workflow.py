"""Models from files in the real workflow: the authors' preset plans no training; a TorchScript and a
torch.export model of an architecture this project lacks run through the smoke workflow end to end as
rows of their own; bad files, URLs, checksums and class counts end their job with one ERROR line."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from model_files import authors_state_dict, mine, save_export, save_torchscript
from workflow_helpers import dry_run_jobs, snakemake, workdir_copy, write_config

from mixup_inference.core.models.networks import build_model
from mixup_inference.design.paper_tables import TABLE2_ROWS


def _with_models(workdir: Path, name: str, models: dict, **changes) -> str:
    write_config(workdir, "smoke", name, run=name, models={"synth": models}, **changes)
    return f"config/{name}.yaml"


def test_the_authors_preset_plans_no_training_and_downloads_each_checkpoint_once(workdir):
    jobs = dry_run_jobs(workdir, "--configfile", "config/authors.yaml")
    assert "train" not in jobs
    assert jobs["import_model"] == 4 and jobs["download_model"] == 4
    # offline: files put in the data folder are used, nothing is downloaded
    for dataset, model, filename in (("cifar10", "mixup", "model_mixup.ckpt"), ("cifar10", "interpolated_at", "model_IAT.ckpt"),
                                     ("cifar100", "mixup", "model_mixup.ckpt"), ("cifar100", "interpolated_at", "model_IAT.ckpt")):
        path = workdir / "data" / "downloads" / "models" / dataset / model / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placed by hand")
    jobs = dry_run_jobs(workdir, "--configfile", "config/authors.yaml")
    assert "download_model" not in jobs and "train" not in jobs and jobs["import_model"] == 4


def test_bad_model_files_end_their_job_with_one_error_line_and_nothing_else_is_lost(tmp_path_factory):
    workdir = workdir_copy(tmp_path_factory.mktemp("bad_models"))
    files = workdir / "files"
    files.mkdir()
    (files / "page.html").write_text("<html>404 Not Found</html>")
    torch.save(authors_state_dict(num_classes=10), files / "ten.ckpt")
    torch.save(build_model("tiny_cnn", 4).state_dict(), files / "tiny.pt")
    save_torchscript(mine(), files / "good.ts")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    models = {
        "notckpt": {"file": "files/page.html"},
        "classes": {"file": "files/ten.ckpt", "format": "authors"},
        "otherarch": {"file": "files/tiny.pt", "format": "authors"},
        "mismatch": {"file": (files / "good.ts").as_uri(), "sha256": "0" * 64},
        "unreachable": {"file": f"http://127.0.0.1:{closed}/model.ckpt"},
        "good": {"file": "files/good.ts", "format": "torchscript"},
    }
    config = _with_models(workdir, "bad", models)
    targets = [f"results/bad/synth/{name}/model.pt" for name in models]
    proc = snakemake(workdir, *targets, "--cores", "2", "--keep-going", "--configfile", config, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: ")]
    expected = {
        "notckpt": "ERROR: model file files/page.html is unreadable (not a PyTorch file)",
        "classes": "ERROR: checkpoint files/ten.ckpt has 10 classes (fc_dense.weight (10, 256)) but the data set has 4",
        "otherarch": "ERROR: checkpoint files/tiny.pt does not match the authors' ResNet-50: missing keys conv1.weight",
        "mismatch": f"ERROR: {(files / 'good.ts').as_uri()}: sha256 ",
        "unreachable": f"ERROR: cannot download http://127.0.0.1:{closed}/model.ckpt (",
    }
    for name, start in expected.items():
        assert sum(line.startswith(start) for line in errors) == 1, (name, errors)
    assert len(errors) == len(expected)
    logs = list((workdir / "logs" / "bad").rglob("*.log"))
    assert logs and not any("Traceback" in log.read_text() for log in logs)
    assert (workdir / "results/bad/synth/good/model.pt").exists()  # nothing else lost
    assert not any((workdir / f"results/bad/synth/{name}/model.pt").exists() for name in expected)
    downloads = workdir / "data" / "downloads" / "models" / "synth"
    assert not [p for p in downloads.rglob("*") if p.is_file()] if downloads.exists() else True  # no partial file


@pytest.mark.slow
def test_exported_and_torchscript_models_of_a_new_architecture_run_the_smoke_workflow_end_to_end(tmp_path_factory):
    workdir = workdir_copy(tmp_path_factory.mktemp("user_models"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        save_torchscript(mine(), workdir / "mine.pt")
    save_export(mine(), workdir / "mine.pt2")
    models = {"mine": {"file": "mine.pt"}, "exported": {"file": (workdir / "mine.pt2").as_uri(), "format": "export"}}
    config = _with_models(workdir, "users", models)
    assert "train" in dry_run_jobs(workdir, "--configfile", config)  # the four regimes are still trained
    snakemake(workdir, "--cores", "2", "--configfile", config)
    reports = workdir / "reports" / "users"
    results = pd.read_csv(reports / "results.csv")
    mixup_rows = [row for row in TABLE2_ROWS if row.regime == "mixup"]
    attacks = yaml.safe_load((workdir / config).read_text())["tables"]["table2"]["attacks"]
    for name in models:
        got = results[(results.regime == name) & (results.adaptive == "none")]
        assert {(r.defense, r.setting, a) for r in mixup_rows for a in attacks} <= \
            set(zip(got.defense, got.setting, got.attack))
        table = pd.read_csv(reports / "tables" / f"table2_{name}.csv")
        assert set(table["method"]) == {name, *(f"{name}{r.label[len('Mixup'):]}" for r in mixup_rows[1:])}
        # no robustness target names the user models here, so their worst-case column is empty
        worst = table.attack.isin(["worst_case", "worst_case_mean"])  # all R and mean over R
        assert table.loc[~worst, "ours"].notna().all() and table["paper"].isna().all()
        assert table.loc[worst, "ours"].isna().all()
    # the same network twice (TorchScript and torch.export): the same clean accuracy
    clean = results[(results.defense == "none") & (results.attack == "clean")].set_index("regime")["accuracy"]
    assert clean["mine"] == clean["exported"]
    gains = pd.read_csv(reports / "findings_gains.csv")
    assert {"mine", "exported"} <= set(gains["regime"])
    provenance = yaml.safe_load((reports / "provenance.yaml").read_text())
    assert provenance["models"]["synth/mine"]["format"] == "torchscript"
    assert len(provenance["models"]["synth/exported"]["sha256"]) == 64
    assert "mine + MI-OL" in (reports / "findings.md").read_text()
