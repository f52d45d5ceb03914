"""How many CPU threads a job, and each model within it, may use.

A job's budget is the machine's cores divided among the jobs running when it starts, itself included
(KD_THREADS, or the CLI's --threads, overrides it): a lone job gets every core, two share them.
Within the budget a model gets more than one torch intra-op thread only if it gains from them
(`models.ModelSpec.parallel`, chosen by measurement in benchmarks/threads.py): small models run no
faster on two threads. Two models that train at once use a budget of two differently (the students of a
distillation, the missing members of an ensemble): each trains on its own thread ("lanes"), which needs
no waiting between threads. Workers and the CLI set
OMP_WAIT_POLICY=PASSIVE, so threads that wait sleep instead of spinning on a core a neighbour needs.
"""

from __future__ import annotations

import contextlib
import os

_job_threads: int | None = None


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def threads_from_env() -> int | None:
    raw = os.environ.get("KD_THREADS")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"KD_THREADS must be a whole number >= 1 (threads per job), got {raw!r}")
    return int(raw)


def share(concurrent_jobs: int) -> int:
    """Threads per job when `concurrent_jobs` jobs share the machine: KD_THREADS, else cores / jobs."""
    return threads_from_env() or max(1, cores() // max(1, concurrent_jobs))


def set_job_threads(threads: int) -> None:
    """Set this process's budget (a worker at start-up, the CLI from --threads)."""
    global _job_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    _job_threads = threads


def job_threads() -> int:
    """This process's budget; a process that set none runs as the only job on the machine."""
    return _job_threads if _job_threads is not None else share(1)


def model_threads(arch: str, threads: int | None = None) -> int:
    """Intra-op threads for training or scoring the zoo model `arch` within a budget (default: this job's)."""
    from .models import ZOO

    spec = ZOO.get(arch)
    return (threads or job_threads()) if spec is not None and spec.parallel else 1


def lanes(threads: int | None = None) -> int:
    """Models trained side by side on their own threads (a distillation's two students, an ensemble's missing
    teachers): two when the budget (default: this job's) has two."""
    return 2 if (threads or job_threads()) >= 2 else 1


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run the block with `threads` torch intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
