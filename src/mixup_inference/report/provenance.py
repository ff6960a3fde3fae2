"""Provenance of a workflow run: config, data sets and their sources, models, hardware, package
versions, git commit, the wall time and threads of every rule (from Snakemake's benchmark files and the
jobs' logs), and every
setting in which the run differs from the paper's (config/paper.yaml)."""

from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from .aggregate import DETECTION_POINTS
from ..core.data.datasets import load_dataset
from ..jobs.joblog import logged_threads
from ..jobs.points import subset_class_counts
from ..design.plan import robust_options, robust_runs, robust_targets
from ..core.attacks.kinds import robust_kind
from ..core.attacks.specs import parse_attack
from ..core.models.files import model_weights
from ..core.models.speed import cpu_flags, cpu_model, native_bf16
from ..core.training.config import ADVERSARIAL_REGIMES, TrainConfig
from ..core.utils import atomic_write_text, sha256_file



def environment_summary() -> dict:
    """Hardware and package versions for provenance."""
    import importlib.metadata as md

    packages = {}
    for name in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "scikit-learn", "snakemake",
                 "snakemake-executor-plugin-slurm", "mixup-inference"):
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            packages[name] = None
    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "native_bf16": native_bf16(cpu_flags())[1],  # what speed.train_bf16: auto decides from
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "packages": packages,
    }

def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding this package (or `path`). Dirty means
    uncommitted changes to tracked files outside reports/: a run rewrites its own committed
    reports (reports/<run>/), which says nothing about the code that made them."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)reports"], cwd=where,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


#: Benchmark folders below benchmarks/<run>/<dataset>/<regime>/ and the rules they belong to.
_JOB_FOLDERS = {"eval": "evaluate", "attack": "attack", "adaptive": "adaptive", "robust": "robust"}


def rule_of(benchmark: Path, root: Path) -> str:
    """The rule a benchmark file belongs to, from the workflow's benchmark path layout (the rules'
    `benchmark:` paths): <rule>.tsv at the top or per data set / model, a rule's folder at the top
    (tables/, download_model/) or right below <dataset>/<regime>/ (eval/, attack/, adaptive/, robust/).
    By position, so that a setting's name (robust/<defense>/<setting>.tsv) is never taken for a rule."""
    parts = benchmark.relative_to(root).parts
    if len(parts) > 1 and parts[0] in ("tables", "download_model"):
        return parts[0]
    if len(parts) > 3 and parts[2] in _JOB_FOLDERS:
        return _JOB_FOLDERS[parts[2]]
    return benchmark.stem


def rule_timings(benchmarks_dir: str | Path, logs_dir: str | Path | None = None) -> pd.DataFrame:
    """Jobs, total and max wall time (s) per rule, from Snakemake's benchmark TSV files, and with
    `logs_dir` the thread counts its jobs ran on (sorted, each once; [] where no log says), from the
    header of each job's log (the log paths mirror the benchmark paths: logs/<run>/.../<job>.log)."""
    root = Path(benchmarks_dir)
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        if len(frame):
            threads = logged_threads(Path(logs_dir) / tsv.relative_to(root).with_suffix(".log")) if logs_dir else None
            rows.append({"rule": rule_of(tsv, root), "seconds": float(frame["s"].iloc[-1]), "threads": threads})
    columns = ["rule", "jobs", "total_s", "max_s"] + (["threads"] if logs_dir else [])
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    timings = (frame.groupby("rule").agg(jobs=("seconds", "count"), total_s=("seconds", "sum"), max_s=("seconds", "max"),
                                         threads=("threads", lambda t: sorted({int(n) for n in t.dropna()})))
               .reset_index().sort_values("total_s", ascending=False).round(1))
    return timings[columns]


# Keys that decide where and how fast a run goes, not what it computes (memory bounds, batch sizes
# for attacks and defenses, devices, fast paths, job resources, output names): left out of the comparison.
_NOT_COMPARED = ("run", "device", "speed", "resources", "attacks.batch_size", "defenses.chunk_size")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _comparable(config: dict) -> dict[str, Any]:
    """The config as dotted keys, with every regime's training settings resolved (shared keys
    merged with the regime's overrides: training.at.epochs, ...; the training attack only for the
    regimes that use it)."""
    config = dict(config)
    training = dict(config.pop("training", {}))
    regimes = training.pop("regimes", {}) or {}
    flat = _flatten(config)
    # a key one preset leaves out trains with TrainConfig's default (the paper's preset has no
    # optimizer, label_smoothing, lookahead...): compare against that, so no recipe change hides
    defaults = {f.name: f.default for f in fields(TrainConfig)
                if f.default is not MISSING and f.name not in ("regime", "seed") and not f.name.startswith("at_")}
    for regime, overrides in regimes.items():
        resolved = {**defaults, **training, **(overrides or {})}
        resolved["milestones"] = list(resolved["milestones"])
        if regime not in ADVERSARIAL_REGIMES:
            resolved.pop("at", None)  # the training attack applies to AT and interpolated AT only
        flat.update(_flatten(resolved, f"training.{regime}"))
    return {key: value for key, value in flat.items()
            if not any(key == skip or key.startswith(skip + ".") for skip in _NOT_COMPARED)}


