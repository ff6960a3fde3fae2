"""Datasets: preparation into one compact cached file, fast loading, the evaluated test subset,
and batched tensor augmentation (image folders and archives are read by `imagefolder`, source
names and the synthetic defaults live in `sources`).

Data flow: ``prepare_dataset(source, out_path)`` turns a source (CIFAR-10/100 via torchvision, a
local image folder or archive, or a synthetic generator) into one ``torch.save`` file holding uint8
images, int64 labels, the class names and a provenance record; ``load_dataset(out_path)`` reads it
back (``torch.load(weights_only=True)``) and validates it. Everything downstream works on tensors.

Timings (2 CPU cores shared with other jobs, warm page cache): preparing ``cifar10-jpeg.tar.gz``
(60,000 32x32 JPEGs, 19.8 MB) takes 10-14 s wall (one pass over the tar stream, one PIL decode per
image, single process: decoding is ~8 s of it, so a process pool would save little); the cache
is 184.8 MB and ``load_dataset`` on it takes 0.14-0.40 s (median 0.15 s over 5 loads, incl. validation).
"""

from __future__ import annotations

import http.client
import math
import os
import urllib.error
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import utils
from .imagefolder import SPLITS, read_image_folder
from .sources import SYNTHETIC_DEFAULTS

CACHE_FORMAT = "mixup_inference.ImageDataset/1"


