"""A list scheduler over a workflow's job DAG: the wall time of a run at ``--cores`` N from each job's
work, the way Snakemake runs it locally.

Each job has its work in CPU seconds of one thread, its inputs (the jobs it waits for), its rule's
priority (train 2, attack 1, the rest 0: workflow/rules/) and its thread count (the thread policy of
jobs.threads, lowered to N as Snakemake does). Whenever a job ends, the jobs whose inputs are all done
start in priority order (then in the order they were listed) while enough cores are free; a job that
needs more cores than are free waits, and smaller ready jobs may start past it (Snakemake's greedy
fill). A job on T threads takes work / speed-up(T) seconds (:class:`ThreadScaling`).

The critical path is the longest chain of jobs by their durations at N: no schedule on any number of
cores ends before it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Job", "Placement", "Schedule", "ThreadScaling", "critical_path", "simulate"]


@dataclass(frozen=True)
class Job:
    """One job of the DAG.

    Attributes:
        name: unique, e.g. ``train cifar10/mixup``.  rule: its Snakemake rule.
        work: CPU seconds on one thread.  inputs: the names of the jobs it waits for.
        priority: its rule's ``priority:`` (higher starts first).
        scaling: "train" (a train job: its threads follow the train policy and scale as
            ThreadScaling.train_efficiency says) or "other".
    """

    name: str
    rule: str
    work: float
    inputs: tuple[str, ...] = ()
    priority: int = 0
    scaling: str = "other"


@dataclass(frozen=True)
class ThreadScaling:
    """How much faster a job runs on T threads than on one.

    A train job: T x `train_efficiency` up to 2 threads, then each thread beyond 2 adds `beyond_two`
    (default: `train_efficiency`, a linear speed-up). Any other job given T > 1 threads (only a forced
    ``resources.threads`` does that): T x `other_efficiency`.

    Attributes:
        train_efficiency: 1.0 by default: 2 threads trained 2.0x faster than 1 on this project's 2-core
            AMD EPYC with avx512_bf16 (reports/bench/frontier.md: 10 epochs alone on 2 threads in 188 s
            (ERM) and 201 s (mixup) of wall time, against 37 and 41 s per epoch on 1 thread in the
            committed run); 2.2x (1.1) on issue 34's AVX2-only EPYC (a bare train step).
        beyond_two: what each thread beyond 2 adds to a train job's speed-up; nothing was measured there,
            so None keeps the speed-up linear (an assumption; the report shows 0.5 beside it).
        other_efficiency: 0.5, unmeasured; their batches are small and their attack steps sequential.
    """

    train_efficiency: float = 1.0
    beyond_two: float | None = None
    other_efficiency: float = 0.5

    def speedup(self, job: Job, threads: int) -> float:
        if threads <= 1:
            return 1.0
        if job.scaling != "train":
            return threads * self.other_efficiency
        beyond = self.train_efficiency if self.beyond_two is None else self.beyond_two
        return min(threads, 2) * self.train_efficiency + max(threads - 2, 0) * beyond


@dataclass(frozen=True)
class Placement:
    """Where one job ran in the simulated schedule (seconds from the start)."""

    job: str
    rule: str
    threads: int
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    """The simulated run at `cores` cores: every job's placement, the wall time, and the critical path
    (its jobs in order and their summed durations)."""

    cores: int
    placements: tuple[Placement, ...]
    wall: float
    critical_path: tuple[str, ...]
    critical_seconds: float

    @property
    def utilisation(self) -> float:
        """Core-seconds the jobs held / (cores x wall time)."""
        held = sum((p.end - p.start) * p.threads for p in self.placements)
        return held / (self.cores * self.wall) if self.wall else 0.0


def _check(jobs: Sequence[Job]) -> dict[str, int]:
    index = {job.name: i for i, job in enumerate(jobs)}
    if len(index) != len(jobs):
        raise ValueError("job names must be unique")
    for job in jobs:
        missing = [name for name in job.inputs if name not in index]
        if missing:
            raise ValueError(f"job {job.name!r} waits for jobs that are not in the DAG: {missing}")
        if job.work < 0:
            raise ValueError(f"job {job.name!r} has negative work {job.work}")
    return index


def critical_path(jobs: Sequence[Job], duration: Callable[[Job], float]) -> tuple[tuple[str, ...], float]:
    """The longest chain of jobs by `duration` (names in order, total seconds). ValueError on a cycle."""
    index = _check(jobs)
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    state: dict[str, int] = {}

    def visit(name: str) -> float:  # recursion as deep as the longest chain (a workflow's: ~8 jobs)
        if state.get(name) == 1:
            raise ValueError(f"the DAG has a cycle through {name!r}")
        if name in finish:
            return finish[name]
        state[name] = 1
        job = jobs[index[name]]
        best, prev = 0.0, None
        for dep in job.inputs:
            if visit(dep) > best:
                best, prev = finish[dep], dep
        state[name] = 2
        finish[name], before[name] = best + duration(job), prev
        return finish[name]

    for job in jobs:
        visit(job.name)
    if not finish:
        return (), 0.0
    last = max(finish, key=finish.get)
    chain = [last]
    while before[chain[-1]] is not None:
        chain.append(before[chain[-1]])
    return tuple(reversed(chain)), finish[last]


def simulate(jobs: Sequence[Job], cores: int, threads: Callable[[Job], int],
             scaling: ThreadScaling = ThreadScaling()) -> Schedule:
    """The run of `jobs` on `cores` cores, each job on ``min(threads(job), cores)`` threads (Snakemake
    lowers a rule's threads to --cores) for ``work / scaling.speedup`` seconds."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1 (got {cores})")
    index = _check(jobs)
    given = {job.name: max(1, min(int(threads(job)), cores)) for job in jobs}

    def duration(job: Job) -> float:
        return job.work / scaling.speedup(job, given[job.name])

    waiting = {job.name: len(set(job.inputs)) for job in jobs}
    users: dict[str, list[str]] = {job.name: [] for job in jobs}
    for job in jobs:
        for dep in set(job.inputs):
            users[dep].append(job.name)
    ready = [(-job.priority, index[job.name]) for job in jobs if waiting[job.name] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []  # (end, job index)
    placements: list[Placement] = []
    free, now = cores, 0.0
    while ready or running:
        skipped = []
        while ready and free > 0:  # start what fits, in priority order; a job too wide waits
            key = heapq.heappop(ready)
            job = jobs[key[1]]
            if given[job.name] > free:
                skipped.append(key)
                continue
            free -= given[job.name]
            end = now + duration(job)
            placements.append(Placement(job.name, job.rule, given[job.name], now, end))
            heapq.heappush(running, (end, key[1]))
        for key in skipped:
            heapq.heappush(ready, key)
        if not running:
            raise ValueError("jobs are left that can never start (a cycle in the DAG)")
        now, done = heapq.heappop(running)
        finished = [done]
        while running and running[0][0] <= now:  # every job that ends at this instant frees its cores
            finished.append(heapq.heappop(running)[1])
        for i in finished:
            free += given[jobs[i].name]
            for user in users[jobs[i].name]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, (-jobs[index[user]].priority, index[user]))
    if len(placements) != len(jobs):
        raise ValueError("jobs are left that can never start (a cycle in the DAG)")
    chain, seconds = critical_path(jobs, duration)
    return Schedule(cores=cores, placements=tuple(placements), wall=max((p.end for p in placements), default=0.0),
                    critical_path=chain, critical_seconds=seconds)
