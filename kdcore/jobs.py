"""Background jobs: training that outlives a Streamlit rerun.

Streamlit re-runs the page script on every widget interaction, which would kill a training loop
running inside the script and leaves no moment to read a Stop button. So work runs here instead,
in a bounded pool of worker threads owned by the process: pages submit a function, keep the Job,
and poll its state and events (e.g. from ``st.fragment(run_every=...)``). Moving a slider,
switching pages or opening a second tab neither stops nor restarts a job.

At most ``max_workers`` jobs run at once (default 2, or the ``KD_MAX_JOBS`` environment variable);
the rest wait in a FIFO queue whose positions the page can show. Each job remembers the session
(``owner``) that submitted it, so its result lands back in that session.

A job's function is called as ``fn(*args, on_event=..., cancel=..., **kwargs)``: it reports
progress by passing plain dicts to ``on_event`` and should stop early, returning what it has,
once the ``cancel`` event is set.

Memory stays bounded: a job keeps every ``"epoch"`` event (one per model per epoch) but only the
most recent KEEP_OTHER_EVENTS of the others (step-level progress), trimmed in batches so it may
briefly hold up to twice that; and a runner forgets its oldest finished jobs beyond
``keep_finished`` (a page holding a Job object can still read it).
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import itertools
import os
import threading
import time
import traceback as tb
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KEEP_OTHER_EVENTS = 2000


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class JobFailed(Exception):
    """Raised by Job.result() when the job's function raised; the message is the job's user-facing error."""


def user_message(exc: BaseException) -> str:
    """What a learner should read about an exception: its own words for user errors, else its type too."""
    msg = str(exc)
    if msg and (isinstance(exc, ValueError) or getattr(exc, "user_facing", False) is True):
        return msg
    name = type(exc).__name__
    return f"Training failed: {name}: {msg}" if msg else f"Training failed: {name}"


# Module-wide so an id never repeats within the process, even across runners.
_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _new_id() -> str:
    with _ids_lock:
        return f"j{next(_ids)}"


# eq=False: a job is its identity (queue removal and lookups must not confuse two equal-looking jobs).
@dataclass(eq=False)
class Job:
    """One submitted function call and everything a page needs to show about it. Safe to share across threads."""

    name: str
    kind: str = ""
    owner: str | None = None
    id: str = field(default_factory=_new_id)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None  # set only when FAILED; never a traceback
    traceback: str | None = None  # full text for logs, also kept when a cancelled job raised
    _runner: JobRunner | None = field(default=None, repr=False)
    _call: tuple | None = field(default=None, repr=False)
    _state: JobState = field(default=JobState.QUEUED, repr=False)
    _value: Any = field(default=None, repr=False)
    # (sequence number, event) pairs; the sequence counts every event ever appended, so `since`
    # stays meaningful after old progress events are trimmed.
    _events: list = field(default_factory=list, repr=False)
    _appended: int = field(default=0, repr=False)
    _others: int = field(default=0, repr=False)  # non-"epoch" events currently kept
    _t0: float = field(default=0.0, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state in FINISHED

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def events(self, since: int = 0) -> list[dict]:
        """Copies of the events appended so far whose sequence number is >= since.

        Poll with ``new = job.events(since=n); n += len(new)``. Trimming only drops progress events
        older than the latest KEEP_OTHER_EVENTS, so a poller that keeps up never misses one.
        """
        with self._lock:
            start = bisect.bisect_left(self._events, since, key=lambda pair: pair[0])
            return [dict(event) for _, event in self._events[start:]]

    @property
    def last_event(self) -> dict | None:
        with self._lock:
            return dict(self._events[-1][1]) if self._events else None

    def queue_position(self) -> int | None:
        """1-based place among its runner's waiting jobs; None once it has left the queue."""
        if self._runner is None or self._state is not JobState.QUEUED:
            return None
        return self._runner._position(self)

    def cancel(self) -> None:
        """Stop the job: a queued one never runs; a running one is asked to stop via its cancel event."""
        with self._lock:
            if self.done:
                return
            self._cancel.set()
            was_queued = self._state is JobState.QUEUED
            if was_queued:
                self._finish(JobState.CANCELLED)
        if was_queued and self._runner is not None:
            self._runner._unqueue(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished (done, failed or cancelled); False if the timeout passed first."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None):
        """The function's return value (the partial one for a stopped job, None if it had none).

        Raises JobFailed if the function raised, TimeoutError if still unfinished after timeout.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.name}) is still {self._state.value}")
        if self._state is JobState.FAILED:
            raise JobFailed(self.error)
        return self._value

    def _on_event(self, event: dict) -> None:
        event = dict(event)  # the caller may keep and mutate its dict (e.g. a trainer's history)
        with self._lock:
            # A stray thread of a finished function must not change what the page already showed.
            if self._state is not JobState.RUNNING:
                return
            event.setdefault("t", time.monotonic() - self._t0)
            self._events.append((self._appended, event))
            self._appended += 1
            if event.get("kind") != "epoch":
                self._others += 1
                if self._others > 2 * KEEP_OTHER_EVENTS:
                    self._trim_others()

    def _trim_others(self) -> None:
        drop = self._others - KEEP_OTHER_EVENTS
        kept = []
        for pair in self._events:
            if drop and pair[1].get("kind") != "epoch":
                drop -= 1
            else:
                kept.append(pair)
        self._events = kept
        self._others = KEEP_OTHER_EVENTS

    def _run(self) -> None:
        with self._lock:
            # Cancelled between leaving the queue and reaching a worker: never start it.
            if self._state is not JobState.QUEUED:
                return
            self._state = JobState.RUNNING
            self.started = time.time()
            self._t0 = time.monotonic()
        fn, args, kwargs = self._call
        self._call = None  # let large inputs be freed once the job is over
        try:
            value = fn(*args, on_event=self._on_event, cancel=self._cancel, **kwargs)
        # BaseException too: a worker must survive anything fn raises, or the pool silently shrinks.
        except BaseException as exc:
            trace = tb.format_exc()
            with self._lock:
                self.traceback = trace
                # Raising is how a function stopped before it had anything to return says so.
                if self._cancel.is_set():
                    self._finish(JobState.CANCELLED)
                else:
                    self.error = user_message(exc)
                    self._finish(JobState.FAILED)
        else:
            with self._lock:
                self._value = value
                self._finish(JobState.CANCELLED if self._cancel.is_set() else JobState.DONE)

    def _finish(self, state: JobState) -> None:
        self._state = state
        self.finished = time.time()
        self._done.set()


def _max_workers_from_env() -> int:
    raw = os.environ.get("KD_MAX_JOBS", "2")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"KD_MAX_JOBS (max_workers) must be a whole number >= 1, got {raw!r}") from None


class JobRunner:
    """A fixed pool of daemon worker threads serving a FIFO queue of jobs."""

    def __init__(self, max_workers: int | None = None, *, keep_finished: int = 100):
        if max_workers is None:
            max_workers = _max_workers_from_env()
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers (KD_MAX_JOBS) must be a whole number >= 1, got {max_workers!r}")
        if keep_finished < 0:
            raise ValueError(f"keep_finished must be >= 0, got {keep_finished!r}")
        self.max_workers = max_workers
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}  # insertion order = submission order
        self._pending: deque[Job] = deque()
        self._closing = False
        self._cond = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"kd-job-worker-{i + 1}", daemon=True) for i in range(max_workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, fn: Callable, /, *args, name: str = "", kind: str = "", owner: str | None = None, **kwargs) -> Job:
        """Queue fn(*args, on_event=..., cancel=..., **kwargs) and return its Job at once."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        for reserved in ("on_event", "cancel"):
            if reserved in kwargs:
                raise TypeError(f"{reserved} is supplied by the runner; do not pass it to submit()")
        job = Job(
            name=name or getattr(fn, "__name__", "job"), kind=kind, owner=owner, _runner=self, _call=(fn, args, kwargs)
        )
        with self._cond:
            if self._closing:
                raise RuntimeError("this JobRunner has been shut down")
            self._jobs[job.id] = job
            self._pending.append(job)
            self._cond.notify()
        self._forget_old()
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Known jobs, newest first; only those submitted by `owner` when given."""
        with self._cond:
            return [j for j in reversed(self._jobs.values()) if owner is None or j.owner == owner]

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def cancel_all(self, owner: str | None = None) -> None:
        for job in self.jobs(owner):
            job.cancel()

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new jobs, cancel queued ones, ask running ones to stop; with wait, join the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.cancel_all()
        if wait:
            for worker in self._workers:
                worker.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._pending.popleft()
            job._run()
            self._forget_old()

    def _position(self, job: Job) -> int | None:
        with self._cond:
            try:
                return self._pending.index(job) + 1
            except ValueError:
                return None

    def _unqueue(self, job: Job) -> None:
        # ValueError: a worker already took it and will skip it
        with self._cond, contextlib.suppress(ValueError):
            self._pending.remove(job)
        self._forget_old()

    def _forget_old(self) -> None:
        with self._cond:
            finished = [j for j in self._jobs.values() if j.done]
            for job in finished[: max(0, len(finished) - self.keep_finished)]:
                del self._jobs[job.id]


_default: JobRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner every session shares, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = JobRunner()
        return _default
