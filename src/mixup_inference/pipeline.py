"""The workflow's jobs as plain functions: prepare -> train -> attack -> evaluate / adaptive.

Each `run_*` function reads its input files, calls the library, and writes its output atomically.
The Snakemake scripts in workflow/scripts/ only unpack the `snakemake` object and call these, so
every job is importable and testable without Snakemake.

Randomness: every random choice is drawn from a generator seeded by
`derive_seed(config seed, <name of the choice>)`, so the same config gives the same numbers in
any job order, on any machine with the same hardware type.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle  # only for its exception type: nothing here unpickles
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .attacks import adaptive_pgd, eot_pgd, pgd
from .data import build_pool, load_dataset, prepare_dataset, select_test_points, to_float
from .defenses import (
    mi_combined,
    mixup_inference,
    predict_probs,
    random_crop_resize,
    random_resize_pad,
    random_rotation,
    gaussian_noise,
)
from .metrics import accuracy_with_ci
from .models import build_model
from .settings import parse_attack, parse_setting
from .training import TrainConfig, TrainingDiverged, train
from .utils import (
    atomic_save,
    atomic_write_text,
    derive_seed,
    load_checkpoint,
    make_generator,
    randint,
    resolve_device,
)


# ---------------------------------------------------------------- job plumbing
class JobInterrupted(BaseException):
    """Raised inside a job (by `job_log`'s SIGTERM handler) when the job is cancelled or preempted.
    A BaseException, so library code that handles errors (``except Exception``) never swallows it."""


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise JobInterrupted(signal.Signals(signum).name)


def _new_line(log: Any, path: Path) -> None:
    """End a line left open in the log (e.g. by an interrupted progress bar)."""
    log.flush()
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            log.write("\n")


@contextlib.contextmanager
def job_log(path: str | os.PathLike, threads: int | None = None) -> Iterator[None]:
    """Send everything the job prints (stdout, stderr, tracebacks) to its log file, with a header
    that says where it ran (host, SLURM job id, threads, versions). Restores the streams after.

    For a workflow job script (``with job_log(snakemake.log[0]): run_...(...)``). On failure the
    log ends with one line ``ERROR: <message>``:
    - a ValueError is bad input whose message names the problem and the fix, and TrainingDiverged
      (NaN loss) names the epoch and the kept checkpoint: both logged without a traceback; the job exits with status 1 and prints the same line (and the log's path) to
      stderr, where Snakemake shows it;
    - SIGTERM (job cancelled, or preempted by the scheduler) and SIGINT stop the job as an exception,
      so ``finally`` blocks run (no temporary files are left behind); exit status 143 / 130;
    - anything else is a bug: logged with its traceback, then re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(int(threads))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    failure: tuple[str, int] | None = None
    streams = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)  # what C code and child processes write
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log  # what Python writes, whatever sys.stdout was (e.g. under pytest)
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main_thread else None
        try:
            print(
                f"# job started {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}"
                f" | SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', 'none')}"
                f" | threads={torch.get_num_threads()} | torch {torch.__version__}"
                f" | cuda={torch.cuda.is_available()}",
                flush=True,
            )
            start = time.perf_counter()
            yield
            print(f"# job finished in {time.perf_counter() - start:.1f} s", flush=True)
        except (ValueError, TrainingDiverged) as error:
            failure = (f"ERROR: {error}", 1)
        except (JobInterrupted, KeyboardInterrupt) as error:
            name = str(error) if isinstance(error, JobInterrupted) else "SIGINT"
            failure = (f"ERROR: job stopped by {name} (cancelled or preempted); rerun the workflow to continue "
                       "(training resumes from its last checkpoint)", 143 if name == "SIGTERM" else 130)
        except BaseException as error:
            _new_line(log, path)
            traceback.print_exc()
            print(f"ERROR: {type(error).__name__}: {error}", flush=True)
            raise
        finally:
            if failure is not None:
                _new_line(log, path)
                print(failure[0], flush=True)
            log.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous_handler)
    if failure is not None:
        print(f"{failure[0]}\n(log: {path})", file=sys.stderr, flush=True)
        raise SystemExit(failure[1])


def load_artifact(path: str | os.PathLike, what: str, fix: str) -> Any:
    """`utils.load_checkpoint` (weights_only: tensors and plain containers, never arbitrary Python
    objects) with one-line ValueErrors naming `what` file is wrong and the `fix`."""
    try:
        return load_checkpoint(path)
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist; {fix}") from None
    except pickle.UnpicklingError:
        raise ValueError(f"{what} {path} holds pickled Python objects, not only tensors; it was not written by "
                         f"this workflow and is not loaded (unpickling could run code); {fix}") from None
    except Exception as error:  # torch raises RuntimeError/KeyError/EOFError/... for a damaged file
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ValueError(f"{what} {path} is unreadable (truncated or corrupt: {type(error).__name__}: {first}); "
                         f"{fix}") from None


