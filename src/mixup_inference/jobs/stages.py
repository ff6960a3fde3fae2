"""The workflow's jobs as plain functions: prepare -> train -> attack -> evaluate / adaptive (the robust
job, the robustness evaluation, is jobs.robust).

Each `run_*` function reads its input files, calls the library, and writes its output atomically;
the evaluate and adaptive jobs write evaluation artifacts (artifacts.py). The attack, evaluate and
adaptive jobs take their shared settings (seed, device, speed, batch and chunk sizes, N, the pool, the
test subset) as one `context.JobContext`.
The Snakemake scripts in workflow/scripts/ only unpack the `snakemake` object and call these, so
every job is importable and testable without Snakemake.

Randomness: every random choice is drawn from a generator seeded by
`derive_seed(config seed, <name of the choice>)`, so the same config gives the same numbers in
any job order, on any machine with the same hardware type. The data-level choices (test points,
targets, pool, training) draw on the CPU, identically on every device; the attacks' and defenses'
generators live on the job's device, so no random draw is copied from the host inside an attack
step or a defense chunk (on a CPU that is the same CPU generator as before).
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import torch

from ..core.attacks.specs import fig4_craft, parse_attack
from ..core.attacks.pgd import pgd
from ..core.data.datasets import load_dataset, prepare_dataset, to_float
from ..core.defenses.averaging import predict_probs
from ..core.defenses.specs import parse_setting
from ..core.metrics import accuracy_with_ci
from ..core.models.checkpoints import AUTHORS_ARCH
from ..core.models.downloads import check_sha256
from ..core.models.files import detect_format, load_model, load_model_file, save_model, save_program_model
from ..core.models.networks import build_model
from ..core.models.speed import enable_cudnn_benchmark, resolve_speed, speed_model
from ..core.training.loop import train
from ..core.training.config import TrainConfig
from ..core.utils import atomic_save, atomic_write_text, derive_seed, load_tensor_file, make_generator, resolve_device
from .artifacts import Evaluation, EvaluationMeta
from .batching import batches, resolve_batch_size, resolve_chunk_size
from .context import JobContext, defend, eval_model, load_attacked_points, predict, write_evaluation
from ..design.plan import AdaptiveRun
from .points import attack_labels, attacked_points, run_pool

__all__ = ["run_adaptive", "run_attack", "run_evaluate", "run_evaluate_group", "run_import", "run_prepare",
           "run_train"]


# ---------------------------------------------------------------- stages
def run_prepare(source: str, out_path: str | os.PathLike, *, download_root: str = "data/downloads",
                image_size: int = 32, synthetic: dict | None = None, seed: int = 0) -> None:
    dataset = prepare_dataset(source, out_path, download_root=download_root, image_size=image_size,
                              synthetic=synthetic or None, seed=seed)
    print(f"prepared {source}: {len(dataset.train_y)} train / {len(dataset.test_y)} test images, "
          f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size}x{dataset.image_size}")


def run_train(data_path: str, model_path: str, log_path: str, metrics_path: str, *, model_name: str,
              training: dict, checkpoint_dir: str, device: str = "auto", speed: dict | None = None) -> dict:
    """Train one model (resuming from `checkpoint_dir/last.pt` if present) and record its test accuracy.

    The training images go to the device once (no per-batch host copies); `speed` (the config's
    `speed:` section, see core.models.speed) picks channels-last and bf16 autocast, recorded in the metrics."""
    device = resolve_device(device)
    enable_cudnn_benchmark(device)
    data = load_dataset(data_path)
    config = TrainConfig(**{**training, "milestones": tuple(training.get("milestones", (100, 150)))})
    # The initial weights come from the config seed too (on CPU, so every device starts alike),
    # without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "model-init"))
        model = build_model(model_name, data.num_classes, data.in_channels, init=config.init)
    model = model.to(device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    resolved = resolve_speed(speed, device, purpose="train")
    print(f"speed: {resolved}")
    history = train(speed_model(model, resolved), train_x, train_y, config, checkpoint_dir=checkpoint_dir,
                    log_path=log_path, device=device)
    model.eval()
    probs = torch.cat([predict_probs(model, to_float(data.test_x[s]).to(device)).cpu()
                       for s in batches(len(data.test_y), 1000)])
    test = accuracy_with_ci(probs, data.test_y)
    metrics = {"model": model_name, "parameters": sum(p.numel() for p in model.parameters()),
               "regime": config.regime, "device": str(device), "speed": resolved, "test": test, "train": history}
    save_model(model, model_path, model_name=model_name, num_classes=data.num_classes,
               in_channels=data.in_channels, regime=config.regime, test_accuracy=test["accuracy"])
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float) + "\n")
    print(f"{config.regime}: test accuracy {test['accuracy']:.4f} "
          f"[{test['ci_low']:.4f}, {test['ci_high']:.4f}] on {test['n']} images")
    return metrics


def run_import(data_path: str, source_path: str, model_path: str, metrics_path: str, *, name: str,
               format: str = "auto", arch: str | None = None, sha256: str | None = None, source: str | None = None,
               device: str = "auto") -> dict:
    """A model from a file instead of training: `source_path` (a local file; `source` names where it came
    from, e.g. its URL) in `format` (core.models.files.MODEL_FORMATS) is checked against `sha256` when given,
    loaded and checked against the data set, written to `model_path` in this project's format (so every
    job downstream reads it as a trained model), and its test accuracy and sha256 to `metrics_path`."""
    actual = check_sha256(source_path, sha256, where=f"model file {source_path}",
                          fix="delete the file to download it again, or fix the config's sha256")
    data = load_dataset(data_path)
    if format == "auto":
        format = detect_format(source_path)
    model = load_model_file(source_path, format, num_classes=data.num_classes, arch=arch,
                            in_channels=data.in_channels, image_size=data.image_size)
    info = {"regime": name, "source": source or str(source_path), "format": format, "sha256": actual}
    architecture = {"authors": AUTHORS_ARCH, "state_dict": arch}.get(format)
    if format in ("torchscript", "export"):
        with open(source_path, "rb") as handle:
            save_program_model(handle.read(), model_path, program_format=format, num_classes=data.num_classes,
                               in_channels=data.in_channels, **info)
    elif format == "project":
        atomic_save(load_tensor_file(source_path, "model file", "give a file written by save_model"), model_path)
    else:
        save_model(model, model_path, model_name=architecture, num_classes=data.num_classes,
                   in_channels=data.in_channels, **info)
    device = resolve_device(device)
    model = load_model(model_path, device, num_classes=data.num_classes)  # what the jobs downstream get
    probs = torch.cat([predict_probs(model, to_float(data.test_x[s]).to(device)).cpu()
                       for s in batches(len(data.test_y), 500)])
    test = accuracy_with_ci(probs, data.test_y)
    metrics = {"model": architecture or format, "parameters": sum(p.numel() for p in model.parameters()),
               "device": str(device), "test": test, "train": {}, **info}
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float) + "\n")
    print(f"{name}: {format} model from {info['source']} (sha256 {actual}): test accuracy {test['accuracy']:.4f} "
          f"[{test['ci_low']:.4f}, {test['ci_high']:.4f}] on {test['n']} images")
    return metrics


def run_attack(data_path: str, model_path: str, out_path: str, *, attack: dict, job: JobContext,
               name: str = "") -> None:
    """Oblivious adversarial examples for the run's test subset (job.n_subset points), crafted on the bare model.
    Untargeted PGD pushes away from the model's clean prediction (attack["labels"] "prediction",
    the authors' code) or from the true label ("true"); targeted PGD pulls toward a random label
    different from the true one. The label choice is recorded in the file's meta."""
    device = resolve_device(job.device)
    batch_size = resolve_batch_size(job.batch_size, device)
    data = load_dataset(data_path)
    model = eval_model(model_path, device, data.num_classes, job.speed)
    indices, x, y, target = attacked_points(data, job.need("n_subset"), job.seed)
    x = x.to(device)
    clean_pred = predict(model, x, batch_size)
    labels = attack_labels(attack, clean_pred, y, target)
    attack = {**attack, "labels": attack.get("labels", "prediction")}
    # the name's spec (core.attacks.specs) crafts it; callers without a name (library use) get PGD
    craft = parse_attack(name).spec.craft if name else pgd
    if attack["steps"] == 0:
        x_adv = x
    else:
        generator = make_generator(derive_seed(job.seed, "attack", name), device)
        x_adv = torch.cat([
            craft(model, x[s], labels[s], eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"],
                  targeted=attack["targeted"], generator=generator)
            for s in batches(len(x), batch_size)
        ])
    adv_pred = predict(model, x_adv, batch_size).cpu()
    atomic_save({"x": x_adv.cpu(), "y": y, "target": target if attack["targeted"] else torch.full_like(y, -1),
                 "indices": indices, "clean_pred": clean_pred.cpu(), "meta": {"attack": name, **attack}}, out_path)
    print(f"{name}: bare-model accuracy {(adv_pred == y).float().mean():.4f} on {len(y)} points "
          f"(max |delta| = {(x_adv - x).abs().max():.5f})")


