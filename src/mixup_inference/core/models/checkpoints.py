"""The authors' released checkpoints (Pang, Xu, Zhu, ICLR 2020; github.com/P2333/Mixup-Inference).

Their CIFAR-10 and CIFAR-100 mixup and interpolated-AT models are bare ``state_dict``s of
``Torture/Models/resnet_3layer.py``'s ``resnet50`` (saved with PyTorch 1.2), which takes inputs in
[-1, 1]. This project's ``resnet50_paper`` (models.PaperResNet) is the same network: the same 290
tensors in the same order and shapes, under other names. :func:`load_authors_checkpoint` renames
their keys onto ours (:func:`authors_key`), checks every name and shape, and returns the network
behind models.Normalize (pixels in [0, 1] -> 2x - 1 in [-1, 1]), so it takes [0, 1] images like
every model of this project and gives the authors' logits.

    >>> model = load_authors_checkpoint("data/models/cifar10/model_mixup.ckpt", num_classes=10)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .networks import build_model
from ..utils import load_tensor_file

__all__ = ["AUTHORS_ARCH", "authors_key", "bare_state_dict", "load_authors_checkpoint", "load_authors_state_dict"]

#: The registry architecture the authors' checkpoints load into.
AUTHORS_ARCH = "resnet50_paper"

# Our module names (models.PaperResNet) -> theirs (resnet_3layer.ResNet), applied in order.
_RENAMES = (
    (re.compile(r"^stem\.0\."), "conv1."),
    (re.compile(r"^stem\.1\."), "bn1."),
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"layer{int(m.group(1)) + 1}."),
    (re.compile(r"\.shortcut\."), ".downsample."),
    (re.compile(r"^head\.2\."), "fc_dense."),
)
_FIX = ("expected a checkpoint of the authors' resnet_3layer.resnet50 (github.com/P2333/Mixup-Inference); "
        "use format: state_dict with an arch, or project, for other models")


def bare_state_dict(state: Any) -> Any:
    """A state_dict as people save them, made plain: a ``{"state_dict": ...}`` container unwrapped and
    nn.DataParallel's ``module.`` prefix stripped (when every key has it). Anything else is returned
    as it is, for the caller to refuse."""
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if isinstance(state, Mapping) and state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def authors_key(name: str) -> str:
    """The authors' name of one tensor of our ``PaperResNet`` (e.g. ``stages.1.0.shortcut.0.weight``
    -> ``layer2.0.downsample.0.weight``, ``head.2.weight`` -> ``fc_dense.weight``)."""
    for pattern, replacement in _RENAMES:
        name = pattern.sub(replacement, name)
    return name


def _names(keys, limit: int = 4) -> str:
    keys = list(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_authors_state_dict(state: Mapping[str, torch.Tensor], num_classes: int, *,
                            where: str = "checkpoint") -> nn.Module:
    """:func:`load_authors_checkpoint` for a state_dict already in memory; `where` names it in errors."""
    state = bare_state_dict(state)  # a {"state_dict": ...} container, nn.DataParallel's module. prefix
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where} is not a state_dict (a mapping of names to tensors); {_FIX}")
    head = state.get("fc_dense.weight")
    if isinstance(head, torch.Tensor) and head.dim() == 2 and head.shape[0] != num_classes:
        raise ValueError(f"{where} has {head.shape[0]} classes (fc_dense.weight {tuple(head.shape)}) but the data set "
                         f"has {num_classes}; use the checkpoint of this data set")
    model = build_model(AUTHORS_ARCH, num_classes)
    ours = model.net.state_dict()
    theirs = {authors_key(name): name for name in ours}
    missing = [k for k in theirs if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in theirs]
    if missing or unexpected:
        parts = ([f"missing keys {_names(missing)}"] if missing else []) + \
                ([f"unexpected keys {_names(unexpected)}"] if unexpected else [])
        raise ValueError(f"{where} does not match the authors' ResNet-50: {'; '.join(parts)}; {_FIX}")
    renamed = {}
    for key, name in theirs.items():
        if key not in state:  # num_batches_tracked only: unused in eval mode, keep ours
            continue
        if tuple(state[key].shape) != tuple(ours[name].shape):
            raise ValueError(f"{where} does not match the authors' ResNet-50: {key} has shape "
                             f"{tuple(state[key].shape)}, expected {tuple(ours[name].shape)}; {_FIX}")
        renamed[name] = state[key].to(ours[name].dtype)
    model.net.load_state_dict(renamed, strict=False)
    return model.eval()


def load_authors_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                            num_classes: int) -> nn.Module:
    """One of the authors' released checkpoints as a model of this project (eval mode, CPU).

    `path_or_state_dict`: a file (read with ``torch.load(weights_only=True)``: tensors only, never
    arbitrary Python objects) or a state_dict, bare or with the ``module.`` prefix of nn.DataParallel,
    in the key layout of the authors' ``resnet_3layer.resnet50`` (``conv1``, ``bn1``,
    ``layer{1,2,3}.{0..4}.{conv,bn}{1,2,3}``, ``layer{k}.0.downsample.{0,1}``, ``fc_dense``).

    Returns a :class:`networks.NormalizedClassifier`: [0, 1] images -> 2x - 1 -> the authors' network ->
    their logits [B, num_classes]. ValueError (one line naming the file and the fix) for an unreadable
    file, missing or unexpected keys, a mismatched shape, or another class count than `num_classes`.
    """
    if isinstance(path_or_state_dict, Mapping):
        return load_authors_state_dict(path_or_state_dict, num_classes)
    state = load_tensor_file(path_or_state_dict, "checkpoint", _FIX)
    return load_authors_state_dict(state, num_classes, where=f"checkpoint {path_or_state_dict}")
