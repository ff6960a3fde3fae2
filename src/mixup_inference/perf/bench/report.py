"""Output: the Markdown report (`write_markdown`) and the scaling figure (`plot_scaling`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.defenses.specs import DEFENSES
from ...core.utils import atomic_open


def plot_scaling(scaling: dict, path: Path, chunks: dict | None = None) -> None:
    """Two panels: time per input vs N (workload and limit), time per model image vs batch size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if chunks else 2, figsize=(15 if chunks else 10, 4))
    ax_n, ax_b = axes[0], axes[1]
    ns = [p["n_samples"] for p in scaling["n"]]
    ax_n.plot(ns, [p["ms_per_input"] for p in scaling["n"]], "o-", label="MI-OL (library)")
    ax_n.plot(ns, [p["t_limit_s"] * 1e3 / p["batch"] for p in scaling["n"]], "s--", label="limit: fwd B(N+1)")
    ax_n.set_xscale("log")
    ax_n.set_yscale("log")
    ax_n.set_xlabel("executions N")
    ax_n.set_ylabel("ms per input")
    ax_n.set_title(f"MI-OL cost vs N (B={scaling['n'][0]['batch']})")
    ax_n.legend()
    bs = [p["batch"] for p in scaling["batch"]]
    ax_b.plot(bs, [p["ms_per_image"] for p in scaling["batch"]], "o-", label="MI-OL (library)")
    ax_b.plot(bs, [p["limit_ms_per_image"] for p in scaling["batch"]], "s--", label="limit")
    ax_b.set_xscale("log", base=2)
    ax_b.set_xlabel("inputs per call B")
    ax_b.set_ylabel("ms per model image (B(N+1) images)")
    ax_b.set_title(f"MI-OL cost vs batch size (N={scaling['batch'][0]['n_samples']})")
    ax_b.legend()
    if chunks:
        ax_c = axes[2]
        sizes = [p["batch"] for p in chunks["points"]]
        ax_c.plot(sizes, [p["fwd_ms_per_image"] for p in chunks["points"]], "o-", label="forward")
        ax_c.plot(sizes, [p["fwd_bwd_ms_per_image"] for p in chunks["points"]], "s-", label="forward + input grad")
        ax_c.axvline(chunks["library_chunk"], color="grey", linestyle=":",
                     label=f"chunk_size {chunks['library_chunk']}")
        ax_c.set_xscale("log", base=2)
        ax_c.set_xlabel("images per model pass")
        ax_c.set_ylabel("ms per image")
        ax_c.set_title("bare model cost vs images per pass")
        ax_c.legend()
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


_LABELS = {"adaptive_pgd": "Adaptive PGD (paper, App. B.2)", "eot_pgd": "EOT PGD",
           "robust_eot_pgd_mi_ol": "EOT PGD through MI-OL (core.attacks.defended), one chunk",
           "robust_eot_pgd_mi_ol_chunked": "EOT PGD through MI-OL, 2 checkpointed chunks",
           "robust_eot_pgd_gaussian": "EOT PGD through Gaussian noise",
           "robust_autoattack_gaussian": "AutoAttack rand through Gaussian noise",
           "robust_cascade_gaussian": "robust job's cascade vs every run on every point (speed-up)",
           "mi_ol_speedup_vs_loop": "MI-OL speed-up over per-image loop, share of ceiling"}


def row_label(name: str) -> str:
    if name in DEFENSES:  # read at call time: a defense registered after this import has its row too
        spec = DEFENSES[name]
        return f"{spec.label} {'baseline' if spec.baseline else 'evaluation'}"
    if name in _LABELS:
        return _LABELS[name]
    if name.startswith("train_"):
        return f"Training epoch, {name[6:]}"
    steps = "".join(ch for ch in name if ch.isdigit())
    return f"{'Targeted ' if name.startswith('t') else ''}PGD-{steps}"


