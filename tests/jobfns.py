"""Job functions for the job-system tests, importable by name in worker processes ("tests.jobfns:hold")."""

import os
import signal
import time

from kdcore import events as ev
from kdcore import studies


def hold(config, *, on_event, cancel, seconds: float = 30.0, label: str = "held"):
    """Report once, then wait until cancelled or `seconds` pass; returns label (or label + " stopped")."""
    on_event(ev.Notice(message=f"{label} started", cause="test"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cancel.is_set():
            return f"{label} stopped"
        time.sleep(0.02)
    return label


def pid(config, *, on_event, cancel):
    return os.getpid()


def niceness(config, *, on_event, cancel):
    return os.nice(0)


def fail(config, *, on_event, cancel, user: bool = True, **options):
    if user:
        raise ValueError("epochs must be at least 1, got 0")
    raise RuntimeError("boom")


def die(config, *, on_event, cancel):
    """The worker process is killed mid-job (as by the OOM killer)."""
    on_event(ev.Notice(message="about to die", cause="test"))
    os.kill(os.getpid(), signal.SIGKILL)


def deaf(config, *, on_event, cancel, seconds: float = 60.0):
    """Ignores Stop entirely, like a long C call that never checks the cancel event."""
    on_event(ev.Notice(message="deaf started", cause="test"))
    time.sleep(seconds)
    return "finished anyway"


def sweep_that_waits(config, *, on_event, cancel, **options):
    """The real sweep, held after its first distilled cell until Stop, so a Stop always lands mid-grid."""

    def hook(event):
        on_event(event)
        if isinstance(event, ev.StudyCell) and event.snapshot["cells_done"] >= 1:
            cancel.wait(60)

    return studies.sweep(config, **options, on_event=hook, cancel=cancel)


def budget(config, *, on_event, cancel, hold: float = 0.0):
    """The thread budget the worker gave this job (after waiting `hold` seconds or until stopped)."""
    from kdcore import budget as kd_budget

    threads = kd_budget.job_threads()
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not cancel.is_set():
        time.sleep(0.02)
    return threads
