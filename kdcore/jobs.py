"""Background jobs: what a job is, its lifecycle, and the runner that queues jobs for a backend.

A `JobSpec` says what to run (a `JobKind` and the `RunConfig`, plus a study's own options) and for
whom. `run(spec, on_event, cancel)` is the one function every backend executes: the CLI calls it in
its own process, local worker processes (`kdcore.workers`) and Dask workers (`kdcore.cluster`) call
it for the app. A `JobRunner` keeps a FIFO queue of `Job`s and starts the next one whenever its
backend has a free slot; the server process itself never trains.

A `Job` carries its spec, owner, state, the `Progress` folded from its events, its result (a stopped
job keeps its partial result) and, if it failed, a `JobError` that says whether the user can fix it
(with their message) or it is a bug. Pages keep only the id of the job they show.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import importlib
import itertools
import os
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import events as ev
from .experiments import RunConfig

KEEP_FINISHED_PER_OWNER = 25  # finished jobs a session can still open; older ones are forgotten


class JobKind(enum.StrEnum):
    LOOK = "look"
    TEACHERS = "teachers"
    DISTILL = "distill"
    SWEEP = "sweep"
    FRACTION = "fraction"
    MISSING_CLASS = "missing-class"
    CAPACITY = "capacity"
    SEEDS = "seeds"


# What each kind runs, as "module:function" so that any process (a spawned worker, a Dask worker on
# another machine) can import it by name.
FUNCTIONS = {
    JobKind.LOOK: "kdcore.lessons:look",
    JobKind.TEACHERS: "kdcore.experiments:prepare_teachers",
    JobKind.DISTILL: "kdcore.experiments:distill",
    JobKind.SWEEP: "kdcore.studies:sweep",
    JobKind.FRACTION: "kdcore.studies:fraction_study",
    JobKind.MISSING_CLASS: "kdcore.studies:missing_class_study",
    JobKind.CAPACITY: "kdcore.studies:capacity_study",
    JobKind.SEEDS: "kdcore.studies:seeds_study",
}
# Jobs that train students after the teachers are ready show their progress as two steps.
TWO_STEP_KINDS = frozenset(FUNCTIONS) - {JobKind.TEACHERS, JobKind.LOOK}
# Jobs whose results the run history keeps (and the class board reads).
RECORDED_KINDS = TWO_STEP_KINDS


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class JobSpec:
    """What to run, with what, and for whom. `options` are the study's own arguments (e.g. temperatures)."""

    kind: JobKind
    config: RunConfig
    options: tuple[tuple[str, Any], ...] = ()
    name: str = ""
    owner: str | None = None
    record: bool | None = None  # keep the result in the run history; default: RECORDED_KINDS
    # "module:function" to run; default: the kind's own, looked up where the spec is made, so every
    # process that runs it runs the same function.
    function: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "kind", JobKind(self.kind))
        if isinstance(self.options, dict):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        if self.record is None:
            object.__setattr__(self, "record", self.kind in RECORDED_KINDS)
        if self.function is None:
            object.__setattr__(self, "function", FUNCTIONS[self.kind])


@dataclass(frozen=True)
class JobError:
    """Why a job failed. `user`: the input or the setup caused it and `message` says what to do; else a bug."""

    message: str
    user: bool
    kind: str  # the exception's class name, e.g. "DatasetUnavailable"
    detail: str = ""  # the traceback, for logs
    about_dataset: bool = False  # the dataset could not be loaded: the message says where its files go


def job_error(exc: BaseException) -> JobError:
    """The JobError for an exception raised by a job's function."""
    from .data import DatasetError

    msg = str(exc)
    user = isinstance(exc, DatasetError) or getattr(exc, "user_facing", False) is True or isinstance(exc, ValueError)
    if not user:
        msg = f"Training failed: {type(exc).__name__}: {msg}" if msg else f"Training failed: {type(exc).__name__}"
    trace = "".join(traceback.format_exception(exc))
    return JobError(msg, user, type(exc).__name__, trace, about_dataset=isinstance(exc, DatasetError))


def resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run(spec: JobSpec, on_event: ev.EventFn, cancel) -> Any:
    """Run a job to its end (or until `cancel` is set) and return its result; every backend calls this.

    `cancel` is anything with is_set() (a threading, multiprocessing or Dask event). A recorded job's
    result is saved in the run history, finished or stopped; a history that cannot be written costs the
    saved copy, not the result, and a SaveFailed event says why.
    """
    fn = resolve(spec.function)
    result = fn(spec.config, **dict(spec.options), on_event=on_event, cancel=cancel)
    if result is not None and spec.record:
        _record(result, spec.kind, spec.owner, on_event)
    return result


