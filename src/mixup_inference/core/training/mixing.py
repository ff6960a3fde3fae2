"""The mixing and the soft-label loss of the mixup regimes (the authors' per-example mixup), with a
seeded Beta sampler: every draw comes from the caller's torch.Generator, so a training run is
reproducible and resumable bit for bit (loop.py documents the order of draws per batch)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils import generator_device

__all__ = ["mixup_batch", "sample_beta", "soft_cross_entropy"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)



def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Mean over the batch of -sum_c q_c log softmax(logits)_c for target distributions q [B, C].

    Equals ``F.cross_entropy(logits, y)`` when q is one-hot(y).
    """
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(f"logits and soft_targets must both have shape [B, C] "
                         f"(got {tuple(logits.shape)} and {tuple(soft_targets.shape)})")
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _standard_gamma_log(shape: float, n: int, generator: torch.Generator | None) -> Tensor:
    """log of n independent Gamma(shape, 1) draws, float64 [n] on the generator's device, using only
    ``generator``'s uniform and normal draws (torch's gamma sampler takes no generator).

    Marsaglia & Tsang (2000, ACM TOMS 26(3)), vectorised: each round draws one normal and one
    uniform per still-pending sample and accepts where v > 0 and log u < z^2/2 + d - d v + d log v
    (acceptance > 95% for shape >= 1, so a handful of rounds). For shape < 1 the boost
    Gamma(a) = Gamma(a + 1) U^(1/a) (one uniform per sample, drawn first). Draw order: boost
    uniforms [n] (shape < 1 only), then per round normals [m] and uniforms [m] for the m pending.
    """
    device = generator_device(generator, torch.device("cpu"))
    log_boost = torch.zeros(n, dtype=torch.float64, device=device)
    if shape < 1:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        log_boost = torch.log(u.clamp_min(1e-300)) / shape
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    pending = torch.arange(n, device=device)
    while pending.numel():
        m = pending.numel()
        z = torch.randn(m, generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(m, generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        safe_v = v.clamp_min(1e-300)
        accept = (v > 0) & (u > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z * z + d - d * v + d * torch.log(safe_v))
        out[pending[accept]] = math.log(d) + torch.log(safe_v[accept])
        pending = pending[~accept]
    return out + log_boost


def sample_beta(a: float, b: float, shape: tuple[int, ...] = (), *,
                generator: torch.Generator | None = None) -> Tensor:
    """Independent Beta(a, b) draws of the given shape (float64, on the generator's device, CPU for
    None) as X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b), from ``generator`` only (torch.distributions.Beta
    takes no generator). Computed in log space (sigmoid(log X - log Y)), so tiny a, b are safe.
    Draw order: all X, then all Y (see `_standard_gamma_log`)."""
    if not (_is_number(a) and _is_number(b) and a > 0 and b > 0):
        raise ValueError(f"Beta parameters must be finite and > 0 (got a={a!r}, b={b!r})")
    n = math.prod(shape)
    log_x = _standard_gamma_log(float(a), n, generator)
    log_y = _standard_gamma_log(float(b), n, generator)
    return torch.sigmoid(log_x - log_y).reshape(shape)


def mixup_batch(x: Tensor, soft_targets: Tensor, *, alpha: float,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Mixup as in the authors' train_resnet_mixup.py (``shuffle_minibatch``): two independent random
    permutations p1, p2 of the batch and one lam_i ~ Beta(alpha, alpha) PER EXAMPLE; returns
    (lam x[p1] + (1 - lam) x[p2], lam q[p1] + (1 - lam) q[p2], lam) with lam float [B] on x's device.
    (Zhang et al. 2018 draw one lam per batch and mix x with x[p]; the paper's models used this form.)
    Draw order: p1, p2, then the B lams."""
    rand_device = generator_device(generator, x.device)
    batch = x.shape[0]
    p1 = torch.randperm(batch, generator=generator, device=rand_device).to(x.device)
    p2 = torch.randperm(batch, generator=generator, device=rand_device).to(x.device)
    lam = sample_beta(alpha, alpha, (batch,), generator=generator).to(device=x.device, dtype=x.dtype)
    lam_x = lam.reshape(batch, *([1] * (x.dim() - 1)))
    lam_t = lam.to(soft_targets.dtype)[:, None]
    x_mix = lam_x * x[p1] + (1 - lam_x) * x[p2]
    t_mix = lam_t * soft_targets[p1] + (1 - lam_t) * soft_targets[p2]
    return x_mix, t_mix, lam
