"""Background jobs: results, events, bounded FIFO concurrency, cancelling, failures, shutdown."""

import threading

import pytest

from kdcore import jobs
from kdcore.jobs import JobFailed, JobRunner, JobState

TIMEOUT = 5  # generous upper bound; every wait below normally returns in milliseconds


@pytest.fixture
def make_runner():
    made = []

    def make(max_workers=2, **kwargs):
        made.append(JobRunner(max_workers, **kwargs))
        return made[-1]

    yield make
    for runner in made:
        runner.shutdown(wait=True)


class Gate:
    """A job function that reports when it starts and holds its worker until released or cancelled."""

    def __init__(self, log=None, running=None):
        self.started = threading.Event()
        self.release = threading.Event()
        self.log, self.running = log, running

    def __call__(self, label, *, on_event, cancel):
        if self.running is not None:
            self.running.enter()
        if self.log is not None:
            self.log.append(label)
        self.started.set()
        while not self.release.wait(0.005) and not cancel.is_set():
            pass
        if self.running is not None:
            self.running.leave()
        return label


class Counter:
    def __init__(self):
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def enter(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


def test_runs_in_background_and_returns_result_with_ordered_events(make_runner):
    go = threading.Event()

    def fn(a, b, *, on_event, cancel, scale):
        go.wait(TIMEOUT)
        for i in range(3):
            on_event({"kind": "step", "i": i})
        on_event({"kind": "epoch", "epoch": 1, "t": 99.0})
        return (a + b) * scale

    job = make_runner().submit(fn, 2, 3, scale=10, name="Add", kind="test", owner="s1")
    assert not job.done and job.state in (JobState.QUEUED, JobState.RUNNING)
    go.set()
    assert job.result(timeout=TIMEOUT) == 50
    assert job.state is JobState.DONE and job.done and job.error is None
    assert (job.name, job.kind, job.owner) == ("Add", "test", "s1")
    assert job.created <= job.started <= job.finished

    events = job.events()
    assert [e.get("i") for e in events] == [0, 1, 2, None]
    ts = [e["t"] for e in events[:3]]
    assert all(t >= 0 for t in ts) and ts == sorted(ts)
    assert events[3]["t"] == 99.0  # a "t" the function set itself is kept
    assert [e.get("i") for e in job.events(since=2)] == [2, None]
    assert job.last_event["kind"] == "epoch"

    events[0]["i"] = "changed"  # callers get copies, not the job's own record
    assert job.events()[0]["i"] == 0


def test_at_most_max_workers_run_and_the_rest_wait_in_fifo_order(make_runner):
    runner = make_runner(max_workers=2)
    log, running = [], Counter()
    gates = [Gate(log, running) for _ in range(4)]
    submitted = [runner.submit(g, i, name=f"job {i}") for i, g in enumerate(gates)]
    assert gates[0].started.wait(TIMEOUT) and gates[1].started.wait(TIMEOUT)

    assert [j.state for j in submitted] == [JobState.RUNNING] * 2 + [JobState.QUEUED] * 2
    assert [j.queue_position() for j in submitted] == [None, None, 1, 2]

    gates[0].release.set()
    assert gates[2].started.wait(TIMEOUT)
    assert submitted[0].wait(TIMEOUT) and submitted[0].state is JobState.DONE
    assert submitted[3].state is JobState.QUEUED and submitted[3].queue_position() == 1
    assert not gates[3].started.is_set()

    for g in gates:
        g.release.set()
    assert [j.result(TIMEOUT) for j in submitted] == [0, 1, 2, 3]
    assert running.peak == 2
    assert sorted(log[:2]) == [0, 1] and log[2:] == [2, 3]


def test_cancelling_a_running_job_keeps_its_partial_result(make_runner):
    started = threading.Event()
    seen = {}

    def fn(*, on_event, cancel):
        started.set()
        seen["cancelled"] = cancel.wait(TIMEOUT)
        return "partial"

    job = make_runner().submit(fn)
    assert started.wait(TIMEOUT)
    assert not job.cancel_requested
    job.cancel()
    assert job.cancel_requested
    assert job.result(timeout=TIMEOUT) == "partial"
    assert seen["cancelled"] is True
    assert job.state is JobState.CANCELLED and job.error is None


def test_a_function_that_raises_after_cancel_ends_cancelled_not_failed(make_runner):
    started = threading.Event()

    def fn(*, on_event, cancel):
        started.set()
        cancel.wait(TIMEOUT)
        raise RuntimeError("stopped before anything was ready")

    job = make_runner().submit(fn)
    assert started.wait(TIMEOUT)
    job.cancel()
    assert job.result(timeout=TIMEOUT) is None
    assert job.state is JobState.CANCELLED and job.error is None
    assert "stopped before anything was ready" in job.traceback


def test_cancelling_a_queued_job_means_it_never_runs(make_runner):
    runner = make_runner(max_workers=1)
    blocker = Gate()
    first = runner.submit(blocker, "first")
    assert blocker.started.wait(TIMEOUT)
    ran = threading.Event()
    queued = runner.submit(lambda *, on_event, cancel: ran.set())
    after = runner.submit(Gate(), "after")
    assert queued.queue_position() == 1 and after.queue_position() == 2

    queued.cancel()
    assert queued.state is JobState.CANCELLED and queued.done and queued.wait(0)
    assert queued.queue_position() is None and queued.started is None
    assert after.queue_position() == 1

    blocker.release.set()
    assert first.result(TIMEOUT) == "first"
    after.cancel()
    assert after.wait(TIMEOUT)
    runner.shutdown(wait=True)
    assert not ran.is_set()
    assert queued.result(0) is None


def test_an_exception_fails_the_job_with_a_message_for_people_and_a_traceback_for_logs(make_runner):
    def crash(*, on_event, cancel):
        raise RuntimeError("boom")

    job = make_runner().submit(crash, name="Crash")
    assert job.wait(TIMEOUT)
    assert job.state is JobState.FAILED
    assert job.error == "Training failed: RuntimeError: boom"
    assert "Traceback" not in job.error
    assert "Traceback" in job.traceback and "boom" in job.traceback and "crash" in job.traceback
    with pytest.raises(JobFailed, match="RuntimeError: boom"):
        job.result()


def test_user_errors_are_shown_as_they_are(make_runner):
    class ImageError(Exception):
        user_facing = True

    def bad_value(*, on_event, cancel):
        raise ValueError("epochs must be at least 1, got 0")

    def bad_image(*, on_event, cancel):
        raise ImageError("That file is not an image.")

    runner = make_runner()
    value_job, image_job = runner.submit(bad_value), runner.submit(bad_image)
    with pytest.raises(JobFailed, match="^epochs must be at least 1, got 0$"):
        value_job.result(TIMEOUT)
    assert value_job.error == "epochs must be at least 1, got 0"
    assert image_job.wait(TIMEOUT) and image_job.error == "That file is not an image."


def test_events_after_the_job_finished_are_ignored(make_runner):
    def leak(*, on_event, cancel):
        on_event({"kind": "step"})
        return on_event

    job = make_runner().submit(leak)
    late_on_event = job.result(TIMEOUT)
    late_on_event({"kind": "late"})
    assert [e["kind"] for e in job.events()] == ["step"]


def test_events_keep_every_epoch_and_only_the_latest_others(make_runner, monkeypatch):
    monkeypatch.setattr(jobs, "KEEP_OTHER_EVENTS", 5)

    def chatty(*, on_event, cancel):
        for i in range(40):
            on_event({"kind": "epoch" if i % 10 == 0 else "step", "i": i})

    job = make_runner().submit(chatty)
    job.result(TIMEOUT)
    kept = [e["i"] for e in job.events()]
    assert {0, 10, 20, 30} <= set(kept)
    steps = [i for i in kept if i % 10]
    assert 5 <= len(steps) <= 10 and steps[-1] == 39 and steps == sorted(steps)
    # `since` counts every event ever appended, so it still points at the same event after trimming.
    assert [e["i"] for e in job.events(since=38)] == [38, 39]


def test_jobs_are_listed_newest_first_and_filtered_by_owner(make_runner):
    runner = make_runner()

    def noop(*, on_event, cancel):
        return None

    a1 = runner.submit(noop, owner="a")
    b1 = runner.submit(noop, owner="b")
    a2 = runner.submit(noop, owner="a")
    assert runner.jobs() == [a2, b1, a1]
    assert runner.jobs(owner="a") == [a2, a1]
    assert runner.jobs(owner="nobody") == []
    assert runner.get(b1.id) is b1 and runner.get("no-such-id") is None
    assert len({a1.id, b1.id, a2.id}) == 3

    runner.cancel_all(owner="a")
    assert all(j.wait(TIMEOUT) for j in (a1, b1, a2))
    assert b1.state is JobState.DONE


def test_old_finished_jobs_are_forgotten_beyond_keep_finished(make_runner):
    runner = make_runner(max_workers=1, keep_finished=2)
    submitted = [runner.submit(lambda *, on_event, cancel: None) for _ in range(4)]
    for job in submitted:
        job.wait(TIMEOUT)
    runner.submit(lambda *, on_event, cancel: None).wait(TIMEOUT)
    assert len(runner.jobs()) <= 3
    assert runner.get(submitted[0].id) is None
    assert submitted[0].state is JobState.DONE  # a page holding the Job can still read it


def test_result_times_out_while_the_job_is_unfinished(make_runner):
    gate = Gate()
    job = make_runner().submit(gate, "x")
    assert not job.wait(0.01)
    with pytest.raises(TimeoutError):
        job.result(timeout=0.01)
    gate.release.set()
    assert job.result(TIMEOUT) == "x"


def test_default_runner_is_one_shared_instance():
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(jobs.default_runner())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(r is seen[0] for r in seen)
    assert jobs.default_runner() is seen[0]


def test_max_workers_comes_from_kd_max_jobs_and_must_be_positive(monkeypatch, make_runner):
    monkeypatch.setenv("KD_MAX_JOBS", "3")
    assert make_runner(None).max_workers == 3
    monkeypatch.delenv("KD_MAX_JOBS")
    assert make_runner(None).max_workers == 2
    with pytest.raises(ValueError, match="max_workers"):
        JobRunner(0)
    monkeypatch.setenv("KD_MAX_JOBS", "0")
    with pytest.raises(ValueError, match="max_workers"):
        JobRunner()
    monkeypatch.setenv("KD_MAX_JOBS", "many")
    with pytest.raises(ValueError, match="KD_MAX_JOBS"):
        JobRunner()


def test_submit_rejects_arguments_the_runner_supplies(make_runner):
    with pytest.raises(TypeError, match="cancel"):
        make_runner().submit(lambda *, on_event, cancel: None, cancel=threading.Event())


def test_shutdown_cancels_everything_and_joins_the_workers():
    threads_before = set(threading.enumerate())
    runner = JobRunner(max_workers=1)
    gate = Gate()
    running = runner.submit(gate, "running")
    queued = runner.submit(Gate(), "queued")
    assert gate.started.wait(TIMEOUT)

    runner.shutdown(wait=True)
    assert set(threading.enumerate()) <= threads_before  # its worker threads have exited
    assert running.done
    assert running.state is JobState.CANCELLED and running.result(0) == "running"
    assert queued.state is JobState.CANCELLED and queued.started is None
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit(gate, "late")
