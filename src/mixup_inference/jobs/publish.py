"""The publish_models job: a finished run's trained models as weights-only files beside its report
(reports/<run>/models/<dataset>/<regime>.pt), and a config overlay listing them with their sha256, so
that everything after training re-runs from them through config ``models:`` (the import_model rule)
instead of training: minutes on any CPU where training took an hour (README "Re-evaluating from the
published models")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import yaml

from ..core.models.files import model_weights
from ..core.utils import atomic_open, atomic_write_text, sha256_file

__all__ = ["PublishedModel", "publish_models", "published_run"]


@dataclass(frozen=True)
class PublishedModel:
    """One model to publish: the run's model file (results/<run>/<dataset>/<regime>/model.pt) and the
    weights-only file it becomes."""

    dataset: str
    regime: str
    model: str  # the run's model.pt
    file: str  # the published file, relative to the working directory (as config models: paths are)


def published_run(run: str) -> str:
    """The run name of a re-evaluation from run `run`'s published models: outputs of their own, so the
    re-evaluation never overwrites the trained run it is compared with."""
    return f"{run}-published"


def _header(run: str, overlay_path: str | os.PathLike, sources: dict[str, tuple[str, str]]) -> str:
    made_from = "\n".join(f"#   {key}: {model} (sha256 {sha})" for key, (model, sha) in sources.items())
    return f"""\
# The models run {run} trained, published by `snakemake publish_models` (README "Re-evaluating from the
# published models"): plain state_dicts in the dtype the run's jobs read (fp32, never rounded;
# torch.load(file, weights_only=True) reads them). A config overlay: given after the run's config file, it re-runs everything after training from
# these files (each one's sha256 checked before use) into run {published_run(run)}, with the run's
# other settings unchanged:
#   snakemake --cores all --configfile <the run's config file> {overlay_path} [the run's --config, but not run=]
# Made from (model file the run's jobs read, its sha256):
{made_from}
"""


def publish_models(models: Sequence[PublishedModel], overlay_path: str | os.PathLike, *, run: str) -> dict[str, Any]:
    """Write each model's weights (`core.models.files.model_weights`: a plain fp32 state_dict) to its
    `file`, and `overlay_path`: a config overlay naming run `published_run(run)` and every file under
    ``models:`` with format state_dict, its architecture and its sha256. Returns the overlay. ValueError
    naming the fix for no models, a missing model file, or a program model (TorchScript, torch.export:
    no weights of a registry architecture; its own file is what to publish)."""
    if not models:
        raise ValueError(f"run {run} trains no models (each comes from a file under models:): nothing to publish; "
                         "its models' own files are what to share")
    entries: dict[str, dict[str, dict[str, str]]] = {}
    sources: dict[str, tuple[str, str]] = {}
    for item in models:
        if not os.path.isfile(item.model):
            raise ValueError(f"model {item.model} does not exist: {item.dataset}/{item.regime} of run {run} is not "
                             "trained; run the workflow with the run's config first (snakemake --cores all ...), "
                             "then publish_models")
        weights = model_weights(item.model)
        if weights is None:
            raise ValueError(f"model {item.model} is a program (TorchScript or torch.export), not weights of a "
                             "registry architecture; share the file it was imported from instead")
        with atomic_open(item.file) as handle:
            handle.write(weights.data)
        entries.setdefault(item.dataset, {})[item.regime] = {
            "file": item.file, "format": "state_dict", "arch": weights.arch, "sha256": weights.sha256}
        sources[f"{item.dataset}/{item.regime}"] = (item.model, sha256_file(item.model))
        print(f"{item.dataset}/{item.regime}: {item.model} -> {item.file} ({len(weights.data):,} bytes, "
              f"{weights.arch}, sha256 {weights.sha256})")
    overlay = {"run": published_run(run), "models": entries}
    atomic_write_text(overlay_path, _header(run, overlay_path, sources) + yaml.safe_dump(overlay, sort_keys=False))
    return overlay
