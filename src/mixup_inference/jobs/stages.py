"""The workflow's jobs as plain functions: prepare -> train -> attack -> evaluate / adaptive / robust.

Each `run_*` function reads its input files, calls the library, and writes its output atomically;
the evaluate, adaptive and robust jobs write evaluation artifacts (artifacts.py).
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
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from ..core.attack_specs import parse_attack
from ..core.attacks import adaptive_pgd, eot_pgd, pgd
from ..core.data import load_dataset, prepare_dataset, to_float
from ..core.averaging import predict_probs
from ..core.defense_specs import apply_defense, parse_setting
from ..core.metrics import accuracy_with_ci
from ..core.checkpoints import AUTHORS_ARCH
from ..core.downloads import check_sha256
from ..core.modelfiles import detect_format, load_model, load_model_file, save_model, save_program_model
from ..core.models import build_model
from ..core.speed import enable_cudnn_benchmark, resolve_speed, speed_model
from ..core.training import train
from ..core.trainconfig import TrainConfig
from ..core.utils import atomic_save, atomic_write_text, derive_seed, load_tensor_file, make_generator, resolve_device
from . import artifacts
from .artifacts import Evaluation, EvaluationMeta, RobustBudget, RobustSchedule
from .batching import batches, resolve_batch_size, resolve_chunk_size
from .cascade import run_schedule
from .plan import robust_options, robust_runs
from .points import attack_labels, attacked_points, run_pool

__all__ = ["run_adaptive", "run_attack", "run_evaluate", "run_evaluate_group", "run_import", "run_prepare",
           "run_robust", "run_train"]


# ---------------------------------------------------------------- stages
def run_prepare(source: str, out_path: str | os.PathLike, *, download_root: str = "data/downloads",
                image_size: int = 32, synthetic: dict | None = None, seed: int = 0) -> None:
    dataset = prepare_dataset(source, out_path, download_root=download_root, image_size=image_size,
                              synthetic=synthetic or None, seed=seed)
    print(f"prepared {source}: {len(dataset.train_y)} train / {len(dataset.test_y)} test images, "
          f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size}x{dataset.image_size}")


def _eval_model(model_path: str, device: torch.device, num_classes: int, speed: dict | None) -> nn.Module:
    """The job's model for attacks and evaluations, with the config's eval fast paths (fp32 unless
    `speed.eval_bf16`); prints what it uses, for the job log."""
    enable_cudnn_benchmark(device)
    resolved = resolve_speed(speed, device, purpose="eval")
    print(f"speed: {resolved}")
    return speed_model(load_model(model_path, device, num_classes=num_classes), resolved)


def run_train(data_path: str, model_path: str, log_path: str, metrics_path: str, *, model_name: str,
              training: dict, checkpoint_dir: str, device: str = "auto", speed: dict | None = None) -> dict:
    """Train one model (resuming from `checkpoint_dir/last.pt` if present) and record its test accuracy.

    The training images go to the device once (no per-batch host copies); `speed` (the config's
    `speed:` section, see core.speed) picks channels-last and bf16 autocast, recorded in the metrics."""
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
    from, e.g. its URL) in `format` (modelfiles.MODEL_FORMATS) is checked against `sha256` when given,
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


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([predict_probs(model, x[s]) for s in batches(len(x), batch_size)]).argmax(1)


def run_attack(data_path: str, model_path: str, out_path: str, *, attack: dict, n_test: int,
               batch_size: int | str = "auto", seed: int = 0, device: str = "auto", name: str = "",
               speed: dict | None = None) -> None:
    """Oblivious adversarial examples for the run's test subset, crafted on the bare model.
    Untargeted PGD pushes away from the model's clean prediction (attack["labels"] "prediction",
    the authors' code) or from the true label ("true"); targeted PGD pulls toward a random label
    different from the true one. The label choice is recorded in the file's meta."""
    device = resolve_device(device)
    batch_size = resolve_batch_size(batch_size, device)
    data = load_dataset(data_path)
    model = _eval_model(model_path, device, data.num_classes, speed)
    indices, x, y, target = attacked_points(data, n_test, seed)
    x = x.to(device)
    clean_pred = _predict(model, x, batch_size)
    labels = attack_labels(attack, clean_pred, y, target)
    attack = {**attack, "labels": attack.get("labels", "prediction")}
    # the name's spec (core.attack_specs) crafts it; callers without a name (library use) get PGD
    craft = parse_attack(name).spec.craft if name else pgd
    if attack["steps"] == 0:
        x_adv = x
    else:
        generator = make_generator(derive_seed(seed, "attack", name), device)
        x_adv = torch.cat([
            craft(model, x[s], labels[s], eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"],
                  targeted=attack["targeted"], generator=generator)
            for s in batches(len(x), batch_size)
        ])
    adv_pred = _predict(model, x_adv, batch_size).cpu()
    atomic_save({"x": x_adv.cpu(), "y": y, "target": target if attack["targeted"] else torch.full_like(y, -1),
                 "indices": indices, "clean_pred": clean_pred.cpu(), "meta": {"attack": name, **attack}}, out_path)
    print(f"{name}: bare-model accuracy {(adv_pred == y).float().mean():.4f} on {len(y)} points "
          f"(max |delta| = {(x_adv - x).abs().max():.5f})")