def run_evaluate(data_path: str, model_path: str, examples_path: str, out_path: str, *, defense: str, setting: str,
                 job: JobContext, meta: dict | None = None) -> None:
    """One defense with one setting on one attack's examples: per-point probabilities for the aggregate."""
    run_evaluate_group(data_path, model_path, examples_path, {(defense, setting): out_path}, job=job, meta=meta)


def run_evaluate_group(data_path: str, model_path: str, examples_path: str,
                       out_paths: Mapping[tuple[str, str], str | os.PathLike], *, job: JobContext,
                       meta: dict | None = None) -> None:
    """Every (defense, setting) of `out_paths` on one attack's examples, each written to its own file.

    The model, the examples and the MI pool are loaded (and moved to the device) once, and the
    undefended probabilities computed once, for all settings. Each setting draws from its own
    generator, seeded by `derive_seed(seed, "defense", defense, setting)`, so its artifact is the
    same whichever other settings share the job (the workflow's one job per (dataset, regime, attack)
    gives the same numbers as one job per setting). `meta`: {"dataset", "regime"} of the artifacts;
    `job`: its n_samples (N), pool_per_class, chunk_size, seed, device and speed."""
    device = resolve_device(job.device)
    chunk_size = resolve_chunk_size(job.chunk_size)
    n_samples = job.need("n_samples")
    data = load_dataset(data_path)
    model = eval_model(model_path, device, data.num_classes, job.speed)
    examples = load_tensor_file(examples_path, "adversarial examples file", "delete it and rerun to recreate it")
    x = examples["x"].to(device)
    pool = run_pool(data, job.need("pool_per_class"), job.seed, device)
    plain = predict_probs(model, x, chunk_size=chunk_size).float().cpu()
    for (defense, setting), out_path in out_paths.items():
        probs = defend(model, x, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                       seed=job.seed, device=device)
        info = EvaluationMeta(defense=defense, setting=setting, n_samples=n_samples, attack=examples["meta"]["attack"],
                              labels=examples["meta"].get("labels", "prediction"), **(meta or {}))
        write_evaluation(Evaluation(probs, plain, examples["y"], examples["target"], info), out_path,
                          f"{info.attack} / {defense} {setting}")


