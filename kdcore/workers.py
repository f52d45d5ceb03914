"""Local worker processes: the app's jobs train here, never in the web server's interpreter.

`ProcessBackend(n)` keeps n long-lived worker processes, each started as `python -m kdcore.workers`
(a fresh interpreter: no server state is copied into it, and the server's own main script is never
re-run in it, as multiprocessing's spawn would do). Each loads torch, the datasets and the teachers
once and keeps them for later jobs, runs one job at a time with its share of the cores
(`kdcore.budget`), and sends the job's events and result back over a socket pair. A Stop is a
message that sets the job's cancel event (the training loop checks it every batch); a job that
still runs `cancel_grace` seconds later has its worker killed. A worker that dies fails only its
own job, with a message saying so, and is replaced; queued jobs run as usual. A worker whose server
goes away sees its socket close and exits.

This module imports nothing heavy at the top: a worker chooses its thread settings before torch
is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

CANCEL_GRACE_S = 10.0
_POLL_S = 0.2
_PROJECT = Path(__file__).resolve().parent.parent


def worker_nice_from_env() -> int:
    """How much lower than the web server a worker runs (KD_WORKER_NICE, a Unix niceness 0 to 19)."""
    raw = os.environ.get("KD_WORKER_NICE", "0")
    if not raw.isdigit() or int(raw) > 19:
        raise ValueError(f"KD_WORKER_NICE (the workers' niceness) must be a whole number from 0 to 19, got {raw!r}")
    return int(raw)


def max_jobs_from_env() -> int:
    raw = os.environ.get("KD_MAX_JOBS", "2")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"KD_MAX_JOBS (jobs run at once) must be a whole number >= 1, got {raw!r}")
    return int(raw)


# ---- inside a worker process ---------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """The worker's life: warm up, then run each job it is sent, one at a time, until told to stop."""
    import torch

    from . import budget, jobs
    from . import events as ev

    if hasattr(os, "nice"):
        os.nice(worker_nice_from_env())
    # One thread unless a model gains from more (kdcore.budget decides, within each job's share).
    torch.set_num_threads(1)
    _warm_up()
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    # A reader thread takes Stops while the main thread trains.
    runs: queue.Queue = queue.Queue()
    cancels: dict[str, threading.Event] = {}

    def read() -> None:
        try:
            while True:
                message = conn.recv()
                if message[0] == "run":
                    cancels[message[1]] = threading.Event()
                    runs.put(message)
                elif message[0] == "cancel" and message[1] in cancels:
                    cancels[message[1]].set()
                elif message[0] == "stop":
                    break
        except (EOFError, OSError):  # the server went away: so does its worker
            pass
        runs.put(("stop",))

    threading.Thread(target=read, name="kd-worker-reader", daemon=True).start()
    try:
        send(("ready", os.getpid()))
    except OSError:  # the server went away while this worker was starting
        return
    while (message := runs.get())[0] == "run":
        _, job_id, spec, threads = message
        budget.set_job_threads(threads)

        def on_event(event, job_id=job_id) -> None:
            send(("event", job_id, event))

        try:
            value = jobs.run(spec, ev.stamped(on_event), cancels[job_id])
            # Plain pickle: tensors travel by value, never as handles to this process's memory.
            send(("done", job_id, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
        except (EOFError, OSError):
            return
        except BaseException as exc:
            send(("failed", job_id, jobs.job_error(exc)))
        finally:
            cancels.pop(job_id, None)
        torch.set_num_threads(1)


def _warm_up() -> None:
    """Pay the one-off costs before the first job, not during it: the engine's imports (torch among them) and
    the offline sample every first lesson and demo uses."""
    from . import data, experiments, studies  # noqa: F401 - imported for their import time

    with contextlib.suppress(data.DatasetError, OSError):
        data.load("mnist-sample")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kdcore.workers", description="A KD Playground worker process.")
    parser.add_argument("--fd", type=int, required=True, help="the socket inherited from the server")
    args = parser.parse_args(argv)
    _serve(Connection(args.fd))


# ---- in the server process -----------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    job_id: str | None = None
    ready: bool = False
    cancel_deadline: float | None = None
    started: float = field(default_factory=time.monotonic)


class ProcessBackend:
    """n local worker processes, one job each at a time; see the module docstring."""

    def __init__(self, workers: int, cancel_grace: float = CANCEL_GRACE_S):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
        self.cancel_grace = cancel_grace
        self._reporter = None
        self._lock = threading.Lock()
        self._closing = False
        self._workers = [self._spawn() for _ in range(workers)]
        self._pump = threading.Thread(target=self._loop, name="kd-workers", daemon=True)
        self._pump.start()

    def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads steal the
        # core another job waits for. Read by torch's OpenMP runtime when it starts, so set it here.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "kdcore.workers", "--fd", str(theirs.fileno())]
        process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        return _Worker(process, Connection(ours.detach()))

    # Backend protocol
    def bind(self, reporter) -> None:
        self._reporter = reporter

    def slots(self) -> int:
        return len(self._workers)

    def start(self, job_id: str, spec) -> None:
        from . import budget

        with self._lock:
            worker = next(w for w in self._workers if w.job_id is None)
            worker.job_id, worker.cancel_deadline = job_id, None
            # The cores are shared by the jobs running now, this one included: a lone job gets them all.
            threads = budget.share(sum(w.job_id is not None for w in self._workers))
            worker.conn.send(("run", job_id, spec, threads))

    def cancel(self, job_id: str) -> None:
        with self._lock:
            for w in self._workers:
                if w.job_id == job_id and w.cancel_deadline is None:
                    w.cancel_deadline = time.monotonic() + self.cancel_grace
                    with contextlib.suppress(OSError):  # a dead worker is noticed by the pump
                        w.conn.send(("cancel", job_id))

    def describe(self) -> str:
        n = len(self._workers)
        return f"{n} local worker process{'es' if n != 1 else ''} on this server, sharing its cores"

    def ready_workers(self) -> int:
        with self._lock:
            return sum(w.ready for w in self._workers)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def close(self) -> None:
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for w in workers:
            with contextlib.suppress(OSError):
                w.conn.send(("stop",))
        for w in workers:
            try:
                w.process.wait(5)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait(5)
            w.conn.close()
        self._pump.join(5)

    # The pump: one thread reads every worker's messages and notices dead workers.
    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                workers = {w.conn: w for w in self._workers}
            try:
                ready = wait(list(workers), timeout=_POLL_S)
            except OSError:
                ready = []
            for conn in ready:
                self._receive(workers[conn])
            self._enforce_cancel()

    def _receive(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):  # the socket closed: the process died
            self._died(worker)
            return
        kind = message[0]
        if kind == "ready":
            worker.ready = True
        elif kind == "event":
            self._reporter.event(message[1], message[2])
        elif kind in ("done", "failed"):
            job_id = message[1]
            with self._lock:
                worker.job_id = worker.cancel_deadline = None
            if kind == "done":
                self._reporter.finish(job_id, pickle.loads(message[2]))
            else:
                self._reporter.finish(job_id, error=message[2])

    def _died(self, worker: _Worker) -> None:
        from .jobs import JobError

        with self._lock:
            if self._closing or worker not in self._workers:
                return
            job_id, cancelled = worker.job_id, worker.cancel_deadline is not None
            worker.conn.close()
            try:
                code = worker.process.wait(5)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                code = worker.process.wait(5)
            self._workers[self._workers.index(worker)] = self._spawn()
        if job_id is not None:
            error = None
            if not cancelled:
                error = JobError(
                    "The worker process running this job stopped unexpectedly "
                    f"(exit code {code}: killed, or out of memory). Nothing from this run was saved; "
                    "the other jobs go on. Start it again.",
                    user=False,
                    kind="WorkerDied",
                )
            self._reporter.finish(job_id, error=error)

    def _enforce_cancel(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [w for w in self._workers if w.cancel_deadline is not None and now > w.cancel_deadline]
        for w in late:
            w.process.kill()  # its socket closes and the pump replaces it


if __name__ == "__main__":
    main()
