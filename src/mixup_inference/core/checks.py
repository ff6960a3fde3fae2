"""Argument checks shared by the attacks and the defenses: one-line ValueErrors that name the
argument, what it got and the fix."""

from __future__ import annotations

from torch import Tensor

__all__ = ["MI_MODES", "check_images", "check_lam", "check_mode", "check_positive_int"]

MI_MODES = ("pl", "ol")


def check_positive_int(value: int, name: str) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (got {value}); pass a positive count")


def check_lam(lam: float, name: str = "lam") -> None:
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (got {lam}); the paper uses e.g. 0.5 or 0.6")


def check_mode(mode: str) -> None:
    if mode not in MI_MODES:
        raise ValueError(f"mode must be one of {MI_MODES} (got {mode!r}); use 'pl' (predicted label) or 'ol' (other labels)")


def check_images(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(f"x must be a non-empty float tensor [B, C, H, W] (got {x.dtype} {tuple(x.shape)}); convert with to_float")