def run_evaluate(data_path: str, model_path: str, examples_path: str, out_path: str, *, defense: str, setting: str,
                 n_samples: int, chunk_size: int | str | None = "auto", pool_per_class: int, seed: int = 0,
                 device: str = "auto", meta: dict | None = None, speed: dict | None = None) -> None:
    """One defense with one setting on one attack's examples: per-point probabilities for the aggregate."""
    run_evaluate_group(data_path, model_path, examples_path, {(defense, setting): out_path}, n_samples=n_samples,
                       chunk_size=chunk_size, pool_per_class=pool_per_class, seed=seed, device=device, meta=meta,
                       speed=speed)


# ------------------------------------------------- evaluation artifacts (evaluate, adaptive, robust)
def _defend(model: nn.Module, x: torch.Tensor, defense: str, setting: str, *, pool: tuple[torch.Tensor, torch.Tensor],
            n_samples: int, chunk_size: int | None, seed: int, device: torch.device) -> torch.Tensor:
    """The defense as the evaluation runs it (float32 probabilities on the CPU): N = `n_samples`
    executions drawn from its evaluation generator, `derive_seed(seed, "defense", defense, setting)`,
    the same for every job that evaluates this setting (oblivious, adaptive or robust)."""
    generator = make_generator(derive_seed(seed, "defense", defense, setting), device)
    return apply_defense(model, x, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                         generator=generator).float().cpu()


def _write_evaluation(evaluation: Evaluation, out_path: str | os.PathLike, title: str) -> None:
    """Save one evaluation artifact and print its accuracy with the 95% interval, for the job log."""
    artifacts.save(evaluation, out_path)
    acc = accuracy_with_ci(evaluation.probs, evaluation.y)
    print(f"{title}: accuracy {acc['accuracy']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}] (n={acc['n']})")


@dataclass(frozen=True)
class _AttackedPoints:
    """What an adaptive or robust job attacks and defends: the eval model on `device`, the first
    n_test points of the run's test subset (x on the device, y and target on the CPU), the bare
    model's clean prediction on them, the MI pool, and the resolved batch and chunk sizes."""

    model: nn.Module
    device: torch.device
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    clean_pred: torch.Tensor
    pool: tuple[torch.Tensor, torch.Tensor]
    batch_size: int
    chunk_size: int | None
    seed: int

    def labels(self, attack: dict) -> torch.Tensor:
        """The labels the attack is given (points.attack_labels)."""
        return attack_labels(attack, self.clean_pred, self.y, self.target)

    def evaluate(self, x_adv: torch.Tensor, meta: EvaluationMeta, out_path: str | os.PathLike, *, targeted: bool,
                 title: str, plain_chunk_size: int | None) -> None:
        """The defense of `meta` (N = meta.n_samples, its evaluation generator) and the bare model
        (in chunks of `plain_chunk_size`) on the adversarial `x_adv`, written as an evaluation artifact."""
        probs = _defend(self.model, x_adv, meta.defense, meta.setting, pool=self.pool, n_samples=meta.n_samples,
                        chunk_size=self.chunk_size, seed=self.seed, device=self.device)
        plain = predict_probs(self.model, x_adv, chunk_size=plain_chunk_size).float().cpu()
        target = self.target if targeted else torch.full_like(self.y, -1)
        _write_evaluation(Evaluation(probs, plain, self.y, target, meta), out_path, title)


