"""A measured estimate before a long run (issue 34): each rule's core-seconds and the run's wall time at
``--cores`` N, on this machine, in about a minute.

    python -m mixup_inference.perf.estimate --configfile config/config.yaml --cores 2 8 16 32
        [--config key=value ...] [--set training.epochs=5 ...] [--data results/<run>/<dataset>/data.pt]
        [--survivors reports/cifar10-jpeg-cpu/results.csv] [--out reports/<run>]
    snakemake --cores 2 estimate        # the same as a rule: reports/<run>/estimate.{md,json}

1. Probes (perf.probes) time a few steps of each job kind on one thread: a training step per model, an
   attack step, each defense, a job's start-up.
2. The work model (perf.workmodel) multiplies them by the plan's work: every job of the `all` target
   with its inputs and CPU seconds (a fresh run: no model exists yet).
3. The scheduler (perf.schedule) runs that DAG at each N with the thread policy (jobs.threads): train
   jobs share the cores among the models being trained, every other job runs on 1 thread.

The estimate's error against measured runs is in README "Quick start" and "Performance".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from ..core.data.datasets import load_dataset
from ..core.models.speed import cpu_flags, cpu_model, native_bf16, resolve_speed
from ..core.utils import atomic_write_text
from ..design import plan
from ..design.configcheck import check_config, validate_config
from ..jobs import threads as thread_policy
from .probes import ProbeSettings, probe_costs
from .schedule import Job, Schedule, ThreadScaling, simulate
from .workmodel import (
    DEFAULT_SURVIVOR_FRACTION,
    DefenseCost,
    Survivors,
    UnitCosts,
    run_jobs,
)

__all__ = ["Estimate", "apply_overrides", "calibrate", "estimate", "load_config", "main", "measure", "measured_units",
           "render_markdown", "schedules"]

#: The --cores of the estimate when none is given (README's quick start shows 2, 8 and 32).
DEFAULT_CORES = (2, 8, 16, 32)
#: The sensitivity column's thread scaling: each thread of a train job beyond 2 adds half a thread (unmeasured).
LOW_BEYOND_TWO = 0.5
_CLONE = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- the config, as the workflow takes it
def _snakemake_value(text: str) -> Any:
    """A --config value as Snakemake parses it: int, float, true/false, else YAML (BaseLoader: nested values
    stay strings), else the string."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return text


def _merge(base: dict[str, Any], change: Mapping[str, Any]) -> None:
    """Recursively update `base` with `change` (Snakemake's update_config)."""
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def apply_overrides(config: dict[str, Any], entries: Sequence[str] = (), sets: Sequence[str] = ()) -> dict[str, Any]:
    """`config` with Snakemake-style ``--config key=value`` entries merged in, then ``--set a.b.c=value``
    entries (the value read as YAML: ``speed.train_bf16=false``, ``training.epochs=5``)."""
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {entry!r}: write key=value (e.g. run=test)")
        _merge(config, {key: _snakemake_value(value)})
    for entry in sets:
        path, sep, value = entry.partition("=")
        if not sep or not path:
            raise ValueError(f"--set {entry!r}: write dotted.key=value (e.g. speed.train_bf16=false)")
        node = config
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {entry!r}: {part} is not a mapping in the config")
        node[last] = yaml.safe_load(value)
    return config


def load_config(path: str | os.PathLike, entries: Sequence[str] = (), sets: Sequence[str] = (),
                schema: str | os.PathLike | None = None) -> dict[str, Any]:
    """The config file with the overrides, checked as the workflow checks it (the schema where the clone
    has it, then configcheck.check_config)."""
    config = apply_overrides(yaml.safe_load(Path(path).read_text(encoding="utf-8")), entries, sets)
    schema = Path(schema) if schema is not None else _CLONE / "workflow" / "schemas" / "config.schema.yaml"
    if schema.exists():
        validate_config(config, schema)
    check_config(config)
    return config


