"""Workflow-level benchmark: how much of a finished run's wall time was the jobs' own work.

    python -m mixup_inference.perf.workflow_bench --run smoke [--workdir .] [--elapsed S] [--out reports/bench]

Not a timed test: it reads what a finished run left behind and reports ratios.

- work (s): what each job logs as ``# job finished in X s`` (joblog.job_log times the job body:
  loading inputs, computing, writing outputs);
- wall (s): Snakemake's benchmark file of the same job (the whole script process: Python and
  library start-up, the job body, exit);
- overhead = wall - work: the fixed cost of a job, paid once per job whatever its size;
- cpu (s): the benchmark file's cpu_time of the job's processes. On a quiet machine a 1-thread
  job's cpu is close to its wall; far less cpu than wall means the job waited (for a core, or for
  the disk on a machine short of page cache), which a quiet machine would not charge.

Per rule: jobs, work, wall, overhead and the median overhead per job. With the jobs per rule of
every preset (from plan.py) and the default preset's measured core-seconds, it estimates the
fixed overhead's share of the default preset, the issue-14 target being <= 5%.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
from pathlib import Path
from typing import Any

from ..report.provenance import rule_of
from ..core.utils import atomic_write_text

__all__ = ["job_overheads", "preset_jobs", "rule_overheads", "write_report"]

_FINISHED = re.compile(r"^# job finished in ([0-9.]+) s$", re.MULTILINE)
GPU_RULES = ("train", "import_model", "attack", "evaluate", "adaptive", "robust")  # the rules that run as (cluster) jobs
LOCAL_RULES = ("prepare_data", "aggregate", "findings", "tables", "figures", "provenance")


def job_overheads(logs_dir: str | os.PathLike, benchmarks_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per job that has both a benchmark file and a finished log: rule, job (the benchmark's
    relative path), work_s (the log's last "job finished" time), wall_s, overhead_s."""
    logs, benchmarks = Path(logs_dir), Path(benchmarks_dir)
    rows = []
    for tsv in sorted(benchmarks.rglob("*.tsv")):
        rel = tsv.relative_to(benchmarks)
        log = logs / rel.with_suffix(".log")
        if not log.exists():
            continue
        finished = _FINISHED.findall(log.read_text(errors="replace"))
        lines = tsv.read_text().strip().splitlines()
        if not finished or len(lines) < 2:
            continue
        fields = dict(zip(lines[0].split("\t"), lines[-1].split("\t")))
        wall = float(fields["s"])
        cpu = float(fields["cpu_time"]) if fields.get("cpu_time", "NA") not in ("", "NA", "-") else float("nan")
        work = float(finished[-1])  # a rerun appends to the log: its last job is this benchmark's
        rows.append({"rule": rule_of(tsv, benchmarks), "job": str(rel.with_suffix("")), "work_s": work,
                     "wall_s": wall, "cpu_s": cpu, "overhead_s": max(wall - work, 0.0)})
    return rows