def differences_from_paper(config: dict, paper: dict) -> list[dict[str, Any]]:
    """Every setting that both `config` and the paper preset define and that differs, as rows
    {"setting", "this run", "paper"}: the cuts a reader must know before comparing numbers.
    Data sets, regimes and tables the run does not have are not listed (nothing to compare)."""
    ours, theirs = _comparable(config), _comparable(paper)
    return [{"setting": key, "this run": ours[key], "paper": theirs[key]}
            for key in ours if key in theirs and ours[key] != theirs[key]]


def protocol(config: dict) -> dict[str, Any]:
    """The measurement protocol a reader needs to compare this run's numbers with the paper's:
    the choices fixed in code since the fidelity fixes (where the old protocol differed), the
    switches of the config, and the budget of every attack the run made (training, oblivious,
    Fig. 4's adaptive, the robustness section's), each with its threat model."""
    attacks = config.get("attacks", {})
    # what untargeted attacks push away from: it changes every attacked accuracy of weak models
    labels = str(attacks.get("labels", "prediction")).lower()  # YAML true -> "true"
    away = {"prediction": "the bare model's clean prediction (the paper's)", "true": "the true label"}[labels]
    threat = {"norm": "Linf", "eps": attacks.get("eps"), "pixels": "[0, 1]", "random_start": "uniform in the eps-ball"}
    oblivious = {}
    for name in attacks.get("names", []):
        if name == "clean":
            continue
        parsed = parse_attack(name)
        targeted, steps = parsed.targeted, parsed.steps
        oblivious[name] = {**threat, "steps": steps, "step_size": attacks.get("step_size"), "restarts": 1,
                           "crafted_on": "the bare model",
                           "objective": "toward a seeded random label != true label" if targeted else f"away from {away}"}
    training = config.get("training", {})
    at_training = {}
    for regime, overrides in (training.get("regimes") or {}).items():
        if regime in ADVERSARIAL_REGIMES:
            at = {**training.get("at", {}), **(overrides or {}).get("at", {})}
            at_training[regime] = {**threat, "eps": at.get("eps"), "steps": at.get("steps"), "step_size": at.get("step_size"),
                                   "objective": "away from the model's own prediction, model in eval mode (the authors')"}
    budgets: dict[str, Any] = {"training": at_training, "oblivious": oblivious}
    if config.get("adaptive"):
        ada = config["adaptive"]
        budgets["fig4_adaptive"] = {**threat, "against": f"{ada['regime']} + {ada['defense']} {ada['setting']}",
                                    "kinds": ada["kinds"], "attacks": ada["attacks"], "n_adaptive": ada["n_adaptive"],
                                    "step_size": attacks.get("step_size"), "points": ada["n_test"]}
    if config.get("robustness"):
        rob = config["robustness"]
        budgets["robustness"] = {
            **threat, "targets": [" ".join(t) for t in robust_targets(config)], "points": rob["n_test"],
            "executions_inside_defense": rob["n_samples"],
            "evaluated_with": f"the defense at N = {config.get('defenses', {}).get('n_samples')}",
            # issue 25: the runs in cascade order, each on the points every earlier run left (cascade: true),
            # each final example judged by R verdict runs, budgets doubled up to the convergence cap
            **robust_options(rob),
            # each run's budget, what it attacks (issue 33: the bare models face the kinds for a deterministic
            # model), and what its kind adds (its source, version, step size: RobustKind.provenance)
            "runs": [{k: v for k, v in run.as_dict().items() if k != "file"}
                     | {"against": "bare models" if robust_kind(run.kind).deterministic else "randomized defenses"}
                     | robust_kind(run.kind).provenance(run, attacks)
                     for run in robust_runs(rob)],
        }
    return {
        "attack_labels": labels,
        "gaussian_noise": "Table 4's sigma is a std on the [-1, 1] scale: noise of std sigma/2 on [0, 1] pixels, "
                          "not clamped (the authors'; before the fidelity fix: std sigma, clamped)",
        "xie": "xie = random crop of size s, zero-padded back (the paper's); xie_resize = Xie et al.'s resize-and-pad "
               "(before the fidelity fix, 'xie' meant resize-and-pad)",
        "mixup": "one lambda ~ Beta(alpha, alpha) per example (the authors'; before: one per batch)",
        "detection_points": f"{DETECTION_POINTS[0]} (the paper's Fig. 3a: points whose clean prediction is right, "
                            f"each with its adversarial counterpart; paired bootstrap) reported, "
                            f"{DETECTION_POINTS[1]} beside it",
        "attack_budgets": budgets,
    }


