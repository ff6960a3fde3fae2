"""How many images a job puts through the model at once: the config's ``batch_size`` and
``chunk_size`` ("auto" or a number) resolved for the job's device, and the slices of a batch."""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["AUTO_ATTACK_BATCH", "batches", "resolve_batch_size", "resolve_chunk_size"]

# Images per attack batch for batch_size "auto". On a CPU a forward+backward costs least per image at
# 16-64 images (activations stay in cache; 1.7x more per image at 256: reports/bench/bench.md, "Bare
# model cost vs images per pass"); a GPU wants large batches: the CUDA value is an unmeasured
# guess for a large GPU (forward+backward activations of 1024 images of a 32x32 ResNet-50 are
# ~25 GiB), to be measured by the GPU issue; lower attacks.batch_size on a small GPU.
AUTO_ATTACK_BATCH = {"cpu": 32, "cuda": 1024}


def resolve_batch_size(batch_size: int | str, device: torch.device) -> int:
    """`batch_size` itself, or the per-device default (AUTO_ATTACK_BATCH) for "auto"."""
    if batch_size == "auto":
        return AUTO_ATTACK_BATCH.get(device.type, AUTO_ATTACK_BATCH["cuda"])
    return int(batch_size)


def resolve_chunk_size(chunk_size: int | str | None) -> int | None:
    """`chunk_size` itself, or None for "auto": the defenses then pick their per-device default."""
    return None if chunk_size in (None, "auto") else int(chunk_size)


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` consecutive items covering range(n), in order."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