def _attacked_points(data_path: str, model_path: str, *, n_test: int, n_subset: int, pool_per_class: int,
                     batch_size: int | str, chunk_size: int | str | None, seed: int, device: str,
                     speed: dict | None) -> _AttackedPoints:
    """Load the data and the model, and take the first `n_test` points of the run's test subset (of
    size `n_subset`, the dataset's n_test, so they are among the oblivious evaluation's points) and
    the run's MI pool: the start of every adaptive and robust job."""
    device = resolve_device(device)
    batch_size, chunk_size = resolve_batch_size(batch_size, device), resolve_chunk_size(chunk_size)
    data = load_dataset(data_path)
    model = _eval_model(model_path, device, data.num_classes, speed)
    _, x, y, target = attacked_points(data, n_subset, seed)
    x, y, target = x[:n_test].to(device), y[:n_test], target[:n_test]
    pool = run_pool(data, pool_per_class, seed, device)
    return _AttackedPoints(model=model, device=device, x=x, y=y, target=target,
                           clean_pred=_predict(model, x, batch_size), pool=pool, batch_size=batch_size,
                           chunk_size=chunk_size, seed=seed)


def run_evaluate_group(data_path: str, model_path: str, examples_path: str,
                       out_paths: Mapping[tuple[str, str], str | os.PathLike], *, n_samples: int,
                       chunk_size: int | str | None = "auto", pool_per_class: int, seed: int = 0,
                       device: str = "auto", meta: dict | None = None, speed: dict | None = None) -> None:
    """Every (defense, setting) of `out_paths` on one attack's examples, each written to its own file.

    The model, the examples and the MI pool are loaded (and moved to the device) once, and the
    undefended probabilities computed once, for all settings. Each setting draws from its own
    generator, seeded by `derive_seed(seed, "defense", defense, setting)`, so its artifact is the
    same whichever other settings share the job (the workflow's one job per (dataset, regime, attack)
    gives the same numbers as one job per setting). `meta`: {"dataset", "regime"} of the artifacts."""
    device = resolve_device(device)
    chunk_size = resolve_chunk_size(chunk_size)
    data = load_dataset(data_path)
    model = _eval_model(model_path, device, data.num_classes, speed)
    examples = load_tensor_file(examples_path, "adversarial examples file", "delete it and rerun to recreate it")
    x = examples["x"].to(device)
    pool = run_pool(data, pool_per_class, seed, device)
    plain = predict_probs(model, x, chunk_size=chunk_size).float().cpu()
    for (defense, setting), out_path in out_paths.items():
        probs = _defend(model, x, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size, seed=seed,
                        device=device)
        info = EvaluationMeta(defense=defense, setting=setting, n_samples=n_samples, attack=examples["meta"]["attack"],
                              labels=examples["meta"].get("labels", "prediction"), **(meta or {}))
        _write_evaluation(Evaluation(probs, plain, examples["y"], examples["target"], info), out_path,
                          f"{info.attack} / {defense} {setting}")


#: The MI mode each defense Fig. 4's adaptive attacks can see uses inside the attack.
_ADAPTIVE_MODES = {"mi_pl": "pl", "mi_ol": "ol"}


def _adaptive_mode(defense: str) -> str:
    if defense not in _ADAPTIVE_MODES:
        raise ValueError(f"adaptive attacks (paper, eot) attack MI-PL or MI-OL: defense={defense!r} must be one of "
                         f"{', '.join(_ADAPTIVE_MODES)}; attack other defenses with the robustness: section")
    return _ADAPTIVE_MODES[defense]