def model_checksums(path: str | Path) -> dict[str, str | None]:
    """The sha256 of a model file the jobs read (`model_sha256`) and of its weights-only form
    (`published_sha256`: the bytes publish_models writes to reports/<run>/models/<dataset>/<regime>.pt,
    `core.models.files.model_weights`; None for a program model). A run re-evaluated from its published
    models lists the same `published_sha256` for each (the same weights), another `model_sha256`."""
    weights = model_weights(path)
    return {"model_sha256": sha256_file(path), "published_sha256": weights.sha256 if weights else None}


def collect_provenance(*, config: dict, data_paths: list[str], metrics_paths: list[str],
                       benchmarks_dir: str | Path, logs_dir: str | Path | None = None,
                       paper_config: dict | None = None, model_paths: list[str] | None = None) -> dict[str, Any]:
    datasets = {}
    for path in data_paths:
        dataset = load_dataset(path)
        name = Path(path).parent.name
        datasets[name] = {**dataset.provenance, "classes": list(dataset.classes)}
        if name in config.get("datasets", {}):  # the attacked points' prefixes, each with its count per class
            datasets[name]["points"] = subset_class_counts(dataset, config, name)
    models = {}
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        key = "/".join(Path(path).parts[-3:-1])
        models[key] = {
            "model": metrics["model"], "parameters": metrics["parameters"], "device": metrics["device"],
            "test_accuracy": metrics["test"]["accuracy"], "test_n": metrics["test"]["n"],
            "epochs": metrics["train"].get("epochs"), "seconds_per_epoch": metrics["train"].get("seconds_per_epoch"),
            "speed": metrics.get("speed"),  # the fast paths training used (speed.resolve_speed)
            # a model loaded from a file instead of trained (jobs.run_import): where from, and its sha256
            **{k: metrics[k] for k in ("source", "format", "sha256") if k in metrics},
        }
    for path in model_paths or []:  # results/<run>/<dataset>/<regime>/model.pt, beside its metrics
        models.setdefault("/".join(Path(path).parts[-3:-1]), {}).update(model_checksums(path))
    timings = rule_timings(benchmarks_dir, logs_dir)
    return {
        "run": config.get("run"),
        "protocol": protocol(config),
        "git": git_commit(),
        "environment": environment_summary(),
        "datasets": datasets,
        "models": models,
        "wall_time_per_rule_s": timings.to_dict(orient="records"),
        "differences_from_paper": differences_from_paper(config, paper_config) if paper_config else [],
        "config": config,
    }


def _html_page(prov: dict[str, Any]) -> str:
    def table(records: list[dict] | dict) -> str:
        frame = pd.DataFrame(records) if isinstance(records, list) else pd.DataFrame(records).T
        return frame.to_html(border=0, classes="prov") if len(frame) else "<p>none</p>"

    env = prov["environment"]
    sections = [
        f"<h2>Run {html.escape(str(prov['run']))}</h2>",
        f"<p>git commit <code>{html.escape(str(prov['git']['commit']))}</code>"
        f"{' (with uncommitted changes)' if prov['git']['dirty'] else ''}</p>",
        f"<p>Untargeted attacks push away from: <b>{html.escape(str(prov['protocol']['attack_labels']))}</b> "
        "(attacks.labels: prediction = the clean prediction, the paper's; true = the true label)</p>",
        f"<p>Hardware: {html.escape(env['processor'])}, {env['cpu_count']} CPUs, "
        f"GPUs: {html.escape(', '.join(env['gpus']) or 'none')}; Python {env['python']} on {html.escape(env['platform'])}</p>",
        "<h3>Protocol and attack budgets</h3>",
        f"<pre>{html.escape(yaml.safe_dump(prov.get('protocol', {}), sort_keys=False))}</pre>",
        "<h3>Where this run differs from the paper (config/paper.yaml)</h3>",
        table([{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()}
               for row in prov["differences_from_paper"]]),
        "<h3>Packages</h3>", table([{"package": k, "version": v} for k, v in env["packages"].items()]),
        "<h3>Data sets</h3>", table(prov["datasets"]),
        "<h3>Models</h3>", table(prov["models"]),
        "<h3>Wall time (seconds) and threads per rule</h3>", table(prov["wall_time_per_rule_s"]),
        "<h3>Config</h3>", f"<pre>{html.escape(yaml.safe_dump(prov['config'], sort_keys=False))}</pre>",
    ]
    style = "<style>body{font-family:sans-serif;margin:1em} table.prov{border-collapse:collapse} " \
            "table.prov td,table.prov th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style>"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title>{style}</head><body>" \
           + "\n".join(sections) + "</body></html>\n"


def write_provenance(yaml_path: str | Path, html_path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Collect the run's provenance and write it as YAML (machine-readable) and HTML (for the report)."""
    prov = collect_provenance(**kwargs)
    atomic_write_text(yaml_path, yaml.safe_dump(json.loads(json.dumps(prov, default=str)), sort_keys=False))
    atomic_write_text(html_path, _html_page(prov))
    return prov