def rule_overheads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: jobs, work_s, wall_s, overhead_s (sums), median overhead per job, overhead share."""
    out = []
    for rule in sorted({r["rule"] for r in rows}, key=lambda name: -sum(r["wall_s"] for r in rows if r["rule"] == name)):
        mine = [r for r in rows if r["rule"] == rule]
        wall = sum(r["wall_s"] for r in mine)
        overhead = sum(r["overhead_s"] for r in mine)
        out.append({"rule": rule, "jobs": len(mine), "work_s": round(sum(r["work_s"] for r in mine), 1),
                    "wall_s": round(wall, 1), "cpu_s": round(sum(r.get("cpu_s", float("nan")) for r in mine), 1),
                    "overhead_s": round(overhead, 1),
                    "median_overhead_per_job_s": round(statistics.median(r["overhead_s"] for r in mine), 2),
                    "overhead_share": round(overhead / wall, 3) if wall else 0.0})
    return out


def preset_jobs(config: dict[str, Any]) -> dict[str, int]:
    """Jobs per rule that a preset plans (what `snakemake --dry-run` counts, without `all`)."""
    from ..design import plan

    evaluations = plan.evaluations(config)
    return {
        "prepare_data": len(plan.used_datasets(config)),
        "train": len(plan.models_to_train(config)),
        "import_model": len(plan.imported_models(config)),  # plus one download_model per URL not yet on disk
        "attack": len({(d, r, a) for d, r, a, _f, _s in evaluations}),
        "evaluate": len({(d, r, a) for d, r, a, _f, _s in evaluations}),  # the study's own groups are its target's
        "adaptive": len(plan.adaptive_runs(config)),
        "robust": len(plan.robust_targets(config)),
        "aggregate": 1, "findings": 1, "tables": len(config["tables"]), "figures": 1, "provenance": 1,
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out_path: str | os.PathLike, *, run: str, rows: list[dict[str, Any]], elapsed_s: float | None,
                 cores: int, load_average: tuple[float, float, float] | None, presets: dict[str, dict[str, int]],
                 default_core_seconds: float | None, notes: str = "") -> str:
    """The Markdown report (per-rule table, jobs per preset, the default preset's overhead estimate)."""
    per_rule = rule_overheads(rows)
    wall = sum(r["wall_s"] for r in rows)
    overhead = sum(r["overhead_s"] for r in rows)
    job_rows = [r for r in rows if r["rule"] in GPU_RULES]
    per_job = statistics.median(r["overhead_s"] for r in job_rows) if job_rows else 0.0
    parts = [f"# Workflow benchmark: run `{run}`", "",
             "Written by `python -m mixup_inference.perf.workflow_bench` from a finished run's job logs (the work "
             "each job times inside `job_log`) and Snakemake's benchmark files (each job's wall time); "
             "overhead = wall - work, the fixed cost of starting and ending a job.", ""]
    header = f"- {len(rows)} jobs, {wall:.1f} s of job wall time, {overhead:.1f} s of it overhead " \
             f"({overhead / wall:.1%})" if wall else "- no finished jobs found"
    cpu = sum(r.get("cpu_s", 0.0) for r in rows)
    parts += [header, f"- {cpu:.1f} s of job CPU time in all (cpu_time of the benchmark files)"]
    if elapsed_s is not None:
        parts += [f"- whole run: {elapsed_s:.0f} s elapsed on {cores} cores"]
    if load_average is not None:
        # The run's own jobs keep the load near the core count; well above it, other work shared the machine.
        busy = load_average[1] > cores + 0.5
        verdict = ("other work shared the machine, so the times are upper bounds: re-measure on a quiet one" if busy
                   else "no more than the run's own jobs: a quiet machine")
        parts += [f"- load average when this report was written (just after the run): {' / '.join(f'{v:.2f}' for v in load_average)} "
                  f"(1 / 5 / 15 min; {verdict})"]
    parts += [f"- median overhead per {'/'.join(GPU_RULES)} job: {per_job:.2f} s", "",
              "## Per rule", "",
              _table(per_rule, ["rule", "jobs", "work_s", "wall_s", "cpu_s", "overhead_s", "median_overhead_per_job_s",
                                "overhead_share"]), "", "## Jobs per preset (plan.py)", ""]
    rules = list(next(iter(presets.values()))) if presets else []
    parts += [_table([{"preset": name, **jobs, "total": sum(jobs.values())} for name, jobs in presets.items()],
                     ["preset", *rules, "total"]), ""]
    if default_core_seconds and "config" in presets:
        n_jobs = sum(presets["config"][rule] for rule in GPU_RULES)
        estimate = n_jobs * per_job
        parts += ["## Default preset: fixed overhead vs its core-seconds", "",
                  f"{n_jobs} {'/'.join(GPU_RULES)} jobs x {per_job:.2f} s median overhead = {estimate:.0f} s, "
                  f"against {default_core_seconds:.0f} core-seconds of work (the committed CPU run, "
                  f"reports/cifar10-jpeg-cpu/provenance.yaml, 1 thread per job): **{estimate / default_core_seconds:.1%}** "
                  "(target <= 5%). The local rules run once each and are left out.", ""]
    if notes:
        parts += [notes.strip(), ""]
    text = "\n".join(parts)
    atomic_write_text(out_path, text)
    return text


def main(argv: list[str] | None = None) -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run name (config `run:`), e.g. smoke")
    parser.add_argument("--workdir", default=".", help="where the run's logs/ and benchmarks/ are")
    parser.add_argument("--elapsed", type=float, default=None, help="the run's elapsed wall time (s), if measured")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--repo", default=".", help="the repository (config/ and reports/) for the presets")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--notes", default="", help="Markdown appended to the report")
    args = parser.parse_args(argv)
    workdir, repo = Path(args.workdir), Path(args.repo)
    rows = job_overheads(workdir / "logs" / args.run, workdir / "benchmarks" / args.run)
    presets = {p.stem: preset_jobs(yaml.safe_load(p.read_text())) for p in sorted((repo / "config").glob("*.yaml"))
               if p.stem in ("smoke", "config", "paper")}
    prov = repo / "reports" / "cifar10-jpeg-cpu" / "provenance.yaml"
    core_seconds = None
    if prov.exists():
        timings = yaml.safe_load(prov.read_text()).get("wall_time_per_rule_s", [])
        core_seconds = sum(row["total_s"] for row in timings)
    out = Path(args.out) / f"workflow-{args.run}.md"
    text = write_report(out, run=args.run, rows=rows, elapsed_s=args.elapsed, cores=args.cores,
                        load_average=os.getloadavg(), presets=presets, default_core_seconds=core_seconds,
                        notes=args.notes)
    print(text)


if __name__ == "__main__":
    main()