def _record(result, kind: JobKind, owner: str | None, on_event: ev.EventFn) -> None:
    from . import store
    from .experiments import RunResult

    try:
        history = store.open_store()
        try:
            if isinstance(result, RunResult):
                run_id = result.run_id = history.save_run(result, kind.value, owner=owner)
            else:
                c = result.config
                run_id = history.save_record(
                    kind.value, c.dataset, c.to_dict(), result.to_json(), None, result.partial, owner=owner
                )
            on_event(ev.Saved(run_id=run_id, message=history.recovered_message or ""))
        finally:
            history.close()
    except (store.StoreError, sqlite3.Error, OSError) as exc:
        on_event(ev.SaveFailed(message=f"The run could not be saved in the history: {exc}"))


# ---- the job as the server sees it ---------------------------------------------------------------

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _new_id() -> str:
    with _ids_lock:
        return f"j{next(_ids)}-{os.getpid()}"


@dataclass(eq=False)
class Job:
    """One submitted spec and everything a page or the CLI shows about it. Safe to share across threads."""

    spec: JobSpec
    id: str = field(default_factory=_new_id)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: JobError | None = None
    _state: JobState = JobState.QUEUED
    _value: Any = field(default=None, repr=False)
    _cancel_requested: bool = False
    _runner: JobRunner | None = field(default=None, repr=False)
    _tracker: ev.ProgressTracker = field(default=None, repr=False)  # type: ignore[assignment]
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self):
        if self._tracker is None:
            self._tracker = ev.ProgressTracker(steps=2 if self.spec.kind in TWO_STEP_KINDS else 0)

    @property
    def kind(self) -> JobKind:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name or self.spec.kind.value

    @property
    def owner(self) -> str | None:
        return self.spec.owner

    @property
    def config(self) -> RunConfig:
        return self.spec.config

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state in FINISHED

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def progress(self) -> ev.Progress:
        p = self._tracker.progress()
        position = self.queue_position()
        if self._state is JobState.RUNNING and p.phase is ev.Phase.QUEUED:
            p.text = "Starting: the worker is getting ready"
        if position is not None and self._runner is not None:
            p.text = (
                f"Waiting in the queue, position {position} "
                f"(this server runs {self._runner.backend.slots()} jobs at a time)"
            )
        return p

    def queue_position(self) -> int | None:
        """1-based place among the runner's waiting jobs; None once it has left the queue."""
        if self._runner is None or self._state is not JobState.QUEUED:
            return None
        return self._runner._position(self)

    def cancel(self) -> None:
        """Stop the job: a queued one never runs; a running one stops after its current batch."""
        if self._runner is not None:
            self._runner._cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done, failed or stopped); False if the timeout passed first."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None):
        """What the job returned (the partial result for a stopped job, None if it had none).

        Raises JobFailed if the job failed, TimeoutError if it is still unfinished after timeout.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.name}) is still {self._state.value}")
        if self._state is JobState.FAILED:
            raise JobFailed(self.error)
        return self._value

    def _finish(self, state: JobState, value: Any = None, error: JobError | None = None) -> None:
        self._state, self._value, self.error = state, value, error
        self.finished = time.time()
        self._done.set()


class JobFailed(Exception):
    """Raised by Job.result() for a failed job; `.error` is its JobError."""

    def __init__(self, error: JobError | None):
        super().__init__(error.message if error else "the job failed")
        self.error = error


# ---- backends and the runner ---------------------------------------------------------------------


class Reporter(Protocol):
    """How a backend hands back what a job does; calls may come from any thread."""

    def event(self, job_id: str, event: ev.Event) -> None: ...

    def finish(self, job_id: str, value: Any = None, error: JobError | None = None) -> None: ...


class Backend(Protocol):
    """Where jobs run: local worker processes or a Dask cluster."""

    def bind(self, reporter: Reporter) -> None: ...

    def slots(self) -> int:
        """Jobs that may run at once now."""
        ...

    def start(self, job_id: str, spec: JobSpec) -> None:
        """Begin running spec without blocking; report through the bound Reporter."""
        ...

    def cancel(self, job_id: str) -> None: ...

    def describe(self) -> str:
        """Where jobs run, in one line for the sidebar."""
        ...

    def close(self) -> None: ...


LIVE_REFRESH_S = 1.0  # how often a page redraws a running job's progress while every active job has a slot
MAX_REFRESH_S = 5.0
# Live charts redraw at every LIVE_CHARTS_EVERY-th refresh of the progress bar: in headless Chromium two live
# plotly charts redrawn every second took 0.3 of a core (the progress bar alone 0.1), cores the students were
# training on, since a user's browser usually shares the machine with the app.
LIVE_CHARTS_EVERY = 2


def refresh_seconds(active: int, slots: int, *, charts: bool = False) -> float:
    """How often a page redraws a job's live progress (or, with `charts`, its live charts) when `active` jobs
    share `slots` job slots.

    Every LIVE_REFRESH_S while each job has a slot; as jobs queue, proportionally less often (at most
    MAX_REFRESH_S), because a class's browsers redrawing live charts every second took the cores from the
    training and the other pages (benchmarks/classroom.py). Charts redraw LIVE_CHARTS_EVERY times less often.
    """
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots!r}")
    progress = min(MAX_REFRESH_S, LIVE_REFRESH_S * max(1.0, active / slots))
    return progress * LIVE_CHARTS_EVERY if charts else progress


def final_wait_seconds(progress: ev.Progress, refresh: float) -> float:
    """How long a page's live view, having drawn `progress`, should wait for its job to end before returning.

    A page notices the end at its next redraw, on average half a refresh after the job ended; a view that waits
    instead shows the result the moment the job ends. It waits only when the job's last step is in its last
    phase and due to end before the next redraw (students or a study with an ETA under `refresh`, or already
    measuring), and never longer than `refresh`, so its next redraw is never later than without the wait.
    """
    if progress.steps and progress.step < progress.steps:
        return 0.0
    if progress.phase in (ev.Phase.MEASURING, ev.Phase.FINISHED):
        return refresh
    ending = progress.phase in (ev.Phase.STUDENTS, ev.Phase.STUDY) and progress.eta_seconds is not None
    return refresh if ending and progress.eta_seconds < refresh else 0.0


class JobRunner:
    """A FIFO queue of jobs in front of a backend: starts the oldest waiting job whenever a slot frees."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._pending: collections.deque[Job] = collections.deque()
        self._running: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._closing = False
        backend.bind(self)

    def submit(self, spec: JobSpec) -> Job:
        """Queue spec and return its Job at once."""
        job = Job(spec, _runner=self)
        with self._lock:
            if self._closing:
                raise RuntimeError("this JobRunner has been shut down")
            self._jobs[job.id] = job
            self._pending.append(job)
            self._dispatch()
        return job

    def running(self) -> int:
        """Jobs running now (a new one would share the cores with them)."""
        with self._lock:
            return len(self._running)

    def active(self) -> int:
        """Jobs running or waiting for a slot."""
        with self._lock:
            return len(self._running) + len(self._pending)

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Known jobs, newest first; only those submitted by `owner` when given."""
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if owner is None or j.owner == owner]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel_all(self, owner: str | None = None) -> None:
        for job in self.jobs(owner):
            job.cancel()

    def shutdown(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Refuse new jobs, cancel every job, and (with wait) wait for the running ones, then stop the backend."""
        with self._lock:
            self._closing = True
        self.cancel_all()
        if wait:
            deadline = time.monotonic() + timeout
            for job in self.jobs():
                job.wait(max(0.0, deadline - time.monotonic()))
        self.backend.close()

    # Reporter: called by the backend, from its own threads.
    def event(self, job_id: str, event: ev.Event) -> None:
        # Any known job, not only running ones: a cluster may deliver its last events after its result.
        job = self._jobs.get(job_id)
        if job is not None:
            job._tracker.apply(event)

    def finish(self, job_id: str, value: Any = None, error: JobError | None = None) -> None:
        with self._lock:
            job = self._running.pop(job_id, None)
            if job is None:
                return
            if job.cancel_requested and (error is None or not error.user):
                # A function stopped before it had anything to return says so by raising.
                job._finish(JobState.CANCELLED, value)
            elif error is not None:
                job._finish(JobState.FAILED, error=error)
            else:
                job._finish(JobState.DONE, value)
            self._dispatch()
            self._forget_old(job.owner)

    def _dispatch(self) -> None:
        while self._pending and not self._closing and len(self._running) < self.backend.slots():
            job = self._pending.popleft()
            job._state, job.started = JobState.RUNNING, time.time()
            self._running[job.id] = job
            try:
                self.backend.start(job.id, job.spec)
            except Exception as exc:
                self._running.pop(job.id, None)
                job._finish(JobState.FAILED, error=job_error(exc))

    def _cancel(self, job: Job) -> None:
        with self._lock:
            if job.done or job.cancel_requested:
                return
            job._cancel_requested = True
            if job._state is JobState.QUEUED:
                with contextlib.suppress(ValueError):
                    self._pending.remove(job)
                job._finish(JobState.CANCELLED)
                return
        self.backend.cancel(job.id)

    def _position(self, job: Job) -> int | None:
        with self._lock:
            try:
                return self._pending.index(job) + 1
            except ValueError:
                return None

    def _forget_old(self, owner: str | None) -> None:
        finished = [j for j in self._jobs.values() if j.owner == owner and j.done]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED_PER_OWNER)]:
            del self._jobs[job.id]


_default: JobRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner every session shares, created on first use.

    Jobs go to the Dask cluster at KD_SCHEDULER when it is set, else to local worker processes
    (KD_MAX_JOBS of them, default 2).
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = JobRunner(make_backend())
        return _default


def make_backend(scheduler: str | None = None, max_jobs: int | None = None) -> Backend:
    """The backend for a scheduler address (or KD_SCHEDULER), else local worker processes."""
    scheduler = scheduler or os.environ.get("KD_SCHEDULER") or None
    if scheduler:
        from .cluster import DaskBackend

        return DaskBackend(scheduler)
    from .workers import ProcessBackend, max_jobs_from_env

    return ProcessBackend(max_jobs if max_jobs is not None else max_jobs_from_env())
