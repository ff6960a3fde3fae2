"""The training frontier: test accuracy against training core-seconds, per regime, for the old
default recipe and the fast recipe side by side (issue 24), fp32 and, where the hardware has native
bf16, bf16 autocast.

Command (the workflow's `frontier` rule runs the same; it writes reports/bench/frontier.md,
frontier.json and frontier.png)::

    python -m mixup_inference.perf.frontier --data results/<run>/cifar10/data.pt --out reports/bench \
        --grid full --threads 2

Each point trains one model from scratch (seeded: the same config on the same machine gives the
same accuracy; the cost depends on the load) with ``core.training.loop.train`` and measures:

- core-seconds: the process's CPU time (user + system, all threads) spent inside ``train``, so
  a point costs the same whether it ran with 1 or 2 threads, up to threading overhead; the
  whitening fit (fast recipe) is inside it. Wall seconds are recorded beside it.
- accuracy: the fp32 model (whatever it was trained in) on the FULL test split, no test-time
  augmentation, with its 95% Wilson interval.

Recipes (:data:`RECIPES`): ``default`` is config/config.yaml's training as of issue 24 (compact_resnet,
one-cycle lr 0.1, batch 128, weight decay 5e-4, crop + flip, PyTorch init), kept here verbatim so
the comparison survives the re-sizing of the preset; ``fast`` and ``fast_wide`` are airbench94's
recipe (models.WhitenedConvNet at widths 32/128/128 and 64/256/256; decoupled Nesterov SGD,
triangular schedule, lookahead, alternating flip + translate, label smoothing 0.2 for ERM only).
All three train AT and interpolated AT with the default preset's PGD-2 (step 4/255), so the
recipes differ in the recipe only. A grid (:data:`GRIDS`) lists epochs per (recipe, regime).
The timings mean something only on a quiet machine: run ``--grid full`` with nothing beside it.

The report grows: rows already in ``<out>/frontier.json`` are kept and a grid point whose label is
there is not trained again (a stopped run resumes; nothing measured is lost). Two more sources add
rows, each row saying where it came from (``source``) and on which machine:

- ``--from-run reports/<run>/provenance.yaml``: a workflow run's train jobs (its ``models:``), named
  by the recipe whose model they used; core-seconds = the job's seconds per epoch x epochs, a
  1-thread job's wall time (so ~ its core-seconds), measured beside another job, not alone;
- ``--include rows.jsonl``: rows :func:`run_point` wrote elsewhere (one JSON object per line).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from ..core.defenses.averaging import predict_probs
from ..core.data.datasets import load_dataset, to_float
from ..core.metrics import accuracy_with_ci, wilson_interval
from ..core.models.networks import build_model
from ..core.models.speed import cpu_model, resolve_speed, speed_model
from ..core.training.loop import train
from ..core.training.config import REGIMES, TrainConfig
from ..core.utils import atomic_open, atomic_write_text, derive_seed, resolve_device

__all__ = ["GRIDS", "RECIPES", "FrontierPoint", "frontier_points", "main", "pareto", "rows_from_run", "run_point",
           "write_report"]

_AT = {"at_eps": 8 / 255, "at_step_size": 4 / 255, "at_steps": 2}
_FAST = {"batch_size": 512, "optimizer": "sgd_decoupled", "lr": 11.5, "momentum": 0.85, "weight_decay": 0.0153,
         "bias_lr_scale": 64.0, "schedule": "triangular", "lookahead": True, "augmentation": "flip_translate",
         "whiten_bias_epochs": 3, "init": "pytorch", **_AT}

#: recipe -> (registry model, TrainConfig keys shared by all regimes, extra keys per regime).
RECIPES: dict[str, tuple[str, dict[str, Any], dict[str, dict[str, Any]]]] = {
    "default": ("compact_resnet",
                {"batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle",
                 "augment": True, "init": "pytorch", **_AT}, {}),
    "fast": ("airbench94_narrow", _FAST, {"erm": {"label_smoothing": 0.2}}),
    "fast_wide": ("airbench94", _FAST, {"erm": {"label_smoothing": 0.2}}),
}

#: grid -> recipe -> regime -> epochs of its points. "full": a handful of points per regime, the old
#: default recipe at the 2026-12-02 preset's epochs beside the fast recipe up to the re-sized preset's
#: (ERM 20, mixup 40, AT/IAT 10); ~4 h of training in fp32 + bf16 on a 2-core CPU with native bf16,
#: so resume it (points already in frontier.json are skipped) or fill it with --from-run rows.
#: "precision": the fast recipe's ERM and mixup at 10 epochs, what bf16 buys (~30 min with --precision
#: auto on such a CPU). "smoke": one 1-epoch point each, for a check that runs.
GRIDS: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {
    "full": {
        "default": {"erm": (10,), "mixup": (10,), "at": (3,), "interpolated_at": (3,)},
        "fast": {"erm": (10, 20), "mixup": (10, 20, 40), "at": (3, 6, 10), "interpolated_at": (3, 10)},
    },
    "precision": {"fast": {"erm": (10,), "mixup": (10,)}},
    "smoke": {
        "default": {regime: (1,) for regime in REGIMES},
        "fast": {regime: (1,) for regime in REGIMES},
    },
}


@dataclass(frozen=True)
class FrontierPoint:
    """One training run of the frontier."""

    recipe: str
    regime: str
    epochs: int
    bf16: bool

    @property
    def label(self) -> str:
        return f"{self.recipe}/{self.regime}/{self.epochs}ep/{'bf16' if self.bf16 else 'fp32'}"


def frontier_points(grid: str, precisions: Sequence[bool]) -> list[FrontierPoint]:
    """Every point of ``grid`` (:data:`GRIDS`) in each precision of ``precisions`` (False: fp32)."""
    if grid not in GRIDS:
        raise ValueError(f"grid {grid!r} is unknown; use one of {', '.join(GRIDS)}")
    return [FrontierPoint(recipe, regime, epochs, bf16)
            for recipe, regimes in GRIDS[grid].items() for regime, all_epochs in regimes.items()
            for epochs in all_epochs for bf16 in precisions]


def run_point(point: FrontierPoint, data, *, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Train ``point`` on ``data`` (an ImageDataset) and return its row: the point, model, training
    config, core-seconds, wall seconds and the full-test accuracy with its interval."""
    model_name, shared, per_regime = RECIPES[point.recipe]
    config = TrainConfig(**{**shared, **per_regime.get(point.regime, {}), "regime": point.regime,
                            "epochs": point.epochs, "seed": seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model-init"))
        model = build_model(model_name, data.num_classes, data.in_channels, init=config.init)
    model = model.to(device)
    fast = speed_model(model, {"channels_last": device.type in ("cpu", "cuda"), "bf16": point.bf16})
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    summary = train(fast, train_x, train_y, config, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    core_seconds, wall_seconds = time.process_time() - cpu_start, time.perf_counter() - wall_start
    model.eval()
    probs = torch.cat([predict_probs(model, to_float(data.test_x[s:s + 1000]).to(device)).cpu()
                       for s in range(0, len(data.test_y), 1000)])
    return {**asdict(point), "label": point.label, "model": model_name, "training": config.to_dict(),
            "core_seconds": core_seconds, "wall_seconds": wall_seconds,
            "final_train_loss": summary["final_loss"], "test": accuracy_with_ci(probs, data.test_y)}


def pareto(rows: list[dict]) -> set[str]:
    """Labels of the rows no other row of the same regime beats in both accuracy and core-seconds."""
    best = set()
    for row in rows:
        if not any(o["regime"] == row["regime"] and o["core_seconds"] <= row["core_seconds"]
                   and o["test"]["accuracy"] > row["test"]["accuracy"] for o in rows):
            best.add(row["label"])
    return best


def rows_from_run(provenance_path: str | Path) -> list[dict[str, Any]]:
    """Frontier rows from a workflow run's train jobs, read from its provenance.yaml (``models:``).

    Each trained model becomes a point of the recipe whose registry model it used (:data:`RECIPES`;
    the run's full training config is in that provenance file); a model imported from a file is
    skipped. The job ran on 1 thread, so its wall seconds per epoch x epochs stand for core-seconds;
    it shared the machine with another job, so its cost is an upper bound of a quiet run's."""
    provenance = yaml.safe_load(Path(provenance_path).read_text())
    recipe_of_model = {model: recipe for recipe, (model, _, _) in reversed(list(RECIPES.items()))}
    environment = provenance.get("environment") or {}
    machine = {"cpu": environment.get("cpu_model") or environment.get("processor"),
               "threads": environment.get("torch_threads", 1), "torch": (environment.get("packages") or {}).get("torch")}
    rows = []
    for key, job in (provenance.get("models") or {}).items():
        if "source" in job or not job.get("epochs") or not job.get("seconds_per_epoch"):
            continue
        regime = key.split("/")[-1]
        point = FrontierPoint(recipe_of_model.get(job["model"], job["model"]), regime, int(job["epochs"]),
                              bool((job.get("speed") or {}).get("bf16")))
        n = int(job["test_n"])
        low, high = wilson_interval(round(job["test_accuracy"] * n), n)
        seconds = float(job["seconds_per_epoch"]) * int(job["epochs"])
        rows.append({**asdict(point), "label": point.label, "model": job["model"], "core_seconds": seconds,
                     "wall_seconds": seconds, "test": {"accuracy": job["test_accuracy"], "n": n,
                                                       "ci_low": low, "ci_high": high},
                     "source": f"run {provenance.get('run')} ({key}, 1 thread beside another job; "
                               f"{Path(provenance_path).as_posix()})",
                     "machine": machine})
    return rows


def write_report(rows: list[dict], out: Path, commands: Sequence[str]) -> None:
    """frontier.json (every row with its source and machine, and the commands that made them),
    frontier.md (a table per regime, cheapest first, Pareto points marked) and frontier.png
    (accuracy against core-seconds per regime)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "frontier.json", json.dumps({"commands": list(commands), "rows": rows},
                                                        indent=2, default=float) + "\n")
    front = pareto(rows)
    machines = sorted({_machine_text(r.get("machine") or {}) for r in rows})
    lines = ["# Training frontier: full-test accuracy against training core-seconds", "",
             f"Redraw it from a clone: `python -m mixup_inference.perf.frontier --out {out} --grid none` (it reads "
             f"the rows of {out}/frontier.json; README \"The training frontier\" adds points). Its rows were added by "
             + ", then ".join(f"`{c}`" for c in commands) + " (paths as on the machine that ran them; each row's "
             "source is its last column). Accuracy: the fp32 model on the full "
             "test split, no test-time augmentation, [95% Wilson interval]. Core-seconds: CPU time of the "
             "training process (measured points), or a 1-thread workflow job's seconds (rows from a run). "
             "`*`: on the regime's frontier (no point is both cheaper and more accurate). Recipes: "
             "`mixup_inference.perf.frontier.RECIPES`. Machines: " + "; ".join(machines) + ".", ""]
    for regime in REGIMES:
        mine = sorted((r for r in rows if r["regime"] == regime), key=lambda r: r["core_seconds"])
        if not mine:
            continue
        lines += [f"## {regime}", "", "| recipe | model | epochs | precision | core-s | wall s | accuracy | | source |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in mine:
            t = r["test"]
            lines.append(f"| {r['recipe']} | {r['model']} | {r['epochs']} | {'bf16' if r['bf16'] else 'fp32'} | "
                         f"{r['core_seconds']:,.1f} | {r['wall_seconds']:,.1f} | {100 * t['accuracy']:.1f}% "
                         f"[{100 * t['ci_low']:.1f}, {100 * t['ci_high']:.1f}] | {'*' if r['label'] in front else ''} "
                         f"| {r.get('source', 'measured')} |")
        lines.append("")
    atomic_write_text(out / "frontier.md", "\n".join(lines))
    _plot(rows, out / "frontier.png")


def _machine_text(machine: dict[str, Any]) -> str:
    text = f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('threads', '?')} thread(s), torch {machine.get('torch')}"
    return text + (f", bf16: {machine['bf16_reason']}" if machine.get("bf16_reason") else "")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [r for r in REGIMES if any(row["regime"] == r for row in rows)]
    fig, axes = plt.subplots(1, len(regimes), figsize=(4 * len(regimes), 3.4), squeeze=False)
    series = sorted({(r["recipe"], r["bf16"]) for r in rows})  # one colour and marker per series in every panel
    for ax, regime in zip(axes[0], regimes):
        for i, (recipe, bf16) in enumerate(series):
            mine = sorted((r for r in rows if r["regime"] == regime and r["recipe"] == recipe and r["bf16"] == bf16),
                          key=lambda r: r["core_seconds"])
            ax.plot([r["core_seconds"] for r in mine], [100 * r["test"]["accuracy"] for r in mine],
                    marker="os^vDP<>"[i % 8], color=f"C{i % 10}", label=f"{recipe} {'bf16' if bf16 else 'fp32'}")
        ax.set(title=regime, xlabel="training core-seconds", ylabel="test accuracy (%)", xscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mixup_inference.perf.frontier", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a prepared data set (the workflow's results/<run>/<dataset>/data.pt); "
                        "needed when the grid has points to train")
    parser.add_argument("--out", default="reports/bench", help="folder of frontier.md/.json/.png")
    parser.add_argument("--grid", default="full", choices=[*sorted(GRIDS), "none"],
                        help="the points to train (none: only add --from-run/--include rows)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "both"],
                        help="auto: fp32, plus bf16 where the hardware has it natively; both: fp32 and bf16 anyway")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-run", action="append", default=[], metavar="PROVENANCE",
                        help="add a workflow run's train jobs (reports/<run>/provenance.yaml); repeatable")
    parser.add_argument("--include", action="append", default=[], metavar="JSONL",
                        help="add rows run_point wrote elsewhere (one JSON object per line); repeatable")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    auto = resolve_speed({"train_bf16": "auto"}, device, purpose="train")  # what the train jobs' `auto` chooses
    precisions = [False] + ([True] if args.precision == "both" or (args.precision == "auto" and auto["bf16"]) else [])
    machine = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
               "device": str(device), "bf16_reason": auto["reason"], "python": platform.python_version()}
    command = "python -m mixup_inference.perf.frontier " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    saved = json.loads((out / "frontier.json").read_text()) if (out / "frontier.json").exists() else {}
    rows, commands = list(saved.get("rows", [])), list(saved.get("commands", []))
    added = [*(r for path in args.from_run for r in rows_from_run(path)),
             *(json.loads(line) for path in args.include for line in Path(path).read_text().splitlines() if line.strip())]
    known = {r["label"] for r in rows}
    new = []
    for row in added:  # a label's first row stays, whichever source brings it again
        if row["label"] not in known:
            known.add(row["label"])
            new.append(row)
    rows += new
    grid = frontier_points(args.grid, precisions) if args.grid != "none" else []
    todo = [p for p in grid if p.label not in known]
    if todo and not args.data:
        parser.error(f"--grid {args.grid} has {len(todo)} points to train; pass --data results/<run>/<dataset>/data.pt")
    if new or todo:  # the report names the commands that made its rows; a call that adds none only redraws
        commands.append(command)
    write_report(rows, out, commands)
    data = load_dataset(args.data) if todo else None
    for point in todo:
        row = run_point(point, data, device=device, seed=args.seed)
        rows.append({**row, "source": "measured (alone)", "machine": machine})
        print(f"{point.label}: {100 * row['test']['accuracy']:.1f}% in {row['core_seconds']:.0f} core-seconds", flush=True)
        write_report(rows, out, commands)  # after every point: a stopped run keeps its rows


if __name__ == "__main__":
    main()
