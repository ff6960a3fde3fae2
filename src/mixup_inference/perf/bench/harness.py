"""The harness shared by every section: the model, the MI pool, random inputs, and `measure_row`, which
times one workload against its limit and stores the row with its definition and target."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ...core.defenses.averaging import default_chunk_size
from ...core.models.fastpath import fast_model
from ...core.models.networks import build_model
from ...core.utils import make_generator, resolve_device
from .config import TARGETS, BenchConfig
from .timing import measure_pair


@dataclass
class Setup:
    """What every section measures with: the resolved device and chunk size, the two model copies,
    the MI pool, a log function, and the rows measured so far."""

    cfg: BenchConfig
    device: torch.device
    chunk: int                 # the chunk size the library uses in this run (cfg.chunk_size resolved)
    model: nn.Module           # eval rows (possibly a FastModel)
    train_model: nn.Module     # training rows (a separate copy: training changes weights)
    pool_x: Tensor
    pool_y: Tensor
    log: Callable[[str], None] = print
    rows: list[dict] = field(default_factory=list)


def _wrap(model: nn.Module, cfg: BenchConfig) -> nn.Module:
    if cfg.channels_last or cfg.autocast or cfg.compile:
        return fast_model(model, channels_last=cfg.channels_last, autocast=cfg.autocast, compile=cfg.compile)
    return model


def make_setup(cfg: BenchConfig, log: Callable[[str], None]) -> Setup:
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    base = build_model(cfg.model, cfg.num_classes, cfg.channels).to(device).eval()
    train_base = copy.deepcopy(base)
    g = make_generator(cfg.seed)
    pool_y = torch.arange(cfg.num_classes).repeat_interleave(cfg.pool_per_class).to(device)
    pool_x = torch.rand((pool_y.shape[0], cfg.channels, cfg.image_size, cfg.image_size), generator=g).to(device)
    chunk = cfg.chunk_size if cfg.chunk_size is not None else default_chunk_size(device)
    return Setup(cfg, device, chunk, _wrap(base, cfg), _wrap(train_base, cfg), pool_x, pool_y, log)


def random_images(cfg: BenchConfig, n: int, device: torch.device, seed: int) -> Tensor:
    g = make_generator(seed)
    return torch.rand((n, cfg.channels, cfg.image_size, cfg.image_size), generator=g).to(device)


def random_labels(cfg: BenchConfig, n: int, device: torch.device, seed: int) -> Tensor:
    return torch.randint(cfg.num_classes, (n,), generator=make_generator(seed)).to(device)


def measure_row(s: Setup, *, name: str, group: str, workload: Callable[[], Any], limit: Callable[[], Any],
         definition: dict, units: int, unit: str, limit_images: int, strict_definition: str | None = None) -> dict:
    """Measure one row and store it with its definition, throughput and target."""
    cfg = s.cfg
    started = time.perf_counter()
    result = measure_pair(workload, limit, repeats=cfg.repeats, warmup=cfg.warmup, device=s.device)
    row = {"name": name, "group": group, "target": TARGETS[group], **definition, **result,
           "repeats": cfg.repeats, "warmup": cfg.warmup,
           "throughput": units / result["t_workload_s"], "throughput_unit": unit,
           "limit_images": limit_images, "limit_images_per_s": limit_images / result["t_limit_s"]}
    if strict_definition is not None:
        row["strict_definition"] = strict_definition
    row["meets_target"] = bool(row["ratio"] >= row["target"])
    row["seconds"] = time.perf_counter() - started
    s.rows.append(row)
    strict_text = f", strict {row['ratio_strict']:.3f}" if "ratio_strict" in row else ""
    s.log(f"  {name:<28} ratio {row['ratio']:.3f}{strict_text} (target {row['target']:.2f})  "
          f"{row['throughput']:.1f} {unit}  [{row['seconds']:.1f} s]")
    return row

