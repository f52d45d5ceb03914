"""Jobs on a Dask distributed cluster: the same job function, progress and Stop as local workers.

With KD_SCHEDULER=tcp://host:8786 (or the CLI's --scheduler) the job runner hands jobs to
`DaskBackend` instead of local worker processes. Each job is one Dask task running `jobs.run` on
a worker; its events travel back through Dask's event log (a topic per server) and its result
as the task's result. Stop sets a Dask Event the task polls. The runner's own FIFO queue decides
what starts (at most one job per worker thread), so queue positions mean the same as locally.

If a worker dies mid-job, Dask runs the task again on another worker; the job's progress starts
over with a notice saying so (cache writes are atomic, so a killed run leaves nothing half-written).
Workers need this project installed and a data folder (shared or their own: teachers are cached
per folder). Start one per core with `dask worker tcp://host:8786 --nthreads 1`.
"""

from __future__ import annotations

import threading
import time
import uuid

from . import events as ev

TOPIC_PREFIX = "kd-playground-events"
CANCEL_POLL_S = 0.5
WORKERS_TTL_S = 5.0
CONNECT_TIMEOUT_S = 10.0


class _RemoteCancel:
    """A Stop flag backed by a Dask Event, read from the scheduler at most every CANCEL_POLL_S."""

    def __init__(self, name: str):
        from distributed import Event

        self._event = Event(name)
        self._set = False
        self._checked = 0.0
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if not self._set and now - self._checked >= CANCEL_POLL_S:
                self._checked = now
                self._set = self._event.is_set()
            return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(CANCEL_POLL_S)
        return True


def run_on_worker(job_id: str, spec, topic: str):
    """The Dask task: run the job on this worker with its share of the cores; returns ("done", value) or
    ("failed", JobError), so a job's own errors never look like a lost worker."""
    import torch
    from distributed import get_worker

    from . import budget, jobs

    worker = get_worker()
    torch.set_num_threads(1)
    budget.set_job_threads(budget.threads_from_env() or max(1, budget.cores() // _slots_on_this_machine(worker)))

    def on_event(event: ev.Event) -> None:
        worker.log_event(topic, {"job": job_id, "event": ev.to_dict(event)})

    emit = ev.stamped(on_event)
    emit(ev.Started(worker=worker.address))
    try:
        return "done", jobs.run(spec, emit, _RemoteCancel(f"kd-cancel-{job_id}"))
    except Exception as exc:
        return "failed", jobs.job_error(exc)


def _slots_on_this_machine(worker) -> int:
    """Job slots of every worker on this worker's machine: they share its cores."""
    try:
        workers = worker.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(w["nthreads"] for w in workers if w.get("host") == worker.ip))
    except (OSError, TimeoutError, KeyError, TypeError):
        return max(1, worker.state.nthreads)


class DaskBackend:
    """Jobs as tasks on the Dask cluster at `address`; see the module docstring."""

    def __init__(self, address: str, *, timeout: float = CONNECT_TIMEOUT_S):
        from distributed import Client

        self.address = address
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"Cannot reach the Dask scheduler at {address} ({exc}). Start it with `dask scheduler`, check "
                "the address (KD_SCHEDULER or --scheduler), or unset KD_SCHEDULER to train on this machine."
            ) from None
        self.topic = f"{TOPIC_PREFIX}-{uuid.uuid4().hex[:8]}"  # one per server: no server sees another's jobs
        self.client.subscribe_topic(self.topic, self._on_log)
        self._reporter = None
        self._futures: dict[str, object] = {}
        self._lock = threading.Lock()
        self._workers: tuple[float, dict] = (0.0, {})

    def bind(self, reporter) -> None:
        self._reporter = reporter

    def _nthreads(self) -> dict:
        stamp, workers = self._workers
        if time.monotonic() - stamp > WORKERS_TTL_S:
            try:
                workers = self.client.nthreads()
            except (OSError, TimeoutError):
                workers = {}
            self._workers = (time.monotonic(), workers)
        return workers

    def slots(self) -> int:
        return sum(self._nthreads().values())

    def start(self, job_id: str, spec) -> None:
        future = self.client.submit(run_on_worker, job_id, spec, self.topic, key=f"kd-job-{job_id}", pure=False)
        with self._lock:
            self._futures[job_id] = future
        future.add_done_callback(lambda f: self._done(job_id, f))

    def cancel(self, job_id: str) -> None:
        from distributed import Event

        Event(f"kd-cancel-{job_id}", client=self.client).set()

    def describe(self) -> str:
        workers = self._nthreads()
        n, threads = len(workers), sum(workers.values())
        return f"the Dask cluster at {self.address} ({n} worker{'s' if n != 1 else ''}, {threads} job slots)"

    def close(self) -> None:
        self.client.close()

    def _on_log(self, entry) -> None:
        _, message = entry
        self._reporter.event(message["job"], ev.from_dict(message["event"]))

    def _done(self, job_id: str, future) -> None:
        from .jobs import JobError

        with self._lock:
            self._futures.pop(job_id, None)
        if future.status == "finished":
            outcome, payload = future.result()
            if outcome == "done":
                self._reporter.finish(job_id, payload)
            else:
                self._reporter.finish(job_id, error=payload)
            return
        exc = future.exception() if future.status == "error" else None
        self._reporter.finish(
            job_id,
            error=JobError(
                f"The Dask cluster could not run this job ({type(exc).__name__ if exc else future.status}: {exc}). "
                "A worker may have died more than once; check the workers and start it again.",
                user=False,
                kind=type(exc).__name__ if exc else "Cancelled",
            ),
        )
