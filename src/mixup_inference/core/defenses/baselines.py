"""The randomised input-transformation baselines of the paper's Tables 4/5: Gaussian noise,
random rotation, Xie et al.'s random resize-and-pad (crop-and-pad as the authors ran it, and the
resize variant), Guo et al.'s random crop-and-resize.

Each returns the softmax probabilities [B, C] averaged over N random transformations per input
(`averaging.averaged_softmax`), batched over all B x N copies (affine_grid + grid_sample, or an
integer gather for the crop-and-pad). All random parameters are drawn before the first chunk
(Gaussian noise in fixed-size blocks), so for a given generator state the result does not depend
on `chunk_size`. Images float [B, C, H, W] in [0, 1]. `grad=True` makes the result differentiable
in x (the transforms are: noise is additive, grid_sample and the gather pass gradients to x).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .averaging import averaged_softmax, copy_owners
from ..checks import check_images, check_positive_int
from ..utils import rand, randint, randn

__all__ = ["crop_pad", "gaussian_noise", "random_crop_pad", "random_crop_resize", "random_resize_pad",
           "random_rotation"]

# Gaussian noise is drawn in blocks of this many copies, whatever the chunk size, so that the
# noise of copy j does not depend on how the copies are chunked.
_NOISE_BLOCK = 256


def _check_sizes(min_size: int, max_size: int, x: Tensor) -> None:
    limit = min(x.shape[-2], x.shape[-1])
    if int(min_size) != min_size or int(max_size) != max_size or not 1 <= min_size <= max_size <= limit:
        raise ValueError(f"need integers 1 <= min_size <= max_size <= {limit} (got {min_size}, {max_size}); "
                         f"pick sizes within the image size")


def _affine_copies(model: nn.Module, x: Tensor, theta: Tensor, n_samples: int, chunk_size: int | None,
                   bounds: Tensor | None = None, grad: bool = False) -> Tensor:
    """Average softmax over copies j of x[j // N] warped by theta[j] ([B*N, 2, 3], output ->
    input normalised coordinates, align_corners=False), bilinear, zeros outside the image.
    `bounds` ([B*N, 4]: x_lo, y_lo, x_hi, y_hi) optionally clamps the sampling grid per copy."""

    def make_inputs(start: int, stop: int) -> Tensor:
        images = x[copy_owners(start, stop, n_samples, x.device)]
        grid = F.affine_grid(theta[start:stop], list(images.shape), align_corners=False)
        if bounds is not None:
            b = bounds[start:stop, None, None, :]
            grid = torch.minimum(torch.maximum(grid, b[..., :2]), b[..., 2:])
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return averaged_softmax(model, x, make_inputs, n_samples, chunk_size=chunk_size, grad=grad)


def _scale_translate_theta(scale_x: Tensor, scale_y: Tensor, shift_x: Tensor, shift_y: Tensor) -> Tensor:
    zeros = torch.zeros_like(scale_x)
    return torch.stack([torch.stack([scale_x, zeros, shift_x], 1), torch.stack([zeros, scale_y, shift_y], 1)], 1)


def gaussian_noise(model: nn.Module, x: Tensor, *, sigma: float, n_samples: int, clamp: bool = False,
                   generator: torch.Generator | None = None, chunk_size: int | None = None,
                   grad: bool = False) -> Tensor:
    """Gaussian-noise baseline (paper Tables 4/5): mean_k softmax(F(x + (sigma / 2) z_k)), z_k ~ N(0, I).

    Units: `sigma` is the paper's number (Table 4: 0.04, 0.075, 0.025, 0.06), a std in the authors'
    [-1, 1] image scale (attack_resnet_baselines.py adds N(0, sigma) to images scaled to [-1, 1]);
    on this project's [0, 1] pixel scale the noise std is therefore sigma / 2. As in the authors'
    code the noisy image is NOT clamped and may leave [0, 1]; `clamp=True` clamps it to [0, 1]
    (an explicit deviation, not the paper's). Noise is drawn in blocks of 256 copies (independent
    of chunk_size).
    """
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite float >= 0 (got {sigma}); pass the paper's [-1, 1]-scale std such as 0.04")
    check_images(x)
    check_positive_int(n_samples, "n_samples")
    total = x.shape[0] * int(n_samples)
    std = sigma / 2.0  # [-1, 1] scale -> [0, 1] pixel scale
    drawn_start, drawn = 0, x.new_zeros((0, *x.shape[1:]))  # noise of copies drawn_start.. not yet used

    def noise_for(start: int, stop: int) -> Tensor:
        """Noise of copies start..stop-1, drawn block by block in copy order (ranges must increase)."""
        nonlocal drawn_start, drawn
        drawn, drawn_start = drawn[start - drawn_start:], start
        while drawn_start + drawn.shape[0] < stop:
            block = min(_NOISE_BLOCK, total - drawn_start - drawn.shape[0])
            drawn = torch.cat([drawn, randn((block, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)])
        return drawn[: stop - start]

    def make_inputs(start: int, stop: int) -> Tensor:
        owner = copy_owners(start, stop, n_samples, x.device)
        noisy = x[owner] + std * noise_for(start, stop)
        return noisy.clamp(0.0, 1.0) if clamp else noisy

    return averaged_softmax(model, x, make_inputs, n_samples, chunk_size=chunk_size, grad=grad)


def random_rotation(model: nn.Module, x: Tensor, *, max_degrees: float, n_samples: int,
                    generator: torch.Generator | None = None, chunk_size: int | None = None,
                   grad: bool = False) -> Tensor:
    """Random-rotation baseline: rotate each copy about the image centre by an angle uniform in
    [-max_degrees, max_degrees] (bilinear, zero fill), average the softmax over n_samples copies.

    Deviation from the authors' code (documented, kept): they rotate a PIL image with torchvision's
    RandomRotation, i.e. NEAREST resampling of an image quantised to 8 bits by ToPILImage
    (floor(255 x) / 255), which removes a little of the perturbation by itself; here the rotation is
    bilinear on the float image, with no quantisation, so the baseline measures the rotation alone."""
    if not (0 <= max_degrees <= 180):
        raise ValueError(f"max_degrees must be in [0, 180] (got {max_degrees}); the paper uses 20-40")
    check_images(x)
    check_positive_int(n_samples, "n_samples")
    height, width = x.shape[-2:]
    total = x.shape[0] * int(n_samples)
    u = rand((total,), generator=generator, device=x.device, dtype=torch.float64)
    angle = torch.deg2rad((2 * u - 1) * max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zeros = torch.zeros_like(angle)
    # rotation in pixel units, written in normalised coordinates (exact for non-square images too)
    theta = torch.stack([torch.stack([cos, -sin * height / width, zeros], 1),
                         torch.stack([sin * width / height, cos, zeros], 1)], 1)
    return _affine_copies(model, x, theta.to(x.dtype), int(n_samples), chunk_size, grad=grad)


def _random_windows(x: Tensor, min_size: int, max_size: int, n_samples: int,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """One s x s window per copy (B * n_samples copies): int64 sizes s uniform in [min_size,
    max_size], then tops in [0, H - s], then lefts in [0, W - s] (that draw order), on x's device.
    Checks the arguments first (the Xie and Guo baselines share them)."""
    check_images(x)
    _check_sizes(min_size, max_size, x)
    check_positive_int(n_samples, "n_samples")
    height, width = x.shape[-2:]
    total = x.shape[0] * int(n_samples)
    lo, hi = int(min_size), int(max_size)
    size = lo + randint(hi - lo + 1, (total,), generator=generator, device=x.device)
    top = randint(height - size + 1, (total,), generator=generator, device=x.device)
    left = randint(width - size + 1, (total,), generator=generator, device=x.device)
    return size, top, left


def random_resize_pad(model: nn.Module, x: Tensor, *, min_size: int, max_size: int, n_samples: int,
                      generator: torch.Generator | None = None, chunk_size: int | None = None,
                   grad: bool = False) -> Tensor:
    """Xie et al.'s (2018) original ImageNet method (defense "xie_resize"; NOT the paper's CIFAR
    adaptation, which is `random_crop_pad`): resize each copy to s x s, s uniform integer in
    [min_size, max_size], and zero-pad it back to H x W at a uniform integer offset
    (top in [0, H - s], left in [0, W - s]).

    Implemented as one affine map per copy (x_in = (W/s) x_out + (W - s - 2 left)/s in normalised
    coordinates, likewise for y) sampled bilinearly with zero padding; this equals
    F.interpolate(size=(s, s), mode="bilinear", align_corners=False, antialias=False) followed by
    F.pad (up to float rounding). Draw order: s, top, left (one each per copy).
    """
    size, top, left = _random_windows(x, min_size, max_size, n_samples, generator)
    height, width = x.shape[-2:]
    s = size.to(torch.float64)
    theta = _scale_translate_theta(width / s, height / s, (width - s - 2 * left) / s, (height - s - 2 * top) / s)
    return _affine_copies(model, x, theta.to(x.dtype), int(n_samples), chunk_size, grad=grad)


def random_crop_pad(model: nn.Module, x: Tensor, *, min_size: int, max_size: int, n_samples: int,
                    generator: torch.Generator | None = None, chunk_size: int | None = None,
                   grad: bool = False) -> Tensor:
    """Xie et al. (2018) baseline as the paper adapts it for CIFAR (App. B.3, Table 4; the authors'
    attack_resnet_baselines.py): crop an s x s window of each copy, s uniform integer in
    [min_size, max_size], at a uniform position (crop_top in [0, H - s], crop_left in [0, W - s]),
    and zero-pad it back to H x W at a uniform offset (pad_top in [0, H - s], pad_left in
    [0, W - s]), WITHOUT resizing: every output pixel is an input pixel or 0.

    Output pixel (i, j) of a copy is x[crop_top + i - pad_top, crop_left + j - pad_left] inside the
    s x s block that starts at (pad_top, pad_left), and 0 outside: one batched gather over all
    copies of a chunk (differentiable w.r.t. x). All parameters are drawn before the first chunk,
    in the authors' order: s, pad_left, pad_top, then RandomCrop's crop_top, crop_left (one each
    per copy). Unlike the authors' PIL path, copies are not quantised to 8 bits (see random_rotation).
    Xie et al.'s own ImageNet method resizes instead: `random_resize_pad` (defense "xie_resize").
    """
    check_images(x)
    _check_sizes(min_size, max_size, x)
    check_positive_int(n_samples, "n_samples")
    min_size, max_size = int(min_size), int(max_size)
    height, width = x.shape[-2:]
    total = x.shape[0] * int(n_samples)
    dev = x.device
    size = min_size + randint(max_size - min_size + 1, (total,), generator=generator, device=dev)
    pad_left = randint(width - size + 1, (total,), generator=generator, device=dev)
    pad_top = randint(height - size + 1, (total,), generator=generator, device=dev)
    crop_top = randint(height - size + 1, (total,), generator=generator, device=dev)
    crop_left = randint(width - size + 1, (total,), generator=generator, device=dev)

    def make_inputs(start: int, stop: int) -> Tensor:
        images = x[copy_owners(start, stop, n_samples, dev)]
        return crop_pad(images, size[start:stop], crop_top[start:stop], crop_left[start:stop], pad_top[start:stop],
                        pad_left[start:stop])

    return averaged_softmax(model, x, make_inputs, n_samples, chunk_size=chunk_size, grad=grad)


def crop_pad(images: Tensor, size: Tensor, crop_top: Tensor, crop_left: Tensor, pad_top: Tensor,
             pad_left: Tensor) -> Tensor:
    """Per image t of [T, C, H, W]: the size[t] x size[t] window at (crop_top[t], crop_left[t]),
    placed at (pad_top[t], pad_left[t]) of an all-zero H x W image (int64 [T] parameters, windows
    inside the image). An integer gather, so pixels are copied exactly and gradients flow to `images`."""
    height, width = images.shape[-2:]
    dev = images.device
    s = size[:, None]
    rows = torch.arange(height, device=dev) - pad_top[:, None]  # [T, H]: row within the kept block
    cols = torch.arange(width, device=dev) - pad_left[:, None]  # [T, W]
    keep = ((rows >= 0) & (rows < s))[:, :, None] & ((cols >= 0) & (cols < s))[:, None, :]  # [T, H, W]
    src_rows = (crop_top[:, None] + rows).clamp(0, height - 1)
    src_cols = (crop_left[:, None] + cols).clamp(0, width - 1)
    shape = images.shape
    picked = images.gather(2, src_rows[:, None, :, None].expand(shape))
    picked = picked.gather(3, src_cols[:, None, None, :].expand(shape))
    return torch.where(keep[:, None], picked, torch.zeros((), dtype=images.dtype, device=dev))


def random_crop_resize(model: nn.Module, x: Tensor, *, min_size: int, max_size: int, n_samples: int,
                       generator: torch.Generator | None = None, chunk_size: int | None = None,
                   grad: bool = False) -> Tensor:
    """Guo et al. (2018) baseline: crop an s x s window, s uniform integer in [min_size, max_size],
    at a uniform integer offset (top in [0, H - s], left in [0, W - s]), resize it back to H x W.

    Implemented as one affine map per copy (x_in = (s/W) x_out + (2 left + s - W)/W, likewise for
    y) sampled bilinearly, with the grid clamped to the crop's pixel centres so that it equals
    crop + F.interpolate(size=(H, W), mode="bilinear", align_corners=False), which replicates the
    crop's edge pixels (up to float rounding). Draw order: s, top, left (one each per copy).
    """
    size, top, left = _random_windows(x, min_size, max_size, n_samples, generator)
    height, width = x.shape[-2:]
    s, top, left = size.to(torch.float64), top.to(torch.float64), left.to(torch.float64)
    theta = _scale_translate_theta(s / width, s / height, (2 * left + s - width) / width, (2 * top + s - height) / height)
    bounds = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1,
                          (2 * (left + s) - 1) / width - 1, (2 * (top + s) - 1) / height - 1], 1)
    return _affine_copies(model, x, theta.to(x.dtype), int(n_samples), chunk_size, bounds.to(x.dtype), grad=grad)