def save_model(model: nn.Module, path: str | os.PathLike, *, model_name: str, num_classes: int,
               in_channels: int, **meta: Any) -> None:
    """Write a model file that `load_model` (weights_only) can read back into the same architecture."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"state_dict": state, "model_name": model_name, "num_classes": num_classes,
                 "in_channels": in_channels, "meta": meta}, path)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", *,
               num_classes: int | None = None) -> nn.Module:
    """Rebuild the architecture recorded in a model file and load its weights (eval mode).
    ValueError (naming the file and the fix) for an unreadable file, a file that is not a model
    written by `save_model`, another class count than `num_classes`, or weights that do not fit."""
    ckpt = load_artifact(path, "model file", "delete it and rerun to retrain")
    keys = ("state_dict", "model_name", "num_classes", "in_channels")
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in keys):
        raise ValueError(f"{path} is not a model file written by save_model (needs keys {', '.join(keys)}); "
                         "delete it and rerun to retrain")
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ValueError(f"model {path} has {ckpt['num_classes']} classes but the data set has {num_classes}; "
                         "retrain it (delete the file) for this data set")
    model = build_model(ckpt["model_name"], ckpt["num_classes"], ckpt["in_channels"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"model {path} does not match architecture {ckpt['model_name']!r}: "
                         f"{str(error).splitlines()[0]}; delete it and retrain") from None
    return model.to(device).eval()


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# ---------------------------------------------------------------- stages
def run_prepare(source: str, out_path: str | os.PathLike, *, download_root: str = "data/downloads",
                image_size: int = 32, synthetic: dict | None = None, seed: int = 0) -> None:
    dataset = prepare_dataset(source, out_path, download_root=download_root, image_size=image_size,
                              synthetic=synthetic or None, seed=seed)
    print(f"prepared {source}: {len(dataset.train_y)} train / {len(dataset.test_y)} test images, "
          f"{dataset.num_classes} classes, {dataset.in_channels}x{dataset.image_size}x{dataset.image_size}")


def run_train(data_path: str, model_path: str, log_path: str, metrics_path: str, *, model_name: str,
              training: dict, checkpoint_dir: str, device: str = "auto") -> dict:
    """Train one model (resuming from `checkpoint_dir/last.pt` if present) and record its test accuracy."""
    device = resolve_device(device)
    data = load_dataset(data_path)
    config = TrainConfig(**{**training, "milestones": tuple(training.get("milestones", (100, 150)))})
    # The initial weights come from the config seed too (on CPU, so every device starts alike),
    # without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "model-init"))
        model = build_model(model_name, data.num_classes, data.in_channels)
    model = model.to(device)
    history = train(model, data.train_x, data.train_y, config, checkpoint_dir=checkpoint_dir,
                    log_path=log_path, device=device)
    model.eval()
    probs = torch.cat([predict_probs(model, to_float(data.test_x[s]).to(device)).cpu()
                       for s in _batches(len(data.test_y), 1000)])
    test = accuracy_with_ci(probs, data.test_y)
    metrics = {"model": model_name, "parameters": sum(p.numel() for p in model.parameters()),
               "regime": config.regime, "device": str(device), "test": test, "train": history}
    save_model(model, model_path, model_name=model_name, num_classes=data.num_classes,
               in_channels=data.in_channels, regime=config.regime, test_accuracy=test["accuracy"])
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float) + "\n")
    print(f"{config.regime}: test accuracy {test['accuracy']:.4f} "
          f"[{test['ci_low']:.4f}, {test['ci_high']:.4f}] on {test['n']} images")
    return metrics


def test_subset(data, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's fixed attacked test points: (indices, x in [0,1], true labels, targeted-attack targets).
    Same for every regime, attack and defense of a run (seeded by the config seed only)."""
    indices = select_test_points(len(data.test_y), n_test, generator=make_generator(derive_seed(seed, "test-points")))
    x = to_float(data.test_x[indices])
    y = data.test_y[indices]
    # A random target different from the true label (uniform over the other classes).
    offset = randint(data.num_classes - 1, (len(y),), generator=make_generator(derive_seed(seed, "targets")),
                     device=y.device)
    target = (y + 1 + offset) % data.num_classes
    return indices, x, y, target


