"""profiles/slurm proven on a real one-node SLURM cluster (tests/slurm_cluster.py starts it).

Select with `pytest -m slurm`. Needs root (installs slurm-wlm/munge if missing, starts munged,
slurmctld, slurmd); skipped only when not root outside CI, never in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slurm_cluster import (SlurmCluster, profile_flags, skip_unless_cluster_possible,
                           slurm_cluster_or_skip)
from workflow_helpers import clone_copy, deploy_module, dry_run_jobs, workdir_copy

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"
PARTITION = "debug"

# A toy workflow shaped like the real one: `train` declares a GPU like the workflow's GPU rules
# (the test turns it off: this cluster's single GPU is fake), `attack` gets its GPU only from
# the profile's set-resources, `make` gets everything from the profile's default-resources,
# `gather` is a localrule. Every rule records where it ran.
TOY_SNAKEFILE = textwrap.dedent("""
    localrules: gather

    RECORD = (
        "echo SLURM_JOB_ID=${{SLURM_JOB_ID:-none}} > {output}; "
        "echo SLURM_JOB_PARTITION=${{SLURM_JOB_PARTITION:-none}} >> {output}; "
        "echo SLURM_GPUS_ON_NODE=${{SLURM_GPUS_ON_NODE:-none}} >> {output}; "
        "echo HOST=$(hostname) >> {output}"
    )

    rule all:
        input: "gather.txt"

    rule make:
        output: "make_{i}.txt"
        shell: RECORD

    rule train:
        input: expand("make_{i}.txt", i=[1, 2])
        output: "train.txt"
        threads: 1
        resources: mem_mb=500, runtime=5, cpus_per_task=1, gpu=1
        shell: RECORD

    rule attack:
        input: "train.txt"
        output: "attack.txt"
        threads: 2
        resources: mem_mb=300
        shell: RECORD

    rule gather:
        input: "attack.txt"
        output: "gather.txt"
        shell: RECORD
