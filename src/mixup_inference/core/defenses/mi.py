"""Mixup Inference (Pang, Xu, Zhu, ICLR 2020, Algorithm 1) and MI-Combined. The randomised
baselines of the paper's Tables 4/5 live in baselines.py, and every defense's spec (its name,
parameters, setting grammar, labels) in specs.py.

Every defense returns the softmax probabilities [B, C] averaged over its random executions and
runs through one engine, `averaging.averaged_softmax` (chunked, memory bounded independently of
N; all random draws happen before the first chunk, so the result does not depend on the chunk
size). Images float [B, C, H, W] in [0, 1]; the model returns logits and runs in eval mode under
torch.inference_mode(). The MI sample pool (`pool_x` uint8 or float, `pool_y` int64) must contain
every class; uint8 pools are converted to float / 255 one chunk at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .averaging import averaged_softmax, copy_owners, predict_probs
from ..checks import check_images, check_lam, check_mode, check_positive_int
from .pool import check_pool, pool_images, sample_pool_indices

__all__ = ["mi_combined", "mi_given_labels", "mi_ol", "mi_pl", "mixup_inference"]


def mi_given_labels(model: nn.Module, x: Tensor, yhat: Tensor, pool_x: Tensor, pool_y: Tensor, *,
                    lam: float, n_samples: int, mode: str, num_classes: int,
                    generator: torch.Generator | None, chunk_size: int | None,
                    grad: bool = False, groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """MI with the predicted labels `yhat` already computed (shared by MI, MI-Combined and the
    benchmark's MI-Combined reference); no argument checks (the callers make them)."""
    index = sample_pool_indices(pool_y, yhat, mode=mode, n=n_samples, num_classes=num_classes,
                                generator=generator, groups=groups).reshape(-1)

    def make_inputs(start: int, stop: int) -> Tensor:
        owner = copy_owners(start, stop, n_samples, x.device)
        x_s = pool_images(pool_x, index[start:stop], dtype=x.dtype, device=x.device)
        return lam * x[owner] + (1.0 - lam) * x_s

    return averaged_softmax(model, x, make_inputs, n_samples, chunk_size=chunk_size, grad=grad)


def mixup_inference(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float,
                    n_samples: int, mode: str, generator: torch.Generator | None = None,
                    chunk_size: int | None = None, grad: bool = False, plain: Tensor | None = None,
                    groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Mixup Inference (paper Algorithm 1): F_MI(x) = mean_k softmax(F(lam * x + (1 - lam) * x_s,k)).

    yhat = argmax F(x) (plain prediction). Mode "pl" (MI-PL): y_s,k = yhat; mode "ol" (MI-OL):
    y_s,k uniform over the C - 1 labels other than yhat; x_s,k uniform among the pool images of
    class y_s,k (see `sample_pool_indices`). N = n_samples executions per input.

    Args:
        model: logits classifier on [0, 1] images.  x: float [B, C, H, W] in [0, 1].
        pool_x, pool_y: the sample pool (uint8 or float images, int64 labels; every class present).
        lam: mixup ratio in (0, 1] (paper: 0.5 for mixup, 0.6 for interpolated AT).
        n_samples: executions N >= 1 (paper: 30).  mode: "pl" or "ol".
        generator: the only source of randomness.  chunk_size: max images per forward pass
            (None: `default_chunk_size`, 8192 on CUDA, 64 on CPU); results do not depend on it.
        grad: differentiable in x (for adaptive attacks): gradients flow through the mixed copies;
            the predicted label yhat (which classes are drawn) is a hard choice, not differentiated.
        plain: softmax(F(x)) [B, C] if the caller already has it (an EOT attack repeating x computes
            it once for all its copies); None: computed here.
        groups: `pool.class_groups(pool_y, C, x.device)` when the caller runs MI in a loop (an
            attack): checked once there, so the loop reads nothing back to the host; None: here.

    Returns:
        [B, C] averaged probabilities.
    """
    check_lam(lam)
    check_mode(mode)
    check_positive_int(n_samples, "n_samples")
    check_images(x)
    check_pool(pool_x, pool_y, x)
    if plain is None:
        plain = predict_probs(model, x, chunk_size=chunk_size)
    return mi_given_labels(model, x, plain.argmax(1), pool_x, pool_y, lam=lam, n_samples=n_samples,
                                         mode=mode, num_classes=plain.shape[1], generator=generator,
                                         chunk_size=chunk_size, grad=grad, groups=groups)


def mi_pl(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float, n_samples: int,
          generator: torch.Generator | None = None, chunk_size: int | None = None, grad: bool = False,
          plain: Tensor | None = None,
          groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """MI-PL: `mixup_inference` with mode="pl" (mix with pool images of the predicted class)."""
    return mixup_inference(model, x, pool_x, pool_y, lam=lam, n_samples=n_samples, mode="pl",
                           generator=generator, chunk_size=chunk_size, grad=grad, plain=plain, groups=groups)


def mi_ol(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam: float, n_samples: int,
          generator: torch.Generator | None = None, chunk_size: int | None = None, grad: bool = False,
          plain: Tensor | None = None,
          groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """MI-OL: `mixup_inference` with mode="ol" (mix with pool images of the other classes)."""
    return mixup_inference(model, x, pool_x, pool_y, lam=lam, n_samples=n_samples, mode="ol",
                           generator=generator, chunk_size=chunk_size, grad=grad, plain=plain, groups=groups)


def mi_combined(model: nn.Module, x: Tensor, pool_x: Tensor, pool_y: Tensor, *, lam_pl: float = 0.5,
                lam_ol: float = 0.4, threshold: float = 0.2, n_pl: int = 5, n_ol: int = 15,
                generator: torch.Generator | None = None, chunk_size: int | None = None,
                grad: bool = False, plain: Tensor | None = None,
                groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """MI-Combined (paper Sec. 4.3, authors' attack_resnet_mixuptest_Combined.py).

    Runs MI-PL (lam_pl, n_pl samples). An input is flagged adversarial when
    max_c F(x) - max_c F_MI-PL(x) >= threshold; flagged inputs get the MI-OL output
    (lam_ol, n_ol samples, drawn only for the flagged inputs), the others the MI-PL output.
    This follows the authors' code; the paper's text says unflagged inputs keep "the prediction
    on the original input" instead of the MI-PL one.

    `threshold` may be any finite float here (a negative one flags every input whose confidence MI-PL
    does not raise by more than it; tests use that to reach the MI-OL branch); a config's setting
    keeps it in [0, 1] (its spec in defenses.specs).
    Draw order on `generator`: MI-PL samples for all inputs, then MI-OL samples for the flagged.
    `grad=True`: differentiable in x through whichever branch each input takes; the switch itself
    (the flag) is a hard selection and carries no gradient. Returns [B, C] probabilities.
    """
    check_lam(lam_pl, "lam_pl")
    check_lam(lam_ol, "lam_ol")
    check_positive_int(n_pl, "n_pl")
    check_positive_int(n_ol, "n_ol")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite float (got {threshold}); the paper uses 0.2")
    check_images(x)
    check_pool(pool_x, pool_y, x)
    if plain is None:
        plain = predict_probs(model, x, chunk_size=chunk_size)
    yhat, num_classes = plain.argmax(1), plain.shape[1]
    common = dict(num_classes=num_classes, generator=generator, chunk_size=chunk_size, grad=grad, groups=groups)
    probs_pl = mi_given_labels(model, x, yhat, pool_x, pool_y, lam=lam_pl, n_samples=n_pl,
                                             mode="pl", **common)
    flagged = plain.max(1).values - probs_pl.detach().max(1).values >= threshold
    out = probs_pl.clone()
    if bool(flagged.any()):
        out[flagged] = mi_given_labels(model, x[flagged], yhat[flagged], pool_x, pool_y, lam=lam_ol,
                                                     n_samples=n_ol, mode="ol", **common)
    return out