# Images per attack batch for batch_size "auto". On a CPU a forward+backward costs least per image at
# 16-64 images (activations stay in cache; 1.7x more per image at 256: reports/bench/bench.md, "Bare
# model cost vs images per pass"); a GPU wants large batches.
AUTO_ATTACK_BATCH = {"cpu": 32, "cuda": 512}


def resolve_batch_size(batch_size: int | str, device: torch.device) -> int:
    """`batch_size` itself, or the per-device default (AUTO_ATTACK_BATCH) for "auto"."""
    if batch_size == "auto":
        return AUTO_ATTACK_BATCH.get(device.type, AUTO_ATTACK_BATCH["cuda"])
    return int(batch_size)


def resolve_chunk_size(chunk_size: int | str | None) -> int | None:
    """`chunk_size` itself, or None for "auto": the defenses then pick their per-device default."""
    return None if chunk_size in (None, "auto") else int(chunk_size)


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([predict_probs(model, x[s]) for s in _batches(len(x), batch_size)]).argmax(1)


def run_attack(data_path: str, model_path: str, out_path: str, *, attack: dict, n_test: int,
               batch_size: int | str = "auto", seed: int = 0, device: str = "auto", name: str = "") -> None:
    """Oblivious adversarial examples for the run's test subset, crafted on the bare model.
    Untargeted PGD pushes away from the model's clean prediction (as the authors' code);
    targeted PGD pulls toward a random label different from the true one."""
    device = resolve_device(device)
    batch_size = resolve_batch_size(batch_size, device)
    data = load_dataset(data_path)
    model = load_model(model_path, device, num_classes=data.num_classes)
    indices, x, y, target = test_subset(data, n_test, seed)
    x = x.to(device)
    clean_pred = _predict(model, x, batch_size)
    if attack["steps"] == 0:
        x_adv = x
    else:
        labels = target.to(device) if attack["targeted"] else clean_pred
        generator = make_generator(derive_seed(seed, "attack", name))
        x_adv = torch.cat([
            pgd(model, x[s], labels[s], eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"],
                targeted=attack["targeted"], generator=generator)
            for s in _batches(len(x), batch_size)
        ])
    adv_pred = _predict(model, x_adv, batch_size).cpu()
    atomic_save({"x": x_adv.cpu(), "y": y, "target": target if attack["targeted"] else torch.full_like(y, -1),
                 "indices": indices, "clean_pred": clean_pred.cpu(), "meta": {"attack": name, **attack}}, out_path)
    print(f"{name}: bare-model accuracy {(adv_pred == y).float().mean():.4f} on {len(y)} points "
          f"(max |delta| = {(x_adv - x).abs().max():.5f})")


