"""A real one-node SLURM cluster on this machine, for tests.

    with SlurmCluster() as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)
        subprocess.run(["snakemake", "--executor", "slurm", ...], env=cluster.env)

or, in pytest, the `slurm_cluster_or_skip` helper (see the bottom of this file).

What it does (as root; nothing of it is needed on a real cluster):
- installs Debian's `slurm-wlm` and `munge` with apt-get when the daemons are missing;
- reuses a munged that already answers (`munge -n | unmunge`), else creates the key if
  missing and starts its own munged (as the munge user, in the foreground);
- writes a minimal slurm.conf into a fresh short temporary directory (node = this host with
  the CPUs/memory that `slurmd -C` reports, one default partition, free TCP ports on
  127.0.0.1, no accounting, state/spool/logs/pids in the temporary directory);
- starts `slurmctld -D` and `slurmd -D -N <host>` with SLURM_CONF pointing to that file and
  waits until `sinfo` shows the node idle (else raises with the tail of both logs);
- on exit (normal, exception, failed test) cancels leftover jobs, stops exactly the daemons
  it started (by pid: SIGTERM, wait, SIGKILL), kills any process still carrying its
  SLURM_CONF (job steps and their children, found through /proc/<pid>/environ), stops the
  munged it started and removes the temporary directory.

`cluster.env` is the environment every SLURM client (sbatch, squeue, snakemake) must run with:
SLURM_CONF, plus a PATH that starts with an `srun` wrapper (see `_srun_wrapper`). The cluster
has no accounting database: Snakemake's SLURM plugin must be told
`--slurm-status-command squeue` (its default, sacct, fails there, and the run then waits
forever). `profile_flags` adds resources to a profile's blocks without replacing them.
`python tests/helpers/slurm_cluster.py [--gpus N]` keeps a cluster up for trying things by hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sinfo", "squeue", "sbatch", "srun", "scancel", "scontrol", "munge", "unmunge")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")


class SlurmClusterError(RuntimeError):
    """The cluster could not be brought up; the message says why."""


def which(name: str) -> str | None:
    """`shutil.which` that also looks in the sbin directories (daemons live there)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if which(name) is None]


def is_root() -> bool:
    return os.geteuid() == 0