# ---------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Estimate:
    """What the estimate found: the machine, the unit costs per data set, the jobs and one schedule per
    --cores (and at the sensitivity's scaling), the survivors' source, the probes' own cost, and where the
    work was calibrated to a finished run (`calibrate`), that run and each rule's factor."""

    run: str
    machine: dict[str, Any]
    costs: dict[str, UnitCosts]
    jobs: list[Job]
    schedules: list[Schedule]
    low_schedules: list[Schedule]
    scaling: ThreadScaling
    survivors: Survivors
    probe_seconds: dict[str, float]
    calibration: dict[str, Any] | None = None


def _train_threads(config: Mapping[str, Any], jobs: Sequence[Job], cores: int) -> int:
    return thread_policy.train_threads(config["resources"]["threads"], cores=cores,
                                       train_jobs=sum(job.rule == "train" for job in jobs))


def schedules(config: Mapping[str, Any], jobs: Sequence[Job], cores: Sequence[int],
              scaling: ThreadScaling = ThreadScaling()) -> list[Schedule]:
    """The run at each --cores with the config's thread policy (jobs.threads, a local run)."""
    other = thread_policy.job_threads(config["resources"]["threads"])
    out = []
    for n in cores:
        train = _train_threads(config, jobs, n)
        out.append(simulate(jobs, n, lambda job: train if job.scaling == "train" else other, scaling))
    return out


def machine() -> dict[str, Any]:
    """This machine as the estimate saw it: CPU, the kernels torch runs (forced ones named), training precision."""
    flags = cpu_flags()
    forced = {key: os.environ[key] for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if key in os.environ}
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "native_bf16": native_bf16(flags)[1],
            "kernels": torch.backends.cpu.get_cpu_capability(), "forced_kernels": forced,
            "torch": torch.__version__, "python": platform.python_version()}


def measure(config: Mapping[str, Any], data: Mapping[str, str] | None = None,
            settings: ProbeSettings = ProbeSettings()) -> tuple[dict[str, UnitCosts], dict[str, Any], dict[str, float]]:
    """Probe this machine for every data set the run trains on (`data`: name -> its data.pt; the others get
    random images of their config's size): the unit costs per data set, the machine, the probes' seconds."""
    config = dict(config)
    data = dict(data or {})
    costs, seconds = {}, {}
    info = machine()
    info["load_before"] = os.getloadavg()
    for name in plan.used_datasets(config):
        path = data.pop(name, None)
        started, cpu = time.perf_counter(), time.process_time()
        costs[name] = probe_costs(config, name, data=load_dataset(path) if path else None, data_path=path,
                                  settings=settings)
        seconds[name] = time.perf_counter() - started
        seconds[f"{name} cpu"] = time.process_time() - cpu
    if data:
        raise ValueError(f"--data names data sets this run does not train on: {sorted(data)}; "
                         f"it uses {plan.used_datasets(config)}")
    info["load_after"] = os.getloadavg()
    info["train_precision"] = resolve_speed(config.get("speed"), torch.device("cpu"), purpose="train")
    return costs, info, seconds


def measured_units(path: str | os.PathLike) -> tuple[dict[str, UnitCosts], dict[str, Any], dict[str, float]]:
    """The unit costs, machine and probe seconds of an earlier estimate.json (to plan another config or
    other --cores from the same measurement)."""
    saved = json.loads(Path(path).read_text(encoding="utf-8"))
    costs = {}
    for name, units in saved["units"].items():
        units = dict(units)
        for key in ("defense", "defense_grad"):
            units[key] = {d: DefenseCost(**c) for d, c in units[key].items()}
        costs[name] = UnitCosts(**units)
    return costs, {**saved["machine"], "units_from": str(path)}, saved["probe_seconds"]


