"""Opt-in fast paths for any model of this project: channels-last memory format, bf16 autocast and
``torch.compile``, behind one wrapper that every library function accepts as a model.

``fast_model(model, ...)`` returns a :class:`FastModel`: an ``nn.Module`` that shares the wrapped
model's parameters and buffers (training it trains the original), runs the forward pass with the
chosen switches, and always returns float32 logits, so losses, softmax averages and attack steps
stay in float32. No library signature changes: pass the wrapper wherever a model is expected
(``mixup_inference``, ``pgd``, ``train`` ...). Its ``state_dict`` is the wrapped model's (same
keys), so checkpoints written through it load into a plain model and back.

Switches (``None`` = the device default in :data:`DEVICE_DEFAULTS`):

- ``channels_last``: weights and inputs in NHWC layout (``torch.channels_last``): faster
  convolutions with oneDNN on CPU and cuDNN tensor cores on GPU. Same maths; float rounding
  differs (compact_resnet trained 2 epochs on CIFAR-10, 500 test images: probabilities within
  4e-7, no prediction changed, plain or MI-OL).
- ``autocast``: ``torch.autocast`` with bfloat16 for the forward pass (the backward pass follows
  it). No loss scaling is needed for bf16. About 3 significant digits: on the same model and
  images probabilities moved by up to 1.1e-2 and 1 of 500 MI-OL predictions changed, so it is
  off by default on CPU, where the project's reported numbers are computed in float32.
- ``compile``: ``torch.compile`` of the forward pass (``True`` = inductor, or a backend name such
  as ``"aot_eager"``). Every new input shape costs a compilation (seconds on CPU), so it pays
  off only in long jobs; off by default.

Evaluation (every defense of ``defenses.specs.DEFENSES``) already runs under ``torch.inference_mode``.

CPU defaults, from ``python -m mixup_inference.perf.bench`` (section "Fast paths", compact_resnet,
2-core Xeon with AMX, torch 2.14): channels-last 1.14-1.18x faster on MI-OL, PGD-10 and an ERM
epoch with probabilities equal to ~1e-8, so it is on; bf16 autocast 1.6-1.9x (2.0-2.9x together
with channels-last) but not bit-comparable with float32 results, so it is opt-in; inductor
compilation ~1.8x on a 64-image forward after ~3-5 s of compilation per shape, opt-in. On CUDA
channels-last + bf16 are the standard fast configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DEVICE_DEFAULTS", "FastModel", "fast_model"]

DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"channels_last": True, "autocast": False, "compile": False},
    "cuda": {"channels_last": True, "autocast": True, "compile": False},
}
"""Switch defaults per device type (other device types use the CPU defaults)."""


class FastModel(nn.Module):
    """``model`` run with the chosen fast paths; see the module docstring. Build it with
    :func:`fast_model`. Attributes: ``model`` (the wrapped module), ``channels_last``,
    ``autocast_dtype`` (None or torch.bfloat16), ``compiled`` (the backend name or None)."""

    def __init__(self, model: nn.Module, *, channels_last: bool, autocast_dtype: torch.dtype | None,
                 compile_backend: str | None) -> None:
        super().__init__()
        self.model = model
        self.channels_last = bool(channels_last)
        self.autocast_dtype = autocast_dtype
        self.compiled = compile_backend
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        # Kept out of the module tree (object.__setattr__): the compiled wrapper shares the model's
        # parameters, and registering it would duplicate every key of the state dict.
        forward = torch.compile(model, backend=compile_backend) if compile_backend else model
        object.__setattr__(self, "_forward", forward)
        self.train(model.training)  # the wrapper starts in the wrapped model's mode

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return self._forward(x)
        with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
            logits = self._forward(x)
        return logits.float()

    # The wrapper has no state of its own: checkpoints hold the wrapped model's keys.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"channels_last={self.channels_last}, autocast={self.autocast_dtype}, compile={self.compiled}"


def _model_device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


def fast_model(model: nn.Module, *, channels_last: bool | None = None, autocast: bool | None = None,
               compile: bool | str | None = None) -> FastModel:
    """Wrap ``model`` with the chosen fast paths (``None``: the default for the model's device,
    :data:`DEVICE_DEFAULTS`). ``channels_last`` converts the model's 4-D weights in place.

    Args:
        model: any classifier of this project (on its final device already).
        channels_last: NHWC weights and inputs.
        autocast: bf16 autocast of the forward pass; logits are returned as float32.
        compile: False, True (inductor) or a ``torch.compile`` backend name.

    Usage: ``probs = mixup_inference(fast_model(model), x, pool_x, pool_y, lam=0.5, n_samples=30, mode="ol")``
    """
    if isinstance(model, FastModel):
        raise ValueError("model is already a FastModel; wrap the plain model (model.model) instead")
    defaults = DEVICE_DEFAULTS.get(_model_device_type(model), DEVICE_DEFAULTS["cpu"])
    channels_last = defaults["channels_last"] if channels_last is None else channels_last
    autocast = defaults["autocast"] if autocast is None else autocast
    compile = defaults["compile"] if compile is None else compile
    if not isinstance(compile, (bool, str)):
        raise ValueError(f"compile must be True, False or a torch.compile backend name (got {compile!r})")
    backend = ("inductor" if compile is True else compile) or None
    return FastModel(model, channels_last=bool(channels_last), autocast_dtype=torch.bfloat16 if autocast else None,
                     compile_backend=backend)
