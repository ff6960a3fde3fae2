"""The engine every defense runs on: the softmax averaged over N random executions, in chunks.

`averaged_softmax` builds and classifies the B x N transformed copies in chunks of at most
`chunk_size` images (memory bounded independently of N) and adds the softmax of copy j (input
j // N) to its input's row. Callers draw all their random parameters before the first chunk, so
for a given generator state a defense's result does not depend on `chunk_size`.

Conventions: images float [B, C, H, W] in [0, 1]; the model returns logits and is run in eval
mode under torch.inference_mode() (its previous mode is restored; the returned probabilities are
ordinary tensors, usable in autograd code); results keep the model's output dtype.

Differentiable on request (`grad=True`, used by the adaptive attacks): the same chunks, the same
random draws and the same sums, but under autograd, so the averaged probabilities are a function
of x that gradients flow through (every transform here is differentiable in x: MI's mixing, the
noise, grid_sample, the crop-and-pad gather). Memory stays bounded by the chunk size: when the
copies take more than one chunk, each chunk's model pass is checkpointed (its activations are
dropped and recomputed in the backward pass; only the chunk's transformed images are kept, the
size of the copies themselves), which costs one extra forward pass per chunk; in one chunk the
graph is kept and backward costs only the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch.utils.checkpoint import checkpoint

from ..checks import check_images, check_positive_int
from ..utils import eval_mode

__all__ = ["CHUNK_SIZE_CPU", "CHUNK_SIZE_CUDA", "averaged_softmax", "copy_owners", "default_chunk_size",
           "predict_probs"]

# Default images per forward pass when chunk_size is None (see `default_chunk_size`). The CUDA value
# is an unmeasured guess sized for a large GPU (tens of GiB: a 32x32 ResNet-50's inference
# activations for 8192 images are a few GiB); the GPU issue measures it. Lower
# defenses.chunk_size on a small GPU.
CHUNK_SIZE_CUDA = 8192
CHUNK_SIZE_CPU = 64


def default_chunk_size(device: torch.device | str) -> int:
    """Images per forward pass used when a defense gets chunk_size=None: 8192 on CUDA, 64 elsewhere.

    On CPU the per-image forward cost grows once a chunk's activations outgrow the caches
    (`python -m mixup_inference.perf.bench`, 2-core Xeon: compact_resnet 0.8 ms/image at 32-128
    images, 2.2 ms at 2048; the paper's ResNet 7.5 ms at 16-64, 11.5 ms at 128), so CPU chunks
    stay small; a GPU needs large batches to fill it.
    """
    return CHUNK_SIZE_CUDA if torch.device(device).type == "cuda" else CHUNK_SIZE_CPU


def averaged_softmax(model: nn.Module, x: Tensor, make_inputs: Callable[[int, int], Tensor],
                     n_samples: int, *, chunk_size: int | None = None, grad: bool = False) -> Tensor:
    """Mean over N = n_samples random executions of softmax(model(transformed copy)), per input.

    Copies are numbered j = b * N + k (input b, execution k). `make_inputs(start, stop)` must
    return the images of copies start..stop-1 as a float tensor [stop - start, C, H, W]; it is
    called with consecutive, increasing ranges of at most `chunk_size` copies, so at most
    `chunk_size` images are ever passed to the model at once (None: `default_chunk_size(x.device)`).
    `grad=True`: differentiable in x (see the module docstring); the same value for the same draws.

    Returns:
        [B, C] averaged probabilities (rows sum to 1), dtype of the model's output.
    """
    check_images(x)
    check_positive_int(n_samples, "n_samples")
    if chunk_size is None:
        chunk_size = default_chunk_size(x.device)
    check_positive_int(chunk_size, "chunk_size")
    n_inputs, n_samples = x.shape[0], int(n_samples)
    total = n_inputs * n_samples
    if grad:
        return _averaged_softmax_grad(model, x, make_inputs, n_samples, chunk_size)
    sums: Tensor | None = None
    with torch.inference_mode(), eval_mode(model):
        for start in range(0, total, chunk_size):
            stop = min(total, start + chunk_size)
            probs = F.softmax(model(make_inputs(start, stop)), dim=1)
            if sums is None:
                sums = probs.new_zeros(n_inputs, probs.shape[1])
            owner = torch.arange(start, stop, device=probs.device) // n_samples
            sums.index_add_(0, owner, probs)
    assert sums is not None
    return sums / n_samples


def _softmax_of(model: nn.Module, images: Tensor) -> Tensor:
    return F.softmax(model(images), dim=1)


def _averaged_softmax_grad(model: nn.Module, x: Tensor, make_inputs: Callable[[int, int], Tensor],
                           n_samples: int, chunk_size: int) -> Tensor:
    """`averaged_softmax` under autograd: out-of-place sums, each chunk's model pass checkpointed
    when there is more than one chunk (activations recomputed in backward, memory per chunk)."""
    n_inputs = x.shape[0]
    total = n_inputs * n_samples
    several = total > chunk_size
    sums: Tensor | None = None
    with torch.enable_grad(), eval_mode(model):
        for start in range(0, total, chunk_size):
            stop = min(total, start + chunk_size)
            images = make_inputs(start, stop)
            if several:
                probs = checkpoint(_softmax_of, model, images, use_reentrant=False, preserve_rng_state=False)
            else:
                probs = _softmax_of(model, images)
            if sums is None:
                sums = probs.new_zeros(n_inputs, probs.shape[1])
            sums = sums.index_add(0, torch.arange(start, stop, device=probs.device) // n_samples, probs)
    assert sums is not None
    return sums / n_samples


def copy_owners(start: int, stop: int, n_samples: int, device: torch.device) -> Tensor:
    """Input index of copies start..stop-1."""
    return torch.arange(start, stop, device=device) // int(n_samples)


def predict_probs(model: nn.Module, x: Tensor, *, chunk_size: int | None = None, grad: bool = False) -> Tensor:
    """Plain softmax(model(x)) [B, C] (no defense), in chunks of at most `chunk_size` images."""
    return averaged_softmax(model, x, lambda start, stop: x[start:stop], 1, chunk_size=chunk_size, grad=grad)

