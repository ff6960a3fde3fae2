"""Publishing a run's trained models (jobs.publish, the publish_models rule): weights-only fp32 files that
a model imported from gives the trained model's outputs bit for bit, a config overlay that names each
with its sha256 and fits the config schema, the provenance's checksums, and one-line refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from model_files import mine, save_torchscript

from mixup_inference.core.models.files import load_model, load_model_file, model_weights, save_model, save_program_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.utils import sha256_file
from mixup_inference.design.configcheck import validate_config
from mixup_inference.jobs.publish import PublishedModel, publish_models
from mixup_inference.report.provenance import model_checksums

REPO = Path(__file__).resolve().parents[2]


def _trained_like(seed: int) -> torch.nn.Module:
    """A tiny_cnn whose every float tensor (BatchNorm statistics included) holds seeded values that no
    rounding to a narrower dtype would keep."""
    model = build_model("tiny_cnn", 4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=g) + 0.5 if name.endswith("running_var") else \
                    torch.randn(tensor.shape, generator=g) * 0.3
                tensor.copy_(values)
    return model.eval()


def _publish(tmp_path: Path, *, channels_last: bool = False) -> tuple[list[PublishedModel], dict, Path]:
    models = []
    for seed, regime in enumerate(("erm", "mixup")):
        model = _trained_like(seed)
        if channels_last:  # as a model trained with speed.channels_last is saved
            model = model.to(memory_format=torch.channels_last)
        path = tmp_path / "results" / "run" / "synth" / regime / "model.pt"
        save_model(model, path, model_name="tiny_cnn", num_classes=4, in_channels=3, regime=regime)
        models.append(PublishedModel(dataset="synth", regime=regime, model=str(path),
                                     file=str(tmp_path / "reports" / "run" / "models" / "synth" / f"{regime}.pt")))
    overlay_path = tmp_path / "reports" / "run" / "models" / "published.yaml"
    return models, publish_models(models, overlay_path, run="run"), overlay_path


def test_published_files_are_fp32_state_dicts_that_import_to_the_trained_models_outputs(tmp_path):
    models, _, _ = _publish(tmp_path)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    for item in models:
        trained = load_model(item.model)  # what the run's jobs read
        state = torch.load(item.file, map_location="cpu", weights_only=True)
        assert list(state) == list(trained.state_dict())
        for name, tensor in trained.state_dict().items():
            assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
        assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
        imported = load_model_file(item.file, "state_dict", num_classes=4, arch="tiny_cnn")  # config models:
        with torch.no_grad():
            assert torch.equal(imported(x), trained(x))


def test_the_overlay_names_each_file_with_its_sha256_and_fits_the_config_schema(tmp_path):
    models, overlay, overlay_path = _publish(tmp_path)
    assert yaml.safe_load(overlay_path.read_text()) == overlay
    assert overlay["run"] == "run-published"  # outputs of its own: the trained run is never overwritten
    entries = overlay["models"]["synth"]
    assert list(entries) == ["erm", "mixup"]
    for item in models:
        assert entries[item.regime] == {"file": item.file, "format": "state_dict", "arch": "tiny_cnn",
                                        "sha256": sha256_file(item.file)}
        # the header names the model each came from, with its sha256
        assert f"synth/{item.regime}: {item.model} (sha256 {sha256_file(item.model)})" in overlay_path.read_text()
    # given after the run's config file, the overlay is a valid config (schema: no unknown keys)
    config = {**yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()), **overlay}
    validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_the_same_weights_publish_the_same_bytes_and_an_import_gives_them_back(tmp_path):
    """Canonical bytes: a model saved channels_last publishes what a contiguous one does, and the
    model.pt that import_model writes from a published file has the file's sha256 as its
    published_sha256 (provenance.yaml of the re-evaluation lists the trained run's)."""
    plain, _, _ = _publish(tmp_path / "plain")
    nhwc, _, _ = _publish(tmp_path / "nhwc", channels_last=True)
    for a, b in zip(plain, nhwc):
        assert Path(a.file).read_bytes() == Path(b.file).read_bytes()
        assert model_checksums(a.model)["published_sha256"] == sha256_file(a.file)
        assert model_checksums(b.model)["model_sha256"] != model_checksums(a.model)["model_sha256"]
        reimported = tmp_path / "reimported" / f"{a.regime}.pt"
        save_model(load_model_file(a.file, "state_dict", num_classes=4, arch="tiny_cnn"), reimported,
                   model_name="tiny_cnn", num_classes=4, in_channels=3, source=a.file)
        assert model_checksums(reimported)["published_sha256"] == sha256_file(a.file)


def test_publishing_refuses_a_missing_model_a_program_and_nothing(tmp_path):
    missing = tmp_path / "results" / "run" / "synth" / "mixup" / "model.pt"
    item = PublishedModel(dataset="synth", regime="mixup", model=str(missing), file=str(tmp_path / "out.pt"))
    with pytest.raises(ValueError, match=re.escape(f"model {missing} does not exist: synth/mixup of run run is not "
                                                   "trained; run the workflow with the run's config first")):
        publish_models([item], tmp_path / "published.yaml", run="run")
    with pytest.raises(ValueError, match="run run trains no models .*: nothing to publish"):
        publish_models([], tmp_path / "published.yaml", run="run")
    save_torchscript(mine(), tmp_path / "mine.ts")
    save_program_model((tmp_path / "mine.ts").read_bytes(), missing, program_format="torchscript", num_classes=4,
                       in_channels=3)
    assert model_weights(missing) is None and model_checksums(missing)["published_sha256"] is None
    with pytest.raises(ValueError, match="is a program .*; share the file it was imported from instead"):
        publish_models([item], tmp_path / "published.yaml", run="run")
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "published.yaml").exists()
