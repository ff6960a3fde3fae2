"""Model and artifact files of the workflow: written atomically, read back with weights_only loads
(tensors and plain containers only, never arbitrary Python objects), with one-line errors that name
the file and the fix."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .networks import MODEL_NAMES, build_model
from .checkpoints import bare_state_dict, load_authors_checkpoint
from ..utils import atomic_save, load_tensor_file

__all__ = ["MODEL_FORMATS", "FixedModule", "Weights", "detect_format", "load_model", "load_model_file", "model_weights",
           "save_model", "save_program_model"]

#: Formats of model files `load_model_file` reads: the authors' checkpoints, this project's model
#: files, a state_dict of a registry architecture (`arch`), TorchScript, torch.export, or `auto`
#: (detected from the content, `detect_format`).
MODEL_FORMATS: tuple[str, ...] = ("auto", "authors", "project", "state_dict", "torchscript", "export")
_PROGRAMS = ("torchscript", "export")




def save_model(model: nn.Module, path: str | os.PathLike, *, model_name: str, num_classes: int,
               in_channels: int, **meta: Any) -> None:
    """Write a model file that `load_model` (weights_only) can read back into the same architecture."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"state_dict": state, "model_name": model_name, "num_classes": num_classes,
                 "in_channels": in_channels, "meta": meta}, path)


def save_program_model(program: bytes, path: str | os.PathLike, *, program_format: str, num_classes: int,
                       in_channels: int, **meta: Any) -> None:
    """Write a model file holding a serialized program (the bytes of a TorchScript or torch.export
    file) that `load_model` reads back without the model's source code."""
    if program_format not in _PROGRAMS:
        raise ValueError(f"program_format={program_format!r} is unknown; use one of {', '.join(_PROGRAMS)}")
    atomic_save({"program": bytes(program), "program_format": program_format, "num_classes": num_classes,
                 "in_channels": in_channels, "meta": meta}, path)


