"""Small shared helpers: devices, seeded generators, atomic writes, safe checkpoint loading."""

from __future__ import annotations

import hashlib
import os
import pickle  # only for its exception type: load_tensor_file unpickles nothing
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn


def default_device() -> torch.device:
    """CUDA when present, otherwise CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a config value ("auto", "cpu", "cuda", "cuda:1", None) into a torch.device."""
    if device is None or str(device) == "auto":
        return default_device()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was requested but CUDA is not available; use device: auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (library code itself draws from explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with `seed`, on `device`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def generator_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """The device random numbers must be drawn on for `generator` (its own), or `fallback`."""
    return generator.device if generator is not None else fallback


def rand(shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn from `generator` (on its device) and moved to `device`."""
    return torch.rand(shape, generator=generator, device=generator_device(generator, device), dtype=dtype).to(device)


def randn(shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal numbers drawn from `generator` (on its device) and moved to `device`."""
    return torch.randn(shape, generator=generator, device=generator_device(generator, device), dtype=dtype).to(device)


def randint(high: int | torch.Tensor, shape: tuple[int, ...], *, generator: torch.Generator | None,
            device: torch.device) -> torch.Tensor:
    """Integers uniform in [0, high) (high may be a tensor of per-element bounds, broadcast to `shape`)."""
    if isinstance(high, torch.Tensor):
        u = rand(shape, generator=generator, device=device, dtype=torch.float64)
        return (u * high.to(device=device, dtype=torch.float64)).floor().long().clamp_max_(high.to(device) - 1)
    return torch.randint(int(high), shape, generator=generator, device=generator_device(generator, device)).to(device)


def _umask_mode() -> int:
    """Permissions an ordinary new file gets (mkstemp would make it private to its owner)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose bytes appear at `path` only when the block ends without an error:
    they go to a temporary file in the same directory (its parent created), renamed over `path` at
    the end, so a killed job never leaves a file that looks complete and a failed write keeps the old
    file. The file gets the mode an ordinary new file would (umask), not mkstemp's private 0600.
    The one atomic writer: `atomic_save`, `atomic_write_text` and the report's figures use it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through `atomic_open`. The same object gives the same bytes: torch.save is handed
    an open file, not the temporary path, because from a path it names the zip's inner folder after
    the (random) temporary file name."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text as UTF-8 through `atomic_open`."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str (got {type(text).__name__}); pass the file's contents as a string")
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Load a torch file safely (weights_only=True: tensors, dicts, lists, numbers and strings only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 63-bit seed for one named random choice of a run, e.g.
    derive_seed(0, "cifar10", "test-points"). Stable across processes and Python versions
    (unlike hash()), so every job of a workflow draws the same numbers for the same config."""
    text = "/".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

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
