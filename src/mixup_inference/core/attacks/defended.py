"""Adaptive attacks against every randomized defense: the defense inside the forward pass.

Tramer, Carlini, Brendel and Madry (2020, "On Adaptive Attacks to Adversarial Example Defenses",
wielandbrendel/adaptive_attacks_paper, 10_mixup) attacked MI-OL by running PGD through the averaged
softmax of fresh MI samples. This module does that for every defense of `defenses.specs.DEFENSES`:

- `DefendedModel`: a module whose forward is log of the defense's averaged probabilities, with
  fresh randomness from its generator at every call (for a given generator state: exactly the
  defense's own prediction) and gradients flowing to the input (`averaging.averaged_softmax`
  with grad=True: memory bounded by the chunk size);
- `eot_pgd_through_defense`: Expectation-over-Transformation PGD (Athalye et al. 2018) on it, untargeted
  or targeted, `eot` draws of the whole defense per step (`pgd.pgd_loop` with this gradient);
- `autoattack_rand`: AutoAttack's protocol for randomized defenses (Croce and Hein 2020,
  version='rand': APGD-CE then APGD-DLR, EOT over 20 draws per gradient, 100 iterations), from the
  reference implementation (PyPI `pyautoattack`, fra31/auto-attack).

Pixels in [0, 1], L-inf ball, as in pgd.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pgd import check_labels, check_pgd_args, input_gradient, pgd_loop, project_to_ball, uniform_start
from ..defenses.averaging import predict_probs
from ..checks import check_positive_int
from ..defenses.specs import DefenseSetting, apply_defense
from ..defenses.pool import class_groups
from ..utils import eval_mode

__all__ = ["AUTOATTACK_RAND", "TRAMER_2020", "DefendedModel", "autoattack_rand", "configure_apgd",
           "eot_pgd_through_defense", "repeated_verdicts"]

#: AutoAttack's version='rand' settings (pyautoattack AutoAttack._set_version): attacks APGD-CE and
#: APGD-DLR, EOT over 20 gradient draws, 100 iterations, 1 restart.
AUTOATTACK_RAND = {"n_iter": 100, "eot_iter": 20, "n_restarts": 1}

#: Tramer, Carlini, Brendel and Madry (2020), "On Adaptive Attacks to Adversarial Example Defenses",
#: their attack on interpolated AT + MI-OL (wielandbrendel/adaptive_attacks_paper, 10_mixup/
#: mixup_attack.ipynb): MI-OL with lambda 0.6 and 15 fresh pool samples inside the forward pass (the
#: sample classes follow the current prediction), foolbox LinfPGD (random start, signed steps) for 50
#: steps of 0.5/255 in an eps = 8/255 ball, pushing away from the TRUE labels, one draw of the 15-sample
#: defense per gradient. Their notebook feeds the averaged probabilities to the cross entropy as if they
#: were logits (a softmax of numbers in [0, 1], nearly uniform); here the loss is the NLL of log of the
#: averaged probabilities (`DefendedModel`), the cross entropy of the defense's own prediction.
TRAMER_2020 = {"defense": "mi_ol", "setting": "lam=0.6", "n_samples": 15, "steps": 50, "step_size": 0.5 / 255,
               "eps": 8 / 255, "eot": 1, "labels": "true", "targeted": False}


class DefendedModel(nn.Module):
    """A randomized defense as a classifier: forward(x) = log F_defense(x), the log of the defense's
    averaged probabilities [B, C] (the "logits" an attack library expects).

    Every call draws fresh random parameters from `generator` (MI's pool samples, the noise, the
    angles, the windows), so calling it twice gives two draws of the defense; with a given
    generator state the output is log of `defenses.specs.apply_defense(...)` with that state. When grad
    is enabled and x requires grad, the defense runs differentiably (averaging.averaged_softmax
    with grad=True); otherwise under inference mode. log is taken of the probabilities clamped to
    the dtype's smallest normal number, so a class with probability 0 gives a finite log (its
    gradient is then 0).

    Args:
        model: logits classifier on [0, 1] images (kept as a submodule; run in eval mode).
        defense: a name of defenses.specs.DEFENSES.  setting: its canonical setting (defenses.specs),
            parsed once here (a ValueError names the expected form).
        pool: (pool_x, pool_y), the MI sample pool (needed by MI-PL, MI-OL, MI-Combined).
        n_samples: executions N inside the defense (MI-Combined's 5 + 15 are its own).
        generator: the only source of the defense's randomness.  chunk_size: as the defenses'.
    """

    def __init__(self, model: nn.Module, defense: str, setting: str, *, pool: tuple[Tensor, Tensor] | None = None,
                 n_samples: int, generator: torch.Generator | None, chunk_size: int | None = None) -> None:
        super().__init__()
        self.parsed = DefenseSetting.parse(defense, setting)
        if self.parsed.spec.needs_pool and pool is None:
            raise ValueError(f"defense {defense!r} needs the MI sample pool; pass pool=(pool_x, pool_y)")
        check_positive_int(n_samples, "n_samples")
        self.model = model
        self.defense, self.setting = defense, setting
        self.pool = pool if pool is not None else ()
        self.n_samples, self.generator, self.chunk_size = int(n_samples), generator, chunk_size

    def forward(self, x: Tensor, plain: Tensor | None = None,
                groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """log F_defense(x). Optional, from a caller that has them (see defenses.specs.apply_defense):
        `plain`, softmax(model(x)); `groups`, the pool's class groups."""
        grad = torch.is_grad_enabled() and x.requires_grad
        probs = self.parsed(self.model, x, pool=self.pool, n_samples=self.n_samples, chunk_size=self.chunk_size,
                            generator=self.generator, grad=grad, plain=plain, groups=groups)
        return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))


