"""Running the benchmark: every section in order (`run_benchmark`) and the command line (`main`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...core.utils import atomic_write_text
from .config import BenchConfig
from .memory import measure_memory
from .report import plot_scaling, write_markdown
from .rows import ROW_SECTIONS
from .harness import make_setup
from .sweeps import add_ceiling_vs_best_batch, chunk_cost_sweep, measure_fast_paths, scaling_sweep


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return None


def bench_environment() -> dict:
    from ...report.provenance import environment_summary, git_commit
    env = environment_summary()
    env["git"] = git_commit()
    env["cpu_model"] = _cpu_model()
    env["mkldnn"] = torch.backends.mkldnn.is_available()
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:
        env["load_average_start"] = os.getloadavg()
    except OSError:
        env["load_average_start"] = None
    return env


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] = print) -> dict:
    """Measure every row, the scaling sweeps, memory and (optionally) the fast paths; return the
    result dict that `main` writes as JSON."""
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_benchmark(cfg, log, started)
    finally:
        torch.set_num_threads(previous_threads)


def _run_benchmark(cfg: BenchConfig, log: Callable[[str], None], started: float) -> dict:
    s = make_setup(cfg, log)
    env = bench_environment()
    log(f"benchmark: {cfg.model} {cfg.channels}x{cfg.image_size}x{cfg.image_size} on {s.device}, "
        f"{torch.get_num_threads()} threads, {'quick' if cfg.quick else 'full'} run")
    for section in ROW_SECTIONS:
        section(s)
    scaling = scaling_sweep(s)
    chunks = chunk_cost_sweep(s)
    add_ceiling_vs_best_batch(s.rows, chunks)
    fast = measure_fast_paths(s) if cfg.fast_path_rows else []
    memory = measure_memory(s)
    try:
        env["load_average_end"] = os.getloadavg()
    except OSError:
        env["load_average_end"] = None
    return {
        "command": "python -m mixup_inference.perf.bench" + (" --quick" if cfg.quick else ""),
        "config": dataclasses.asdict(cfg),
        "ratio_definition": ("ratio = median over repeats of t_limit / t_workload, each pair timed back to back "
                             "(order alternating) after warm-up; higher is better, 1.0 = no overhead over the "
                             "bare model passes listed in 'limit'"),
        "environment": env,
        "rows": s.rows,
        "scaling": scaling,
        "chunk_sweep": chunks,
        "memory": memory,
        "fast_paths": fast,
        "all_targets_met": all(r["meets_target"] for r in s.rows) and memory["meets_target"],
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> dict:
    summary = sys.modules[__package__].__doc__.split("\n\n")[0]  # the package docstring's first paragraph
    parser = argparse.ArgumentParser(prog="python -m mixup_inference.perf.bench", description=summary)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (< 30 s; for tests)")
    parser.add_argument("--out", default="reports/bench", help="output folder (default reports/bench)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs per row (default 3, quick 1)")
    parser.add_argument("--channels-last", action="store_true", help="run every row with channels-last")
    parser.add_argument("--autocast", action="store_true", help="run every row with bf16 autocast")
    parser.add_argument("--compile", nargs="?", const=True, default=False,
                        help="run every row with torch.compile (optionally a backend name)")
    parser.add_argument("--no-fast-paths", action="store_true", help="skip the fast-path comparison section")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"device": args.device, "channels_last": args.channels_last,
                                 "autocast": args.autocast, "compile": args.compile,
                                 "fast_path_rows": not args.no_fast_paths}
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        overrides["threads"] = args.threads
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        overrides["repeats"] = args.repeats
    cfg = BenchConfig.quick_config(**overrides) if args.quick else BenchConfig(**overrides)
    result = run_benchmark(cfg, log=lambda msg: print(msg, flush=True))
    flags = [f for f, on in (("--quick", args.quick), ("--channels-last", args.channels_last),
                             ("--autocast", args.autocast), ("--no-fast-paths", args.no_fast_paths)) if on]
    if args.compile:
        flags.append("--compile" if args.compile is True else f"--compile {args.compile}")
    if args.threads is not None:
        flags.append(f"--threads {args.threads}")
    if args.repeats is not None:
        flags.append(f"--repeats {args.repeats}")
    if args.device != "cpu":
        flags.append(f"--device {args.device}")
    result["command"] = " ".join(["python -m mixup_inference.perf.bench", *flags, f"--out {args.out}"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_scaling(result["scaling"], out / "scaling.png", result["chunk_sweep"])
    atomic_write_text(out / "bench.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out / "bench.md", write_markdown(result))
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'scaling.png'} in {result['seconds']:.0f} s")
    return result

