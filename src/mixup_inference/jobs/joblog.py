"""Job logging for the workflow's scripts: one log file per job, a header saying where it ran, and one
`ERROR:` line (no traceback) for bad input, a NaN loss, or an interruption (SIGTERM/SIGINT)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import torch

from ..core.training.loop import TrainingDiverged

__all__ = ["JobInterrupted", "job_log", "logged_threads"]


class JobInterrupted(BaseException):
    """Raised inside a job (by `job_log`'s SIGTERM handler) when the job is cancelled or preempted.
    A BaseException, so library code that handles errors (``except Exception``) never swallows it."""


#: The header job_log writes at each start of a job (a resumed job's log has one per start).
_HEADER_THREADS = re.compile(r"^# job started .* \| threads=([0-9]+) \|", re.MULTILINE)


def logged_threads(path: str | os.PathLike) -> int | None:
    """The torch thread count the job's last start used, from its log's header; None for a log
    without one (or no log)."""
    try:
        found = _HEADER_THREADS.findall(Path(path).read_text(errors="replace"))
    except FileNotFoundError:
        return None
    return int(found[-1]) if found else None


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise JobInterrupted(signal.Signals(signum).name)


def _new_line(log: Any, path: Path) -> None:
    """End a line left open in the log (e.g. by an interrupted progress bar)."""
    log.flush()
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            log.write("\n")


@contextlib.contextmanager
def job_log(path: str | os.PathLike, threads: int | None = None) -> Iterator[None]:
    """Send everything the job prints (stdout, stderr, tracebacks) to its log file, with a header
    that says where it ran (host, SLURM job id, threads, versions). Restores the streams after.

    For a workflow job script (``with job_log(snakemake.log[0]): run_...(...)``). On failure the
    log ends with one line ``ERROR: <message>``:
    - a ValueError is bad input whose message names the problem and the fix, and TrainingDiverged
      (NaN loss) names the epoch and the kept checkpoint: both logged without a traceback; the job exits with status 1 and prints the same line (and the log's path) to
      stderr, where Snakemake shows it;
    - SIGTERM (job cancelled, or preempted by the scheduler) and SIGINT stop the job as an exception,
      so ``finally`` blocks run (no temporary files are left behind); exit status 143 / 130;
    - anything else is a bug: logged with its traceback, then re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(int(threads))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    failure: tuple[str, int] | None = None
    streams = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)  # what C code and child processes write
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log  # what Python writes, whatever sys.stdout was (e.g. under pytest)
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main_thread else None
        try:
            print(
                f"# job started {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}"
                f" | SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', 'none')}"
                f" | threads={torch.get_num_threads()} | torch {torch.__version__}"
                f" | cuda={torch.cuda.is_available()}",
                flush=True,
            )
            start = time.perf_counter()
            yield
            print(f"# job finished in {time.perf_counter() - start:.1f} s", flush=True)
        except (ValueError, TrainingDiverged) as error:
            failure = (f"ERROR: {error}", 1)
        except (JobInterrupted, KeyboardInterrupt) as error:
            name = str(error) if isinstance(error, JobInterrupted) else "SIGINT"
            failure = (f"ERROR: job stopped by {name} (cancelled or preempted); rerun the workflow to continue "
                       "(training resumes from its last checkpoint)", 143 if name == "SIGTERM" else 130)
        except BaseException as error:
            _new_line(log, path)
            traceback.print_exc()
            print(f"ERROR: {type(error).__name__}: {error}", flush=True)
            raise
        finally:
            if failure is not None:
                _new_line(log, path)
                print(failure[0], flush=True)
            log.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous_handler)
    if failure is not None:
        print(f"{failure[0]}\n(log: {path})", file=sys.stderr, flush=True)
        raise SystemExit(failure[1])
