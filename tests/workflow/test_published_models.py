"""The published models end to end (issue 34): a run of the smoke preset (cut to two models and the
evaluations downstream of them), `publish_models`, and a re-run from the published files under the overlay
it writes, which imports instead of training and gives the trained run's results.csv byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from workflow_helpers import dry_run_jobs, snakemake, workdir_copy

CONFIG = "config/ship.yaml"


def _cut_smoke(workdir: Path) -> None:
    """The smoke preset with what reads a model cut to two of them (mixup, interpolated AT) and one attack:
    every kind of job downstream of a model (attack, evaluate, adaptive, robust), in about a third of the time."""
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    config.pop("study")
    attacks = ["clean", "pgd5"]
    config.update(
        run="ship",
        attacks={**config["attacks"], "names": attacks},
        tables={"table2": {"dataset": "synth", "attacks": attacks, "regimes": ["mixup", "interpolated_at"]}},
        grids={**config["grids"], "settings": {"mi_ol": ["lam=0.5"]}},
        detection={**config["detection"], "regimes": ["mixup"]},
        adaptive={**config["adaptive"], "kinds": ["paper"], "n_adaptive": [1]},
        robustness={**config["robustness"], "targets": [["mixup", "mi_ol", "lam=0.5"]], "kinds": ["eot_pgd", "pgd_bare"],
                    "convergence": {"levels": 1, "tolerance": 0.0}},
    )
    (workdir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.slow
def test_a_rerun_from_the_published_models_imports_them_and_gives_the_trained_runs_results(tmp_path_factory):
    workdir = workdir_copy(tmp_path_factory.mktemp("published"))
    _cut_smoke(workdir)
    trained, published = workdir / "reports" / "ship", workdir / "reports" / "ship-published"
    outputs = ("results.csv", "detection.csv", "components.csv")
    snakemake(workdir, "--cores", "2", *(f"reports/ship/{name}" for name in (*outputs, "provenance.yaml")),
              "--configfile", CONFIG)
    # publish: reads the trained models, never plans training
    assert dry_run_jobs(workdir, "publish_models", "--configfile", CONFIG) == {"publish_models": 1}
    snakemake(workdir, "--cores", "1", "publish_models", "--configfile", CONFIG)
    overlay_path = "reports/ship/models/published.yaml"
    overlay = yaml.safe_load((workdir / overlay_path).read_text())
    assert overlay["run"] == "ship-published"
    entries = overlay["models"]["synth"]
    assert sorted(entries) == ["interpolated_at", "mixup"]
    for regime, entry in entries.items():
        assert entry["file"] == f"reports/ship/models/synth/{regime}.pt"
        state = torch.load(workdir / entry["file"], map_location="cpu", weights_only=True)
        assert all(isinstance(t, torch.Tensor) for t in state.values())

    # the README's command: the run's config file, then the overlay
    configs = ("--configfile", CONFIG, overlay_path)
    jobs = dry_run_jobs(workdir, *configs)
    assert "train" not in jobs and jobs["import_model"] == 2
    snakemake(workdir, "--cores", "2", *(f"reports/ship-published/{name}" for name in (*outputs, "provenance.yaml")),
              *configs)

    # the same rows, values and order: no column names where a model came from
    for name in outputs:
        assert (published / name).read_text() == (trained / name).read_text(), name
    rows = (trained / "results.csv").read_text().splitlines()
    assert any(",mixup," in row for row in rows) and any(",interpolated_at," in row for row in rows)
    assert any(",eot_pgd," in row for row in rows) and any(",paper," in row for row in rows)

    # provenance: the trained run lists each model's published sha256, the re-run the same for the file it
    # imported (checked against the overlay before use) and for its own model.pt's weights
    trained_models = yaml.safe_load((trained / "provenance.yaml").read_text())["models"]
    published_models = yaml.safe_load((published / "provenance.yaml").read_text())["models"]
    for regime, entry in entries.items():
        key = f"synth/{regime}"
        assert trained_models[key]["published_sha256"] == entry["sha256"] == published_models[key]["sha256"] \
            == published_models[key]["published_sha256"]
        assert published_models[key]["source"] == entry["file"] and published_models[key]["format"] == "state_dict"
        assert trained_models[key]["model_sha256"] != published_models[key]["model_sha256"]  # its own meta
