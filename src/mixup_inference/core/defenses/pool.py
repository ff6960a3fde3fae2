"""The MI sample pool (paper Sec. 3, Algorithm 1's x_s ~ p_s(x | y_s)): building it from the training
split, drawing pool images per input conditioned on a label (MI-PL: that label, MI-OL: the others),
and turning drawn indices into float images. Used by the MI defenses and the adaptive attacks."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_mode, check_positive_int
from ..utils import rand, randint

__all__ = ["build_pool", "check_pool", "class_groups", "pool_images", "sample_pool_indices"]


def build_pool(train_x: torch.Tensor, train_y: torch.Tensor, *, per_class: int, num_classes: int,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The MI sample pool (paper Sec. 3: x_s drawn from the training set): `per_class` distinct
    training images of every class chosen uniformly at random, returned as (pool_x, pool_y) SORTED BY
    CLASS (all class-0 images first, ...), pool_x with train_x's dtype, pool_y int64.

    A class with fewer than `per_class` images contributes all of its images (so the pool holds
    sum_c min(per_class, n_c) images); a class with none is an error. Vectorised: one random key
    per image, one sort by (class, key), the first `per_class` of every class kept.
    """
    if per_class < 1:
        raise ValueError(f"per_class={per_class} must be >= 1")
    if train_y.dim() != 1 or train_x.shape[0] != train_y.shape[0]:
        raise ValueError(f"train_x {tuple(train_x.shape)} and train_y {tuple(train_y.shape)} must have one label per image")
    y = train_y.long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"train_y has labels outside [0, {num_classes}); check num_classes={num_classes}")
    counts = torch.bincount(y, minlength=num_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"class(es) {missing} have no training images; the MI pool needs every class")
    keys = rand((y.numel(),), generator=generator, device=y.device, dtype=torch.float64)
    order = torch.argsort(y.to(torch.float64) + keys)  # keys in [0, 1): groups by class, random within
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(y.numel(), device=y.device) - starts[y[order]]
    chosen = order[rank < per_class]
    return train_x[chosen.to(train_x.device)], y[chosen]


def check_pool(pool_x: Tensor, pool_y: Tensor, x: Tensor) -> None:
    if pool_x.dim() != 4 or pool_x.shape[1:] != x.shape[1:]:
        raise ValueError(f"pool_x must be [P, {', '.join(map(str, x.shape[1:]))}] like x (got {tuple(pool_x.shape)}); build the pool from the same dataset")
    if pool_y.dim() != 1 or pool_y.shape[0] != pool_x.shape[0]:
        raise ValueError(f"pool_y must be [P] = [{pool_x.shape[0]}] (got {tuple(pool_y.shape)}); pass one label per pool image")
    if pool_x.dtype != torch.uint8 and not pool_x.is_floating_point():
        raise ValueError(f"pool_x must be uint8 or float (got {pool_x.dtype}); store pools as uint8 images")


def class_groups(pool_y: Tensor, num_classes: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(order, start, count): pool indices grouped by class (stable sort, a no-op for a pool
    already sorted by class), and each class's start offset and size within that order."""
    pool_y = pool_y.to(device=device, dtype=torch.long)
    if pool_y.numel() and (pool_y.min() < 0 or pool_y.max() >= num_classes):
        raise ValueError(f"pool_y has labels outside [0, {num_classes}); build the pool with the model's number of classes")
    count = torch.bincount(pool_y, minlength=num_classes)
    if (count == 0).any():
        missing = torch.nonzero(count == 0).flatten().tolist()
        raise ValueError(f"the MI sample pool has no image of class(es) {missing[:10]}; build the pool with per_class >= 1 for every class")
    order = torch.argsort(pool_y, stable=True)
    start = torch.cumsum(count, 0) - count
    return order, start, count


def sample_pool_indices(pool_y: Tensor, labels: Tensor, *, mode: str, n: int, num_classes: int,
                        generator: torch.Generator | None = None,
                        groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Draw `n` pool indices per input for Mixup Inference (Algorithm 1's y_s ~ p_s(y), x_s ~ p_s(x|y_s)).

    mode "pl": y_s = labels[b] (the predicted label); mode "ol": y_s uniform over the
    num_classes - 1 classes other than labels[b], drawn as (labels + 1 + U{0..C-2}) mod C.
    The image is then uniform among the pool images of class y_s.

    Args:
        pool_y: int64 [P] pool labels (any order; every class 0..num_classes-1 must occur).
        labels: int64 [B] labels to condition on (the model's prediction on each input).
        mode: "pl" or "ol".  n: samples per input.  num_classes: C.
        generator: the only source of randomness. Draw order: ("ol" only) class offsets
            [B, n], then uniforms [B, n] (float64) for the image within the class.
        groups: `class_groups(pool_y, num_classes, labels.device)`, when the caller draws in a
            loop: computed (and checked, which reads values back to the host) once outside it.

    Returns:
        int64 [B, n] indices into the pool, on labels.device.
    """
    check_mode(mode)
    check_positive_int(n, "n")
    device = labels.device
    order, start, count = groups if groups is not None else class_groups(pool_y, num_classes, device)
    labels = labels.to(torch.long)
    shape = (labels.shape[0], int(n))
    if mode == "pl":
        cls = labels[:, None].expand(shape)
    else:
        if num_classes < 2:
            raise ValueError("mode 'ol' needs at least 2 classes; use mode 'pl' for a 1-class model")
        offset = randint(num_classes - 1, shape, generator=generator, device=device)
        cls = (labels[:, None] + 1 + offset) % num_classes
    u = rand(shape, generator=generator, device=device, dtype=torch.float64)
    within = (u * count[cls].to(torch.float64)).floor().long().clamp_max_(count[cls] - 1)
    return order[start[cls] + within]


def pool_images(pool_x: Tensor, index: Tensor, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """pool_x[index] as float images in [0, 1] of `dtype` on `device` (uint8 pools divided by 255)."""
    images = pool_x[index.to(pool_x.device)].to(device)
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255.0
    return images.to(dtype)