def install_slurm(timeout: float = 900) -> None:
    """apt-get install Debian's slurm-wlm and munge (root only; non-interactive)."""
    if not missing_binaries():
        return
    if not is_root():
        raise SlurmClusterError(
            f"SLURM/munge binaries missing ({', '.join(missing_binaries())}) and not root: "
            "install them with `apt-get install slurm-wlm munge`")
    if which("apt-get") is None:
        raise SlurmClusterError("SLURM/munge missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                 "slurm-wlm", "munge"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise SlurmClusterError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                    f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    still = missing_binaries()
    if still:
        raise SlurmClusterError(f"after apt-get install still missing: {', '.join(still)}")


def munge_answers() -> bool:
    """True when a munged answers on the default socket (`munge -n | unmunge`)."""
    try:
        cred = subprocess.run([which("munge") or "munge", "-n"], capture_output=True,
                              timeout=10, stdin=subprocess.DEVNULL)
        if cred.returncode != 0:
            return False
        check = subprocess.run([which("unmunge") or "unmunge"], input=cred.stdout,
                               capture_output=True, timeout=10)
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _set_pdeathsig() -> None:
    """In the child before exec: get SIGTERM when the process that started us dies.

    So daemons do not outlive a test process killed with SIGKILL (no __exit__ then)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return text[-chars:] if text else "(empty)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL: exactly this process (by pid)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


class SlurmCluster:
    """A one-node SLURM cluster on this machine (context manager; see the module docstring).

    partition: name of the single (default) partition.
    min_job_age: slurm.conf MinJobAge in seconds. `squeue` forgets a finished job that long
        after it ended, and Snakemake's SLURM plugin, when it does not find a submitted job in
        `squeue` output, keeps waiting for it forever (it only acts on states it sees). The
        plugin polls at most every 180 s and itself falls back to sacct when MinJobAge is
        below 3x --slurm-init-seconds-before-status-checks, so keep this well above 180.
    gpus: if > 0, the node advertises this many fake GPUs as GRES gpu (empty files in the
        temporary directory), so jobs asking `--gpus=N` are scheduled as on a GPU cluster
        (SLURM_GPUS_ON_NODE is set in the job). No job gets a real device: this tests the
        submission path only.
    """

    def __init__(self, partition: str = "debug", cluster_name: str = "smktest",
                 min_job_age: int = 600, gpus: int = 0, start_timeout: float = 60.0,
                 install: bool = True):
        self.partition = partition
        self.cluster_name = cluster_name
        self.min_job_age = int(min_job_age)
        self.gpus = int(gpus)
        self.start_timeout = start_timeout
        self.install = install
        self.node = socket.gethostname().split(".")[0]
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.env: dict[str, str] = {}
        self.node_config: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.munged_started = False
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- public API
    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def run(self, *cmd: str, check: bool = True, timeout: float = 30,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster; returns the CompletedProcess."""
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
        if check and proc.returncode != 0:
            raise SlurmClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                                    f"{proc.stdout}{proc.stderr}")
        return proc

    def job_info(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job -o <id>` as a dict (JobState, JobName, Comment, TRES, ...).

        Known for MinJobAge seconds after the job ended; raises if SLURM does not know it."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout.strip()
        info = {}
        for token in out.split():
            key, sep, value = token.partition("=")
            if sep:
                info[key] = value
        if info.get("JobId") != str(job_id):
            raise SlurmClusterError(f"SLURM does not know job {job_id}: {out!r}")
        return info

    def job_ids(self) -> list[str]:
        """Ids of jobs slurmctld still holds (any state)."""
        out = self.run("squeue", "-h", "--states=all", "-o", "%i", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def logs(self, chars: int = 3000) -> str:
        """The tail of both daemons' logs (for error messages)."""
        if self.dir is None:
            return "(no cluster directory)"
        parts = []
        for name in ("slurmctld", "slurmd"):
            for suffix in (".log", ".out"):
                path = self.dir / f"{name}{suffix}"
                if path.exists():
                    parts.append(f"--- {path.name}\n{_tail(path, chars)}")
        return "\n".join(parts)

    # ----------------------------------------------------------------- start
    def start(self) -> None:
        started = time.monotonic()
        if self.install:
            install_slurm()
        elif missing_binaries():
            raise SlurmClusterError(f"missing: {', '.join(missing_binaries())}")
        if not is_root():
            raise SlurmClusterError("a local SLURM cluster needs root (SlurmUser=root)")
        # Short path: slurmstepd puts unix sockets (<= 108 bytes) into SlurmdSpoolDir.
        self.dir = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        self.dir.chmod(0o755)
        self._ensure_munge()
        self.node_config = self._node_config()
        self.conf = self._write_conf()
        # Nothing of an outer SLURM (a test run inside a job, a user's SBATCH_* defaults).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_"))}
        self.env["SLURM_CONF"] = str(self.conf)
        self.env["PATH"] = f"{self._srun_wrapper()}:{self.env.get('PATH', '')}:{SBIN_PATH}"
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0,
                   "slurmctld to answer `scontrol ping`")
        self._spawn("slurmd", [which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(self._node_idle, f"node {self.node} to be idle in sinfo")
        self.startup_seconds = time.monotonic() - started

    def _spawn(self, name: str, cmd: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.dir / f"{name}.out", "ab")  # noqa: SIM115 (closed in stop())
        self._logs.append(log)
        env = kwargs.pop("env", self.env)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=_set_pdeathsig,
                                **kwargs)
        self._procs[name] = proc
        return proc

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmClusterError(f"{name} exited ({proc.returncode}) while waiting for "
                                            f"{what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        detail = ""
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            detail = self.run("scontrol", "show", "node", self.node, check=False).stdout
        raise SlurmClusterError(f"timed out after {self.start_timeout:.0f} s waiting for {what}\n"
                                f"{detail}\n{self.logs()}")

    def _node_idle(self) -> bool:
        proc = self.run("sinfo", "-h", "-N", "-n", self.node, "-p", self.partition,
                        "-o", "%T", check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "idle"

    # ----------------------------------------------------------------- munge
    def _ensure_munge(self) -> None:
        if munge_answers():
            return
        import grp
        import pwd
        try:
            uid, gid = pwd.getpwnam("munge").pw_uid, grp.getgrnam("munge").gr_gid
        except KeyError as exc:
            raise SlurmClusterError("no `munge` user/group (is the munge package installed?)") from exc
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(MUNGE_KEY.parent, uid, gid)
            mungekey = which("mungekey")
            if mungekey:
                subprocess.run([mungekey, "--create", f"--keyfile={MUNGE_KEY}"], check=True,
                               capture_output=True, timeout=30)
            else:
                MUNGE_KEY.write_bytes(os.urandom(1024))
            os.chown(MUNGE_KEY, uid, gid)
            MUNGE_KEY.chmod(0o400)
        for path, mode in ((MUNGE_RUN, 0o755), (Path("/var/lib/munge"), 0o700),
                           (Path("/var/log/munge"), 0o700)):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)
            path.chmod(mode)
        # Foreground, so the pid we hold is munged's own; --force gets past a stale socket or
        # pid file left by a munged that was killed.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        self._spawn("munged", [which("munged"), "--foreground", "--force"], user=uid, group=gid,
                    extra_groups=[], env=env)
        self.munged_started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._procs["munged"].poll() is not None:
                raise SlurmClusterError(
                    f"munged exited ({self._procs['munged'].returncode}):\n"
                    f"{_tail(self.dir / 'munged.out')}\n{_tail(Path('/var/log/munge/munged.log'))}")
            if munge_answers():
                return
            time.sleep(0.3)
        raise SlurmClusterError("munged started but `munge -n | unmunge` still fails:\n"
                                f"{_tail(Path('/var/log/munge/munged.log'))}")

    # ----------------------------------------------------------------- slurm.conf
    def _node_config(self) -> dict[str, str]:
        """CPUs, sockets, cores, threads and RealMemory as `slurmd -C` prints them."""
        proc = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
        keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                "RealMemory")
        found = dict(tok.split("=", 1) for tok in first.split() if "=" in tok)
        config = {k: found[k] for k in keys if k in found}
        if proc.returncode != 0 or "CPUs" not in config or "RealMemory" not in config:
            raise SlurmClusterError(f"`slurmd -C` gave no CPUs/RealMemory: {proc.stdout}{proc.stderr}")
        return config

    def _write_conf(self) -> Path:
        d = self.dir
        for sub in ("state", "spool"):
            (d / sub).mkdir(mode=0o755)
        ctl_port, node_port = _free_port(), _free_port()
        while node_port == ctl_port:
            node_port = _free_port()
        cpus = int(self.node_config["CPUs"])
        memory = int(self.node_config["RealMemory"])
        node_extra = ""
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctl_port}",
            f"SlurmdPort={node_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            # Cores and memory are consumable: a job asking --mem more than the node has is
            # refused, and jobs run side by side only while their --mem fits.
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # Without --mem a job would otherwise get the whole node's memory.
            f"DefMemPerCPU={max(100, memory // max(cpus, 1) // 2)}",
            f"MinJobAge={self.min_job_age}",
            "ReturnToService=2",
            "SchedulerParameters=sched_interval=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
        ]
        if self.gpus > 0:
            lines.append("GresTypes=gpu")
            node_extra = f" Gres=gpu:{self.gpus}"
            # One (empty) device file per fake GPU: slurmd counts GPUs by their files.
            for i in range(self.gpus):
                (d / f"gpu{i}").touch()
            files = d / (f"gpu[0-{self.gpus - 1}]" if self.gpus > 1 else "gpu0")
            (d / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={files}\n")
        hardware = " ".join(f"{k}={v}" for k, v in self.node_config.items())
        lines += [
            f"NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.node} {hardware}"
            f"{node_extra} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE "
            "State=UP",
        ]
        conf = d / "slurm.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _srun_wrapper(self) -> Path:
        """A directory with an `srun` that sets our SLURM_CONF, to put first on PATH.

        Snakemake's slurm-jobstep plugin (0.6.1) starts the rule inside the job with `srun`
        after removing every SLURM_* variable but the job's ids, SLURM_CONF included; srun
        then looks for /etc/slurm/slurm.conf, a configless cache, DNS SRV records, and fails
        ("Could not establish a configuration source"). A real cluster has its config in one
        of those places; this cluster's config lives only in our temporary directory, so the
        job's srun (found on PATH, which the job inherits) gets SLURM_CONF back here."""
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(mode=0o755)
        srun = bin_dir / "srun"
        srun.write_text("#!/bin/sh\n"
                        "# srun of the test cluster: restores SLURM_CONF (see slurm_cluster.py)\n"
                        f"SLURM_CONF='{self.conf}' exec '{which('srun')}' \"$@\"\n")
        srun.chmod(0o755)
        return bin_dir

    # ----------------------------------------------------------------- stop
    def stop(self) -> None:
        """Cancel jobs, stop our daemons (by pid), sweep our leftovers, remove the directory."""
        ctl = self._procs.get("slurmctld")
        if ctl is not None and ctl.poll() is None:
            with contextlib.suppress(Exception):
                ids = [i for i in self.job_ids()]
                if ids:
                    self.run("scancel", *ids, check=False)
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline:
                        out = self.run("squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i",
                                       check=False).stdout
                        if not out.strip():
                            break
                        time.sleep(0.5)
        for name in ("slurmd", "slurmctld"):
            if name in self._procs:
                with contextlib.suppress(Exception):
                    _stop_process(self._procs[name])
        if self.conf is not None:
            self._kill_leftovers()
        if "munged" in self._procs:
            with contextlib.suppress(Exception):
                _stop_process(self._procs["munged"])
        for log in self._logs:
            with contextlib.suppress(Exception):
                log.close()
        self._logs.clear()
        self._procs.clear()
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """SIGTERM, then SIGKILL, every process whose environment has our SLURM_CONF.

        Those are the slurmstepd processes of our slurmd and the job processes under them
        (they inherit SLURM_CONF), plus clients a test started with `cluster.env`; never this
        process or its ancestors."""
        marker = f"SLURM_CONF={self.conf}".encode()
        protected = set()
        pid = os.getpid()
        while pid > 1:
            protected.add(pid)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                pid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break

        def ours() -> list[int]:
            found = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in protected:
                    continue
                try:
                    environ = (entry / "environ").read_bytes()
                except OSError:
                    continue
                if marker in environ.split(b"\0"):
                    found.append(int(entry.name))
            return found

        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
            pids = ours()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and ours():
                time.sleep(0.1)


def profile_flags(profile_dir: str | os.PathLike, default_resources: dict | None = None,
                  set_resources: dict | None = None) -> list[str]:
    """Snakemake flags that *add to* a profile's default-resources / set-resources.

    A `--default-resources` or `--set-resources` flag on the command line replaces the
    profile's whole block (checked with Snakemake 9.27), so this merges the profile's entries
    with the given ones and returns the complete flags, e.g.
    `profile_flags("profiles/slurm", {"slurm_partition": "debug"}, {"train": {"gpu": 0}})`."""
    import yaml

    profile_dir = Path(profile_dir)
    path = next((profile_dir / name for name in ("profile.yaml", "config.yaml")
                 if (profile_dir / name).exists()), None)
    if path is None:
        raise FileNotFoundError(f"no profile.yaml/config.yaml in {profile_dir}")
    config = yaml.safe_load(path.read_text()) or {}

    def as_dict(value) -> dict:
        if isinstance(value, dict):
            return dict(value)
        return dict(item.split("=", 1) for item in (value or []))  # list form: ["k=v", ...]

    flags: list[str] = []
    if default_resources:
        merged = {**as_dict(config.get("default-resources")), **default_resources}
        flags += ["--default-resources", *(f"{k}={v}" for k, v in merged.items())]
    if set_resources:
        blocks = config.get("set-resources") or {}
        if not isinstance(blocks, dict):  # list form: ["rule:k=v", ...]
            parsed: dict = {}
            for item in blocks:
                rule, _, kv = item.partition(":")
                key, _, value = kv.partition("=")
                parsed.setdefault(rule, {})[key] = value
            blocks = parsed
        merged_rules = {rule: dict(res or {}) for rule, res in blocks.items()}
        for rule, res in set_resources.items():
            merged_rules.setdefault(rule, {}).update(res)
        flags += ["--set-resources", *(f"{rule}:{k}={v}" for rule, res in merged_rules.items()
                                       for k, v in res.items())]
    return flags


def skip_unless_cluster_possible() -> None:
    """pytest.skip when not root, but only outside CI: with CI=true the cluster must start (a
    non-root CI run then fails with the reason instead of passing without the test)."""
    import pytest

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if not is_root() and not in_ci:
        pytest.skip("a local SLURM cluster needs root (apt-get, munged, SlurmUser=root)")


def slurm_cluster_or_skip(**kwargs) -> SlurmCluster:
    """For pytest fixtures: a started SlurmCluster (the caller stops it), or a skip as
    `skip_unless_cluster_possible` allows; any other failure raises with the reason."""
    skip_unless_cluster_possible()
    cluster = SlurmCluster(**kwargs)
    cluster.__enter__()
    return cluster


def main() -> None:
    """`python tests/helpers/slurm_cluster.py [--gpus N]`: bring a cluster up, print its SLURM_CONF, keep
    it until Ctrl-C or SIGTERM (then tear everything down)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--gpus", type=int, default=0, help="fake GPUs the node advertises")
    parser.add_argument("--partition", default="debug")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with SlurmCluster(partition=args.partition, gpus=args.gpus) as cluster:
        print(f"export SLURM_CONF={cluster.conf}  # up in {cluster.startup_seconds:.1f} s; "
              "Ctrl-C stops it", flush=True)
        try:
            while all(p.poll() is None for p in cluster._procs.values()):
                time.sleep(1)
            print("a daemon exited:\n" + cluster.logs(), flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
