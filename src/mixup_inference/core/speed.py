"""The workflow's fast-path choices (the config's `speed:` section), resolved per job and device.

The switches themselves live in fastpath.py (:func:`fastpath.fast_model`); this module decides
which of them a job uses and says why, so provenance can record it:

- ``channels_last`` (auto | true | false): NHWC weights and inputs. ``auto`` = the device default
  of :data:`fastpath.DEVICE_DEFAULTS` (on for CPU and CUDA: 1.14-1.18x faster on this project's
  CPU benchmark, probabilities equal to ~1e-7, no prediction changed).
- ``train_bf16`` (auto | true | false): bf16 autocast of the training forward pass. ``auto`` = on
  for CUDA, off on a CPU (opt in with ``true``): a run-time timing would make the same config give
  different numbers under different load. :func:`measure_bf16_speedup` tells whether it pays on a
  given CPU: AVX-512-BF16/AMX CPUs run it 1.6-1.9x faster, AVX2-only CPUs emulate it and run slower.
- ``eval_bf16`` (true | false, default false): bf16 autocast for attacks and evaluations. Off
  unless the config asks, because an attack's strength and a defense's accuracy must not depend
  on a speed switch.

With every switch false the jobs run the plain fp32 model, bit for bit as before the fast paths
were wired in. ``torch.backends.cudnn.benchmark`` is turned on for every CUDA job (fixed shapes).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from .fastpath import DEVICE_DEFAULTS, fast_model

__all__ = ["DEFAULT_SPEED", "enable_cudnn_benchmark", "measure_bf16_speedup", "resolve_speed",
           "speed_model"]

DEFAULT_SPEED: dict[str, Any] = {"channels_last": "auto", "train_bf16": "auto", "eval_bf16": False}
"""The `speed:` section when a config leaves it (or a key of it) out."""

def _check_switch(name: str, value: Any, allow_auto: bool) -> None:
    allowed = (True, False, "auto") if allow_auto else (True, False)
    if not any(value is a if isinstance(a, bool) else value == a for a in allowed):
        raise ValueError(f"speed.{name}={value!r} must be {' | '.join(map(str, allowed)).lower()}")


def measure_bf16_speedup(model: nn.Module, x: torch.Tensor, *, channels_last: bool = False,
                         repeats: int = 5) -> float:
    """fp32 time / bf16-autocast time of one forward+backward pass of a copy of ``model`` (in train
    mode, so batch norm behaves as in training; channels-last if asked) on ``x``: the median over
    ``repeats`` back-to-back (fp32, bf16) pairs after one warm-up pair, so a load change on a
    shared machine hits both sides of a pair alike. The copy keeps the caller's model, its
    batch-norm statistics and every generator untouched."""
    probe = copy.deepcopy(model).train()
    if channels_last:
        probe = fast_model(probe, channels_last=True, autocast=False, compile=False)
    x = x.detach()

    def seconds(autocast: bool) -> float:
        start = time.perf_counter()
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = probe(x).float().logsumexp(1).mean()
        loss.backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        probe.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    seconds(False), seconds(True)  # warm-up: allocations, kernel selection
    ratios = []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)  # alternate which side goes first
        times = {autocast: seconds(autocast) for autocast in order}
        ratios.append(times[False] / times[True])
    return statistics.median(ratios)


def resolve_speed(speed: dict[str, Any] | None, device: torch.device, *, purpose: str) -> dict[str, Any]:
    """The fast paths one job uses: {"channels_last": bool, "bf16": bool, "reason": str, ...}.

    Args:
        speed: the config's `speed:` section (missing keys take :data:`DEFAULT_SPEED`); None:
            every fast path off.
        device: the job's device.
        purpose: "train" (train_bf16 applies) or "eval" (attacks, evaluations, adaptive: eval_bf16).
    """
    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose={purpose!r} must be 'train' or 'eval'")
    if speed is None:  # library callers that pass no section: the plain fp32 model
        return {"device": device.type, "channels_last": False, "bf16": False, "reason": "no speed section: plain fp32"}
    speed = {**DEFAULT_SPEED, **speed}
    unknown = set(speed) - set(DEFAULT_SPEED)
    if unknown:
        raise ValueError(f"speed has unknown keys {sorted(unknown)}; use {sorted(DEFAULT_SPEED)}")
    _check_switch("channels_last", speed["channels_last"], True)
    _check_switch("train_bf16", speed["train_bf16"], True)
    _check_switch("eval_bf16", speed["eval_bf16"], False)
    defaults = DEVICE_DEFAULTS.get(device.type, DEVICE_DEFAULTS["cpu"])
    channels_last = defaults["channels_last"] if speed["channels_last"] == "auto" else speed["channels_last"]
    resolved: dict[str, Any] = {"device": device.type, "channels_last": bool(channels_last)}
    if purpose == "eval":
        resolved.update(bf16=bool(speed["eval_bf16"]), reason="eval_bf16 from the config")
        return resolved
    choice = speed["train_bf16"]
    if choice != "auto":
        resolved.update(bf16=bool(choice), reason="train_bf16 from the config")
    elif device.type == "cuda":
        resolved.update(bf16=True, reason="auto: CUDA")
    else:
        # Not decided by a run-time measurement: under load it is noisy, and a choice that flips
        # between two runs (or between an interrupted job and its resumed rerun) changes the numbers
        # of the same config. On a CPU, bf16 is opt-in: set `train_bf16: true` where
        # `measure_bf16_speedup` (or the benchmark) shows it faster on that machine.
        resolved.update(bf16=False, reason="auto: fp32 on a CPU (bf16 is opt-in there: train_bf16: true)")
    return resolved


def speed_model(model: nn.Module, resolved: dict[str, Any]) -> nn.Module:
    """``model`` itself when no fast path is on (plain fp32, bit for bit), else its
    :func:`fastpath.fast_model` wrapper with the resolved switches (float32 logits either way)."""
    if not resolved["channels_last"] and not resolved["bf16"]:
        return model
    return fast_model(model, channels_last=resolved["channels_last"], autocast=resolved["bf16"], compile=False)


def enable_cudnn_benchmark(device: torch.device) -> None:
    """cuDNN picks the fastest convolution algorithm per input shape: every job of this workflow
    runs fixed shapes (full batches, fixed chunks), so the one-off search pays for itself."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
