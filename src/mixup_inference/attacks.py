"""L-inf PGD attacks: the standard (oblivious) PGD of Madry et al. and the two adaptive attacks
against Mixup Inference used in this project.

Threat model (paper Sec. 4, NOTES.md): pixels in [0, 1], L-inf ball of radius eps = 8/255,
step 2/255 (the authors work in [-1, 1] and write 16/255 and 4/255: the same attack).
Every attack here is the same PGD: uniform random start in the eps-ball (then clamped to
[0, 1]), a fixed number of signed-gradient steps, projection onto the eps-ball followed by a
clamp to [0, 1] after every step, no early stopping, no per-example restarts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import rand

__all__ = ["pgd"]


def _check_pgd_args(eps: float, step_size: float, steps: int) -> None:
    """Shared argument validation (one-line ValueErrors that name the fix)."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0 (got {eps}); pass a non-negative L-inf radius in [0, 1] pixel units")
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0 (got {step_size}); pass e.g. step_size=2/255")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1 (got {steps}); pass e.g. steps=10")
    if eps > 0 and step_size > eps:
        raise ValueError(f"step_size ({step_size}) must be <= eps ({eps}); lower step_size, e.g. to eps/4")


def _check_labels(x: Tensor, y: Tensor) -> None:
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [B] = [{x.shape[0]}] (got {tuple(y.shape)}); pass one label per image")


def _random_start(x: Tensor, eps: float, random_start: bool, generator: torch.Generator | None) -> Tensor:
    """x + U[-eps, eps] noise clamped to [0, 1] (or x itself when random_start is False)."""
    if not random_start or eps == 0:
        return x.clone()
    noise = (rand(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    return (x + noise).clamp(0.0, 1.0)


def _project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Clamp the perturbation to the eps-ball, then the image to [0, 1] (as in the paper)."""
    delta = (x_adv - x).clamp(-eps, eps)
    return (x + delta).clamp(0.0, 1.0)


def pgd(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, step_size: float, steps: int,
        targeted: bool = False, random_start: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """L-inf projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Norm: L-inf. Loss: cross entropy of `model(x_adv)` against `y`, summed over the batch (so each
    image's step is independent of the batch size).

    Algorithm: x_adv = clamp(x + U[-eps, eps], 0, 1) if `random_start` else x; then `steps` times:
    x_adv <- x_adv + step_size * sign(grad) (untargeted: ascent, away from y) or
    x_adv <- x_adv - step_size * sign(grad) (targeted: descent, toward y), followed by
    delta = clamp(x_adv - x, -eps, eps); x_adv = clamp(x + delta, 0, 1).

    Args:
        model: classifier returning logits [B, C] for images in [0, 1] (it normalises inside).
            Run in eval mode during the attack; its previous mode is restored afterwards.
        x: clean images [B, C, H, W], float, pixels in [0, 1].
        y: int64 labels [B]. The caller chooses them: for untargeted attacks the authors (and
            this project's workflow) pass the model's prediction on the clean input
            (`model(x).argmax(1)`); for targeted attacks a random target != true label.
        eps: L-inf radius in [0, 1] pixel units (paper: 8/255). eps = 0 returns x.
        step_size: step per iteration in pixel units (paper: 2/255); must be <= eps.
        steps: number of iterations (paper: 10, 50, 200).
        targeted: False (default) = untargeted, True = move toward y.
        random_start: True (default) = uniform random start in the eps-ball.
        generator: torch.Generator for the random start (the only random draw).

    Returns:
        Detached adversarial images, same shape/dtype/device as x, with
        max |x_adv - x| <= eps and pixels in [0, 1].

    Gradients are taken with torch.autograd.grad with respect to the input only, so the
    parameters' `.grad` are untouched; gradients are enabled inside, so calling this under
    torch.no_grad() works.

    Usage: ``x_adv = pgd(model, x, model(x).argmax(1), eps=8/255, step_size=2/255, steps=10)``
    """
    _check_pgd_args(eps, step_size, steps)
    _check_labels(x, y)
    x = x.detach()
    if eps == 0:
        return x.clone()
    was_training = model.training
    model.eval()
    try:
        x_adv = _random_start(x, eps, random_start, generator)
        sign = -1.0 if targeted else 1.0
        with torch.enable_grad():
            for _ in range(int(steps)):
                x_adv.requires_grad_(True)
                loss = F.cross_entropy(model(x_adv), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = _project(x_adv.detach() + sign * step_size * grad.sign(), x, eps)
    finally:
        model.train(was_training)
    return x_adv.detach()
