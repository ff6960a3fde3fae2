"""Performance benchmark: every workload of the paper's grid against its hardware limit.

    python -m mixup_inference.bench [--quick] [--out reports/bench] [--threads T] [--repeats R]
                                    [--channels-last] [--autocast] [--compile [BACKEND]] [--device D]

Claim: the library's evaluations, attacks and training epochs run within a few percent of the
bare model passes they need, and batched MI-OL gets the whole speed-up over the authors'
per-image loop that batching allows. Evidence (3 full runs, compact_resnet, 32x32, 2-core Xeon
with AMX, 2 threads, torch 2.14, load average ~2): median ratios 0.93-1.01 on every row (targets
0.80-0.90), MI-OL 2.9x faster than the per-image loop against a 2.8x ceiling, MI peak memory
+0.0-0.3% from N = 10 to N = 100; ~170 s per run. Outputs: ``bench.json`` (every timing),
``bench.md`` and ``scaling.png`` in ``--out``.

Noise: the machine is shared, so every ratio is a median of pairs timed back to back. When the
load average exceeds the core count, OpenMP threads wait for each other (a forward of a tiny
model went from 0.8 ms to 190 ms with 2 threads at load 7): use ``--threads 1`` there.

Method. Every row pairs a *workload* (a library call) with its *limit*: the same model passes
(same batch shapes, same order, same grad mode) and nothing else, on pre-built inputs. Both are
timed back to back in this process, after warm-up, ``repeats`` times with alternating order,
and the row's ratio is the median over repeats of t_limit / t_workload (1.0 = no overhead;
higher is better). Timing medians and all samples are stored, so a reader can recompute it.
Model passes per row ("fwd" = forward under inference_mode; "fwd+bwd" = forward and
``torch.autograd.grad`` of the summed cross entropy w.r.t. the input, eval mode; "train step" =
train-mode forward, backward, SGD step):

- MI-PL / MI-OL (B inputs, N executions): fwd of B images (the prediction y_hat that Algorithm 1
  conditions on) + fwd of B*N images in chunks of ``chunk_size``. A second ratio, ``ratio_strict``,
  divides the fwd of the B*N mixed images alone by the workload time.
- MI-Combined: fwd B + fwd B*n_pl + fwd F*n_ol (F = inputs flagged; the threshold is set to the
  median confidence drop of these inputs so that about half are flagged, which exercises both
  branches). ``ratio_strict``: the mixed images only.
- Baselines (Gaussian, rotation, Xie, Guo): fwd of B*N images in chunks.
- PGD-k: k x fwd+bwd over the batch (untargeted and targeted).
- Adaptive PGD (paper, App. B.2): fwd B (the clean prediction) + k x fwd+bwd over B*N_A copies.
- EOT PGD: k x (fwd B, the current prediction MI conditions on, + fwd+bwd over B*N_A copies).
  ``ratio_strict`` for both: the k x fwd+bwd passes alone.
- Training epoch (regime r, ``n_batches`` batches of ``batch_size``): per batch, for AT and
  interpolated AT ``at_steps`` x fwd+bwd over the batch (PGD), then one train step over the batch
  (ERM, mixup) or twice the batch (AT, IAT: clean + adversarial). The workload is
  ``training.train`` for one epoch (uint8 data, augmentation, mixup, PGD, logging included).
- MI-OL speed-up over the authors' per-image loop (``authors_mi_ol_loop``: batch 1, the N
  executions as sequential single-image forwards, as in their attack_resnet_mixuptest_OL.py):
  speed-up = t_loop / t_batched_MI; ceiling = (batch-1 forward time) / (per-image time of the
  batched forwards MI-OL makes, i.e. its limit); the row's value is speed-up / ceiling.

Also measured: MI-OL cost vs N (1..100) and vs batch size (with its limit); the bare model's
per-image cost vs images per pass (which sets the library's CPU chunk size, 64); peak memory of
MI evaluation for N = 10 and 100 at a fixed chunk size (separate processes, peak RSS increase);
the fast paths of ``fastpath.fast_model`` and the chunk size (speed-up, largest probability
difference).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attacks import adaptive_pgd, eot_pgd, pgd
from .defenses import (
    _mixup_inference_given_labels,
    gaussian_noise,
    mi_combined,
    mixup_inference,
    default_chunk_size,
    predict_probs,
    random_crop_resize,
    random_crop_pad,
    random_rotation,
)
from .fastpath import fast_model
from .models import build_model
from .training import ADVERSARIAL_REGIMES, REGIMES, TrainConfig, make_optimizer, train
from .utils import atomic_write_text, make_generator, resolve_device

__all__ = ["BenchConfig", "authors_mi_ol_loop", "main", "run_benchmark", "write_markdown"]

TARGETS = {"mi": 0.90, "pgd": 0.90, "adaptive": 0.85, "baseline": 0.80, "training": 0.85, "speedup": 0.90}
MEMORY_GROWTH_TARGET = 0.10


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of every benchmark row (defaults: the full run, ~5 min on 2 CPU cores)."""

    model: str = "compact_resnet"         # models.MODEL_NAMES
    num_classes: int = 10
    image_size: int = 32                  # H = W, pixels
    channels: int = 3
    device: str = "cpu"                   # cpu | cuda | auto
    threads: int | None = None            # torch intra-op threads (None: torch's default, all cores)
    pool_per_class: int = 100             # MI pool images per class (float, as the workflow holds it)
    eval_batch: int = 32                  # inputs B per MI call
    baseline_batch: int = 16              # inputs B per baseline call
    n_samples: int = 30                   # executions N (paper: 30)
    chunk_size: int | None = None         # images per forward inside a defense (None: library default)
    lam: float = 0.5                      # MI mixup ratio
    pgd_batch: int = 16                   # images per PGD call
    pgd_steps: tuple[int, ...] = (10, 50)
    adaptive_batch: int = 8               # inputs per adaptive attack call (x N_A copies)
    n_adaptive: int = 10                  # N_A
    adaptive_steps: int = 5
    train_batch: int = 64                 # paper's batch size
    train_batches: int = 4                # batches per benchmarked epoch, ERM and mixup
    at_train_batches: int = 1             # batches per benchmarked epoch, AT and IAT (each = 11 passes)
    at_steps: int = 10                    # PGD steps inside AT (paper: 10)
    loop_batch: int = 8                   # inputs of the per-image-loop reference
    n_sweep: tuple[int, ...] = (1, 3, 10, 30, 100)
    n_sweep_batch: int = 4
    batch_sweep: tuple[int, ...] = (1, 4, 16, 64)
    batch_sweep_n: int = 10
    memory_ns: tuple[int, ...] = (10, 100)
    memory_batch: int = 16
    memory_chunk: int = 128
    chunk_sweep: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 512)  # per-image model cost vs batch
    chunk_sweep_images: int = 384         # images per point (at least one batch)
    repeats: int = 3                      # timed pairs per row (median reported)
    warmup: int = 1                       # untimed runs of workload and limit before timing
    seed: int = 0
    channels_last: bool = False           # fast paths applied to the model for every row
    autocast: bool = False
    compile: bool | str = False
    fast_path_rows: bool = True           # also compare the fast paths against the plain model
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """Tiny sizes for tests (< 30 s): every row and section, not meaningful numbers."""
        sizes = dict(model="tiny_cnn", image_size=16, pool_per_class=4, eval_batch=4, baseline_batch=4, n_samples=4,
                     chunk_size=None, pgd_batch=4, pgd_steps=(2, 3), adaptive_batch=2, n_adaptive=2,
                     adaptive_steps=2, train_batch=8, train_batches=2, at_train_batches=1, at_steps=2,
                     loop_batch=2, n_sweep=(1, 4), n_sweep_batch=2, batch_sweep=(1, 4), batch_sweep_n=2,
                     memory_ns=(2, 8), memory_batch=2, memory_chunk=8, chunk_sweep=(1, 8), chunk_sweep_images=16,
                     repeats=1, warmup=1, threads=1, quick=True)
        return cls(**{**sizes, **overrides})


