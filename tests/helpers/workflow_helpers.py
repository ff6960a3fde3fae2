"""Run the real Snakemake workflow in a temporary copy of the repository's workflow files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def snakemake_bin() -> str:
    """The snakemake of the Python running the tests (the project's environment)."""
    candidate = Path(sys.executable).with_name("snakemake")
    return str(candidate) if candidate.exists() else "snakemake"


def workdir_copy(dest: Path) -> Path:
    """Copy what a user clones (Snakefile, workflow/, config/, profiles/) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    for name in ("workflow", "config", "profiles"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name, dirs_exist_ok=True)
    return dest


def clone_copy(dest: Path) -> Path:
    """A git clone of the project as a user has it: what workdir_copy copies plus the library (src/)
    and packaging files, committed in a fresh repository (the working tree's state, not HEAD's)."""
    workdir_copy(dest)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "LICENSE", "README.md", ".snakemake-workflow-catalog.yml"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def deploy_module(clone: Path, dest: Path, prefix: str | None = None) -> Path:
    """What `snakedeploy deploy-workflow <clone> <dest>` makes, with the clone's path in place of
    github(...): config/ and profiles/ copied, and workflow/Snakefile using the clone's
    workflow/Snakefile as a module (`use rule * from mixup_inference`, `as <prefix>*` with a prefix)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config", "profiles"):
        shutil.copytree(clone / name, dest / name)
    (dest / "workflow").mkdir()
    (dest / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        "module mixup_inference:\n"
        f'    snakefile:\n        "{clone / "workflow" / "Snakefile"}"\n'
        "    config:\n        config\n\n\n"
        f"use rule * from mixup_inference{f' as {prefix}*' if prefix else ''}\n")
    return dest


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of every file and folder below `root`, .git included: equal before and
    after a run when the run wrote nothing there."""
    return {str(path.relative_to(root)): (path.lstat().st_mtime_ns, path.lstat().st_size)
            for path in [root, *root.rglob("*")]}


def write_config(workdir: Path, preset: str, name: str, **changes) -> Path:
    """A copy of config/<preset>.yaml with top-level keys replaced, as config/<name>.yaml."""
    config = yaml.safe_load((workdir / "config" / f"{preset}.yaml").read_text())
    config.update(changes)
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, timeout: float = 900, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; on failure show its output (and the newest job logs)."""
    proc = subprocess.run([snakemake_bin(), *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        logs = sorted((workdir / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:] \
            if (workdir / "logs").exists() else []
        tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs)
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}\n{tails}")
    return proc


def dry_run_jobs(workdir: Path, *args: str) -> Counter:
    """Jobs per rule that a dry run would execute (parsed from Snakemake's 'Job stats' table)."""
    proc = snakemake(workdir, "--dry-run", "--cores", "1", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return Counter()
    stats = text.split("Job stats:", 1)[1]
    counts = Counter()
    for line in stats.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not match:
            if counts:
                break
            continue
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run_wildcards(workdir: Path, rule: str, *args: str) -> list[str]:
    """The `wildcards:` lines of every job of `rule` in a dry run."""
    proc = snakemake(workdir, "--dry-run", "--cores", "1", *args)
    jobs, current = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        stripped = line.strip()
        if stripped.startswith("rule ") or stripped.startswith("localrule "):
            current = stripped.split()[1].rstrip(":")
        elif stripped.startswith("wildcards:") and current == rule:
            jobs.append(stripped.removeprefix("wildcards:").strip())
    return jobs


def dry_run_threads(workdir: Path, cores: int, *args: str) -> dict[str, list[int]]:
    """rule -> the threads of each of its jobs in a dry run at `--cores cores` (Snakemake prints a
    job's `threads:` only when it is above 1)."""
    proc = snakemake(workdir, "--dry-run", "--cores", str(cores), *args)
    threads: dict[str, list[int]] = {}
    current = None
    for line in (proc.stdout + proc.stderr).splitlines():
        stripped = line.strip()
        if re.match(r"^(local)?rule \w+:$", stripped):
            current = stripped.split()[1].rstrip(":")
            threads.setdefault(current, []).append(1)
        elif stripped.startswith("threads:") and current:
            threads[current][-1] = int(stripped.split()[1])
    return threads


#: Jobs per rule of the smoke preset (config/smoke.yaml).
SMOKE_JOBS = {
    "prepare_data": 1, "train": 4, "attack": 12, "evaluate": 12, "adaptive": 4, "robust": 5,
    "aggregate": 1, "findings": 1, "tables": 1, "figures": 1, "provenance": 1, "all": 1,
}
