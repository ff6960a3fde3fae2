"""Sweeps beside the rows: MI-OL cost vs N and batch size, the bare model's per-image cost vs
images per pass, and the fast paths of `fastpath.fast_model` (and the chunk size) against the
plain model."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ...core.attacks.pgd import pgd
from ...core.defenses.mi import mixup_inference
from ...core.models.fastpath import fast_model
from ...core.models.networks import build_model
from ...core.training.loop import train
from ...core.training.config import TrainConfig
from ...core.utils import make_generator
from .harness import Setup, random_images, random_labels
from .timing import forward_backward, forward_chunks, measure_pair, timed


def scaling_sweep(s: Setup) -> dict:
    cfg, dev, model = s.cfg, s.device, s.model
    repeats = max(1, min(cfg.repeats, 2)) if not cfg.quick else 1
    out: dict[str, list] = {"n": [], "batch": []}

    def point(b: int, n: int) -> dict:
        x, mixed = random_images(cfg, b, dev, 14), random_images(cfg, b * n, dev, 15)

        def workload() -> Tensor:
            return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                   generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
        res = measure_pair(workload, lambda: (forward_chunks(model, x, s.chunk),
                                              forward_chunks(model, mixed, s.chunk)),
                           repeats=repeats, warmup=1, device=dev)
        return {"batch": b, "n_samples": n, "t_workload_s": res["t_workload_s"], "t_limit_s": res["t_limit_s"],
                "ratio": res["ratio"], "ms_per_input": 1e3 * res["t_workload_s"] / b,
                "ms_per_image": 1e3 * res["t_workload_s"] / (b * (n + 1)),
                "limit_ms_per_image": 1e3 * res["t_limit_s"] / (b * (n + 1))}

    started = time.perf_counter()
    for n in cfg.n_sweep:
        out["n"].append(point(cfg.n_sweep_batch, n))
    for b in cfg.batch_sweep:
        out["batch"].append(point(b, cfg.batch_sweep_n))
    out["definition"] = (f"MI-OL (lam={cfg.lam}, chunk_size={s.chunk}) timed against its limit "
                         f"(fwd B + fwd BxN), median of {repeats} pairs after 1 warm-up; N sweep at B="
                         f"{cfg.n_sweep_batch}, batch sweep at N={cfg.batch_sweep_n}")
    s.log(f"  scaling with N and batch size [{time.perf_counter() - started:.1f} s]")
    return out


def chunk_cost_sweep(s: Setup) -> dict:
    """Per-image cost of the bare model passes vs the number of images per pass: forward
    (inference_mode, what a defense chunk costs) and forward+input-gradient (a PGD step)."""
    cfg, dev, model = s.cfg, s.device, s.model
    repeats = 1 if cfg.quick else 2
    started = time.perf_counter()
    x = random_images(cfg, max(cfg.chunk_sweep_images, max(cfg.chunk_sweep)), dev, 21)
    y = random_labels(cfg, x.shape[0], dev, 22)
    points = []
    model.eval()
    for size in cfg.chunk_sweep:
        n_img = max(size, cfg.chunk_sweep_images if size > 1 else cfg.chunk_sweep_images // 4)
        n_img -= n_img % size

        def forward(size: int = size, n_img: int = n_img) -> None:
            forward_chunks(model, x[:n_img], size)

        def forward_and_grad(size: int = size, n_img: int = n_img) -> None:
            for start in range(0, n_img, size):
                forward_backward(model, x[start:start + size], y[start:start + size])
        row = {"batch": size, "images": n_img}
        for name, fn in (("fwd", forward), ("fwd_bwd", forward_and_grad)):
            fn()
            row[f"{name}_ms_per_image"] = 1e3 * statistics.median(timed(fn, dev) for _ in range(repeats)) / n_img
        points.append(row)
    best_fwd = min(points, key=lambda p: p["fwd_ms_per_image"])
    best_bwd = min(points, key=lambda p: p["fwd_bwd_ms_per_image"])
    out = {"points": points, "library_chunk": s.chunk,
           "best_fwd_batch": best_fwd["batch"], "best_fwd_bwd_batch": best_bwd["batch"],
           "definition": (f"median of {repeats} timings (after one warm-up) of passes over {cfg.chunk_sweep_images} "
                          "images (at least one batch; a quarter for batch 1) cut into batches of the given size; "
                          "fwd under inference_mode, fwd_bwd = forward + autograd.grad of the summed cross entropy "
                          "w.r.t. the input (eval mode)")}
    at_chunk = next((p for p in points if p["batch"] == s.chunk), None)
    if at_chunk is not None:
        out["library_chunk_vs_best_fwd"] = best_fwd["fwd_ms_per_image"] / at_chunk["fwd_ms_per_image"]
    s.log("  per-image ms vs batch: " + ", ".join(f"{p['batch']}: {p['fwd_ms_per_image']:.2f}/"
                                                 f"{p['fwd_bwd_ms_per_image']:.2f}" for p in points)
          + f" (fwd/fwd+bwd)  [{time.perf_counter() - started:.1f} s]")
    return out


def add_ceiling_vs_best_batch(rows: list[dict], chunks: dict) -> None:
    """Add to the speed-up row the ceiling against the fastest forward batch of the chunk sweep
    (rather than the library's own chunking): batch-1 ms/image of the row / best ms/image."""
    best = min(p["fwd_ms_per_image"] for p in chunks["points"])
    for row in rows:
        if row["group"] == "speedup":
            batch1_ms = 1e3 / row["batch1_images_per_s"]
            row["ceiling_vs_best_batch"] = batch1_ms / best
            row["share_vs_best_batch"] = row["speedup"] / row["ceiling_vs_best_batch"]


def measure_fast_paths(s: Setup) -> list[dict]:
    """Speed-up of each fast path over the plain model (paired, median) on MI-OL, PGD-10 and one
    ERM epoch, and the largest difference of MI-OL probabilities it causes."""
    cfg, dev = s.cfg, s.device
    variants: dict[str, dict[str, Any]] = {"channels_last": {"channels_last": True},
                                           "autocast_bf16": {"autocast": True},
                                           "channels_last+autocast_bf16": {"channels_last": True, "autocast": True}}
    if cfg.compile:
        variants["compile"] = {"compile": cfg.compile}
    torch.manual_seed(cfg.seed)
    plain = build_model(cfg.model, cfg.num_classes, cfg.channels).to(dev).eval()
    b, n = cfg.loop_batch, cfg.n_samples
    x, y = random_images(cfg, b, dev, 17), random_labels(cfg, b, dev, 18)
    train_x = torch.randint(0, 256, (2 * cfg.train_batch, cfg.channels, cfg.image_size, cfg.image_size),
                            generator=make_generator(19), dtype=torch.uint8)
    train_y = torch.randint(cfg.num_classes, (2 * cfg.train_batch,), generator=make_generator(20))

    def jobs(model: nn.Module) -> dict[str, Callable[[], Any]]:
        return {
            "mi_ol": lambda: mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                             generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size),
            "pgd10": lambda: pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=10,
                                 generator=make_generator(cfg.seed)),
            "train_erm": lambda: train(model, train_x, train_y,
                                       TrainConfig(epochs=1, batch_size=cfg.train_batch, seed=cfg.seed),
                                       device=dev, progress=False),
        }
    rows = []
    started = time.perf_counter()
    reference = jobs(plain)["mi_ol"]()
    for name, switches in variants.items():
        fast_base = copy.deepcopy(plain)
        fast = fast_model(fast_base, **{"channels_last": False, "autocast": False, "compile": False, **switches})
        diff = float((jobs(fast)["mi_ol"]() - reference).abs().max())
        row = {"fast_path": name, "switches": switches, "max_abs_prob_diff_mi_ol": diff}
        # a plain twin with the same starting weights for the training job (training changes weights)
        plain_twin = copy.deepcopy(plain)
        for job in ("mi_ol", "pgd10", "train_erm"):
            res = measure_pair(jobs(fast)[job], jobs(plain_twin)[job], repeats=cfg.repeats, warmup=cfg.warmup,
                               device=dev)
            row[f"speedup_{job}"] = res["ratio"]  # t_plain / t_fast
            row[f"speedup_{job}_samples"] = res["ratio_samples"]
        fast_base.eval()
        plain_twin.eval()
        rows.append(row)
        s.log(f"  fast path {name:<28} speed-up MI-OL {row['speedup_mi_ol']:.2f}x, PGD-10 {row['speedup_pgd10']:.2f}x, "
              f"ERM epoch {row['speedup_train_erm']:.2f}x; max |dp| {diff:.2e}")
    # The chunk size: the library's default against the old default of 2048 images per pass.
    xb = random_images(cfg, cfg.eval_batch, dev, 23)

    def mi_ol_with(chunk: int | None) -> Callable[[], Tensor]:
        return lambda: mixup_inference(plain, xb, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                                       generator=make_generator(cfg.seed), chunk_size=chunk)
    res = measure_pair(mi_ol_with(cfg.chunk_size), mi_ol_with(2048), repeats=cfg.repeats, warmup=cfg.warmup,
                       device=dev)
    rows.append({"fast_path": f"chunk_size {s.chunk} vs 2048", "switches": {"chunk_size": s.chunk},
                 "inputs": cfg.eval_batch, "speedup_mi_ol": res["ratio"], "speedup_mi_ol_samples": res["ratio_samples"],
                 "speedup_pgd10": None, "speedup_train_erm": None, "max_abs_prob_diff_mi_ol": float(
                     (mi_ol_with(cfg.chunk_size)() - mi_ol_with(2048)()).abs().max())})
    s.log(f"  chunk_size {s.chunk} vs 2048: MI-OL on {cfg.eval_batch}x{n} copies {res['ratio']:.2f}x faster")
    s.log(f"  fast paths [{time.perf_counter() - started:.1f} s]")
    return rows