def write_markdown(result: dict) -> str:
    """The Markdown report: rows with ratio, target, throughput; memory; fast paths; scaling; machine."""
    env, cfg = result["environment"], result["config"]
    lines = [f"# Benchmark: {cfg['model']} on {cfg['channels']}x{cfg['image_size']}x{cfg['image_size']} inputs",
             "", f"Command: `{result['command']}`  ", f"Total time: {result['seconds']:.0f} s; "
             f"all targets met: **{'yes' if result['all_targets_met'] else 'no'}**", "",
             "Ratio = median over repeats of t(limit) / t(workload), timed back to back; the limit is the bare "
             "model passes the workload needs (column 'limit'). Strict ratio: the limit without the B plain "
             "predictions that MI and the adaptive attacks also need.", "",
             "| workload | ratio | strict | target | met | throughput | limit (bare model passes) |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        strict = f"{row['ratio_strict']:.3f}" if "ratio_strict" in row else "-"
        limit = row.get("limit") or row.get("ceiling_definition", "")
        if row["group"] == "speedup":
            limit = (f"speed-up {row['speedup']:.2f}x of ceiling {row['ceiling']:.2f}x "
                     f"(loop {row['loop_throughput']:.1f} inputs/s); ceiling = {row['ceiling_definition']}")
            if "ceiling_vs_best_batch" in row:
                limit += (f"; against the fastest forward batch of the sweep below the ceiling is "
                          f"{row['ceiling_vs_best_batch']:.2f}x and the share {row['share_vs_best_batch']:.3f}")
        lines.append(f"| {row_label(row['name'])} | {row['ratio']:.3f} | {strict} | >= {row['target']:.2f} | "
                     f"{'yes' if row['meets_target'] else 'NO'} | {row['throughput']:.1f} {row['throughput_unit']} | "
                     f"{limit} |")
    mem = result["memory"]
    lines += ["", "## Memory", "", f"{mem['definition']}.", "",
              "| N | chunk | allocator | peak RSS increase (MiB) |", "|---|---|---|---|"]
    lines += [f"| {p['n_samples']} | {p['chunk_size']} | {p['allocator']} | {p['peak_increase_mib']:.1f} |"
              for p in mem["probes"]]
    lines += ["", f"Growth N={min(cfg['memory_ns'])} -> {max(cfg['memory_ns'])}: {100 * mem['growth']:+.1f}% "
                  f"(target < {100 * mem['target_growth']:.0f}%): {'met' if mem['meets_target'] else 'NOT met'}."]
    if "growth_default_allocator" in mem:
        lines += [f"With glibc's default settings: {100 * mem['growth_default_allocator']:+.1f}% (freed blocks "
                  "cached by the allocator, not tensors held by the library)."]
    if result["fast_paths"]:
        lines += ["", "## Fast paths (speed-up over the plain model, paired medians)", "",
                  "Probability differences are measured on the benchmark's untrained model, whose outputs are "
                  "nearly uniform: they understate bf16's effect on a trained model (~1e-2, see "
                  "`mixup_inference.core.models.fastpath`).", "",
                  "| fast path | MI-OL | PGD-10 | ERM epoch | max abs prob. diff (MI-OL) |", "|---|---|---|---|---|"]
        lines += [f"| {r['fast_path']} | {_times(r['speedup_mi_ol'])} | {_times(r['speedup_pgd10'])} | "
                  f"{_times(r['speedup_train_erm'])} | {r['max_abs_prob_diff_mi_ol']:.1e} |"
                  for r in result["fast_paths"]]
    sc = result["scaling"]
    lines += ["", "## MI-OL cost vs N and batch size (`scaling.png`)", "", f"{sc['definition']}.", "",
              "| B | N | ms / input | ms / model image | limit ms / model image | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['batch']} | {p['n_samples']} | {p['ms_per_input']:.2f} | {p['ms_per_image']:.3f} | "
              f"{p['limit_ms_per_image']:.3f} | {p['ratio']:.3f} |" for p in sc["n"] + sc["batch"]]
    ch = result["chunk_sweep"]
    lines += ["", "## Bare model cost vs images per pass", "", f"{ch['definition']}. The library's chunk size in "
              f"this run: {ch['library_chunk']}; fastest forward batch: {ch['best_fwd_batch']}, fastest "
              f"forward+backward batch: {ch['best_fwd_bwd_batch']}.", "",
              "| images per pass | forward ms / image | forward + input grad ms / image |", "|---|---|---|"]
    lines += [f"| {p['batch']} | {p['fwd_ms_per_image']:.3f} | {p['fwd_bwd_ms_per_image']:.3f} |" for p in ch["points"]]
    pk = env["packages"]
    lines += ["", "## Machine", "",
              f"{env.get('cpu_model') or env['processor']}, {env['cpu_count']} CPUs ({env['cpu_capability']}), "
              f"torch threads "
              f"{env['torch_threads']}, GPUs: {', '.join(env['gpus']) or 'none'}; load average at start "
              f"{_fmt_load(env.get('load_average_start'))}, at end {_fmt_load(env.get('load_average_end'))}.  ",
              f"Python {env['python']}, torch {pk.get('torch')}, numpy {pk.get('numpy')}, "
              f"mixup-inference {pk.get('mixup-inference')}, git {env['git']['commit'][:12]}"
              f"{' (dirty)' if env['git']['dirty'] else ''}; {env['platform']}.", ""]
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fmt_load(load: Any) -> str:
    return "n/a" if not load else "/".join(f"{v:.1f}" for v in load)