def calibrate(jobs: Sequence[Job], costs: Mapping[str, UnitCosts], survivors: Survivors,
              provenance: str | os.PathLike, scaling: ThreadScaling = ThreadScaling()) -> tuple[list[Job], dict[str, Any]]:
    """`jobs` with each rule's work scaled by measured / estimated for a finished run: its provenance.yaml's
    per-rule seconds (``wall_time_per_rule_s``; a rule's jobs on T > 1 threads count T x efficiency core-seconds
    per second) against the estimate of its config (``config``) from `costs`. So a run measured on one machine
    re-plans a config at other --cores (`costs`: the unit costs `jobs` were built from), or another kernel
    class relative to it (`costs`: unit costs measured beside those of `jobs`, on the run's kind of machine).
    The factors are the probes' error against that run, rule by rule."""
    saved = yaml.safe_load(Path(provenance).read_text(encoding="utf-8"))
    estimated: dict[str, float] = {}
    for job in run_jobs(saved["config"], costs, survivors):
        estimated[job.rule] = estimated.get(job.rule, 0.0) + job.work
    factors = {}
    for row in saved["wall_time_per_rule_s"]:
        threads = row.get("threads") or [1]
        if len(threads) != 1:
            raise ValueError(f"{provenance}: rule {row['rule']} ran on {threads} threads; calibrate from a run whose "
                             "jobs of a rule ran on one thread count")
        probe = Job("probe", row["rule"], 0.0, scaling="train" if row["rule"] == "train" else "other")
        measured = float(row["total_s"]) * scaling.speedup(probe, int(threads[0]))
        if estimated.get(row["rule"]):
            factors[row["rule"]] = measured / estimated[row["rule"]]
    calibrated = [replace(job, work=job.work * factors.get(job.rule, 1.0)) for job in jobs]
    return calibrated, {"provenance": str(provenance), "run": saved.get("run"), "factors": factors}


def estimate(config: Mapping[str, Any], cores: Sequence[int] = DEFAULT_CORES, *,
             data: Mapping[str, str] | None = None, survivors: Survivors = Survivors(),
             scaling: ThreadScaling = ThreadScaling(), settings: ProbeSettings = ProbeSettings(),
             units: str | os.PathLike | None = None, work_from: str | os.PathLike | None = None,
             work_from_units: str | os.PathLike | None = None) -> Estimate:
    """Measure this machine (or take the unit costs of an earlier estimate.json, `units`), build the run's
    jobs, calibrate their work to a finished run's provenance.yaml (`work_from`; the factors from the unit
    costs of `work_from_units`, an estimate.json, or from this estimate's: see `calibrate`) if given, and
    simulate them at each --cores."""
    config = dict(config)
    costs, info, seconds = measured_units(units) if units is not None else measure(config, data, settings)
    try:
        jobs = run_jobs(config, costs, survivors)
    except KeyError as error:
        raise ValueError(f"the unit costs have no entry {error} that this config needs (a model, data set or "
                         "defense the measured config did not have): measure again without --units") from None
    calibration = None
    if work_from is not None:
        reference = measured_units(work_from_units)[0] if work_from_units is not None else costs
        jobs, calibration = calibrate(jobs, reference, survivors, work_from, scaling)
        calibration["units"] = str(work_from_units) if work_from_units is not None else "this estimate's"
    return Estimate(run=config["run"], machine=info, costs=costs, jobs=jobs,
                    schedules=schedules(config, jobs, cores, scaling),
                    low_schedules=schedules(config, jobs, cores, replace(scaling, beyond_two=LOW_BEYOND_TWO)),
                    scaling=scaling,
                    survivors=survivors, probe_seconds=seconds, calibration=calibration)