def run_adaptive(data_path: str, model_path: str, out_path: str, *, attack: dict, attack_name: str, kind: str,
                 defense: str, setting: str, n_adaptive: int, n_test: int, n_subset: int, n_samples: int,
                 chunk_size: int | str | None = "auto", pool_per_class: int, batch_size: int | str = "auto",
                 seed: int = 0, device: str = "auto", meta: dict | None = None, speed: dict | None = None) -> None:
    """An adaptive attack that sees the MI defense ("paper": App. B.2 adaptive PGD; "eot": EOT PGD),
    then the same MI defense on its examples. Untargeted attacks push away from the labels
    `attack["labels"]` names (`points.attack_labels`), as the oblivious ones. Uses the first `n_test`
    points of the run's test subset (of size `n_subset`, the dataset's n_test), so they are among the
    oblivious evaluation's points. `defense` is mi_pl or mi_ol; `meta`: {"dataset", "regime"}."""
    mode = _adaptive_mode(defense)
    job = _attacked_points(data_path, model_path, n_test=n_test, n_subset=n_subset, pool_per_class=pool_per_class,
                           batch_size=batch_size, chunk_size=chunk_size, seed=seed, device=device, speed=speed)
    x, labels = job.x, job.labels(attack)
    lam = parse_setting(defense, setting)["lam"]
    craft = {"paper": adaptive_pgd, "eot": eot_pgd}[kind]
    generator = make_generator(derive_seed(seed, "adaptive", kind, attack_name, n_adaptive, defense, setting),
                               job.device)
    per_batch = max(1, job.batch_size // n_adaptive)  # bounds the B x N_A mixed copies held for backward
    x_adv = torch.cat([
        craft(job.model, x[s], labels[s], *job.pool, lam=lam, mode=mode, n_adaptive=n_adaptive, eps=attack["eps"],
              step_size=attack["step_size"], steps=attack["steps"], targeted=attack["targeted"], generator=generator)
        for s in batches(len(x), per_batch)
    ])
    info = EvaluationMeta(defense=defense, setting=setting, adaptive=kind, n_adaptive=n_adaptive, n_samples=n_samples,
                          attack=attack_name, labels=attack.get("labels", "prediction"), **(meta or {}))
    job.evaluate(x_adv, info, out_path, targeted=attack["targeted"], plain_chunk_size=job.chunk_size,
                 title=f"adaptive {kind} {attack_name} N_A={n_adaptive} vs {defense} {setting}")


def run_robust(data_path: str, model_path: str, out_dir: str | os.PathLike, *, defense: str, setting: str,
               robustness: dict, attack: dict, n_subset: int, n_samples: int, chunk_size: int | str | None = "auto",
               pool_per_class: int, batch_size: int | str = "auto", seed: int = 0, device: str = "auto",
               meta: dict | None = None, speed: dict | None = None,
               oblivious: Sequence[str | os.PathLike] = ()) -> list[dict]:
    """The adaptive evaluation of one defense setting (issue 25): the attack runs of `robustness`
    (plan.robust_runs, cheapest first) in a cascade, with budgets doubled until the worst case stops
    falling (jobs.cascade.run_schedule) and every final example judged by R verdict runs.

    Points: the first robustness["n_test"] of the run's test subset (so they are among the oblivious
    evaluation's points). The cascade starts from the points that survive every oblivious evaluation of
    this setting (`oblivious`: their artifacts, the evaluate jobs'); each run attacks only the points every
    earlier run left (`cascade: false`: every point). The attacks see the defense with the run's
    "n_samples_attack" executions inside it; untargeted runs push away from attack["labels"] (Tramer et
    al.'s run: the true labels), targeted ones toward the run's targets.

    Verdicts: each final example is classified by R = robustness["repeats"] independent runs of the
    defense with its full N = n_samples executions (the first with the defense's evaluation generator,
    as every oblivious evaluation; the others from the run's verdict generator); a point is robust only
    if all R are correct (core.defended.repeated_verdicts).

    Writes one evaluation artifact per run that ran, `out_dir/<file>` (with ``attacked`` and
    ``repeat_correct``, jobs.artifacts), and `out_dir/schedule.json` (every run of the schedule: ran or
    skipped, points attacked, new breaks, survivors, converged). `meta`: {"dataset", "regime"}.
    Returns the schedule's records.

    Randomness: every run draws from generators named by the run and the setting only
    (`derive_seed(seed, "robust" | "robust-start" | "verdict", kind, attack, eot, defense, setting)`),
    never by which other runs exist. The random starts are drawn for all n points up front and
    indexed by point, so a point's start does not depend on which other points a cascade attacks
    with it. The defense's own draws inside an attack and in the verdicts come from one generator per
    run and batch: for a randomized defense they do depend on which points share the batch (a
    per-point generator would need a Python loop per point), so the cascade's per-point verdicts equal
    the un-cascaded ones exactly when the defense's draws do not change its output (the test uses
    Gaussian noise with sigma 0), and in distribution otherwise.
    """
    from ..core.defended import autoattack_rand, eot_pgd_through_defense, repeated_verdicts

    options = robust_options(robustness)
    repeats = options["repeats"]
    job = _attacked_points(data_path, model_path, n_test=int(robustness["n_test"]), n_subset=n_subset,
                           pool_per_class=pool_per_class, batch_size=batch_size, chunk_size=chunk_size, seed=seed,
                           device=device, speed=speed)
    x, n = job.x, len(job.y)
    y_device = job.y.to(job.device)
    num_classes = int(predict_probs(job.model, x[:1]).shape[1])
    alive = torch.ones(n, dtype=torch.bool, device=job.device)
    for path in oblivious:  # the cascade's first step: what the oblivious evaluations already broke
        artifact = artifacts.load(path)
        if len(artifact["y"]) < n or not torch.equal(artifact["y"][:n], job.y):
            raise ValueError(f"{path}: the oblivious evaluation holds other points than this job; rerun it from "
                             "the same data and config")
        alive &= artifacts.correct_points(artifact)[:n].to(job.device)
    os.makedirs(out_dir, exist_ok=True)
    finals: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def threat(run: dict) -> dict:
        """The run's attack settings: the config's `attacks:`, except where the run brings its own
        (Tramer et al.'s eps, step size, true labels and the defense it attacks through: plan.robust_runs)."""
        return {**attack, **{key: run[key] for key in ("eps", "step_size", "labels") if key in run},
                "targeted": run["targeted"]}

    def attack_run(run: dict, idx: torch.Tensor) -> torch.Tensor:
        """Attack the points idx with `run`, judge them by R verdict runs; bool [m] (all R correct)."""
        name = (run["kind"], run["attack"], run["eot"], defense, setting)
        m = int(idx.numel())
        if m == 0:
            finals[run["file"]] = (torch.empty(0, 0), torch.empty(0, 0), torch.empty(repeats, 0, dtype=torch.bool))
            return torch.zeros(0, dtype=torch.bool, device=job.device)
        xs = x[idx]
        generator = make_generator(derive_seed(seed, "robust", *name), job.device)
        inner = int(run["n_samples_attack"])
        per_batch = max(1, job.batch_size // inner)  # bounds the copies held for one gradient
        common = dict(pool=job.pool, n_samples=inner, generator=generator, chunk_size=job.chunk_size)
        settings = threat(run)
        labels = job.labels(settings).to(job.device)[idx]
        if run["kind"] == "autoattack_rand":
            x_adv = autoattack_rand(job.model, xs, labels, defense, setting, eps=settings["eps"], n_iter=run["steps"],
                                    eot_iter=run["eot"], n_restarts=run["n_restarts"],
                                    seed=derive_seed(seed, "robust-aa"), batch_size=per_batch, **common)
        else:
            inside = (run.get("defense", defense), run.get("setting", setting))
            # one U[-1, 1] start per point of the job, indexed by point (see the docstring)
            start_gen = make_generator(derive_seed(seed, "robust-start", *name), job.device)
            start = (torch.rand(tuple(x.shape), generator=start_gen, device=job.device, dtype=x.dtype) * 2 - 1)[idx]
            x_adv = torch.cat([
                eot_pgd_through_defense(job.model, xs[s], labels[s], *inside, eot=run["eot"], eps=settings["eps"],
                                        step_size=settings["step_size"], steps=run["steps"], targeted=run["targeted"],
                                        start=start[s], **common)
                for s in batches(m, max(1, per_batch // run["eot"]))
            ])
        probs = _defend(job.model, x_adv, defense, setting, pool=job.pool, n_samples=n_samples,
                        chunk_size=job.chunk_size, seed=seed, device=job.device)
        plain = predict_probs(job.model, x_adv).float().cpu()
        correct = [probs.argmax(1).to(job.device) == y_device[idx]]
        if repeats > 1:
            verdict_gen = make_generator(derive_seed(seed, "verdict", *name), job.device)
            correct += list(torch.cat([
                repeated_verdicts(job.model, x_adv[s], defense, setting, repeats=repeats - 1, n_samples=n_samples,
                                  pool=job.pool, generator=verdict_gen, chunk_size=job.chunk_size).argmax(2)
                for s in batches(m, max(1, job.batch_size // (repeats - 1)))
            ], dim=1) == y_device[idx])
        verdicts = torch.stack(correct)  # [R, m] on the device
        finals[run["file"]] = (probs, plain, verdicts.cpu())
        return verdicts.all(0)

    def record(run: dict, idx: torch.Tensor, _correct: torch.Tensor, result: dict) -> None:
        probs_sub, plain_sub, verdicts = finals.pop(run["file"])
        idx = idx.cpu()
        probs = torch.full((n, num_classes), float("nan"))
        plain = probs.clone()
        attacked = torch.zeros(n, dtype=torch.bool)
        repeat_correct = torch.zeros(repeats, n, dtype=torch.bool)
        if len(idx):
            probs[idx], plain[idx], attacked[idx], repeat_correct[:, idx] = probs_sub, plain_sub, True, verdicts
        settings = threat(run)
        budget = RobustBudget(n_samples_attack=int(run["n_samples_attack"]), eps=settings["eps"],
                              step_size=None if run["kind"] == "autoattack_rand" else settings["step_size"],
                              n_restarts=run.get("n_restarts", 1))
        schedule = RobustSchedule(cascade=options["cascade"], repeats=repeats, family=run["family"],
                                  level=int(run["level"]), converged=result["converged"])
        info = EvaluationMeta(defense=defense, setting=setting, adaptive=run["kind"], n_adaptive=run["eot"],
                              n_samples=n_samples, attack=run["attack"],
                              labels=settings.get("labels", "prediction"), robust=budget,
                              schedule=schedule, **(meta or {}))
        target = job.target if run["targeted"] else torch.full_like(job.y, -1)
        artifacts.save(Evaluation(probs, plain, job.y, target, info, attacked=attacked, repeat_correct=repeat_correct),
                       os.path.join(out_dir, run["file"]))
        print(f"{run['kind']} {run['attack']} EOT {run['eot']} x{run['n_samples_attack']} inside (level "
              f"{run['level']}) vs {defense} {setting}: attacked {result['attacked']}, broke {result['new_broken']} "
              f"new, worst case {result['survivors']}/{n}"
              + ("" if result["converged"] is None else f", converged: {result['converged']}"))

    start_alive = int(alive.sum())
    print(f"{defense} {setting}: {start_alive}/{n} points survive the {len(oblivious)} oblivious evaluations")
    results = run_schedule(robust_runs(robustness), alive, attack_run, cascade=options["cascade"],
                           tolerance=options["convergence"]["tolerance"], record=record)
    summary = {"cascade": options["cascade"], "repeats": repeats, "convergence": options["convergence"], "n": n,
               "oblivious": len(oblivious), "oblivious_survivors": start_alive,
               "runs": [{key: r[key] for key in ("file", "kind", "attack", "targeted", "steps", "eot",
                                                 "n_samples_attack", "family", "level", "ladder", "cost", "ran",
                                                 "attacked", "new_broken", "survivors", "converged")}
                        for r in results]}
    atomic_write_text(os.path.join(out_dir, "schedule.json"), json.dumps(summary, indent=2) + "\n")
    return results
