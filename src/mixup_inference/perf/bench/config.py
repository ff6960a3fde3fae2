"""The benchmark's sizes (`BenchConfig`) and the target ratio of each row group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGETS = {"mi": 0.90, "pgd": 0.90, "adaptive": 0.85, "baseline": 0.80, "training": 0.85, "speedup": 0.90,
           "robust": 0.85, "cascade": 1.0}  # cascade: t_uncascaded / t_cascade, a speed-up (issue 25)
MEMORY_GROWTH_TARGET = 0.10


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of every benchmark row (defaults: the full run, ~5 min on 2 CPU cores)."""

    model: str = "compact_resnet"         # models.MODEL_NAMES
    num_classes: int = 10
    image_size: int = 32                  # H = W, pixels
    channels: int = 3
    device: str = "cpu"                   # cpu | cuda | auto
    threads: int | None = None            # torch intra-op threads (None: torch's default, all cores)
    pool_per_class: int = 100             # MI pool images per class (float, as the workflow holds it)
    eval_batch: int = 32                  # inputs B per MI call
    baseline_batch: int = 16              # inputs B per baseline call
    n_samples: int = 30                   # executions N (paper: 30)
    chunk_size: int | None = None         # images per forward inside a defense (None: library default)
    lam: float = 0.5                      # MI mixup ratio
    pgd_batch: int = 16                   # images per PGD call
    pgd_steps: tuple[int, ...] = (10, 50)
    adaptive_batch: int = 8               # inputs per adaptive attack call (x N_A copies)
    n_adaptive: int = 10                  # N_A
    adaptive_steps: int = 5
    robust_batch: int = 8                 # points per robust attack call (core.attacks.defended)
    robust_samples: int = 2               # executions inside the defense (the default preset's robustness.n_samples)
    robust_eot: int = 2                   # defense draws per gradient
    robust_steps: int = 5                 # EOT PGD steps; AutoAttack iterations
    train_batch: int = 64                 # paper's batch size
    train_batches: int = 4                # batches per benchmarked epoch, ERM and mixup
    at_train_batches: int = 1             # batches per benchmarked epoch, AT and IAT (each = 11 passes)
    at_steps: int = 10                    # PGD steps inside AT (paper: 10)
    loop_batch: int = 8                   # inputs of the per-image-loop reference
    n_sweep: tuple[int, ...] = (1, 3, 10, 30, 100)
    n_sweep_batch: int = 4
    batch_sweep: tuple[int, ...] = (1, 4, 16, 64)
    batch_sweep_n: int = 10
    memory_ns: tuple[int, ...] = (10, 100)
    memory_batch: int = 16
    memory_chunk: int = 128
    chunk_sweep: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 512)  # per-image model cost vs batch
    chunk_sweep_images: int = 384         # images per point (at least one batch)
    repeats: int = 3                      # timed pairs per row (median reported)
    warmup: int = 1                       # untimed runs of workload and limit before timing
    seed: int = 0
    channels_last: bool = False           # fast paths applied to the model for every row
    autocast: bool = False
    compile: bool | str = False
    fast_path_rows: bool = True           # also compare the fast paths against the plain model
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """Tiny sizes for tests (< 30 s): every row and section, not meaningful numbers."""
        sizes = dict(model="tiny_cnn", image_size=16, pool_per_class=4, eval_batch=4, baseline_batch=4, n_samples=4,
                     chunk_size=None, pgd_batch=4, pgd_steps=(2, 3), adaptive_batch=2, n_adaptive=2,
                     adaptive_steps=2, robust_batch=2, robust_samples=2, robust_eot=2, robust_steps=2, train_batch=8, train_batches=2, at_train_batches=1, at_steps=2,
                     loop_batch=2, n_sweep=(1, 4), n_sweep_batch=2, batch_sweep=(1, 4), batch_sweep_n=2,
                     memory_ns=(2, 8), memory_batch=2, memory_chunk=8, chunk_sweep=(1, 8), chunk_sweep_images=16,
                     repeats=1, warmup=1, threads=1, quick=True)
        return cls(**{**sizes, **overrides})