def sample_pool(data, per_class: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The MI sample pool (from the train split, per class, seeded by the config seed only)."""
    pool_x, pool_y = build_pool(data.train_x, data.train_y, per_class=per_class, num_classes=data.num_classes,
                                generator=make_generator(derive_seed(seed, "pool")))
    return to_float(pool_x).to(device), pool_y.to(device)


def apply_defense(model: nn.Module, x: torch.Tensor, defense: str, setting: str, *, pool: tuple[torch.Tensor, torch.Tensor],
                  n_samples: int, chunk_size: int | None, generator: torch.Generator) -> torch.Tensor:
    """Averaged softmax of `defense` with its canonical `setting` (see settings.py) on inputs x."""
    kwargs = parse_setting(defense, setting)
    common = {"generator": generator, "chunk_size": chunk_size}
    if defense == "none":
        return predict_probs(model, x, chunk_size=chunk_size)
    if defense in ("mi_pl", "mi_ol"):
        return mixup_inference(model, x, *pool, mode=defense[3:], n_samples=n_samples, **kwargs, **common)
    if defense == "mi_combined":  # the authors' 5 MI-PL + 15 MI-OL executions
        return mi_combined(model, x, *pool, **kwargs, **common)
    baseline = {"gaussian": gaussian_noise, "rotation": random_rotation, "xie": random_resize_pad,
                "guo": random_crop_resize}[defense]
    return baseline(model, x, n_samples=n_samples, **kwargs, **common)


def run_evaluate(data_path: str, model_path: str, examples_path: str, out_path: str, *, defense: str, setting: str,
                 n_samples: int, chunk_size: int | str | None = "auto", pool_per_class: int, seed: int = 0,
                 device: str = "auto", meta: dict | None = None) -> None:
    """One defense with one setting on one attack's examples: per-point probabilities for the aggregate."""
    device = resolve_device(device)
    chunk_size = resolve_chunk_size(chunk_size)
    data = load_dataset(data_path)
    model = load_model(model_path, device, num_classes=data.num_classes)
    examples = load_artifact(examples_path, "adversarial examples file", "delete it and rerun to recreate it")
    x = examples["x"].to(device)
    pool = sample_pool(data, pool_per_class, seed, device)
    generator = make_generator(derive_seed(seed, "defense", defense, setting))
    probs = apply_defense(model, x, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                          generator=generator)
    plain = predict_probs(model, x, chunk_size=chunk_size)
    meta = {"defense": defense, "setting": setting, "adaptive": "none", "n_adaptive": 0,
            "n_samples": n_samples, "attack": examples["meta"]["attack"], **(meta or {})}
    atomic_save({"probs": probs.float().cpu(), "plain_probs": plain.float().cpu(), "y": examples["y"],
                 "target": examples["target"], "meta": meta}, out_path)
    acc = accuracy_with_ci(probs.cpu(), examples["y"])
    print(f"{meta['attack']} / {defense} {setting}: accuracy {acc['accuracy']:.4f} "
          f"[{acc['ci_low']:.4f}, {acc['ci_high']:.4f}] (n={acc['n']})")


def run_adaptive(data_path: str, model_path: str, out_path: str, *, attack: dict, attack_name: str, kind: str,
                 defense: str, setting: str, n_adaptive: int, n_test: int, n_subset: int, n_samples: int,
                 chunk_size: int | str | None = "auto", pool_per_class: int, batch_size: int | str = "auto",
                 seed: int = 0, device: str = "auto",
                 meta: dict | None = None) -> None:
    """An adaptive attack that sees the MI defense ("paper": App. B.2 adaptive PGD; "eot": EOT PGD),
    then the same MI defense on its examples. Uses the first `n_test` points of the run's test subset
    (of size `n_subset`, the dataset's n_test), so they are among the oblivious evaluation's points."""
    device = resolve_device(device)
    batch_size, chunk_size = resolve_batch_size(batch_size, device), resolve_chunk_size(chunk_size)
    data = load_dataset(data_path)
    model = load_model(model_path, device, num_classes=data.num_classes)
    _, x, y, target = test_subset(data, n_subset, seed)
    x, y, target = x[:n_test].to(device), y[:n_test], target[:n_test]
    pool = sample_pool(data, pool_per_class, seed, device)
    labels = target.to(device) if attack["targeted"] else _predict(model, x, batch_size)
    mode = defense[3:]
    lam = parse_setting(defense, setting)["lam"]
    craft = {"paper": adaptive_pgd, "eot": eot_pgd}[kind]
    generator = make_generator(derive_seed(seed, "adaptive", kind, attack_name, n_adaptive, defense, setting))
    per_batch = max(1, batch_size // n_adaptive)  # bounds the B x N_A mixed copies held for backward
    x_adv = torch.cat([
        craft(model, x[s], labels[s], *pool, lam=lam, mode=mode, n_adaptive=n_adaptive, eps=attack["eps"],
              step_size=attack["step_size"], steps=attack["steps"], targeted=attack["targeted"], generator=generator)
        for s in _batches(len(x), per_batch)
    ])
    eval_generator = make_generator(derive_seed(seed, "defense", defense, setting))
    probs = apply_defense(model, x_adv, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                          generator=eval_generator)
    plain = predict_probs(model, x_adv, chunk_size=chunk_size)
    meta = {"defense": defense, "setting": setting, "adaptive": kind, "n_adaptive": n_adaptive,
            "n_samples": n_samples, "attack": attack_name, **(meta or {})}
    atomic_save({"probs": probs.float().cpu(), "plain_probs": plain.float().cpu(), "y": y,
                 "target": target if attack["targeted"] else torch.full_like(y, -1), "meta": meta}, out_path)
    acc = accuracy_with_ci(probs.cpu(), y)
    print(f"adaptive {kind} {attack_name} N_A={n_adaptive} vs {defense} {setting}: accuracy {acc['accuracy']:.4f} "
          f"[{acc['ci_low']:.4f}, {acc['ci_high']:.4f}] (n={acc['n']})")


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
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "packages": packages,
    }


__all__ = ["JobInterrupted", "job_log", "load_artifact", "save_model", "load_model", "run_prepare", "run_train",
           "test_subset", "run_attack", "sample_pool", "apply_defense", "run_evaluate", "run_adaptive",
           "environment_summary", "parse_attack"]
