"""The workflow's fast-path choices (the config's `speed:` section), resolved per job and device.

The switches themselves live in core.models.fastpath (:func:`fastpath.fast_model`); this module decides
which of them a job uses and says why, so provenance can record it:

- ``channels_last`` (auto | true | false): NHWC weights and inputs. ``auto`` = the device default
  of :data:`fastpath.DEVICE_DEFAULTS` (on for CPU and CUDA: 1.14-1.18x faster on this project's
  CPU benchmark, probabilities equal to ~1e-7, no prediction changed).
- ``train_bf16`` (auto | true | false): bf16 autocast of the training forward pass. ``auto`` = on
  where the hardware computes in bf16 natively: a CUDA GPU for which
  ``torch.cuda.is_bf16_supported()``, or a CPU whose flags (/proc/cpuinfo) include ``amx_bf16`` or
  ``avx512_bf16`` (:func:`native_bf16`); fp32 elsewhere. Decided from the flags, never from a
  timing, so the same config on the same machine always trains the same way (a timing under load
  could flip between a run and its resumed rerun). :func:`measure_bf16_speedup` shows the gain:
  AVX-512-BF16/AMX CPUs run it 1.6-2.7x faster, AVX2-only CPUs emulate bf16 and run slower.
- ``eval_bf16`` (true | false, default false): bf16 autocast for attacks and evaluations. Off
  unless the config asks, because an attack's strength and a defense's accuracy must not depend
  on a speed switch.

With every switch false the jobs run the plain fp32 model, bit for bit as before the fast paths
were wired in. ``torch.backends.cudnn.benchmark`` is turned on for every CUDA job (fixed shapes).
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from typing import Any

import torch
from torch import nn

from .fastpath import DEVICE_DEFAULTS, fast_model

__all__ = ["BF16_CPU_FLAGS", "DEFAULT_SPEED", "cpu_flags", "cpu_model", "enable_cudnn_benchmark", "measure_bf16_speedup",
           "native_bf16", "resolve_speed", "speed_model"]

DEFAULT_SPEED: dict[str, Any] = {"channels_last": "auto", "train_bf16": "auto", "eval_bf16": False}
"""The `speed:` section when a config leaves it (or a key of it) out."""

#: CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic: AMX tiles with bf16 (Intel
#: Sapphire Rapids and later) or the AVX-512 bf16 dot products (Intel Cooper Lake+, AMD Zen 4+).
BF16_CPU_FLAGS: frozenset[str] = frozenset({"amx_bf16", "avx512_bf16"})


def _cpuinfo_value(key: str, cpuinfo: str) -> str | None:
    """The value of the first ``key`` line of ``cpuinfo``, or None (no such file or line)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(key):
                    return line.partition(":")[2]
    except OSError:
        return None
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (the first ``flags`` line of ``cpuinfo``), or None where there is no
    such file (macOS, Windows) or no flags line (e.g. ARM's ``Features``)."""
    flags = _cpuinfo_value("flags", cpuinfo)
    return None if flags is None else frozenset(flags.split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (``model name`` in ``cpuinfo``), else the platform's processor string:
    timings and the bf16 choice mean something only beside it."""
    name = _cpuinfo_value("model name", cpuinfo)
    return name.strip() if name is not None else platform.processor() or platform.machine()


def native_bf16(flags: frozenset[str] | set[str] | None) -> tuple[bool, str]:
    """(whether a CPU with these flags computes bf16 natively, why), from :data:`BF16_CPU_FLAGS`."""
    if flags is None:
        return False, "CPU flags unknown (no /proc/cpuinfo flags line): fp32"
    found = sorted(BF16_CPU_FLAGS & set(flags))
    if found:
        return True, f"CPU flags {' '.join(found)}: native bf16"
    return False, f"CPU flags lack {' and '.join(sorted(BF16_CPU_FLAGS))}: bf16 would be emulated, slower than fp32"


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


def resolve_speed(speed: dict[str, Any] | None, device: torch.device, *, purpose: str,
                  flags: frozenset[str] | set[str] | None | str = "read",
                  cuda_bf16: bool | None = None) -> dict[str, Any]:
    """The fast paths one job uses: {"channels_last": bool, "bf16": bool, "reason": str, ...}.

    Args:
        speed: the config's `speed:` section (missing keys take :data:`DEFAULT_SPEED`); None:
            every fast path off.
        device: the job's device.
        purpose: "train" (train_bf16 applies) or "eval" (attacks, evaluations, adaptive: eval_bf16).
        flags: the CPU flags `train_bf16: auto` decides from on a CPU; "read" (default) reads this
            machine's (:func:`cpu_flags`); a set (or None, unknown) to decide for another CPU.
        cuda_bf16: whether the GPU computes bf16 natively; None (default) asks
            ``torch.cuda.is_bf16_supported()``.
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
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        resolved.update(bf16=bool(supported), reason="auto: CUDA " + ("with bf16" if supported else
                                                                     "without bf16 support: fp32"))
    else:
        # Decided from the CPU's flags, not by a run-time measurement: under load a timing is noisy,
        # and a choice that flips between two runs (or between an interrupted job and its resumed
        # rerun) changes the numbers of the same config.
        on, why = native_bf16(cpu_flags() if isinstance(flags, str) and flags == "read" else flags)
        resolved.update(bf16=on, reason=f"auto: {why}")
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