def eot_pgd_through_defense(model: nn.Module, x: Tensor, y: Tensor, defense: str, setting: str, *,
                    pool: tuple[Tensor, Tensor] | None = None, n_samples: int, eot: int, eps: float,
                    step_size: float, steps: int, targeted: bool = False, random_start: bool = True,
                    generator: torch.Generator | None = None, chunk_size: int | None = None,
                    start: Tensor | None = None) -> Tensor:
    """EOT PGD (Athalye et al. 2018) through any randomized defense of the registry.

    One x_adv (random start U[-eps, eps], projection to the eps-ball then [0, 1]: `pgd.pgd_loop`).
    At every step the defense runs `eot` independent times on x_adv (each a full defense with
    `n_samples` executions and fresh draws, batched as eot x B inputs), and x_adv moves by
    step_size * sign(sum_d grad NLL(log F_defense,d(x_adv), y)) (ascent untargeted, away from y;
    descent targeted, toward y). The gradient flows through every transformed copy: MI's mixing
    (the pool classes follow the defense's prediction on the current x_adv, a hard choice),
    Gaussian noise, rotation and Xie/Guo via grid_sample or the crop-and-pad gather.

    MI-Combined: the attack differentiates the combined output exactly as the defense computes it.
    The switch (an input is flagged when max F(x) - max F_MI-PL(x) >= threshold, then gets MI-OL,
    else MI-PL) is a hard, non-differentiable selection evaluated on each draw: the gradient of a
    draw flows through the branch that draw takes (MI-PL's output for unflagged copies, MI-OL's
    for flagged ones), so across the EOT draws both branches contribute in proportion to how often
    they are taken. No extra term pushes the MI-PL score under the threshold: staying unflagged
    pays only when MI-PL is fooled too, and the cross entropy of the combined output already
    rewards whichever branch is easier to fool on the draws.

    Args:
        model, x, eps, step_size, steps, targeted, random_start: as in `pgd.pgd`.
        y: int64 [B] labels (true labels or the clean prediction untargeted; the target targeted).
        defense, setting, pool, n_samples, chunk_size: the defense (see `DefendedModel`).
        eot: defense draws per gradient (>= 1).  generator: random start first, then every draw.
        start: optional U[-1, 1] noise [B, C, H, W] for the random start (x + eps * start, clamped
            to [0, 1]) instead of drawing it from `generator`: a caller that attacks a changing
            subset of its points (the robust job's cascade) draws one start per point up front, so
            a point's start does not depend on which other points share its batch.

    Returns:
        Detached adversarial images with max |x_adv - x| <= eps and pixels in [0, 1].
    """
    check_pgd_args(eps, step_size, steps)
    check_labels(x, y)
    check_positive_int(eot, "eot")
    x = x.detach()
    if eps == 0:
        return x.clone()
    defended = DefendedModel(model, defense, setting, pool=pool, n_samples=n_samples, generator=generator,
                             chunk_size=chunk_size)
    draws = int(eot)
    labels = y.to(x.device).repeat_interleave(draws)
    start = uniform_start(x, eps, random_start, generator, noise=start)
    groups = None  # the pool's class groups, checked once (first step), so the steps read nothing back

    def eot_gradient(x_adv: Tensor) -> Tensor:
        """The gradient of the NLL summed over `eot` fresh draws of the defense on x_adv."""
        nonlocal groups
        plain = None
        if defended.parsed.spec.needs_pool:
            # MI's plain forward (its predicted label; MI-Combined's switch) is the same for the eot
            # copies of a point: computed once on the B points, not eot times on the B x eot copies.
            plain = predict_probs(model, x_adv, chunk_size=chunk_size).repeat_interleave(draws, 0)
            if groups is None:
                groups = class_groups(pool[1], plain.shape[1], x.device)
        return input_gradient(lambda v: F.nll_loss(defended(v.repeat_interleave(draws, 0), plain=plain, groups=groups),
                                                    labels, reduction="sum"), x_adv)

    with eval_mode(model):
        return pgd_loop(eot_gradient, start, x, eps=eps, step_size=step_size, steps=steps, targeted=targeted)


