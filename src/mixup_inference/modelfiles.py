"""Model and artifact files of the workflow: written atomically, read back with weights_only loads
(tensors and plain containers only, never arbitrary Python objects), with one-line errors that name
the file and the fix."""

from __future__ import annotations

import os
import pickle  # only for its exception type: nothing here unpickles
from typing import Any

import torch
from torch import nn

from .models import build_model
from .utils import atomic_save, load_checkpoint

__all__ = ["load_model", "load_tensor_file", "save_model"]


def load_tensor_file(path: str | os.PathLike, what: str, fix: str) -> Any:
    """`utils.load_checkpoint` (weights_only: tensors and plain containers, never arbitrary Python
    objects) with one-line ValueErrors naming `what` file is wrong and the `fix`."""
    try:
        return load_checkpoint(path)
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist; {fix}") from None
    except pickle.UnpicklingError as error:
        if "Unsupported operand" in str(error):  # not a pickle at all (an HTML error page, a text file)
            raise ValueError(f"{what} {path} is unreadable (not a PyTorch file); {fix}") from None
        raise ValueError(f"{what} {path} holds pickled Python objects, not only tensors; it was not written by "
                         f"this workflow and is not loaded (unpickling could run code); {fix}") from None
    except Exception as error:  # torch raises RuntimeError/KeyError/EOFError/... for a damaged file
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ValueError(f"{what} {path} is unreadable (truncated or corrupt: {type(error).__name__}: {first}); "
                         f"{fix}") from None


def save_model(model: nn.Module, path: str | os.PathLike, *, model_name: str, num_classes: int,
               in_channels: int, **meta: Any) -> None:
    """Write a model file that `load_model` (weights_only) can read back into the same architecture."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"state_dict": state, "model_name": model_name, "num_classes": num_classes,
                 "in_channels": in_channels, "meta": meta}, path)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", *,
               num_classes: int | None = None) -> nn.Module:
    """Rebuild the architecture recorded in a model file and load its weights (eval mode).
    ValueError (naming the file and the fix) for an unreadable file, a file that is not a model
    written by `save_model`, another class count than `num_classes`, or weights that do not fit."""
    ckpt = load_tensor_file(path, "model file", "delete it and rerun to retrain")
    keys = ("state_dict", "model_name", "num_classes", "in_channels")
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in keys):
        raise ValueError(f"{path} is not a model file written by save_model (needs keys {', '.join(keys)}); "
                         "delete it and rerun to retrain")
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ValueError(f"model {path} has {ckpt['num_classes']} classes but the data set has {num_classes}; "
                         "retrain it (delete the file) for this data set")
    model = build_model(ckpt["model_name"], ckpt["num_classes"], ckpt["in_channels"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"model {path} does not match architecture {ckpt['model_name']!r}: "
                         f"{str(error).splitlines()[0]}; delete it and retrain") from None
    return model.to(device).eval()