# ----------------------------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    gc.collect()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _timed_limit(limit: Callable[[], Any], device: torch.device) -> tuple[float, float | None]:
    """(seconds, seconds of the strict part if `limit` returns them)."""
    gc.collect()
    _sync(device)
    start = time.perf_counter()
    part = limit()
    _sync(device)
    return time.perf_counter() - start, (float(part) if isinstance(part, float) else None)


def _part(fn: Callable[[], Any], device: torch.device) -> float:
    """Run `fn` inside a limit and return its seconds (the limit's strict part)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure_pair(workload: Callable[[], Any], limit: Callable[[], Any], *, repeats: int, warmup: int,
                 device: torch.device) -> dict[str, Any]:
    """Time `workload` and `limit` back to back `repeats` times (order alternating, after `warmup`
    untimed runs of each); ratio = median over repeats of t_limit / t_workload. If `limit` returns
    a float (the seconds of its strict part), ratio_strict = median of t_strict / t_workload."""
    for _ in range(warmup):
        limit()
        workload()
    t_work, t_limit, t_strict = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            lim, part = _timed_limit(limit, device)
            work = _timed(workload, device)
        else:
            work = _timed(workload, device)
            lim, part = _timed_limit(limit, device)
        t_work.append(work)
        t_limit.append(lim)
        t_strict.append(part)
    ratios = [lim / work for lim, work in zip(t_limit, t_work)]
    out = {"ratio": statistics.median(ratios), "ratio_samples": ratios,
           "t_workload_s": statistics.median(t_work), "t_limit_s": statistics.median(t_limit),
           "workload_samples_s": t_work, "limit_samples_s": t_limit}
    if all(part is not None for part in t_strict):
        out["ratio_strict"] = statistics.median(part / work for part, work in zip(t_strict, t_work))
        out["strict_samples_s"] = t_strict
    return out


# ----------------------------------------------------------------------------------------------
# Limits: the bare model passes of each workload


def _forward_chunks(model: nn.Module, images: Tensor, chunk_size: int) -> None:
    """Forward passes over `images` in chunks, eval mode, inference_mode (outputs discarded)."""
    with torch.inference_mode():
        for start in range(0, images.shape[0], chunk_size):
            model(images[start:start + chunk_size])


def _forward_backward(model: nn.Module, images: Tensor, labels: Tensor) -> None:
    """One forward + input-gradient pass of the summed cross entropy (eval mode), as PGD does."""
    leaf = images.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(leaf), labels, reduction="sum")
        torch.autograd.grad(loss, leaf)


def _train_limit(model: nn.Module, batches: list[tuple[Tensor, Tensor]], config: TrainConfig) -> None:
    """The bare passes of one training epoch: per batch, (AT regimes) at_steps fwd+bwd in eval
    mode, then one train-mode forward, backward and SGD step over the batch (AT: twice the batch)."""
    optimizer = make_optimizer(model, config)
    adversarial = config.regime in ADVERSARIAL_REGIMES
    for x, y in batches:
        inputs, labels = x, y
        if adversarial:
            model.eval()
            for _ in range(config.at_steps):
                _forward_backward(model, x, y)
            inputs, labels = torch.cat([x, x]), torch.cat([y, y])
        model.train()
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


# ----------------------------------------------------------------------------------------------
# The authors' per-image MI-OL loop (reference point only)


def authors_mi_ol_loop(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float,
                       n_samples: int, num_classes: int, seed: int = 0) -> Tensor:
    """MI-OL as the authors' attack_resnet_mixuptest_OL.py computes it: one test image at a time
    (batch 1), the pool held as one list of single images per class, and for each of the N
    executions a NumPy-drawn other label (rejection sampling), a NumPy-drawn image of it, one
    mix and one single-image forward pass; softmax outputs summed then divided by N.

    Differences, all in the reference's favour: torch.no_grad() around the forwards (the authors
    build autograd graphs), and only one image set (their loop also handles the adversarial copy).
    Returns [B, C] averaged probabilities.
    """
    rng = np.random.RandomState(seed)
    pool = {c: [pool_x[i:i + 1] for i in torch.nonzero(pool_y == c).flatten().tolist()]
            for c in range(num_classes)}
    rows = []
    model.eval()
    with torch.no_grad():
        for i in range(x.shape[0]):
            image = x[i:i + 1]
            predicted = int(model(image).argmax(1)[0])
            total = 0
            for _ in range(n_samples):
                label = rng.randint(num_classes)
                while label == predicted:
                    label = rng.randint(num_classes)
                pick = rng.randint(len(pool[label]))
                mixed = (1 - lam) * pool[label][pick] + lam * image
                total = total + F.softmax(model(mixed), dim=-1)
            rows.append(total / n_samples)
    return torch.cat(rows)


# ----------------------------------------------------------------------------------------------
# Set-up


@dataclass
class _Setup:
    cfg: BenchConfig
    device: torch.device
    chunk: int                 # the chunk size the library uses in this run (cfg.chunk_size resolved)
    model: nn.Module           # eval rows (possibly a FastModel)
    train_model: nn.Module     # training rows (a separate copy: training changes weights)
    pool_x: Tensor
    pool_y: Tensor
    log: Callable[[str], None] = print
    rows: list[dict] = field(default_factory=list)


def _wrap(model: nn.Module, cfg: BenchConfig) -> nn.Module:
    if cfg.channels_last or cfg.autocast or cfg.compile:
        return fast_model(model, channels_last=cfg.channels_last, autocast=cfg.autocast, compile=cfg.compile)
    return model


def _setup(cfg: BenchConfig, log: Callable[[str], None]) -> _Setup:
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    base = build_model(cfg.model, cfg.num_classes, cfg.channels).to(device).eval()
    train_base = copy.deepcopy(base)
    g = make_generator(cfg.seed)
    pool_y = torch.arange(cfg.num_classes).repeat_interleave(cfg.pool_per_class).to(device)
    pool_x = torch.rand((pool_y.shape[0], cfg.channels, cfg.image_size, cfg.image_size), generator=g).to(device)
    chunk = cfg.chunk_size if cfg.chunk_size is not None else default_chunk_size(device)
    return _Setup(cfg, device, chunk, _wrap(base, cfg), _wrap(train_base, cfg), pool_x, pool_y, log)


def _images(cfg: BenchConfig, n: int, device: torch.device, seed: int) -> Tensor:
    g = make_generator(seed)
    return torch.rand((n, cfg.channels, cfg.image_size, cfg.image_size), generator=g).to(device)


def _labels(cfg: BenchConfig, n: int, device: torch.device, seed: int) -> Tensor:
    return torch.randint(cfg.num_classes, (n,), generator=make_generator(seed)).to(device)


def _row(s: _Setup, *, name: str, group: str, workload: Callable[[], Any], limit: Callable[[], Any],
         definition: dict, units: int, unit: str, limit_images: int, strict_definition: str | None = None) -> dict:
    """Measure one row and store it with its definition, throughput and target."""
    cfg = s.cfg
    started = time.perf_counter()
    result = measure_pair(workload, limit, repeats=cfg.repeats, warmup=cfg.warmup, device=s.device)
    row = {"name": name, "group": group, "target": TARGETS[group], **definition, **result,
           "repeats": cfg.repeats, "warmup": cfg.warmup,
           "throughput": units / result["t_workload_s"], "throughput_unit": unit,
           "limit_images": limit_images, "limit_images_per_s": limit_images / result["t_limit_s"]}
    if strict_definition is not None:
        row["strict_definition"] = strict_definition
    row["meets_target"] = bool(row["ratio"] >= row["target"])
    row["seconds"] = time.perf_counter() - started
    s.rows.append(row)
    strict_text = f", strict {row['ratio_strict']:.3f}" if "ratio_strict" in row else ""
    s.log(f"  {name:<28} ratio {row['ratio']:.3f}{strict_text} (target {row['target']:.2f})  "
          f"{row['throughput']:.1f} {unit}  [{row['seconds']:.1f} s]")
    return row


# ----------------------------------------------------------------------------------------------
# Rows


def _mi_rows(s: _Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.eval_batch, cfg.n_samples, s.chunk
    x = _images(cfg, b, dev, 1)
    mixed = _images(cfg, b * n, dev, 2)
    call = (f"mixup_inference(model, x, pool_x, pool_y, lam={cfg.lam}, n_samples={n}, mode=..., "
            f"chunk_size={cfg.chunk_size} (= {chunk}))")
    for mode in ("pl", "ol"):
        def workload(mode: str = mode) -> Tensor:
            return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode=mode,
                                   generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
        _row(s, name=f"mi_{mode}", group="mi", workload=workload,
             limit=lambda: (_forward_chunks(model, x, chunk),
                            _part(lambda: _forward_chunks(model, mixed, chunk), dev))[1],
             definition={"workload": call.replace("mode=...", f"mode='{mode}'"), "inputs": b,
                         "limit": f"fwd {b} + fwd {b}x{n} images in chunks of {chunk}"},
             units=b, unit="inputs/s", limit_images=b * (n + 1), strict_definition=f"fwd {b}x{n} images only")

    # MI-Combined with a threshold that flags about half of the inputs (both branches run).
    plain = predict_probs(model, x, chunk_size=cfg.chunk_size)
    probs_pl = _mixup_inference_given_labels(model, x, plain.argmax(1), s.pool_x, s.pool_y, lam=0.5, n_samples=5,
                                             mode="pl", num_classes=plain.shape[1],
                                             generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
    drop = plain.max(1).values - probs_pl.max(1).values
    threshold = float(drop.median())
    flagged = int((drop >= threshold).sum())
    n_pl, n_ol = 5, 15
    mixed_pl, mixed_ol = _images(cfg, b * n_pl, dev, 3), _images(cfg, flagged * n_ol, dev, 4)

    def combined() -> Tensor:
        return mi_combined(model, x, s.pool_x, s.pool_y, threshold=threshold, generator=make_generator(cfg.seed),
                           chunk_size=cfg.chunk_size)

    def combined_limit() -> float:
        _forward_chunks(model, x, chunk)
        return _part(lambda: (_forward_chunks(model, mixed_pl, chunk), _forward_chunks(model, mixed_ol, chunk)), dev)

    _row(s, name="mi_combined", group="mi", workload=combined, limit=combined_limit,
         definition={"workload": f"mi_combined(model, x, pool_x, pool_y, lam_pl=0.5, lam_ol=0.4, n_pl=5, n_ol=15, "
                                 f"threshold={threshold:.4g} (median drop), chunk_size={cfg.chunk_size} (= {chunk}))",
                     "inputs": b, "flagged": flagged,
                     "limit": f"fwd {b} + fwd {b}x{n_pl} + fwd {flagged}x{n_ol} images in chunks of {chunk}"},
         units=b, unit="inputs/s", limit_images=b * (1 + n_pl) + flagged * n_ol,
         strict_definition=f"fwd {b}x{n_pl} + {flagged}x{n_ol} mixed images only")


def _baseline_rows(s: _Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.baseline_batch, cfg.n_samples, s.chunk
    x = _images(cfg, b, dev, 5)
    copies = _images(cfg, b * n, dev, 6)
    size = cfg.image_size
    baselines = {
        "gaussian": (gaussian_noise, {"sigma": 0.04}),
        "rotation": (random_rotation, {"max_degrees": 40.0}),
        "xie": (random_crop_pad, {"min_size": size // 2, "max_size": size * 3 // 4}),
        "guo": (random_crop_resize, {"min_size": size * 11 // 16, "max_size": size * 15 // 16}),
    }
    for name, (fn, kwargs) in baselines.items():
        def workload(fn: Callable = fn, kwargs: dict = kwargs) -> Tensor:
            return fn(model, x, n_samples=n, generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size, **kwargs)
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        _row(s, name=name, group="baseline", workload=workload,
             limit=lambda: _forward_chunks(model, copies, chunk),
             definition={"workload": f"{fn.__name__}(model, x, {args}, n_samples={n}, "
                                     f"chunk_size={cfg.chunk_size} (= {chunk}))",
                         "inputs": b, "limit": f"fwd {b}x{n} images in chunks of {chunk}"},
             units=b, unit="inputs/s", limit_images=b * n)


def _pgd_rows(s: _Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b = cfg.pgd_batch
    x, y = _images(cfg, b, dev, 7), _labels(cfg, b, dev, 8)
    for steps in cfg.pgd_steps:
        for targeted in (False, True):
            def workload(steps: int = steps, targeted: bool = targeted) -> Tensor:
                return pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=steps, targeted=targeted,
                           generator=make_generator(cfg.seed))

            def limit(steps: int = steps) -> None:
                model.eval()
                for _ in range(steps):
                    _forward_backward(model, x, y)
            _row(s, name=f"{'t' if targeted else ''}pgd{steps}", group="pgd", workload=workload, limit=limit,
                 definition={"workload": f"pgd(model, x, y, eps=8/255, step_size=2/255, steps={steps}, "
                                         f"targeted={targeted})", "inputs": b,
                             "limit": f"{steps} x fwd+bwd over {b} images"},
                 units=b, unit="images/s", limit_images=b * steps)


def _adaptive_rows(s: _Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, na, steps = cfg.adaptive_batch, cfg.n_adaptive, cfg.adaptive_steps
    x, y = _images(cfg, b, dev, 9), _labels(cfg, b, dev, 10)
    copies, y_copies = _images(cfg, b * na, dev, 11), y.repeat_interleave(na)
    common = dict(lam=cfg.lam, mode="ol", n_adaptive=na, eps=8 / 255, step_size=2 / 255, steps=steps)

    def passes() -> None:
        model.eval()
        for _ in range(steps):
            _forward_backward(model, copies, y_copies)

    def paper_limit() -> float:
        _forward_chunks(model, x, b)
        return _part(passes, dev)

    def eot_limit() -> float:
        model.eval()
        strict = 0.0
        for _ in range(steps):
            _forward_chunks(model, x, b)
            strict += _part(lambda: _forward_backward(model, copies, y_copies), dev)
        return strict

    for name, fn, limit, text in (
            ("adaptive_pgd", adaptive_pgd, paper_limit, f"fwd {b} + {steps} x fwd+bwd over {b}x{na} copies"),
            ("eot_pgd", eot_pgd, eot_limit, f"{steps} x (fwd {b} + fwd+bwd over {b}x{na} copies)")):
        def workload(fn: Callable = fn) -> Tensor:
            return fn(model, x, y, s.pool_x, s.pool_y, generator=make_generator(cfg.seed), **common)
        _row(s, name=name, group="adaptive", workload=workload, limit=limit,
             definition={"workload": f"{fn.__name__}(model, x, y, pool_x, pool_y, lam={cfg.lam}, mode='ol', "
                                     f"n_adaptive={na}, eps=8/255, step_size=2/255, steps={steps})",
                         "inputs": b, "limit": text},
             units=b, unit="inputs/s", limit_images=b * na * steps,
             strict_definition=f"{steps} x fwd+bwd over {b}x{na} copies only")


def _training_rows(s: _Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.train_model
    for regime in REGIMES:
        adversarial = regime in ADVERSARIAL_REGIMES
        n_batches = cfg.at_train_batches if adversarial else cfg.train_batches
        n_images = n_batches * cfg.train_batch
        g = make_generator(cfg.seed + 20)
        train_x = torch.randint(0, 256, (n_images, cfg.channels, cfg.image_size, cfg.image_size), generator=g,
                                dtype=torch.uint8)
        train_y = torch.randint(cfg.num_classes, (n_images,), generator=g)
        config = TrainConfig(regime=regime, epochs=1, batch_size=cfg.train_batch, at_steps=cfg.at_steps,
                             augment=True, seed=cfg.seed)
        batches = [(train_x[i:i + cfg.train_batch].to(dev).float() / 255, train_y[i:i + cfg.train_batch].to(dev))
                   for i in range(0, n_images, cfg.train_batch)]

        def workload(config: TrainConfig = config, train_x: Tensor = train_x, train_y: Tensor = train_y) -> dict:
            return train(model, train_x, train_y, config, device=dev, progress=False)
        passes = (f"{cfg.at_steps} x fwd+bwd over {cfg.train_batch} + train step over {2 * cfg.train_batch}"
                  if adversarial else f"train step over {cfg.train_batch}")
        _row(s, name=f"train_{regime}", group="training", workload=workload,
             limit=lambda config=config, batches=batches: _train_limit(model, batches, config),
             definition={"workload": f"train(model, uint8 [{n_images}, ...], labels, TrainConfig(regime='{regime}', "
                                     f"epochs=1, batch_size={cfg.train_batch}, at_steps={cfg.at_steps}, "
                                     f"augment=True), progress=False)",
                         "inputs": n_images, "limit": f"{n_batches} x ({passes}), SGD as TrainConfig"},
             units=n_images, unit="images/s",
             limit_images=n_images * ((cfg.at_steps + 2) if adversarial else 1))
    model.eval()


def _speedup_row(s: _Setup) -> None:
    """Batched MI-OL vs the authors' per-image loop, as a share of the batching ceiling."""
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.loop_batch, cfg.n_samples, s.chunk
    x = _images(cfg, b, dev, 12)
    mixed = _images(cfg, b * n, dev, 13)
    single = x[:1]

    def loop() -> Tensor:
        return authors_mi_ol_loop(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n,
                                  num_classes=cfg.num_classes, seed=cfg.seed)

    def batched() -> Tensor:
        return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                               generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)

    def batch_one() -> None:  # as many batch-1 forwards as the loop makes (no_grad, like the loop)
        with torch.no_grad():
            for _ in range(b * (n + 1)):
                model(single)

    def batched_limit() -> None:
        _forward_chunks(model, x, chunk)
        _forward_chunks(model, mixed, chunk)

    started = time.perf_counter()
    for _ in range(cfg.warmup):
        loop(), batched(), batch_one(), batched_limit()
    samples = []
    for r in range(cfg.repeats):
        order = [loop, batched, batch_one, batched_limit]
        times = {fn.__name__: _timed(fn, dev) for fn in (order if r % 2 == 0 else order[::-1])}
        speedup = times["loop"] / times["batched"]
        ceiling = times["batch_one"] / times["batched_limit"]
        samples.append({**times, "speedup": speedup, "ceiling": ceiling, "share": speedup / ceiling})
    med = {k: statistics.median(smp[k] for smp in samples) for k in samples[0]}
    row = {"name": "mi_ol_speedup_vs_loop", "group": "speedup", "target": TARGETS["speedup"],
           "workload": f"mixup_inference(..., mode='ol', n_samples={n}, chunk_size={cfg.chunk_size} (= {chunk})) "
                       f"on {b} inputs",
           "reference": f"authors_mi_ol_loop on the same {b} inputs ({b}x{n + 1} batch-1 forwards)",
           "ceiling_definition": f"t({b}x{n + 1} batch-1 forwards) / t(fwd {b} + fwd {b}x{n} in chunks of {chunk})",
           "definition": "ratio = median over repeats of (t_loop / t_batched) / ceiling",
           "inputs": b, "ratio": med["share"], "speedup": med["speedup"], "ceiling": med["ceiling"],
           "samples": samples, "repeats": cfg.repeats, "warmup": cfg.warmup,
           "throughput": b / med["batched"], "throughput_unit": "inputs/s",
           "loop_throughput": b / med["loop"], "limit_images": b * (n + 1),
           "limit_images_per_s": b * (n + 1) / med["batched_limit"],
           "batch1_images_per_s": b * (n + 1) / med["batch_one"]}
    row["meets_target"] = bool(row["ratio"] >= row["target"])
    row["seconds"] = time.perf_counter() - started
    s.rows.append(row)
    s.log(f"  {'mi_ol_speedup_vs_loop':<28} share {row['ratio']:.3f} (speed-up {row['speedup']:.2f}x, "
          f"ceiling {row['ceiling']:.2f}x; target {row['target']:.2f})  [{row['seconds']:.1f} s]")