#: The MI mode each defense Fig. 4's adaptive attacks can see uses inside the attack.
_ADAPTIVE_MODES = {"mi_pl": "pl", "mi_ol": "ol"}


def _adaptive_mode(defense: str) -> str:
    if defense not in _ADAPTIVE_MODES:
        raise ValueError(f"adaptive attacks (paper, eot) attack MI-PL or MI-OL: defense={defense!r} must be one of "
                         f"{', '.join(_ADAPTIVE_MODES)}; attack other defenses with the robustness: section")
    return _ADAPTIVE_MODES[defense]


def run_adaptive(data_path: str, model_path: str, out_path: str, *, run: AdaptiveRun, attack: dict, n_test: int,
                 job: JobContext) -> None:
    """The paper's adaptive attack (Fig. 4), which sees the MI defense (run.fig4_kind "paper": App. B.2
    adaptive PGD; "eot": EOT PGD on MI's mixed copies; each crafted by its `AdaptiveSpec.craft`), then
    the same MI defense on its examples. Untargeted attacks push away from the labels
    `attack["labels"]` names (`points.attack_labels`), as the oblivious ones. Uses the first `n_test`
    points of the run's test subset (of size job.n_subset, the dataset's n_test), so they are among the
    oblivious evaluation's points. run.defense is mi_pl or mi_ol; `attack`: the threat model and steps
    of the attack run.attack names."""
    mode = _adaptive_mode(run.defense)
    points = load_attacked_points(data_path, model_path, n_test=n_test, job=job)
    x, labels = points.x, points.labels(attack)
    lam = parse_setting(run.defense, run.setting)["lam"]
    craft = fig4_craft(run.fig4_kind)
    generator = make_generator(derive_seed(job.seed, "adaptive", run.fig4_kind, run.attack, run.n_adaptive, run.defense,
                                           run.setting), points.device)
    per_batch = max(1, points.batch_size // run.n_adaptive)  # bounds the B x N_A mixed copies held for backward
    x_adv = torch.cat([
        craft(points.model, x[s], labels[s], *points.pool, lam=lam, mode=mode, n_adaptive=run.n_adaptive,
              eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"], targeted=attack["targeted"],
              generator=generator)
        for s in batches(len(x), per_batch)
    ])
    info = EvaluationMeta(defense=run.defense, setting=run.setting, adaptive=run.fig4_kind, n_adaptive=run.n_adaptive,
                          n_samples=job.need("n_samples"), attack=run.attack, labels=attack.get("labels", "prediction"),
                          dataset=run.dataset, regime=run.regime)
    points.evaluate(x_adv, info, out_path, targeted=attack["targeted"], plain_chunk_size=points.chunk_size,
                    title=f"adaptive {run.fig4_kind} {run.attack} N_A={run.n_adaptive} vs {run.defense} {run.setting}")
