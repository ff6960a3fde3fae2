"""L-inf PGD attacks: the standard (oblivious) PGD of Madry et al. and the two adaptive attacks
against Mixup Inference used in this project.

Threat model (paper Sec. 4.1): pixels in [0, 1], L-inf ball of radius eps = 8/255, step 2/255
(the authors' attack_resnet_*.py scripts work in [-1, 1] and write 16/255 and 4/255: the same
attack).
Every attack here, and the EOT PGD through a defense in defended.py, is one loop, `pgd_loop`:
uniform random start in the eps-ball (then clamped to [0, 1]), a fixed number of signed-gradient
steps on a loss summed over the batch, projection onto the eps-ball followed by a clamp to [0, 1]
after every step, no early stopping, no per-example restarts. The attacks differ only in the
gradient they pass in (and, for the paper's adaptive PGD, in the points the loop moves).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_lam, check_mode, check_positive_int
from ..defenses.pool import check_pool, class_groups, pool_images, sample_pool_indices
from ..utils import eval_mode, rand

__all__ = ["adaptive_pgd", "check_labels", "check_pgd_args", "eot_pgd", "input_gradient", "pgd", "pgd_loop",
           "project_to_ball", "uniform_start"]


def check_pgd_args(eps: float, step_size: float, steps: int) -> None:
    """Shared argument validation (one-line ValueErrors that name the fix)."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0 (got {eps}); pass a non-negative L-inf radius in [0, 1] pixel units")
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0 (got {step_size}); pass e.g. step_size=2/255")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1 (got {steps}); pass e.g. steps=10")
    # A step up to 2 eps is legitimate: Wong et al. 2020's FGSM with a random start steps 1.25 eps and
    # projects back. A larger one lands on the same corner of the ball whatever the start: a typo.
    if eps > 0 and step_size > 2 * eps:
        raise ValueError(f"step_size ({step_size}) must be <= 2 x eps ({2 * eps}); lower step_size, e.g. to eps/4")


def check_labels(x: Tensor, y: Tensor) -> None:
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [B] = [{x.shape[0]}] (got {tuple(y.shape)}); pass one label per image")