""")

# What the plugin must have asked SLURM for, per rule (scontrol show job fields).
EXPECTED = {
    # profile default-resources: runtime 60 min, mem_mb 2000, cpus_per_task = threads (1)
    "make_1": {"Comment": "rule_make_wildcards_1", "TimeLimit": "01:00:00",
               "MinMemoryNode": "2000M", "CPUs/Task": "1", "gpu": False},
    "make_2": {"Comment": "rule_make_wildcards_2", "TimeLimit": "01:00:00",
               "MinMemoryNode": "2000M", "CPUs/Task": "1", "gpu": False},
    # rule resources; gpu=1 of the rule and of the profile overridden to 0 for this cluster
    "train": {"Comment": "rule_train", "TimeLimit": "00:05:00", "MinMemoryNode": "500M",
              "CPUs/Task": "1", "gpu": False},
    # profile set-resources attack: gpu=1 -> --gpus=1; cpus_per_task = threads (2)
    "attack": {"Comment": "rule_attack", "TimeLimit": "01:00:00", "MinMemoryNode": "300M",
               "CPUs/Task": "2", "gpu": True},
}


def snakemake_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def read_record(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split())


@pytest.fixture(scope="module")
def cluster():
    # One fake GPU, so the profile's `gpu: 1` requests (--gpus=1) are scheduled for real.
    # slurmctld keeps finished jobs for MinJobAge seconds; the smoke run takes several minutes
    # and its jobs are checked (scontrol show job) only at its end, so keep them for an hour.
    cluster = slurm_cluster_or_skip(partition=PARTITION, gpus=1, min_job_age=3600)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_toy_workflow_runs_through_the_slurm_profile(cluster, tmp_path, record_property):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    cmd = [
        *snakemake_cmd(),
        "--profile", str(PROFILE),
        "--workflow-profile", "none",
        # This cluster has no accounting database: sacct cannot see jobs (see the profile).
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--slurm-keep-successful-logs",
        # The profile's blocks plus this cluster's partition / GPU-less train (merged, since
        # a command-line block replaces the profile's whole block).
        *profile_flags(PROFILE, default_resources={"slurm_partition": PARTITION},
                       set_resources={"train": {"gpu": 0}}),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=cluster.env, capture_output=True,
                              text=True, timeout=240, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"snakemake did not finish in 240 s:\n{(exc.stderr or b'')[-4000:]!r}\n"
                    f"{cluster.run('squeue', '--states=all', check=False).stdout}\n"
                    f"{cluster.logs()}")
    seconds = time.monotonic() - started
    record_property("toy_workflow_seconds", round(seconds, 1))
    print(f"toy workflow through SLURM: {seconds:.1f} s (cluster up in "
          f"{cluster.startup_seconds:.1f} s)")
    log = proc.stdout + proc.stderr
    slurm_logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}"
                           for p in sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")))
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{log[-6000:]}\n{slurm_logs}\n{cluster.logs()}"

    # The localrule ran here, outside SLURM.
    assert read_record(tmp_path / "gather.txt")["SLURM_JOB_ID"] == "none"

    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    job_ids = set()
    for name, expected in EXPECTED.items():
        record = read_record(tmp_path / f"{name}.txt")
        job_id = record["SLURM_JOB_ID"]
        assert job_id.isdigit(), (name, record)
        job_ids.add(job_id)
        assert record["SLURM_JOB_PARTITION"] == PARTITION, (name, record)
        info = cluster.job_info(job_id)  # raises unless slurmctld knows the job
        assert info["JobState"] == "COMPLETED", (name, info)
        # The plugin names every job of a run after the run's UUID and puts the rule (and
        # wildcards) into the comment; squeue --name <run id> is how it finds them.
        assert info["JobName"] == run_id, (name, info)
        assert info["Partition"] == PARTITION, (name, info)
        for key in ("Comment", "TimeLimit", "MinMemoryNode", "CPUs/Task"):
            assert info[key] == expected[key], (name, key, info)
        gpus = info.get("TresPerJob", "")
        if expected["gpu"]:
            assert gpus == "gres:gpu:1", (name, info)
            assert record["SLURM_GPUS_ON_NODE"] == "1", (name, record)
        else:
            assert "gpu" not in gpus, (name, info)
        # The plugin's SLURM log of the job (kept by --slurm-keep-successful-logs).
        rule, _, wildcards = expected["Comment"].removeprefix("rule_").partition("_wildcards_")
        log_dir = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}"
        assert (log_dir / wildcards / f"{job_id}.log").exists(), sorted(log_dir.rglob("*"))
    assert len(job_ids) == len(EXPECTED)


def test_teardown_cancels_jobs_and_stops_every_process(tmp_path):
    skip_unless_cluster_possible()
    with SlurmCluster(partition="teardown") as cluster:
        job_id = cluster.run("sbatch", "--parsable", "-o", str(tmp_path / "%j.out"),
                             "--wrap", "sleep 600").stdout.strip()
        deadline = time.monotonic() + 30
        while cluster.job_info(job_id)["JobState"] != "RUNNING":
            assert time.monotonic() < deadline, cluster.job_info(job_id)
            time.sleep(0.5)
        daemons = {name: proc.pid for name, proc in cluster._procs.items()}
        marker = f"SLURM_CONF={cluster.conf}".encode()
        workdir = cluster.dir
    for name, pid in daemons.items():
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z", name
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in entry.joinpath("environ").read_bytes().split(b"\0"):
                    leftovers.append(entry.name)
            except OSError:
                pass
    assert not leftovers, leftovers
    assert not workdir.exists()


# Rules the workflow runs where Snakemake runs (workflow/rules/*.smk `localrule: True`); every other
# rule must run as a SLURM job.
LOCAL_RULES = {"prepare_data", "aggregate", "findings", "tables", "figures", "provenance"}
GPU_RULES = ("train", "import_model", "attack", "evaluate", "adaptive", "robust", "bench")  # rules with **GPU_RESOURCES


def job_ids_in_logs(logs: Path) -> dict[Path, str]:
    """The SLURM_JOB_ID each job log's header records (job_log writes it; 'none' outside SLURM)."""
    ids = {}
    for log in sorted(logs.rglob("*.log")):
        match = re.search(r"SLURM_JOB_ID=(\S+)", log.read_text().split("\n", 1)[0])
        assert match, f"{log} has no job_log header:\n{log.read_text()[:500]}"
        ids[log.relative_to(logs)] = match.group(1)
    return ids


def rule_of(log: Path) -> str:
    """The rule a job log (relative to logs/<run>/) belongs to: the log paths of workflow/rules/*.smk."""
    if len(log.parts) == 1:
        return log.stem  # aggregate.log, figures.log, provenance.log
    if log.parts[0] == "tables":
        return "tables"
    if log.name in ("prepare_data.log", "train.log"):
        return log.stem
    return {"attack": "attack", "eval": "evaluate", "adaptive": "adaptive", "robust": "robust"}[log.parts[2]]