# ---------------------------------------------------------------- the report
def hms(seconds: float) -> str:
    """1 h 02 min 45 s, 3 min 05 s, 42 s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min {s % 60:02d} s"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def rule_totals(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Per rule: jobs, core-seconds on one thread, the longest job; the costliest rule first."""
    rules: dict[str, list[Job]] = {}
    for job in jobs:
        rules.setdefault(job.rule, []).append(job)
    rows = [{"rule": rule, "jobs": len(mine), "core_seconds": round(sum(j.work for j in mine), 1),
             "longest_s": round(max(j.work for j in mine), 1),
             "longest": max(mine, key=lambda j: j.work).name} for rule, mine in rules.items()]
    return sorted(rows, key=lambda row: -row["core_seconds"])


def _unit_rows(costs: UnitCosts) -> list[tuple[str, str]]:
    def defense(cost: DefenseCost) -> str:
        return (f"{1e3 * cost.fixed:.3g} + N x {1e3 * cost.per_execution:.3g}" if cost.per_execution
                else f"{1e3 * cost.fixed:.3g}")

    rows = [("job start-up (s)", f"{costs.startup:.3g}"), ("forward, per image (ms)", f"{1e3 * costs.forward:.3g}"),
            ("attack forward+backward, per image (ms)", f"{1e3 * costs.attack_step:.3g}")]
    rows += [(f"training step, {name} (s)", f"{step:.3g}") for name, step in costs.train_step.items()]
    rows += [(f"defense {name}, per point at N executions (ms)", defense(c)) for name, c in costs.defense.items()]
    rows += [(f"defense {name} forward+backward, per point at N executions inside (ms)", defense(c))
             for name, c in costs.defense_grad.items()]
    return rows


def to_json(result: Estimate) -> dict[str, Any]:
    return {
        "run": result.run, "machine": result.machine, "probe_seconds": result.probe_seconds,
        "scaling": asdict(result.scaling), "low_scaling": asdict(replace(result.scaling, beyond_two=LOW_BEYOND_TWO)),
        "survivors": {"source": result.survivors.source, "fraction": result.survivors.fraction,
                      "measured": {"/".join(k): v for k, v in result.survivors.measured.items()},
                      "oblivious": {"/".join(k): v for k, v in result.survivors.oblivious.items()}},
        "units": {name: asdict(costs) for name, costs in result.costs.items()},
        "rules": rule_totals(result.jobs),
        "core_seconds": round(sum(job.work for job in result.jobs), 1),
        "cores": [{"cores": s.cores, "train_threads": max((p.threads for p in s.placements if p.rule == "train"),
                                                          default=None),
                   "wall_s": round(s.wall, 1), "critical_path_s": round(s.critical_seconds, 1),
                   "critical_path": list(s.critical_path), "utilisation": round(s.utilisation, 3),
                   "wall_s_low_scaling": round(low.wall, 1)}
                  for s, low in zip(result.schedules, result.low_schedules)],
        "jobs": [{"name": j.name, "rule": j.rule, "work_s": round(j.work, 2)} for j in result.jobs],
        "calibration": result.calibration,
    }


