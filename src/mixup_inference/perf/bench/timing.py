"""Timing: workload/limit pairs timed back to back (`measure_pair`), and the limits themselves,
the bare model passes a workload needs (forward chunks, forward+input-gradient, a train step)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.training.state import make_optimizer
from ...core.training.config import ADVERSARIAL_REGIMES, TrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    gc.collect()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed_limit(limit: Callable[[], Any], device: torch.device) -> tuple[float, float | None]:
    """(seconds, seconds of the strict part if `limit` returns them)."""
    gc.collect()
    sync(device)
    start = time.perf_counter()
    part = limit()
    sync(device)
    return time.perf_counter() - start, (float(part) if isinstance(part, float) else None)


def strict_part(fn: Callable[[], Any], device: torch.device) -> float:
    """Run `fn` inside a limit and return its seconds (the limit's strict part)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
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
            lim, part = timed_limit(limit, device)
            work = timed(workload, device)
        else:
            work = timed(workload, device)
            lim, part = timed_limit(limit, device)
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


def forward_chunks(model: nn.Module, images: Tensor, chunk_size: int) -> None:
    """Forward passes over `images` in chunks, eval mode, inference_mode (outputs discarded)."""
    with torch.inference_mode():
        for start in range(0, images.shape[0], chunk_size):
            model(images[start:start + chunk_size])


def forward_backward(model: nn.Module, images: Tensor, labels: Tensor) -> None:
    """One forward + input-gradient pass of the summed cross entropy (eval mode), as PGD does."""
    leaf = images.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(leaf), labels, reduction="sum")
        torch.autograd.grad(loss, leaf)


def train_limit(model: nn.Module, batches: list[tuple[Tensor, Tensor]], config: TrainConfig) -> None:
    """The bare passes of one training epoch: per batch, (AT regimes) at_steps fwd+bwd in eval
    mode, then one train-mode forward, backward and SGD step over the batch (AT: twice the batch)."""
    optimizer = make_optimizer(model, config)
    adversarial = config.regime in ADVERSARIAL_REGIMES
    for x, y in batches:
        inputs, labels = x, y
        if adversarial:
            model.eval()
            for _ in range(config.at_steps):
                forward_backward(model, x, y)
            inputs, labels = torch.cat([x, x]), torch.cat([y, y])
        model.train()
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