def test_smoke_preset_through_the_slurm_profile_matches_the_local_run(cluster, smoke_run, tmp_path_factory,
                                                                      record_property):
    """The real workflow (smoke preset) submitted through profiles/slurm: every non-local job is a
    SLURM job of this cluster, and results.csv is byte-identical to the local run's (same seed)."""
    workdir = workdir_copy(tmp_path_factory.mktemp("smoke_slurm"))
    cmd = [
        *snakemake_cmd(), "--configfile", "config/smoke.yaml",
        "--profile", str(PROFILE), "--workflow-profile", "none",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        # This machine's cluster: its partition, and no GPU requests (its one GPU is fake).
        *profile_flags(PROFILE, default_resources={"slurm_partition": PARTITION},
                       set_resources={rule: {"gpu": 0} for rule in GPU_RULES}),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=cluster.env, capture_output=True, text=True,
                              timeout=1800, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the smoke run through SLURM did not finish in 30 min:\n{(exc.stderr or b'')[-4000:]!r}\n"
                    f"{cluster.run('squeue', '--states=all', check=False).stdout}\n{cluster.logs()}")
    seconds = time.monotonic() - started
    record_property("smoke_slurm_seconds", round(seconds, 1))
    record_property("smoke_local_seconds", round(smoke_run.seconds, 1))
    print(f"smoke preset: {seconds:.1f} s through SLURM, {smoke_run.seconds:.1f} s locally (--cores 2)")
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-6000:]}\n{cluster.logs()}"

    ids = job_ids_in_logs(workdir / "logs" / "smoke")
    by_rule: dict[str, set[str]] = {}
    for log, job_id in ids.items():
        rule = rule_of(log)
        if rule in LOCAL_RULES:
            assert job_id == "none", f"local rule {rule} ran as SLURM job {job_id} ({log})"
            continue
        assert job_id.isdigit(), f"{log} (rule {rule}) did not run as a SLURM job: SLURM_JOB_ID={job_id}"
        assert cluster.job_info(job_id)["JobState"] == "COMPLETED", (log, cluster.job_info(job_id))
        by_rule.setdefault(rule, set()).add(job_id)
    assert set(by_rule) == {"train", "attack", "evaluate", "adaptive", "robust"}, sorted(by_rule)
    all_ids = [job_id for ids_ in by_rule.values() for job_id in ids_]
    assert len(all_ids) == len(set(all_ids))  # one SLURM job per Snakemake job
    # what a dry run of the same preset plans, minus local rules and `all`
    planned = dry_run_jobs(workdir, "--configfile", "config/smoke.yaml", "--forceall")
    assert {rule: len(job_ids) for rule, job_ids in by_rule.items()} == \
        {rule: n for rule, n in planned.items() if rule not in LOCAL_RULES | {"all"}}

    local = (smoke_run.reports / "results.csv").read_bytes()
    assert (workdir / "reports" / "smoke" / "results.csv").read_bytes() == local


def test_deployed_module_trains_through_its_copy_of_the_slurm_profile(cluster, tmp_path):
    """A deployment into a user's project (tests/workflow/test_deploy.py's layout, rules renamed mi_*) run
    through the profile the deployment copied: one smoke model trained as a SLURM job (the job's
    Snakemake finds the clone's library again), its data prepared here (a local rule stays local
    under the prefix)."""
    clone = clone_copy(tmp_path / "clone")
    project = deploy_module(clone, tmp_path / "project", prefix="mi_")
    shutil.copy2(project / "config" / "smoke.yaml", project / "config" / "config.yaml")
    profile = project / "profiles" / "slurm"
    cmd = [
        # the target first: --set-resources takes every argument after it
        *snakemake_cmd(), "results/smoke/synth/erm/model.pt", "--profile", str(profile), "--workflow-profile", "none",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        *profile_flags(profile, default_resources={"slurm_partition": PARTITION},
                       set_resources={f"mi_{rule}": {"gpu": 0} for rule in GPU_RULES}),
    ]
    proc = subprocess.run(cmd, cwd=project, env=cluster.env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-6000:]}\n{cluster.logs()}"
    ids = job_ids_in_logs(project / "logs" / "smoke")
    assert set(ids) == {Path("synth/prepare_data.log"), Path("synth/erm/train.log")}, ids
    assert ids[Path("synth/prepare_data.log")] == "none"
    train = ids[Path("synth/erm/train.log")]
    assert train.isdigit() and cluster.job_info(train)["JobState"] == "COMPLETED", train
    assert cluster.job_info(train)["Comment"].startswith("rule_mi_train"), cluster.job_info(train)