def render_markdown(result: Estimate, command: str) -> str:
    """The estimate as README-ready Markdown."""
    m = result.machine
    forced = " ".join(f"{k}={v}" for k, v in m["forced_kernels"].items())
    kernels = f"{m['kernels']} kernels" + (f" (forced: `{forced}`)" if forced else "")
    precision = m["train_precision"]
    busy = max(m["load_before"][0], m["load_after"][0]) > (m["cores"] or 1) + 0.5
    load = (f"load average {m['load_before'][0]:.2f} before the probes, {m['load_after'][0]:.2f} after, on "
            f"{m['cores']} cores" + (": other work shared the machine, whose caches and memory bandwidth slow even "
                                     "one process's CPU time; re-measure on a quiet machine" if busy else ""))
    total = sum(job.work for job in result.jobs)
    lines = [f"# Estimate: run `{result.run}` on this machine", "",
             f"Made by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). {m['cpu']}, {kernels}, "
             f"{m['native_bf16']}; training in {'bf16' if precision['bf16'] else 'fp32'} ({precision['reason']}); "
             f"torch {m['torch']}; {load}"
             + (f" (unit costs from `{m['units_from']}`)" if m.get("units_from") else "") + ". The probes took "
             + ", ".join(f"{v:.0f} s" for k, v in result.probe_seconds.items() if not k.endswith(" cpu"))
             + " (CPU time of one thread: the unit costs below).", "",
             "## Wall time at --cores N (simulated)", "",
             f"{len(result.jobs)} jobs, {total:,.0f} core-seconds on one thread. A list scheduler runs the DAG with the "
             "thread policy (train jobs share the cores among the models being trained; every other job 1 thread) "
             f"and train jobs {result.scaling.train_efficiency:g} x T times faster on T threads (T <= 2; "
             + ("linear beyond" if result.scaling.beyond_two is None else f"+{result.scaling.beyond_two:g} per thread beyond")
             + f"); the last column has each train thread beyond 2 adding {LOW_BEYOND_TWO:g} instead.", "",
             "| --cores | threads per train job | wall time | critical path | cores busy | wall, train threads beyond 2 "
             f"at {LOW_BEYOND_TWO:g} |", "|---|---|---|---|---|---|"]
    for s, low in zip(result.schedules, result.low_schedules):
        threads = max((p.threads for p in s.placements if p.rule == "train"), default=0)
        lines.append(f"| {s.cores} | {threads or '-'} | **{hms(s.wall)}** | {hms(s.critical_seconds)} "
                     f"| {s.utilisation:.0%} | {hms(low.wall)} |")
    if result.schedules:
        lines += ["", f"Critical path at {result.schedules[-1].cores} cores: "
                  + " -> ".join(f"`{name}`" for name in result.schedules[-1].critical_path) + "."]
    if result.calibration:
        cal = result.calibration
        lines += ["", f"Work calibrated to the run `{cal['run']}` (`{cal['provenance']}`): each rule's jobs scaled by its "
                  f"measured seconds / the estimate of that run's config from {cal['units']} unit costs: "
                  + ", ".join(f"{rule} {f:.2f}" for rule, f in cal["factors"].items()) + "."]
    lines += ["", "## Core-seconds per rule (one thread)", "", "| rule | jobs | core-seconds | longest job (s) |",
              "|---|---|---|---|"]
    lines += [f"| {r['rule']} | {r['jobs']} | {r['core_seconds']:,.0f} | {r['longest_s']:,.0f} (`{r['longest']}`) |"
              for r in rule_totals(result.jobs)]
    for name, costs in result.costs.items():
        lines += ["", f"## Unit costs measured, data set `{name}` (CPU time, one thread)", "", "| unit | value |",
                  "|---|---|"]
        lines += [f"| {unit} | {value} |" for unit, value in _unit_rows(costs)]
    surv = result.survivors
    lines += ["", "## Assumptions", "",
              f"- Thread scaling: a train job on 2 threads runs {2 * result.scaling.train_efficiency:g}x faster than on one "
              "(measured at 2 threads only: 2.0x on a 2-core AMD EPYC with avx512_bf16, reports/bench/frontier.md; 2.2x "
              "on issue 34's AVX2-only EPYC); beyond 2 threads "
              + ("linear" if result.scaling.beyond_two is None else f"+{result.scaling.beyond_two:g} per thread")
              + f", an assumption (the last column of the wall times: +{LOW_BEYOND_TWO:g} per thread). Other jobs run "
              "on 1 thread under `threads: auto`.",
              "- Robustness evaluation: each run attacks a share of the points: "
              + (f"measured per target in `{surv.source}` (the first run: the oblivious survivors; the later runs: the "
                 f"final worst case; a target it ran no robustness job on: its lowest oblivious accuracy there, every run), "
                 f"{surv.fraction:.0%} of the points for every run where that file has neither"
                 if surv.measured or surv.oblivious else f"{surv.fraction:.0%} of the points for every run (the cascade's cut not "
                                       "counted: an upper bound)") + ".",
              "- Small rules (prepare_data, aggregate, findings, tables, figures, provenance): the start-up plus the "
              "committed run's own work (perf.workmodel.SMALL_RULE_WORK).",
              "- A fresh run (no model, examples or evaluation exists yet), the `all` target only (not the study or "
              "the benchmarks); one machine, its cores not shared with other work, no memory limit.", ""]
    return "\n".join(lines)


