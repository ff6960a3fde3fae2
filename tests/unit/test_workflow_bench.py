"""The workflow-level benchmark (workflow_bench.py): overhead = a job's wall time minus the work it
logs, per rule, and the jobs per preset from the study plan."""

from pathlib import Path

import yaml

from mixup_inference.perf.workflow_bench import job_overheads, preset_jobs, rule_overheads, write_report
from workflow_helpers import SMOKE_JOBS

CONFIG = Path(__file__).resolve().parents[2] / "config"


def write_job(root: Path, rel: str, wall: float, finished: list[float]) -> None:
    log = root / "logs" / f"{rel}.log"
    tsv = root / "benchmarks" / f"{rel}.tsv"
    log.parent.mkdir(parents=True, exist_ok=True)
    tsv.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"# job started ...\nwork\n# job finished in {s:.1f} s\n" for s in finished))
    tsv.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:{int(wall):02d}\t100\t{wall / 2}\n")


def test_overhead_is_wall_minus_logged_work_per_rule(tmp_path):
    write_job(tmp_path, "synth/erm/train", 30.0, [25.0])
    write_job(tmp_path, "synth/erm/eval/pgd5", 6.0, [9.9, 2.0])  # rerun: the log's last job counts
    write_job(tmp_path, "synth/mixup/eval/pgd5", 5.0, [1.0])
    write_job(tmp_path, "aggregate", 4.0, [3.5])
    (tmp_path / "benchmarks" / "orphan.tsv").write_text("s\n1.0\n")  # no log: left out
    rows = job_overheads(tmp_path / "logs", tmp_path / "benchmarks")
    by_job = {r["job"]: r for r in rows}
    assert set(by_job) == {"synth/erm/train", "synth/erm/eval/pgd5", "synth/mixup/eval/pgd5", "aggregate"}
    assert by_job["synth/erm/eval/pgd5"]["overhead_s"] == 4.0
    assert {r["job"]: r["rule"] for r in rows}["synth/mixup/eval/pgd5"] == "evaluate"
    per_rule = {r["rule"]: r for r in rule_overheads(rows)}
    assert per_rule["evaluate"]["jobs"] == 2 and per_rule["evaluate"]["overhead_s"] == 8.0
    assert per_rule["evaluate"]["median_overhead_per_job_s"] == 4.0
    assert per_rule["evaluate"]["cpu_s"] == 5.5
    assert per_rule["train"]["overhead_share"] == round(5 / 30, 3)
    text = write_report(tmp_path / "out.md", run="t", rows=rows, elapsed_s=40.0, cores=2, load_average=(1, 1, 1),
                        presets={"config": preset_jobs(yaml.safe_load((CONFIG / "config.yaml").read_text()))},
                        default_core_seconds=10_000.0)
    assert "| evaluate | 2 |" in text and "target <= 5%" in text and (tmp_path / "out.md").read_text() == text


def test_smoke_jobs_per_rule_match_the_dry_run_count():
    """test_workflow.py counts the smoke preset's dry run by hand; the plan agrees."""
    jobs = preset_jobs(yaml.safe_load((CONFIG / "smoke.yaml").read_text()))
    assert {rule: n for rule, n in jobs.items() if n} == {rule: n for rule, n in SMOKE_JOBS.items() if rule != "all"}