# ----------------------------------------------------------------------------------------------
# Scaling with N and batch size


def _scaling(s: _Setup) -> dict:
    cfg, dev, model = s.cfg, s.device, s.model
    repeats = max(1, min(cfg.repeats, 2)) if not cfg.quick else 1
    out: dict[str, list] = {"n": [], "batch": []}

    def point(b: int, n: int) -> dict:
        x, mixed = _images(cfg, b, dev, 14), _images(cfg, b * n, dev, 15)

        def workload() -> Tensor:
            return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                   generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
        res = measure_pair(workload, lambda: (_forward_chunks(model, x, s.chunk),
                                              _forward_chunks(model, mixed, s.chunk)),
                           repeats=repeats, warmup=1, device=dev)
        return {"batch": b, "n_samples": n, "t_workload_s": res["t_workload_s"], "t_limit_s": res["t_limit_s"],
                "ratio": res["ratio"], "ms_per_input": 1e3 * res["t_workload_s"] / b,
                "ms_per_image": 1e3 * res["t_workload_s"] / (b * (n + 1)),
                "limit_ms_per_image": 1e3 * res["t_limit_s"] / (b * (n + 1))}

    started = time.perf_counter()
    for n in cfg.n_sweep:
        out["n"].append(point(cfg.n_sweep_batch, n))
    for b in cfg.batch_sweep:
        out["batch"].append(point(b, cfg.batch_sweep_n))
    out["definition"] = (f"MI-OL (lam={cfg.lam}, chunk_size={s.chunk}) timed against its limit "
                         f"(fwd B + fwd BxN), median of {repeats} pairs after 1 warm-up; N sweep at B="
                         f"{cfg.n_sweep_batch}, batch sweep at N={cfg.batch_sweep_n}")
    s.log(f"  scaling with N and batch size [{time.perf_counter() - started:.1f} s]")
    return out