class FixedModule(nn.Module):
    """A loaded program (TorchScript or torch.export) as an nn.Module whose mode never changes.

    The program was saved in eval mode; ``train()``/``eval()`` only set this wrapper's flag, so code
    that toggles modes (``utils.eval_mode``, ``model.eval()``) works on an exported GraphModule,
    whose own ``eval()`` raises."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "FixedModule":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def _load_program(source: str | os.PathLike | bytes, program_format: str, where: str) -> nn.Module:
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        if program_format == "torchscript":
            program = torch.jit.load(stream, map_location="cpu").eval()
        else:
            program = torch.export.load(stream).module()
    except Exception as error:  # torch raises RuntimeError/KeyError/... for a file of the other kind or a damaged one
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ValueError(f"{where} is not a loadable {program_format} model ({type(error).__name__}: {first}); "
                         f"save it with torch.{'jit.save' if program_format == 'torchscript' else 'export.save'} "
                         "or give its format in the config") from None
    return FixedModule(program)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", *,
               num_classes: int | None = None) -> nn.Module:
    """Rebuild the architecture recorded in a model file and load its weights (eval mode), or the
    program a `save_program_model` file holds. ValueError (naming the file and the fix) for an
    unreadable file, a file that is not a model written by `save_model`, another class count than
    `num_classes`, or weights that do not fit."""
    ckpt = load_tensor_file(path, "model file", "delete it and rerun to retrain")
    keys = ("program", "program_format") if isinstance(ckpt, dict) and "program" in ckpt else \
        ("state_dict", "model_name", "num_classes", "in_channels")
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in keys):
        raise ValueError(f"{path} is not a model file written by save_model (needs keys {', '.join(keys)}); "
                         "delete it and rerun to retrain")
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ValueError(f"model {path} has {ckpt['num_classes']} classes but the data set has {num_classes}; "
                         "retrain it (delete the file) for this data set")
    if "program" in ckpt:
        return _load_program(ckpt["program"], ckpt["program_format"], f"model {path}").to(device).eval()
    model = build_model(ckpt["model_name"], ckpt["num_classes"], ckpt["in_channels"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"model {path} does not match architecture {ckpt['model_name']!r}: "
                         f"{str(error).splitlines()[0]}; delete it and retrain") from None
    return model.to(device).eval()


@dataclass(frozen=True)
class Weights:
    """A model's weights as the bytes of a plain state_dict file (`model_weights`), with what loading them
    needs besides: the registry architecture (config ``models:``'s ``arch``) and the class and channel counts."""

    arch: str
    num_classes: int
    in_channels: int
    data: bytes  # torch.save of {name: tensor}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def model_weights(path: str | os.PathLike) -> Weights | None:
    """The weights of a model file (`save_model`'s) as a plain state_dict: every tensor of the rebuilt
    model's state_dict (buffers included), detached, on the CPU, in a contiguous storage of its own, in
    the dtype it was trained in (fp32 stays fp32: a model loaded from these bytes gives the run's numbers
    bit for bit). Canonical, so the same weights give the same bytes whatever memory format (channels_last)
    or file they came from: a model imported from these bytes gives them back. `torch.load(..., weights_only=True)`
    reads them; `load_model_file(file, "state_dict", arch=...)` (config ``models:``, format ``state_dict``)
    loads them. None for a program (TorchScript, torch.export): it has no registry architecture to load
    weights into. ValueError (naming the file and the fix) for a file that is missing or not a model file."""
    ckpt = load_tensor_file(path, "model file", "train the model first (run the workflow with its config)")
    if isinstance(ckpt, dict) and "program" in ckpt:
        return None
    model = load_model(path)  # checks the file and that its weights fit its architecture
    state = {name: tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
             for name, tensor in model.state_dict().items()}
    buffer = io.BytesIO()  # a file object, not a path: torch.save names the zip's inner folder after a path
    torch.save(state, buffer)
    return Weights(arch=ckpt["model_name"], num_classes=ckpt["num_classes"], in_channels=ckpt["in_channels"],
                   data=buffer.getvalue())


def detect_format(path: str | os.PathLike) -> str:
    """The format of a model file, from its content: ``torchscript`` or ``export`` (zip archives with
    code/ or models/model.json inside), else ``project`` (a `save_model` file), ``authors`` (their
    key layout) or ``state_dict`` (any other mapping of names to tensors; needs an `arch`)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/models/model.json") or "serialized_exported_program" in n for n in names):
            return "export"
    state = load_tensor_file(path, "model file", "give a TorchScript, torch.export or PyTorch state_dict file")
    if isinstance(state, dict) and ("program" in state or "model_name" in state):
        return "project"
    keys = [k.removeprefix("module.") for k in state] if isinstance(state, dict) else []
    return "authors" if "fc_dense.weight" in keys and "layer3.0.conv1.weight" in keys else "state_dict"




def _state_dict_model(path: str | os.PathLike, arch: str | None, num_classes: int, in_channels: int) -> nn.Module:
    if arch not in MODEL_NAMES:
        raise ValueError(f"model file {path} is a state_dict: its architecture must be named; set arch to one of "
                         f"{', '.join(MODEL_NAMES)} (or save the model with torch.export / TorchScript)")
    state = bare_state_dict(load_tensor_file(path, "model file", "give a PyTorch state_dict file"))
    if not isinstance(state, Mapping):
        raise ValueError(f"model file {path} is not a state_dict (a mapping of names to tensors); give one")
    model = build_model(arch, num_classes, in_channels)
    # the whole classifier (normalize.*, net.*) or the architecture proper (taking [-1, 1] inputs)
    target = model if any(k.startswith("net.") for k in state) else model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ValueError(f"model file {path} does not match architecture {arch!r} with {num_classes} classes: "
                         f"{' '.join(lines[1:3])[:300]}; give the arch it was saved from") from None
    return model


def load_model_file(path: str | os.PathLike, format: str = "auto", *, num_classes: int, arch: str | None = None,
                    in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """A classifier from a model file in one of :data:`MODEL_FORMATS`, on the CPU in eval mode.

    Every model returned takes [0, 1] images [B, in_channels, H, W] and returns logits [B, num_classes]:
    ``authors`` (`checkpoints.load_authors_checkpoint`: inputs mapped to [-1, 1] inside), ``project``
    (`load_model`), ``state_dict`` of registry architecture `arch` (the whole model, or its ``net``,
    which takes [-1, 1] inputs behind the model's fixed Normalize), ``torchscript`` and ``export``
    (a user's own architecture, saved in eval mode, taking [0, 1] images itself; a torch.export
    program needs a dynamic batch dimension). A forward pass on a batch of two images checks the
    class count. ValueError naming the file and the fix for anything that does not fit.
    """
    if format not in MODEL_FORMATS:
        raise ValueError(f"model format {format!r} of {path} is unknown; use one of {', '.join(MODEL_FORMATS)}")
    if not os.path.isfile(path):
        raise ValueError(f"model file {path} does not exist; fix the path in the config, or put the file there")
    if format == "auto":
        format = detect_format(path)
    if format == "authors":
        model = load_authors_checkpoint(path, num_classes)
    elif format == "project":
        model = load_model(path, num_classes=num_classes)
    elif format == "state_dict":
        model = _state_dict_model(path, arch, num_classes, in_channels)
    else:
        model = _load_program(path, format, f"model file {path}")
    model.eval()
    probe = torch.full((2, in_channels, image_size, image_size), 0.5)
    try:
        with torch.no_grad():
            logits = model(probe)
    except Exception as error:
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise ValueError(f"model file {path} fails on a batch of 2 images of {in_channels}x{image_size}x{image_size} "
                         f"({type(error).__name__}: {first}); export it with a dynamic batch size, for "
                         "this data set's image size") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model file {path} gives outputs of shape {shape} for 2 images, but the data set has "
                         f"{num_classes} classes; give the model of this data set (logits [B, {num_classes}])")
    return model
