"""Peak memory of MI evaluation for two N at a fixed chunk size, each in a fresh process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import torch
from torch import Tensor

from ...core.defenses.mi import mixup_inference
from ...core.utils import make_generator
from .config import MEMORY_GROWTH_TARGET, BenchConfig
from .harness import Setup, make_setup, random_images


def _rss_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_probe(cfg_json: str, n_samples: int, chunk_size: int) -> dict:
    """Run once in a fresh process: peak memory increase of one MI-OL evaluation (CUDA: peak
    allocated bytes; CPU: VmHWM after minus VmRSS before, after a warm-up with N = 1)."""
    cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(cfg_json).items()})
    torch.set_num_threads(1)
    s = make_setup(cfg, log=lambda _: None)
    x = random_images(cfg, cfg.memory_batch, s.device, 16)

    def run(n: int) -> Tensor:
        return mixup_inference(s.model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                               generator=make_generator(cfg.seed), chunk_size=chunk_size)
    run(1)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
        before = torch.cuda.memory_allocated(s.device)
        run(n_samples)
        return {"n_samples": n_samples, "chunk_size": chunk_size, "kind": "cuda_peak_allocated",
                "peak_increase_mib": (torch.cuda.max_memory_allocated(s.device) - before) / 2**20}
    before = _rss_kib("VmRSS")
    run(n_samples)
    peak = _rss_kib("VmHWM")
    return {"n_samples": n_samples, "chunk_size": chunk_size, "kind": "cpu_peak_rss",
            "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024,
            "peak_increase_mib": (peak - before) / 1024}


def measure_memory(s: Setup) -> dict:
    cfg = s.cfg
    started = time.perf_counter()
    cfg_json = json.dumps(dataclasses.asdict(cfg))
    lo_n, hi_n, chunk = min(cfg.memory_ns), max(cfg.memory_ns), cfg.memory_chunk
    # (N, chunk, allocator): "fixed" pins glibc's mmap threshold so freed tensors go back to the OS
    # and RSS follows the live tensors; "default" is glibc as it comes (its mmap threshold adapts
    # upwards and freed blocks stay in the heap, so RSS also holds the allocator's cache).
    probes = [(lo_n, chunk, "fixed"), (hi_n, chunk, "fixed")]
    if not cfg.quick:
        probes += [(hi_n, 4 * chunk, "fixed"), (lo_n, chunk, "default"), (hi_n, chunk, "default")]
    procs = []
    for n, c, allocator in probes:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if allocator == "fixed":
            env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import json, sys; from mixup_inference.perf.bench.memory import memory_probe; "
             "print(json.dumps(memory_probe(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))", cfg_json, str(n),
             str(c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for proc, (_, _, allocator) in zip(procs, probes):
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            detail = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
            raise RuntimeError(f"memory probe failed: {detail}")
        results.append({**json.loads(out.strip().splitlines()[-1]), "allocator": allocator})
    lo, hi = results[0], results[1]
    growth = hi["peak_increase_mib"] / lo["peak_increase_mib"] - 1
    out = {"probes": results, "batch": cfg.memory_batch, "chunk_size": chunk,
           "growth": growth, "target_growth": MEMORY_GROWTH_TARGET, "meets_target": bool(growth < MEMORY_GROWTH_TARGET),
           "definition": (f"peak RSS increase of one mixup_inference call (mode 'ol', B={cfg.memory_batch}) in a "
                          f"fresh process (1 thread) after a warm-up call with N=1; growth = peak(N={hi_n}) / "
                          f"peak(N={lo_n}) - 1 at chunk_size={chunk} with glibc's mmap threshold fixed at 128 KiB "
                          f"(allocator 'fixed': RSS follows the live tensors)"
                          + ("" if cfg.quick else f"; also chunk_size={4 * chunk} (the peak follows the chunk "
                             f"size) and glibc's default allocator settings ('default')"))}
    if not cfg.quick:
        out["growth_default_allocator"] = results[4]["peak_increase_mib"] / results[3]["peak_increase_mib"] - 1
    s.log("  memory: " + ", ".join(f"N={r['n_samples']} chunk={r['chunk_size']} {r['allocator']} "
                                   f"{r['peak_increase_mib']:.1f} MiB" for r in results)
          + f"; growth {100 * growth:+.1f}%  [{time.perf_counter() - started:.1f} s]")
    return out