def _chunk_sweep(s: _Setup) -> dict:
    """Per-image cost of the bare model passes vs the number of images per pass: forward
    (inference_mode, what a defense chunk costs) and forward+input-gradient (a PGD step)."""
    cfg, dev, model = s.cfg, s.device, s.model
    repeats = 1 if cfg.quick else 2
    started = time.perf_counter()
    x = _images(cfg, max(cfg.chunk_sweep_images, max(cfg.chunk_sweep)), dev, 21)
    y = _labels(cfg, x.shape[0], dev, 22)
    points = []
    model.eval()
    for size in cfg.chunk_sweep:
        n_img = max(size, cfg.chunk_sweep_images if size > 1 else cfg.chunk_sweep_images // 4)
        n_img -= n_img % size

        def forward(size: int = size, n_img: int = n_img) -> None:
            _forward_chunks(model, x[:n_img], size)

        def forward_backward(size: int = size, n_img: int = n_img) -> None:
            for start in range(0, n_img, size):
                _forward_backward(model, x[start:start + size], y[start:start + size])
        row = {"batch": size, "images": n_img}
        for name, fn in (("fwd", forward), ("fwd_bwd", forward_backward)):
            fn()
            row[f"{name}_ms_per_image"] = 1e3 * statistics.median(_timed(fn, dev) for _ in range(repeats)) / n_img
        points.append(row)
    best_fwd = min(points, key=lambda p: p["fwd_ms_per_image"])
    best_bwd = min(points, key=lambda p: p["fwd_bwd_ms_per_image"])
    out = {"points": points, "library_chunk": s.chunk,
           "best_fwd_batch": best_fwd["batch"], "best_fwd_bwd_batch": best_bwd["batch"],
           "definition": (f"median of {repeats} timings (after one warm-up) of passes over {cfg.chunk_sweep_images} "
                          "images (at least one batch; a quarter for batch 1) cut into batches of the given size; "
                          "fwd under inference_mode, fwd_bwd = forward + autograd.grad of the summed cross entropy "
                          "w.r.t. the input (eval mode)")}
    at_chunk = next((p for p in points if p["batch"] == s.chunk), None)
    if at_chunk is not None:
        out["library_chunk_vs_best_fwd"] = best_fwd["fwd_ms_per_image"] / at_chunk["fwd_ms_per_image"]
    s.log("  per-image ms vs batch: " + ", ".join(f"{p['batch']}: {p['fwd_ms_per_image']:.2f}/"
                                                 f"{p['fwd_bwd_ms_per_image']:.2f}" for p in points)
          + f" (fwd/fwd+bwd)  [{time.perf_counter() - started:.1f} s]")
    return out


def _ceiling_vs_best_batch(rows: list[dict], chunks: dict) -> None:
    """Add to the speed-up row the ceiling against the fastest forward batch of the chunk sweep
    (rather than the library's own chunking): batch-1 ms/image of the row / best ms/image."""
    best = min(p["fwd_ms_per_image"] for p in chunks["points"])
    for row in rows:
        if row["group"] == "speedup":
            batch1_ms = 1e3 / row["batch1_images_per_s"]
            row["ceiling_vs_best_batch"] = batch1_ms / best
            row["share_vs_best_batch"] = row["speedup"] / row["ceiling_vs_best_batch"]


def plot_scaling(scaling: dict, path: Path, chunks: dict | None = None) -> None:
    """Two panels: time per input vs N (workload and limit), time per model image vs batch size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if chunks else 2, figsize=(15 if chunks else 10, 4))
    ax_n, ax_b = axes[0], axes[1]
    ns = [p["n_samples"] for p in scaling["n"]]
    ax_n.plot(ns, [p["ms_per_input"] for p in scaling["n"]], "o-", label="MI-OL (library)")
    ax_n.plot(ns, [p["t_limit_s"] * 1e3 / p["batch"] for p in scaling["n"]], "s--", label="limit: fwd B(N+1)")
    ax_n.set_xscale("log")
    ax_n.set_yscale("log")
    ax_n.set_xlabel("executions N")
    ax_n.set_ylabel("ms per input")
    ax_n.set_title(f"MI-OL cost vs N (B={scaling['n'][0]['batch']})")
    ax_n.legend()
    bs = [p["batch"] for p in scaling["batch"]]
    ax_b.plot(bs, [p["ms_per_image"] for p in scaling["batch"]], "o-", label="MI-OL (library)")
    ax_b.plot(bs, [p["limit_ms_per_image"] for p in scaling["batch"]], "s--", label="limit")
    ax_b.set_xscale("log", base=2)
    ax_b.set_xlabel("inputs per call B")
    ax_b.set_ylabel("ms per model image (B(N+1) images)")
    ax_b.set_title(f"MI-OL cost vs batch size (N={scaling['batch'][0]['n_samples']})")
    ax_b.legend()
    if chunks:
        ax_c = axes[2]
        sizes = [p["batch"] for p in chunks["points"]]
        ax_c.plot(sizes, [p["fwd_ms_per_image"] for p in chunks["points"]], "o-", label="forward")
        ax_c.plot(sizes, [p["fwd_bwd_ms_per_image"] for p in chunks["points"]], "s-", label="forward + input grad")
        ax_c.axvline(chunks["library_chunk"], color="grey", linestyle=":",
                     label=f"chunk_size {chunks['library_chunk']}")
        ax_c.set_xscale("log", base=2)
        ax_c.set_xlabel("images per model pass")
        ax_c.set_ylabel("ms per image")
        ax_c.set_title("bare model cost vs images per pass")
        ax_c.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Memory


def _rss_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_probe(cfg_json: str, n_samples: int, chunk_size: int) -> dict:
    """Run once in a fresh process: peak memory increase of one MI-OL evaluation (CUDA: peak
    allocated bytes; CPU: VmHWM after minus VmRSS before, after a warm-up with N = 1)."""
    cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(cfg_json).items()})
    torch.set_num_threads(1)
    s = _setup(cfg, log=lambda _: None)
    x = _images(cfg, cfg.memory_batch, s.device, 16)

    def run(n: int) -> Tensor:
        return mixup_inference(s.model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                               generator=make_generator(cfg.seed), chunk_size=chunk_size)
    run(1)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
        before = torch.cuda.memory_allocated(s.device)
        run(n_samples)
        return {"n_samples": n_samples, "chunk_size": chunk_size, "kind": "cuda_peak_allocated",
                "peak_increase_mib": (torch.cuda.max_memory_allocated(s.device) - before) / 2**20}
    before = _rss_kib("VmRSS")
    run(n_samples)
    peak = _rss_kib("VmHWM")
    return {"n_samples": n_samples, "chunk_size": chunk_size, "kind": "cpu_peak_rss",
            "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024,
            "peak_increase_mib": (peak - before) / 1024}


def _memory(s: _Setup) -> dict:
    cfg = s.cfg
    started = time.perf_counter()
    cfg_json = json.dumps(dataclasses.asdict(cfg))
    lo_n, hi_n, chunk = min(cfg.memory_ns), max(cfg.memory_ns), cfg.memory_chunk
    # (N, chunk, allocator): "fixed" pins glibc's mmap threshold so freed tensors go back to the OS
    # and RSS follows the live tensors; "default" is glibc as it comes (its mmap threshold adapts
    # upwards and freed blocks stay in the heap, so RSS also holds the allocator's cache).
    probes = [(lo_n, chunk, "fixed"), (hi_n, chunk, "fixed")]
    if not cfg.quick:
        probes += [(hi_n, 4 * chunk, "fixed"), (lo_n, chunk, "default"), (hi_n, chunk, "default")]
    procs = []
    for n, c, allocator in probes:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if allocator == "fixed":
            env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import json, sys; from mixup_inference.bench import memory_probe; "
             "print(json.dumps(memory_probe(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))", cfg_json, str(n),
             str(c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for proc, (_, _, allocator) in zip(procs, probes):
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            detail = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
            raise RuntimeError(f"memory probe failed: {detail}")
        results.append({**json.loads(out.strip().splitlines()[-1]), "allocator": allocator})
    lo, hi = results[0], results[1]
    growth = hi["peak_increase_mib"] / lo["peak_increase_mib"] - 1
    out = {"probes": results, "batch": cfg.memory_batch, "chunk_size": chunk,
           "growth": growth, "target_growth": MEMORY_GROWTH_TARGET, "meets_target": bool(growth < MEMORY_GROWTH_TARGET),
           "definition": (f"peak RSS increase of one mixup_inference call (mode 'ol', B={cfg.memory_batch}) in a "
                          f"fresh process (1 thread) after a warm-up call with N=1; growth = peak(N={hi_n}) / "
                          f"peak(N={lo_n}) - 1 at chunk_size={chunk} with glibc's mmap threshold fixed at 128 KiB "
                          f"(allocator 'fixed': RSS follows the live tensors)"
                          + ("" if cfg.quick else f"; also chunk_size={4 * chunk} (the peak follows the chunk "
                             f"size) and glibc's default allocator settings ('default')"))}
    if not cfg.quick:
        out["growth_default_allocator"] = results[4]["peak_increase_mib"] / results[3]["peak_increase_mib"] - 1
    s.log("  memory: " + ", ".join(f"N={r['n_samples']} chunk={r['chunk_size']} {r['allocator']} "
                                   f"{r['peak_increase_mib']:.1f} MiB" for r in results)
          + f"; growth {100 * growth:+.1f}%  [{time.perf_counter() - started:.1f} s]")
    return out


# ----------------------------------------------------------------------------------------------
# Fast paths


def _fast_paths(s: _Setup) -> list[dict]:
    """Speed-up of each fast path over the plain model (paired, median) on MI-OL, PGD-10 and one
    ERM epoch, and the largest difference of MI-OL probabilities it causes."""
    cfg, dev = s.cfg, s.device
    variants: dict[str, dict[str, Any]] = {"channels_last": {"channels_last": True},
                                           "autocast_bf16": {"autocast": True},
                                           "channels_last+autocast_bf16": {"channels_last": True, "autocast": True}}
    if cfg.compile:
        variants["compile"] = {"compile": cfg.compile}
    torch.manual_seed(cfg.seed)
    plain = build_model(cfg.model, cfg.num_classes, cfg.channels).to(dev).eval()
    b, n = cfg.loop_batch, cfg.n_samples
    x, y = _images(cfg, b, dev, 17), _labels(cfg, b, dev, 18)
    train_x = torch.randint(0, 256, (2 * cfg.train_batch, cfg.channels, cfg.image_size, cfg.image_size),
                            generator=make_generator(19), dtype=torch.uint8)
    train_y = torch.randint(cfg.num_classes, (2 * cfg.train_batch,), generator=make_generator(20))

    def jobs(model: nn.Module) -> dict[str, Callable[[], Any]]:
        return {
            "mi_ol": lambda: mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                             generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size),
            "pgd10": lambda: pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=10,
                                 generator=make_generator(cfg.seed)),
            "train_erm": lambda: train(model, train_x, train_y,
                                       TrainConfig(epochs=1, batch_size=cfg.train_batch, seed=cfg.seed),
                                       device=dev, progress=False),
        }
    rows = []
    started = time.perf_counter()
    reference = jobs(plain)["mi_ol"]()
    for name, switches in variants.items():
        fast_base = copy.deepcopy(plain)
        fast = fast_model(fast_base, **{"channels_last": False, "autocast": False, "compile": False, **switches})
        diff = float((jobs(fast)["mi_ol"]() - reference).abs().max())
        row = {"fast_path": name, "switches": switches, "max_abs_prob_diff_mi_ol": diff}
        # a plain twin with the same starting weights for the training job (training changes weights)
        plain_twin = copy.deepcopy(plain)
        for job in ("mi_ol", "pgd10", "train_erm"):
            res = measure_pair(jobs(fast)[job], jobs(plain_twin)[job], repeats=cfg.repeats, warmup=cfg.warmup,
                               device=dev)
            row[f"speedup_{job}"] = res["ratio"]  # t_plain / t_fast
            row[f"speedup_{job}_samples"] = res["ratio_samples"]
        fast_base.eval()
        plain_twin.eval()
        rows.append(row)
        s.log(f"  fast path {name:<28} speed-up MI-OL {row['speedup_mi_ol']:.2f}x, PGD-10 {row['speedup_pgd10']:.2f}x, "
              f"ERM epoch {row['speedup_train_erm']:.2f}x; max |dp| {diff:.2e}")
    # The chunk size: the library's default against the old default of 2048 images per pass.
    xb = _images(cfg, cfg.eval_batch, dev, 23)

    def mi_ol_with(chunk: int | None) -> Callable[[], Tensor]:
        return lambda: mixup_inference(plain, xb, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                       generator=make_generator(cfg.seed), chunk_size=chunk)
    res = measure_pair(mi_ol_with(cfg.chunk_size), mi_ol_with(2048), repeats=cfg.repeats, warmup=cfg.warmup,
                       device=dev)
    rows.append({"fast_path": f"chunk_size {s.chunk} vs 2048", "switches": {"chunk_size": s.chunk},
                 "inputs": cfg.eval_batch, "speedup_mi_ol": res["ratio"], "speedup_mi_ol_samples": res["ratio_samples"],
                 "speedup_pgd10": None, "speedup_train_erm": None, "max_abs_prob_diff_mi_ol": float(
                     (mi_ol_with(cfg.chunk_size)() - mi_ol_with(2048)()).abs().max())})
    s.log(f"  chunk_size {s.chunk} vs 2048: MI-OL on {cfg.eval_batch}x{n} copies {res['ratio']:.2f}x faster")
    s.log(f"  fast paths [{time.perf_counter() - started:.1f} s]")
    return rows


# ----------------------------------------------------------------------------------------------
# Report


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return None


def _environment() -> dict:
    from .provenance import environment_summary
    from .provenance import git_commit
    env = environment_summary()
    env["git"] = git_commit()
    env["cpu_model"] = _cpu_model()
    env["mkldnn"] = torch.backends.mkldnn.is_available()
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:
        env["load_average_start"] = os.getloadavg()
    except OSError:
        env["load_average_start"] = None
    return env


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] = print) -> dict:
    """Measure every row, the scaling sweeps, memory and (optionally) the fast paths; return the
    result dict that `main` writes as JSON."""
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_benchmark(cfg, log, started)
    finally:
        torch.set_num_threads(previous_threads)


def _run_benchmark(cfg: BenchConfig, log: Callable[[str], None], started: float) -> dict:
    s = _setup(cfg, log)
    env = _environment()
    log(f"benchmark: {cfg.model} {cfg.channels}x{cfg.image_size}x{cfg.image_size} on {s.device}, "
        f"{torch.get_num_threads()} threads, {'quick' if cfg.quick else 'full'} run")
    for section in (_mi_rows, _baseline_rows, _pgd_rows, _adaptive_rows, _training_rows, _speedup_row):
        section(s)
    scaling = _scaling(s)
    chunks = _chunk_sweep(s)
    _ceiling_vs_best_batch(s.rows, chunks)
    fast = _fast_paths(s) if cfg.fast_path_rows else []
    memory = _memory(s)
    try:
        env["load_average_end"] = os.getloadavg()
    except OSError:
        env["load_average_end"] = None
    return {
        "command": "python -m mixup_inference.bench" + (" --quick" if cfg.quick else ""),
        "config": dataclasses.asdict(cfg),
        "ratio_definition": ("ratio = median over repeats of t_limit / t_workload, each pair timed back to back "
                             "(order alternating) after warm-up; higher is better, 1.0 = no overhead over the "
                             "bare model passes listed in 'limit'"),
        "environment": env,
        "rows": s.rows,
        "scaling": scaling,
        "chunk_sweep": chunks,
        "memory": memory,
        "fast_paths": fast,
        "all_targets_met": all(r["meets_target"] for r in s.rows) and memory["meets_target"],
        "seconds": time.perf_counter() - started,
    }


_LABELS = {"mi_pl": "MI-PL evaluation", "mi_ol": "MI-OL evaluation", "mi_combined": "MI-Combined evaluation",
           "gaussian": "Gaussian noise baseline", "rotation": "Random rotation baseline",
           "xie": "Xie et al. (crop + pad)", "guo": "Guo et al. (crop + resize)",
           "adaptive_pgd": "Adaptive PGD (paper, App. B.2)", "eot_pgd": "EOT PGD",
           "mi_ol_speedup_vs_loop": "MI-OL speed-up over per-image loop, share of ceiling"}


def _label(name: str) -> str:
    if name in _LABELS:
        return _LABELS[name]
    if name.startswith("train_"):
        return f"Training epoch, {name[6:]}"
    steps = "".join(ch for ch in name if ch.isdigit())
    return f"{'Targeted ' if name.startswith('t') else ''}PGD-{steps}"


def write_markdown(result: dict) -> str:
    """The Markdown report: rows with ratio, target, throughput; memory; fast paths; scaling; machine."""
    env, cfg = result["environment"], result["config"]
    lines = [f"# Benchmark: {cfg['model']} on {cfg['channels']}x{cfg['image_size']}x{cfg['image_size']} inputs",
             "", f"Command: `{result['command']}`  ", f"Total time: {result['seconds']:.0f} s; "
             f"all targets met: **{'yes' if result['all_targets_met'] else 'no'}**", "",
             "Ratio = median over repeats of t(limit) / t(workload), timed back to back; the limit is the bare "
             "model passes the workload needs (column 'limit'). Strict ratio: the limit without the B plain "
             "predictions that MI and the adaptive attacks also need.", "",
             "| workload | ratio | strict | target | met | throughput | limit (bare model passes) |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        strict = f"{row['ratio_strict']:.3f}" if "ratio_strict" in row else "-"
        limit = row.get("limit") or row.get("ceiling_definition", "")
        if row["group"] == "speedup":
            limit = (f"speed-up {row['speedup']:.2f}x of ceiling {row['ceiling']:.2f}x "
                     f"(loop {row['loop_throughput']:.1f} inputs/s); ceiling = {row['ceiling_definition']}")
            if "ceiling_vs_best_batch" in row:
                limit += (f"; against the fastest forward batch of the sweep below the ceiling is "
                          f"{row['ceiling_vs_best_batch']:.2f}x and the share {row['share_vs_best_batch']:.3f}")
        lines.append(f"| {_label(row['name'])} | {row['ratio']:.3f} | {strict} | >= {row['target']:.2f} | "
                     f"{'yes' if row['meets_target'] else 'NO'} | {row['throughput']:.1f} {row['throughput_unit']} | "
                     f"{limit} |")
    mem = result["memory"]
    lines += ["", "## Memory", "", f"{mem['definition']}.", "",
              "| N | chunk | allocator | peak RSS increase (MiB) |", "|---|---|---|---|"]
    lines += [f"| {p['n_samples']} | {p['chunk_size']} | {p['allocator']} | {p['peak_increase_mib']:.1f} |"
              for p in mem["probes"]]
    lines += ["", f"Growth N={min(cfg['memory_ns'])} -> {max(cfg['memory_ns'])}: {100 * mem['growth']:+.1f}% "
                  f"(target < {100 * mem['target_growth']:.0f}%): {'met' if mem['meets_target'] else 'NOT met'}."]
    if "growth_default_allocator" in mem:
        lines += [f"With glibc's default settings: {100 * mem['growth_default_allocator']:+.1f}% (freed blocks "
                  "cached by the allocator, not tensors held by the library)."]
    if result["fast_paths"]:
        lines += ["", "## Fast paths (speed-up over the plain model, paired medians)", "",
                  "Probability differences are measured on the benchmark's untrained model, whose outputs are "
                  "nearly uniform: they understate bf16's effect on a trained model (~1e-2, see "
                  "`mixup_inference.fastpath`).", "",
                  "| fast path | MI-OL | PGD-10 | ERM epoch | max abs prob. diff (MI-OL) |", "|---|---|---|---|---|"]
        lines += [f"| {r['fast_path']} | {_times(r['speedup_mi_ol'])} | {_times(r['speedup_pgd10'])} | "
                  f"{_times(r['speedup_train_erm'])} | {r['max_abs_prob_diff_mi_ol']:.1e} |"
                  for r in result["fast_paths"]]
    sc = result["scaling"]
    lines += ["", "## MI-OL cost vs N and batch size (`scaling.png`)", "", f"{sc['definition']}.", "",
              "| B | N | ms / input | ms / model image | limit ms / model image | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['batch']} | {p['n_samples']} | {p['ms_per_input']:.2f} | {p['ms_per_image']:.3f} | "
              f"{p['limit_ms_per_image']:.3f} | {p['ratio']:.3f} |" for p in sc["n"] + sc["batch"]]
    ch = result["chunk_sweep"]
    lines += ["", "## Bare model cost vs images per pass", "", f"{ch['definition']}. The library's chunk size in "
              f"this run: {ch['library_chunk']}; fastest forward batch: {ch['best_fwd_batch']}, fastest "
              f"forward+backward batch: {ch['best_fwd_bwd_batch']}.", "",
              "| images per pass | forward ms / image | forward + input grad ms / image |", "|---|---|---|"]
    lines += [f"| {p['batch']} | {p['fwd_ms_per_image']:.3f} | {p['fwd_bwd_ms_per_image']:.3f} |" for p in ch["points"]]
    pk = env["packages"]
    lines += ["", "## Machine", "",
              f"{env.get('cpu_model') or env['processor']}, {env['cpu_count']} CPUs ({env['cpu_capability']}), "
              f"torch threads "
              f"{env['torch_threads']}, GPUs: {', '.join(env['gpus']) or 'none'}; load average at start "
              f"{_fmt_load(env.get('load_average_start'))}, at end {_fmt_load(env.get('load_average_end'))}.  ",
              f"Python {env['python']}, torch {pk.get('torch')}, numpy {pk.get('numpy')}, "
              f"mixup-inference {pk.get('mixup-inference')}, git {env['git']['commit'][:12]}"
              f"{' (dirty)' if env['git']['dirty'] else ''}; {env['platform']}.", ""]
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fmt_load(load: Any) -> str:
    return "n/a" if not load else "/".join(f"{v:.1f}" for v in load)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mixup_inference.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (< 30 s; for tests)")
    parser.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs per row (default 3, quick 1)")
    parser.add_argument("--channels-last", action="store_true", help="run every row with channels-last")
    parser.add_argument("--autocast", action="store_true", help="run every row with bf16 autocast")
    parser.add_argument("--compile", nargs="?", const=True, default=False,
                        help="run every row with torch.compile (optionally a backend name)")
    parser.add_argument("--no-fast-paths", action="store_true", help="skip the fast-path comparison section")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"device": args.device, "channels_last": args.channels_last,
                                 "autocast": args.autocast, "compile": args.compile,
                                 "fast_path_rows": not args.no_fast_paths}
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        overrides["threads"] = args.threads
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        overrides["repeats"] = args.repeats
    cfg = BenchConfig.quick_config(**overrides) if args.quick else BenchConfig(**overrides)
    result = run_benchmark(cfg, log=lambda msg: print(msg, flush=True))
    flags = [f for f, on in (("--quick", args.quick), ("--channels-last", args.channels_last),
                             ("--autocast", args.autocast), ("--no-fast-paths", args.no_fast_paths)) if on]
    if args.compile:
        flags.append("--compile" if args.compile is True else f"--compile {args.compile}")
    if args.threads is not None:
        flags.append(f"--threads {args.threads}")
    if args.repeats is not None:
        flags.append(f"--repeats {args.repeats}")
    if args.device != "cpu":
        flags.append(f"--device {args.device}")
    result["command"] = " ".join(["python -m mixup_inference.bench", *flags, f"--out {args.out}"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_scaling(result["scaling"], out / "scaling.png", result["chunk_sweep"])
    atomic_write_text(out / "bench.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out / "bench.md", write_markdown(result))
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'scaling.png'} in {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