# ---------------------------------------------------------------------------------------------
# The dataset record
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """Train and test splits as uint8 images [N, C, H, W] and int64 labels [N], with class names
    (index = label) and a provenance dict (source, path or url, sha256, counts, conversion, created)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    provenance: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def __repr__(self) -> str:
        return (f"ImageDataset(train={tuple(self.train_x.shape)}, test={tuple(self.test_x.shape)}, "
                f"num_classes={self.num_classes}, source={self.provenance.get('source')!r})")


def _dataset_problem(d: dict) -> str | None:
    """What is wrong with a cached-dataset dict, or None if it is valid."""
    for key in ("train_x", "train_y", "test_x", "test_y", "classes", "provenance"):
        if key not in d:
            return f"missing key {key!r}"
    classes = d["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' must be a non-empty list of str"
    if len(set(classes)) != len(classes):
        return "'classes' has duplicate names"
    if not isinstance(d["provenance"], dict):
        return "'provenance' must be a dict"
    shapes = []
    for split in SPLITS:
        x, y = d[f"{split}_x"], d[f"{split}_y"]
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            return f"{split}_x must be a uint8 tensor [N, C, H, W]"
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            return f"{split}_y must be an int64 tensor [N]"
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            return f"{split}_x has {x.shape[0]} images but {split}_y has {y.shape[0]} labels (need equal, > 0)"
        if x.shape[2] != x.shape[3]:
            return f"{split}_x images are not square: {tuple(x.shape[1:])}"
        if int(y.min()) < 0 or int(y.max()) >= len(classes):
            return f"{split}_y has labels outside [0, {len(classes)})"
        shapes.append(tuple(x.shape[1:]))
    if shapes[0] != shapes[1]:
        return f"train images are {shapes[0]} but test images are {shapes[1]}"
    return None


def _check_plain(obj: Any, where: str = "provenance") -> None:
    """Provenance must hold only str/int/float/bool/None/list/dict so weights_only loading works
    (exact types: subclasses such as torch.__version__'s TorchVersion are rejected by torch.load)."""
    if type(obj) in (str, int, float, bool, type(None)):
        return
    if type(obj) in (list, tuple):
        for i, item in enumerate(obj):
            _check_plain(item, f"{where}[{i}]")
        return
    if type(obj) is dict:
        for key, value in obj.items():
            if type(key) is not str:
                raise TypeError(f"{where} has a non-str key {key!r}")
            _check_plain(value, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} holds a {type(obj).__name__}; only str/int/float/bool/None/list/dict are allowed")


def _save(dataset: ImageDataset, out_path: str | os.PathLike) -> None:
    obj = {"format": CACHE_FORMAT, "train_x": dataset.train_x.contiguous(), "train_y": dataset.train_y,
           "test_x": dataset.test_x.contiguous(), "test_y": dataset.test_y,
           "classes": list(dataset.classes), "provenance": dataset.provenance}
    problem = _dataset_problem(obj)
    if problem is not None:  # a bug in a builder below, never user input
        raise AssertionError(f"refusing to write an invalid dataset to {out_path}: {problem}")
    _check_plain(obj["provenance"])
    utils.atomic_save(obj, out_path)


def load_dataset(path: str | os.PathLike) -> ImageDataset:
    """Load a file written by `prepare_dataset` (torch.load with weights_only=True) and validate it:
    keys, dtypes (uint8 images, int64 labels), shapes (train/test agree) and labels in range.

    Takes ~0.15 s (0.14-0.40 s over 5 loads) for the 184.8 MB CIFAR-10-size cache on this machine.
    Raises ValueError naming the file if it is missing, unreadable or invalid."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset cache {path} does not exist; run prepare_dataset (the workflow's prepare step) first")
    try:
        obj = utils.load_checkpoint(path)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError... for a damaged file
        raise ValueError(f"dataset cache {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                         f"delete it and rerun prepare") from exc
    problem = "not a dict" if not isinstance(obj, dict) else _dataset_problem(obj)
    if problem is not None:
        raise ValueError(f"dataset cache {path} is invalid: {problem}; delete it and rerun prepare")
    return ImageDataset(train_x=obj["train_x"], train_y=obj["train_y"], test_x=obj["test_x"],
                        test_y=obj["test_y"], classes=list(obj["classes"]), provenance=dict(obj["provenance"]))


# ---------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------

def prepare_dataset(source: str, out_path: str | os.PathLike, *, download_root: str | os.PathLike = "data/downloads",
                    image_size: int = 32, synthetic: dict | None = None, seed: int = 0) -> ImageDataset:
    """Build a dataset from `source`, write it atomically to `out_path` and return it.

    Sources:
    - "cifar10" / "cifar100": torchvision's CIFAR10/CIFAR100(root=download_root, download=True), which
      verifies the archive's md5. Offline, an archive already placed at
      ``<download_root>/cifar-10-python.tar.gz`` (or ``cifar-100-python.tar.gz``) is verified and
      extracted without network; otherwise a ValueError says where to put it. An archive that
      fails the md5 check (a partial or corrupt download) is renamed to ``*.corrupt``, so it never
      passes for a good one. Images resized (torch bilinear, antialias) only if `image_size` != 32.
    - "synthetic": `_synthetic_dataset(seed, **synthetic)`; options n_train (2000), n_test (500),
      num_classes (10), image_size (defaults to the `image_size` argument), channels (3).
    - a path to a folder or a .tar.gz/.tgz/.tar/.zip archive laid out as ``train/<class>/*`` and
      ``test/<class>/*`` (an archive may wrap both in one top-level directory). Any image format PIL
      reads; every image converted to RGB (grayscale replicated, alpha dropped) and resized to
      image_size x image_size (PIL bilinear, antialiased) only when its size differs. Labels are
      indices into the sorted class names; images within a split are ordered by (class, path).

    `synthetic` options are only read for the "synthetic" source. The cache holds uint8/int64
    tensors, the class list and a provenance dict of plain values (loadable with weights_only=True).
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size={image_size!r} must be a positive int (e.g. 32)")
    if source == "synthetic":
        dataset = _synthetic_dataset(seed=seed, **{"image_size": image_size, **(synthetic or {})})
    elif source in ("cifar10", "cifar100"):
        dataset = _cifar_dataset(source, Path(download_root), image_size)
    else:
        dataset = _image_folder_dataset(Path(source).expanduser(), image_size)
    provenance = {**dataset.provenance, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "torch": str(torch.__version__)}
    dataset = ImageDataset(dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y,
                           list(dataset.classes), provenance)
    _save(dataset, out_path)
    return dataset


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 images [N, C, H, W] to size x size (rounded back to uint8)."""
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


# --- CIFAR via torchvision --------------------------------------------------------------------

def _cifar_dataset(name: str, download_root: Path, image_size: int) -> ImageDataset:
    from torchvision.datasets import CIFAR10, CIFAR100  # imported here: only this source needs it
    from torchvision.datasets.utils import check_integrity

    cls, pretty = (CIFAR10, "CIFAR-10") if name == "cifar10" else (CIFAR100, "CIFAR-100")
    archive = download_root.resolve() / cls.filename
    try:
        splits = {split: cls(root=str(download_root), train=(split == "train"), download=True) for split in SPLITS}
    except (urllib.error.URLError, OSError, RuntimeError, http.client.HTTPException) as exc:
        # torchvision downloads straight to the final name and checks the md5 afterwards: never leave
        # a partial or corrupt archive under that name (it would look like a good download).
        present = ""
        if archive.is_file():
            if check_integrity(str(archive), cls.tgz_md5):  # a good archive; extracting it failed
                raise ValueError(f"could not extract {archive} into {download_root.resolve()} ({type(exc).__name__}: "
                                 f"{exc}); check free disk space and permissions there, then rerun") from exc
            aside = archive.with_name(archive.name + ".corrupt")
            os.replace(archive, aside)
            present = f"; the archive at {archive} failed its md5 check (partial or corrupt) and was moved to {aside}"
        raise ValueError(
            f"could not download {pretty} ({type(exc).__name__}: {exc}){present}; with no internet, place "
            f"{cls.filename} (from {cls.url}, md5 {cls.tgz_md5}) in {archive.parent}/ and rerun, "
            f"or point the dataset source at a local image folder/archive") from exc
    tensors: dict[str, torch.Tensor] = {}
    for split, ds in splits.items():
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        tensors[f"{split}_x"] = x if image_size == x.shape[-1] else _resize_uint8(x, image_size)
        tensors[f"{split}_y"] = torch.as_tensor(ds.targets, dtype=torch.int64)
    conversion = "none (native 32x32 RGB)" if image_size == 32 else \
        f"resized 32x32 -> {image_size}x{image_size} with torch bilinear antialias"
    provenance = {"source": name, "url": cls.url, "md5": cls.tgz_md5,
                  "archive": str(archive), "sha256": utils.sha256_file(archive) if archive.is_file() else None,
                  "n_train": len(tensors["train_y"]), "n_test": len(tensors["test_y"]),
                  "image_size": image_size, "image_conversion": conversion}
    return ImageDataset(classes=list(splits["train"].classes), provenance=provenance, **tensors)


# --- Synthetic ----------------------------------------------------------------------------------


def _smooth_patterns(n: int, channels: int, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """n random smooth colour patterns in [0, 1]: 4x4 uniform noise upsampled bicubically to size x size."""
    coarse = torch.rand((n, channels, 4, 4), generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 1)


def _synthetic_dataset(*, seed: int, **options: Any) -> ImageDataset:
    """Deterministic images with learnable but not trivial class structure.

    Class c has (i) a fixed smooth colour layout P_c (4x4 uniform noise upsampled bicubically) drawn
    at size S + 2m, m = S // 8, and (ii) a fixed coloured sinusoidal grating G_c (orientation in
    [0, pi), 2-6 cycles per image, colour in [0, 1]^channels). An image of class c is
    ``x = 0.2 * window(P_c) + 0.2 * G_c(phase) + 0.6 * D + N(0, 0.1^2)``, clamped to [0, 1] and
    quantised to uint8, where window is a random S x S crop (shift up to 2m pixels), the grating
    phase is uniform per image and D is an image-specific smooth distractor (same construction as P).
    Labels are balanced (n // num_classes per class, remainder to the first classes) and shuffled.
    Measured (seed 0, defaults): nearest-class-mean on pixels ~60% test accuracy; a 3-conv BN CNN
    with global pooling is near chance after one SGD step and reaches ~60-90% in 6 epochs (seeds 0, 1).
    """
    unknown = sorted(set(options) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic option(s) {unknown}; allowed: {sorted(SYNTHETIC_DEFAULTS)}")
    opts = {**SYNTHETIC_DEFAULTS, **options}
    for key, value in opts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"synthetic option {key}={value!r} must be a positive int")
    if opts["num_classes"] < 2:
        raise ValueError(f"synthetic option num_classes={opts['num_classes']} must be >= 2")
    k, size, channels = opts["num_classes"], opts["image_size"], opts["channels"]
    margin = max(1, size // 8)
    generator = utils.make_generator(seed)
    layouts = _smooth_patterns(k, channels, size + 2 * margin, generator=generator)
    theta = torch.rand(k, generator=generator) * math.pi
    cycles = 2 + 4 * torch.rand(k, generator=generator)
    colour = torch.rand((k, channels), generator=generator)
    coords = torch.arange(size, dtype=torch.float32) / size
    tensors: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        n = opts[f"n_{split}"]
        y = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
        top = torch.randint(2 * margin + 1, (n,), generator=generator)
        left = torch.randint(2 * margin + 1, (n,), generator=generator)
        layout = _crop(layouts, top, left, size, size, flip=torch.zeros(n, dtype=torch.bool), source=y)
        phase = torch.rand(n, generator=generator) * (2 * math.pi)
        u = (torch.cos(theta[y])[:, None, None] * coords[None, :, None]
             + torch.sin(theta[y])[:, None, None] * coords[None, None, :])  # [n, H, W]
        wave = 0.5 + 0.5 * torch.sin(2 * math.pi * cycles[y][:, None, None] * u + phase[:, None, None])
        grating = wave[:, None] * colour[y][:, :, None, None]
        distractor = _smooth_patterns(n, channels, size, generator=generator)
        noise = torch.randn((n, channels, size, size), generator=generator)
        x = (0.2 * layout + 0.2 * grating + 0.6 * distractor + 0.1 * noise).clamp_(0, 1)
        tensors[f"{split}_x"] = (x * 255).round_().to(torch.uint8)
        tensors[f"{split}_y"] = y.to(torch.int64)
    provenance = {"source": "synthetic", "seed": int(seed), "options": opts,
                  "n_train": opts["n_train"], "n_test": opts["n_test"], "image_size": size,
                  "image_conversion": "generated: 0.2*shifted class layout + 0.2*class grating (random phase) "
                                      "+ 0.6*smooth distractor + N(0, 0.1^2), clamped, quantised to uint8"}
    return ImageDataset(classes=[f"class{i}" for i in range(k)], provenance=provenance, **tensors)


def _image_folder_dataset(path: Path, image_size: int) -> ImageDataset:
    tensors, classes, provenance = read_image_folder(path, image_size)
    return ImageDataset(classes=classes, provenance=provenance, **tensors)


# ---------------------------------------------------------------------------------------------
# Tensor utilities used by training and evaluation
# ---------------------------------------------------------------------------------------------

def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (x / 255), same device. Floating input is taken to be in
    [0, 1] already and returned as float32."""
    if x_uint8.dtype == torch.uint8:
        return x_uint8.to(torch.float32).div_(255)
    if x_uint8.is_floating_point():
        return x_uint8.to(torch.float32)
    raise ValueError(f"to_float expects uint8 (or float in [0, 1]) images, got dtype {x_uint8.dtype}")


def select_test_points(labels: torch.Tensor, n: int, *, generator: torch.Generator | None) -> torch.Tensor:
    """`n` distinct test indices, class-stratified and in a random order (int64, CPU).

    `labels` are the test split's labels [N]. The draw goes in rounds: each round takes one not yet drawn
    image of every class that has one left, uniformly at random within the class, and the classes of a round
    come in a random order. So every prefix of the result (the workflow takes prefixes: Table 2's points,
    Fig. 4's, the robustness evaluation's) holds equal counts per class, +-1, as long as every class still
    has images left, whatever the order of the source's files (an image folder is read class by class;
    torchvision's CIFAR-10 files are not). Vectorised: one key per image, rank within its class plus a
    uniform [0, 1) tie-break that orders the classes inside a round, and one sort."""
    labels = torch.as_tensor(labels).cpu().long()
    n_total = labels.numel()
    if labels.dim() != 1:
        raise ValueError(f"labels must be one label per test image [N] (got shape {tuple(labels.shape)})")
    if n < 1 or n > n_total:
        raise ValueError(f"n_test={n} exceeds the {n_total} test images or is < 1; choose 1 <= n_test <= {n_total}")
    device = utils.generator_device(generator, torch.device("cpu"))
    perm = torch.randperm(n_total, generator=generator, device=device).cpu()
    shuffled = labels[perm]
    # rank of each shuffled image within its class: position after a stable sort by class
    order = torch.sort(shuffled, stable=True).indices
    starts = torch.searchsorted(shuffled[order], shuffled[order], right=False)
    rank = torch.empty(n_total, dtype=torch.long)
    rank[order] = torch.arange(n_total) - starts
    tie = utils.rand((n_total,), generator=generator, device=device).cpu().double()
    key = rank.double() + tie
    return perm[torch.sort(key, stable=True).indices[:n]]


def class_counts(labels: torch.Tensor, classes: Sequence[str]) -> dict[str, int]:
    """Class name -> number of `labels` of that class (every class listed, zeros included)."""
    counts = torch.bincount(torch.as_tensor(labels).long().cpu(), minlength=len(classes))
    return {name: int(c) for name, c in zip(classes, counts.tolist())}


def _crop(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int,
          flip: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image windows padded[s_b, :, top_b:top_b+height, left_b:left_b+width], mirrored
    left-right where flip_b, gathered with one advanced-indexing op (s_b = source[b], default b)."""
    b, c = top.shape[0], padded.shape[1]
    device = padded.device
    rows = top.to(device)[:, None] + torch.arange(height, device=device)  # [B, H]
    cols = torch.arange(width, device=device).expand(b, width)
    cols = torch.where(flip.to(device)[:, None], width - 1 - cols, cols) + left.to(device)[:, None]  # [B, W]
    batch = (torch.arange(b, device=device) if source is None else source.to(device))[:, None, None, None]
    chan = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(x: torch.Tensor, *, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch [B, C, H, W] (any dtype, any device): zero-pad by
    `padding` on every side, take a random H x W window per image (offsets uniform in
    {0..2*padding}^2) and mirror it left-right with probability 1/2. Draws (top, left, flip) from
    `generator`; no Python loop over images."""
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects images [B, C, H, W], got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    b, _, h, w = x.shape
    top = utils.randint(2 * padding + 1, (b,), generator=generator, device=x.device)
    left = utils.randint(2 * padding + 1, (b,), generator=generator, device=x.device)
    flip = utils.rand((b,), generator=generator, device=x.device) < 0.5
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    return _crop(padded, top, left, h, w, flip)


def alternating_flips(first: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench94's alternating flip (Jordan 2024, https://arxiv.org/abs/2404.00498, Sec. 3.6): each
    training image is mirrored at random once (``first``, bool [N], drawn once per run), and the
    whole set is mirrored every other epoch, so an image is seen in both orientations in every
    two consecutive epochs instead of by chance. Returns the flags of ``epoch`` (0-based)."""
    if first.dtype != torch.bool:
        raise ValueError(f"alternating_flips expects bool flags, got dtype {first.dtype}")
    return first ^ bool(epoch % 2)


def flip_translate(x: torch.Tensor, flip: torch.Tensor, *, translate: int = 2,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """airbench94's augmentation of a float batch [B, C, H, W]: mirror left-right where ``flip``
    (bool [B], e.g. from :func:`alternating_flips`), then shift each image by a random (dy, dx),
    each uniform in {-translate..translate}, filling the border by reflection (no black margin).
    Draws (dy, dx) from ``generator``; one advanced-indexing op, no Python loop over images."""
    if x.dim() != 4:
        raise ValueError(f"flip_translate expects images [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if flip.shape != (b,) or flip.dtype != torch.bool:
        raise ValueError(f"flip must be a bool tensor [{b}] (got {flip.dtype} {tuple(flip.shape)})")
    if not 0 <= translate < min(h, w):
        raise ValueError(f"translate={translate} must be in [0, {min(h, w) - 1}] for {h}x{w} images")
    top = utils.randint(2 * translate + 1, (b,), generator=generator, device=x.device)
    left = utils.randint(2 * translate + 1, (b,), generator=generator, device=x.device)
    padded = F.pad(x, (translate,) * 4, mode="reflect") if translate else x
    return _crop(padded, top, left, h, w, flip)