def write(result: Estimate, out_dir: str | os.PathLike, command: str) -> str:
    """reports/<run>/estimate.md and estimate.json; returns the Markdown."""
    text = render_markdown(result, command)
    atomic_write_text(Path(out_dir) / "estimate.md", text)
    atomic_write_text(Path(out_dir) / "estimate.json", json.dumps(to_json(result), indent=2) + "\n")
    return text


def _data_paths(entries: Sequence[str], config: Mapping[str, Any]) -> dict[str, str]:
    """--data entries as {data set: path}: DATASET=PATH, or a bare PATH for a run on one data set."""
    used = plan.used_datasets(dict(config))
    paths = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            if len(used) != 1:
                raise ValueError(f"--data {entry}: this run uses the data sets {used}; write DATASET=PATH")
            name, path = used[0], entry
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/config.yaml", help="the preset (default: %(default)s)")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides as snakemake --config takes them, e.g. 'datasets={\"cifar10\": {...}}'")
    parser.add_argument("--set", nargs="*", default=[], metavar="A.B=VALUE", dest="sets",
                        help="nested overrides, values as YAML: speed.train_bf16=false")
    parser.add_argument("--cores", nargs="+", type=int, default=list(DEFAULT_CORES))
    parser.add_argument("--data", nargs="*", default=[], metavar="[DATASET=]PATH",
                        help="prepared data sets (results/<run>/<dataset>/data.pt); default: random images of the "
                             "config's size")
    parser.add_argument("--survivors", default=None, metavar="RESULTS_CSV",
                        help="a finished run's results.csv: the robustness targets' measured survivors")
    parser.add_argument("--survivor-fraction", type=float, default=DEFAULT_SURVIVOR_FRACTION,
                        help="the share of points the robustness runs attack where no results.csv says "
                             "(default: %(default)s)")
    parser.add_argument("--train-efficiency", type=float, default=ThreadScaling.train_efficiency,
                        help="a train job on 2 threads runs 2 x efficiency times faster than on 1 (default: "
                             "%(default)s; linear beyond 2)")
    parser.add_argument("--train-steps", type=int, default=ProbeSettings.train_steps,
                        help="training steps timed per model (default: %(default)s)")
    parser.add_argument("--units", default=None, metavar="ESTIMATE_JSON",
                        help="take the unit costs of an earlier estimate.json instead of measuring")
    parser.add_argument("--work-from", default=None, metavar="PROVENANCE_YAML",
                        help="scale each rule's work to a finished run's measured seconds (its provenance.yaml)")
    parser.add_argument("--work-from-units", default=None, metavar="ESTIMATE_JSON",
                        help="with --work-from: compute its factors from these unit costs (measured beside this "
                             "estimate's, e.g. with native kernels), so this estimate's work is the run's x this / those")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<run>)")
    args = parser.parse_args(argv)
    config = load_config(args.configfile, args.config, args.sets)
    survivors = (Survivors.from_results(args.survivors, args.survivor_fraction) if args.survivors
                 else Survivors(fraction=args.survivor_fraction))
    result = estimate(config, args.cores, data=_data_paths(args.data, config), survivors=survivors,
                      scaling=ThreadScaling(train_efficiency=args.train_efficiency),
                      settings=ProbeSettings(train_steps=args.train_steps), units=args.units,
                      work_from=args.work_from, work_from_units=args.work_from_units)
    command = "python -m mixup_inference.perf.estimate " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(write(result, args.out or f"reports/{config['run']}", command))


if __name__ == "__main__":
    main()