def uniform_start(x: Tensor, eps: float, random_start: bool, generator: torch.Generator | None,
                  noise: Tensor | None = None) -> Tensor:
    """x + U[-eps, eps] noise clamped to [0, 1] (or x itself when random_start is False).

    `noise`: U[-1, 1] numbers shaped like x, drawn by the caller, to use instead of drawing from
    `generator` (the start is then clamp(x + eps * noise, 0, 1))."""
    if not random_start or eps == 0:
        return x.clone()
    if noise is not None:
        if noise.shape != x.shape:
            raise ValueError(f"start {tuple(noise.shape)} must have the shape of x {tuple(x.shape)}")
        return (x + noise.to(x.device, x.dtype) * eps).clamp(0.0, 1.0)
    noise = (rand(tuple(x.shape), generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    return (x + noise).clamp(0.0, 1.0)


def project_to_ball(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Clamp the perturbation to the eps-ball, then the image to [0, 1] (as in the paper)."""
    delta = (x_adv - x).clamp(-eps, eps)
    return (x + delta).clamp(0.0, 1.0)


def input_gradient(loss: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """d loss(x) / dx for a scalar `loss`, by torch.autograd.grad with respect to the input only (the
    parameters' `.grad` are untouched), with gradients enabled inside (callable under no_grad)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(x), x)
    return grad


def pgd_loop(gradient: Callable[[Tensor], Tensor], start: Tensor, center: Tensor, *, eps: float, step_size: float,
             steps: int, targeted: bool = False) -> Tensor:
    """The L-inf PGD loop every attack of this project runs (Madry et al. 2018).

    From x_adv = `start`, `steps` times (no early stopping, no restarts):
    x_adv <- x_adv + step_size * sign(g) untargeted (ascent) or x_adv - step_size * sign(g) targeted
    (descent), with g = gradient(x_adv); then delta = clamp(x_adv - center, -eps, eps) and
    x_adv = clamp(center + delta, 0, 1) (the perturbation first, then the image, as in the paper).

    Args:
        gradient: x_adv [B, ...] -> the gradient of the attack's loss at x_adv, same shape; the loss
            is summed over the batch, so each point's step does not depend on the batch size. The
            attack's randomness (EOT draws, the defense's executions) happens inside, every step.
            `pgd`: the model's cross entropy; `adaptive_pgd`: its summed over MI's mixed copies;
            `eot_pgd`: the NLL of MI's averaged prediction on fresh draws; `eot_pgd_through_defense`:
            the NLL of the defense's averaged probabilities over `eot` draws.
        start: the first x_adv, e.g. `uniform_start(center, ...)`, inside the eps-ball of center.
        center: the clean points [B, ...] in [0, 1] whose eps-ball the iterates stay in.
        eps, step_size, steps, targeted: as in `pgd` (checked here, with `check_pgd_args`).

    Returns:
        The detached final x_adv, with max |x_adv - center| <= eps and pixels in [0, 1].
    """
    check_pgd_args(eps, step_size, steps)
    sign = -1.0 if targeted else 1.0
    x_adv = start.detach()
    for _ in range(int(steps)):
        x_adv = project_to_ball(x_adv + sign * step_size * gradient(x_adv).sign(), center, eps)
    return x_adv.detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, step_size: float, steps: int,
        targeted: bool = False, random_start: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """L-inf projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Norm: L-inf. Loss: cross entropy of `model(x_adv)` against `y`, summed over the batch (so each
    image's step is independent of the batch size).

    Algorithm (`pgd_loop`): x_adv = clamp(x + U[-eps, eps], 0, 1) if `random_start` else x; then `steps` times:
    x_adv <- x_adv + step_size * sign(grad) (untargeted: ascent, away from y) or
    x_adv <- x_adv - step_size * sign(grad) (targeted: descent, toward y), followed by
    delta = clamp(x_adv - x, -eps, eps); x_adv = clamp(x + delta, 0, 1).

    Args:
        model: classifier returning logits [B, C] for images in [0, 1] (it normalises inside).
            Run in eval mode during the attack; its previous mode is restored afterwards.
        x: clean images [B, C, H, W], float, pixels in [0, 1].
        y: int64 labels [B]. The caller chooses them: for untargeted attacks the authors pass the
            model's prediction on the clean input (`model(x).argmax(1)`), robustness benchmarks the
            true label (the workflow passes what config `attacks.labels` says: the default preset
            the true label, config/paper.yaml the clean prediction); for targeted attacks a random
            target != true label.
        eps: L-inf radius in [0, 1] pixel units (paper: 8/255). eps = 0 returns x.
        step_size: step per iteration in pixel units (paper: 2/255); must be <= 2 x eps
            (Wong et al.'s FGSM with a random start: one step of 1.25 eps).
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
    check_pgd_args(eps, step_size, steps)
    check_labels(x, y)
    x = x.detach()
    if eps == 0:
        return x.clone()
    start = uniform_start(x, eps, random_start, generator)

    def gradient(x_adv: Tensor) -> Tensor:
        return input_gradient(lambda v: F.cross_entropy(model(v), y, reduction="sum"), x_adv)

    with eval_mode(model):
        return pgd_loop(gradient, start, x, eps=eps, step_size=step_size, steps=steps, targeted=targeted)


def _check_adaptive_args(x: Tensor, y: Tensor, pool_x: Tensor, pool_y: Tensor, lam: float, mode: str,
                         n_adaptive: int, eps: float, step_size: float, steps: int) -> None:
    """Every argument check shared by the two attacks against MI (PGD's own checks included)."""
    check_pgd_args(eps, step_size, steps)
    check_labels(x, y)
    check_lam(lam)
    check_mode(mode)
    check_positive_int(n_adaptive, "n_adaptive")
    check_pool(pool_x, pool_y, x)


def _draw_mixing_images(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, mode: str, n: int,
                        generator: torch.Generator | None,
                        groups: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """n pool images per input, conditioned on the model's current prediction on x as MI does
    (mode "pl": that class, "ol": the other classes): ([B * n, C, H, W] (copy j -> input j // n),
    the pool's class groups). Pass the groups back in on later calls: checking the pool reads
    values back to the host, which would stall a GPU at every attack step."""
    with torch.no_grad():
        logits = model(x)
    if groups is None:
        groups = class_groups(pool_y, logits.shape[1], x.device)
    index = sample_pool_indices(pool_y, logits.argmax(1), mode=mode, n=n, num_classes=logits.shape[1],
                                generator=generator, groups=groups)
    return pool_images(pool_x, index.reshape(-1), dtype=x.dtype, device=x.device), groups


def adaptive_pgd(model: nn.Module, x: Tensor, y: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float,
                 mode: str, n_adaptive: int, eps: float, step_size: float, steps: int, targeted: bool = False,
                 random_start: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """The paper's adaptive PGD against Mixup Inference (App. B.2, Eq. 24), as in the authors' code.

    For every input x, N_A = n_adaptive pool images x_s,k are drawn ONCE (mode "ol": class
    uniform over the classes other than the model's clean prediction on x; "pl": that predicted
    class; image uniform within the class), giving mixed copies u_k = lam * x + (1 - lam) * x_s,k.
    PGD then runs on the B * N_A copies with one shared step per input: every copy of x moves by
    step_size * sign(sum_k grad_{u_k} CE(F(u_k), y)) (Eq. 24; minus for targeted). Each copy
    keeps its own perturbation delta_k (random start U[-eps, eps] per copy, like the authors'
    PGD on the batch of copies), projected to the eps-ball and so that u_k + delta_k stays in
    [0, 1]. Finally x_adv = clamp(x + mean_k delta_k, 0, 1), which is inside the eps-ball.

    Args:
        model, x, eps, step_size, steps, targeted, random_start: as in `pgd`.
        y: int64 [B] labels, used for every copy of an input. The authors passed y=None for
            untargeted attacks, and their PGD then used the model's prediction on each mixed copy;
            here the caller supplies y (the workflow passes what config `attacks.labels` says, as
            for `pgd`).
        pool_x, pool_y: the MI sample pool (as in defenses.mixup_inference).
        lam: MI mixup ratio in (0, 1].  mode: "ol" or "pl".  n_adaptive: N_A >= 1.
        generator: source of all randomness. Draw order: pool samples, then random start.

    Returns:
        Detached adversarial images with max |x_adv - x| <= eps and pixels in [0, 1].
    """
    _check_adaptive_args(x, y, pool_x, pool_y, lam, mode, n_adaptive, eps, step_size, steps)
    x = x.detach()
    if eps == 0:
        return x.clone()
    n = int(n_adaptive)
    copies = (x.shape[0], n, *x.shape[1:])
    labels = y.repeat_interleave(n)

    def shared_gradient(u_adv: Tensor) -> Tensor:
        """Eq. 24: every copy of an input gets the sum of its copies' gradients (so one shared sign)."""
        grad = input_gradient(lambda v: F.cross_entropy(model(v), labels, reduction="sum"), u_adv)
        return grad.reshape(copies).sum(1).repeat_interleave(n, 0)

    with eval_mode(model):
        x_s, _ = _draw_mixing_images(model, x, pool_x, pool_y, mode=mode, n=n, generator=generator)
        mixed = lam * x.repeat_interleave(n, 0) + (1.0 - lam) * x_s
        start = uniform_start(mixed, eps, random_start, generator)
        u_adv = pgd_loop(shared_gradient, start, mixed, eps=eps, step_size=step_size, steps=steps, targeted=targeted)
    delta = (u_adv - mixed).reshape(copies).mean(1)
    return (x + delta).clamp(0.0, 1.0).detach()


def eot_pgd(model: nn.Module, x: Tensor, y: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float, mode: str,
            n_adaptive: int, eps: float, step_size: float, steps: int, targeted: bool = False,
            random_start: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Expectation-over-Transformation PGD against Mixup Inference (Athalye et al. 2018).

    A single x_adv (random start and projection as in `pgd`). At every step, N_A = n_adaptive
    FRESH pool images are drawn per input exactly as MI would draw them for the current x_adv
    (mode "ol": classes other than the model's current prediction on x_adv; "pl": that class),
    the MI output p = mean_k softmax(F(lam * x_adv + (1 - lam) * x_s,k)) is formed, and x_adv
    moves by step_size * sign(grad_{x_adv} NLL(log p, y)) (ascent untargeted, descent targeted),
    the gradient flowing through all N_A mixed copies; then the eps-ball projection and [0, 1]
    clamp. log p is computed stably as logsumexp_k log_softmax - log N_A.

    Args: as in `adaptive_pgd` (y from the caller for both untargeted and targeted attacks).
        Draw order on `generator`: random start, then per step N_A pool samples per input.

    Returns:
        Detached adversarial images with max |x_adv - x| <= eps and pixels in [0, 1].
    """
    _check_adaptive_args(x, y, pool_x, pool_y, lam, mode, n_adaptive, eps, step_size, steps)
    x = x.detach()
    if eps == 0:
        return x.clone()
    n = int(n_adaptive)
    start = uniform_start(x, eps, random_start, generator)
    groups = None  # the pool's class groups, checked once (first step), so the steps never sync

    def mi_nll(v: Tensor, x_s: Tensor) -> Tensor:
        logits = model(lam * v.repeat_interleave(n, 0) + (1.0 - lam) * x_s)
        log_p = torch.logsumexp(F.log_softmax(logits, 1).reshape(x.shape[0], n, -1), 1) - math.log(n)
        return F.nll_loss(log_p, y, reduction="sum")

    def eot_gradient(x_adv: Tensor) -> Tensor:
        """Fresh pool draws for the current x_adv, then the gradient through all N_A mixed copies."""
        nonlocal groups
        x_s, groups = _draw_mixing_images(model, x_adv, pool_x, pool_y, mode=mode, n=n, generator=generator,
                                          groups=groups)
        return input_gradient(lambda v: mi_nll(v, x_s), x_adv)

    with eval_mode(model):
        return pgd_loop(eot_gradient, start, x, eps=eps, step_size=step_size, steps=steps, targeted=targeted)