def configure_apgd(apgd, *, n_iter: int, eot_iter: int, n_restarts: int) -> None:
    """Set APGD's iterations, EOT draws and restarts after AutoAttack built it. APGD derives its
    step-size schedule (n_iter_2, n_iter_min, size_decr) from n_iter in its __init__, so setting
    n_iter alone would keep the 100-iteration checkpoints: they are recomputed here exactly as
    pyautoattack 0.2.0's APGDAttack.__init__ computes them."""
    apgd.n_iter, apgd.n_iter_orig = int(n_iter), int(n_iter)
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)
    apgd.eot_iter, apgd.n_restarts = int(eot_iter), int(n_restarts)


def autoattack_rand(model: nn.Module, x: Tensor, y: Tensor, defense: str, setting: str, *,
                    pool: tuple[Tensor, Tensor] | None = None, n_samples: int, eps: float, seed: int,
                    n_iter: int = 100, eot_iter: int = 20, n_restarts: int = 1,
                    generator: torch.Generator | None = None, chunk_size: int | None = None,
                    batch_size: int | None = None) -> Tensor:
    """AutoAttack for randomized defenses (Croce and Hein 2020, https://arxiv.org/abs/2003.01690,
    version='rand') through `DefendedModel`: APGD-CE, then APGD-DLR on the points APGD-CE did not
    break, each with the gradient averaged over `eot_iter` defense draws, `n_iter` iterations,
    `n_restarts` restarts, L-inf radius eps. The defaults are the protocol's (AUTOATTACK_RAND).

    The reference implementation (PyPI pyautoattack 0.2.0, fra31/auto-attack) runs unchanged except:
    (1) its APGD schedule is reset for n_iter (see `configure_apgd`); (2) APGD seeds torch's GLOBAL
    random generator with `seed` and draws its random starts from it, so the call runs inside
    torch.random.fork_rng: the caller's global RNG state is untouched and the starts are the
    seed's; the defense draws from `generator`. AutoAttack counts a point broken when one draw of
    the defense misclassifies it; callers judge the returned images with their own evaluation.

    Returns:
        Detached images [B, C, H, W]: AutoAttack's adversarial example where it found one, else x
        (max |x_adv - x| <= eps, pixels in [0, 1]).
    """
    from pyautoattack import AutoAttack  # optional at import time: only this attack needs it

    check_labels(x, y)
    for value, name in ((n_iter, "n_iter"), (eot_iter, "eot_iter"), (n_restarts, "n_restarts")):
        check_positive_int(value, name)
    x = x.detach()
    defended = DefendedModel(model, defense, setting, pool=pool, n_samples=n_samples, generator=generator,
                             chunk_size=chunk_size)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), eval_mode(model):
        attack = AutoAttack(defended, norm="Linf", eps=float(eps), version="rand", device=x.device, seed=int(seed))
        configure_apgd(attack.apgd, n_iter=n_iter, eot_iter=eot_iter, n_restarts=n_restarts)
        x_adv, _ = attack.run_standard_evaluation(x, y.to(x.device), batch_size=int(batch_size or x.shape[0]))
    return project_to_ball(x_adv.detach().to(x.dtype), x, eps)


def repeated_verdicts(model: nn.Module, x: Tensor, defense: str, setting: str, *, repeats: int, n_samples: int,
                      pool: tuple[Tensor, Tensor] | None = None, generator: torch.Generator | None,
                      chunk_size: int | None = None) -> Tensor:
    """The defense's probabilities on x from `repeats` independent runs, each the full defense with
    `n_samples` executions: float [repeats, B, C].

    Judging a randomized defense by one final forward pass overstates its robustness (fra31/auto-attack
    pull requests 104 and 105: an adversarial example that fools some draws of the defense counts as
    robust when the one evaluation draw happens to be right); the robust job counts a point robust only
    if every run classifies it correctly. The runs are one batched call on the repeats x B copies
    (run r of point i at row r * B + i), fresh randomness per copy from `generator`; memory is bounded
    by the defense's `chunk_size` (callers bound repeats x B by batching their points)."""
    check_positive_int(repeats, "repeats")
    copies = x.detach().repeat(int(repeats), *([1] * (x.dim() - 1)))
    with eval_mode(model), torch.inference_mode():
        probs = apply_defense(model, copies, defense, setting, pool=pool if pool is not None else (),
                              n_samples=n_samples, chunk_size=chunk_size, generator=generator)
    return probs.reshape(int(repeats), x.shape[0], -1)
