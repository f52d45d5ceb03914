"""Background jobs in real worker processes: results, progress, FIFO queueing, Stop, failures and dead workers."""

import os
import time

import pytest

from kdcore import events as ev
from kdcore import jobs
from kdcore.experiments import default_config
from kdcore.jobs import JobFailed, JobKind, JobRunner, JobSpec, JobState
from kdcore.workers import ProcessBackend

TIMEOUT = 120  # a worker's first job waits for it to import torch
CONFIG = default_config("mnist-sample")


def spec(function: str, name: str = "test", **options) -> JobSpec:
    return JobSpec(JobKind.DISTILL, CONFIG, options, name=name, owner="s1", record=False, function=function)


@pytest.fixture(scope="module")
def runner():
    """One worker, shared: starting a process that imports torch takes seconds."""
    r = JobRunner(ProcessBackend(1, cancel_grace=3.0))
    yield r
    r.shutdown(wait=True)


def _started(job, timeout: float = TIMEOUT) -> None:
    """Until a tests.jobfns:hold job runs in its worker (a stop before that cancels it unstarted)."""
    deadline = time.monotonic() + timeout
    while not job.progress().notices:
        assert time.monotonic() < deadline, f"{job.name} did not start"
        time.sleep(0.05)


def test_a_job_runs_in_a_worker_process_and_returns_its_result(runner):
    job = runner.submit(spec("tests.jobfns:pid"))
    worker_pid = job.result(timeout=TIMEOUT)
    assert worker_pid != os.getpid()  # the server's interpreter never runs the job
    assert job.state is JobState.DONE and job.error is None
    assert (job.name, job.kind, job.owner, job.config) == ("test", JobKind.DISTILL, "s1", CONFIG)
    assert job.created <= job.started <= job.finished


def test_progress_comes_from_the_jobs_events(runner):
    job = runner.submit(spec("tests.jobfns:hold", seconds=0.2, label="hello"))
    assert job.result(timeout=TIMEOUT) == "hello"
    assert [n.message for n in job.progress().notices] == ["hello started"]


def test_jobs_wait_in_fifo_order_with_their_queue_position(runner):
    first = runner.submit(spec("tests.jobfns:hold", label="first"))
    second = runner.submit(spec("tests.jobfns:hold", seconds=0.1, label="second"))
    third = runner.submit(spec("tests.jobfns:hold", seconds=0.1, label="third"))
    assert (second.queue_position(), third.queue_position()) == (1, 2)
    assert "position 2" in third.progress().text and "1 jobs at a time" in third.progress().text
    _started(first)
    first.cancel()
    assert first.result(timeout=TIMEOUT) == "first stopped"
    assert first.state is JobState.CANCELLED  # stopped with its partial result
    assert second.result(timeout=TIMEOUT) == "second" and third.result(timeout=TIMEOUT) == "third"
    assert second.finished <= third.started


def test_pages_redraw_live_progress_less_often_while_jobs_queue(runner):
    assert runner.active() == 0 and jobs.refresh_seconds(runner.active(), 1) == jobs.LIVE_REFRESH_S
    first = runner.submit(spec("tests.jobfns:hold", label="first"))
    queued = [runner.submit(spec("tests.jobfns:hold", seconds=0.1, label=f"q{i}")) for i in range(3)]
    assert runner.active() == 4 and runner.running() == 1
    assert jobs.refresh_seconds(runner.active(), 1) == 4.0  # four jobs for one slot: a redraw every 4 s
    assert jobs.refresh_seconds(runner.active(), 1, charts=True) == 4.0 * jobs.LIVE_CHARTS_EVERY  # charts: rarer
    assert jobs.refresh_seconds(runner.active(), 2) == 2.0 and jobs.refresh_seconds(40, 2) == jobs.MAX_REFRESH_S
    _started(first)
    first.cancel()
    for job in queued:
        job.result(timeout=TIMEOUT)
    assert runner.active() == 0
    with pytest.raises(ValueError, match="slots must be at least 1, got 0"):
        jobs.refresh_seconds(1, 0)


def _distill_progress(*events: ev.Event) -> ev.Progress:
    tracker = ev.ProgressTracker(steps=2)  # a distillation: teachers, then students
    for event in events:
        tracker.apply(event)
    return tracker.progress()


def _epoch(model: str, epoch: int, t: float) -> ev.Epoch:
    return ev.Epoch(model=model, epoch=epoch, epochs=20, loss=1.0, hard=1.0, soft=None, test_acc=0.9, t=t)


def test_a_live_view_waits_for_the_result_only_when_its_job_is_about_to_end():
    refresh = jobs.LIVE_REFRESH_S
    teachers = ev.TeacherStart(member="cnn-wide", index=1, count=1, epochs=6, t=0.1)
    students = ev.StudentsStart(models=("scratch", "distilled"), epochs=20, train_size=4000, t=0.5)
    # 0.1 s per epoch pair: at epoch 10 of 20 a second is left, at epoch 19 a tenth of one.
    halfway = _distill_progress(teachers, students, _epoch("scratch", 10, 1.5), _epoch("distilled", 10, 1.5))
    assert halfway.eta_seconds == pytest.approx(1.0) and jobs.final_wait_seconds(halfway, refresh) == 0.0
    ending = _distill_progress(teachers, students, _epoch("scratch", 19, 2.4), _epoch("distilled", 19, 2.4))
    assert ending.eta_seconds < refresh and jobs.final_wait_seconds(ending, refresh) == refresh
    measuring = _distill_progress(teachers, students, ev.Measuring(t=2.6))
    assert jobs.final_wait_seconds(measuring, refresh) == refresh
    # The teachers' last epoch is not the job's: the students still have to train.
    training = _distill_progress(teachers, ev.TeacherUpdate(member="cnn-wide", status=ev.TeacherStatus.TRAINING, t=0.2))
    assert training.phase is ev.Phase.TEACHERS and jobs.final_wait_seconds(training, refresh) == 0.0


def test_a_queued_job_that_is_stopped_never_runs(runner):
    blocker = runner.submit(spec("tests.jobfns:hold", label="blocker"))
    queued = runner.submit(spec("tests.jobfns:hold", label="queued"))
    queued.cancel()
    assert queued.state is JobState.CANCELLED and queued.result(timeout=0) is None and queued.started is None
    blocker.cancel()
    blocker.wait(TIMEOUT)


@pytest.mark.parametrize("user", [True, False])
def test_a_failed_job_says_whether_the_user_can_fix_it(runner, user):
    job = runner.submit(spec("tests.jobfns:fail", user=user))
    assert job.wait(TIMEOUT) and job.state is JobState.FAILED
    assert job.error.user is user
    if user:
        assert job.error.message == "epochs must be at least 1, got 0"
    else:
        assert job.error.message == "Training failed: RuntimeError: boom"
    assert "Traceback" not in job.error.message and "Traceback" in job.error.detail
    with pytest.raises(JobFailed, match="boom|epochs"):
        job.result()


def test_a_killed_worker_fails_only_its_job_and_the_next_job_runs(runner):
    doomed = runner.submit(spec("tests.jobfns:die"))
    after = runner.submit(spec("tests.jobfns:pid"))
    assert doomed.wait(TIMEOUT) and doomed.state is JobState.FAILED
    assert "worker process" in doomed.error.message and "stopped unexpectedly" in doomed.error.message
    assert not doomed.error.user
    assert isinstance(after.result(timeout=TIMEOUT), int)  # a fresh worker took over


def test_a_job_that_ignores_stop_has_its_worker_killed_after_the_grace_period(runner):
    job = runner.submit(spec("tests.jobfns:deaf"))
    deadline = time.monotonic() + TIMEOUT
    while not job.progress().notices and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = time.monotonic()
    job.cancel()
    assert job.wait(TIMEOUT) and job.state is JobState.CANCELLED
    assert time.monotonic() - stopped < 3.0 + 5.0
    assert isinstance(runner.submit(spec("tests.jobfns:pid")).result(timeout=TIMEOUT), int)


def test_a_real_distillation_stopped_mid_run_compares_both_students_after_the_same_epoch(runner):
    config = default_config("mnist-sample", epochs=40, teacher_epochs=1)
    job = runner.submit(JobSpec(JobKind.DISTILL, config, name="long", record=False))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        p = job.progress()
        if min(len(p.epochs("scratch")), len(p.epochs("distilled"))) >= 2:  # both, as they may run side by side
            break
        time.sleep(0.05)
    job.cancel()
    result = job.result(timeout=TIMEOUT)
    assert job.state is JobState.CANCELLED and result.partial
    assert 2 <= result.epochs_done < 40, result.epochs_done
    assert len(result.curves["scratch"]) == len(result.curves["distilled"]) == result.epochs_done


def test_the_runner_refuses_jobs_after_shutdown():
    r = JobRunner(ProcessBackend(1))
    r.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shut down"):
        r.submit(spec("tests.jobfns:pid"))


def test_job_specs_validate_their_kind_and_keep_options_hashable():
    s = JobSpec("sweep", CONFIG, {"temperatures": (1.0, 2.0)})
    assert s.kind is JobKind.SWEEP and s.options == (("temperatures", (1.0, 2.0)),) and s.record is True
    assert JobSpec(JobKind.TEACHERS, CONFIG).record is False
    with pytest.raises(ValueError):
        JobSpec("train-everything", CONFIG)


def test_kd_max_jobs_must_be_a_positive_whole_number(monkeypatch):
    from kdcore.workers import max_jobs_from_env

    monkeypatch.setenv("KD_MAX_JOBS", "3")
    assert max_jobs_from_env() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("KD_MAX_JOBS", bad)
        with pytest.raises(ValueError, match="KD_MAX_JOBS"):
            max_jobs_from_env()


def test_kd_worker_nice_lowers_the_workers_priority_and_names_a_bad_value(monkeypatch):
    from kdcore.workers import worker_nice_from_env

    monkeypatch.setenv("KD_WORKER_NICE", "5")
    r = JobRunner(ProcessBackend(1))
    try:
        assert r.submit(spec("tests.jobfns:niceness")).result(timeout=TIMEOUT) == os.nice(0) + 5
    finally:
        r.shutdown(wait=True)
    for bad in ("20", "-3", "low"):
        monkeypatch.setenv("KD_WORKER_NICE", bad)
        with pytest.raises(ValueError, match=f"KD_WORKER_NICE .* from 0 to 19, got '{bad}'"):
            worker_nice_from_env()


def test_the_in_process_path_runs_the_same_job_function():
    seen = []
    assert jobs.run(spec("tests.jobfns:hold", seconds=0.0, label="here"), seen.append, None) == "here"
    assert isinstance(seen[0], ev.Notice)


def test_a_lone_job_gets_every_core_and_jobs_running_together_share_them():
    from kdcore import budget

    r = JobRunner(ProcessBackend(2))
    try:
        alone = r.submit(spec("tests.jobfns:budget"))
        assert alone.result(timeout=TIMEOUT) == budget.share(1)
        first = r.submit(spec("tests.jobfns:budget", hold=30.0))
        second = r.submit(spec("tests.jobfns:budget"))
        assert second.result(timeout=TIMEOUT) == budget.share(2)
        first.cancel()
        assert first.result(timeout=TIMEOUT) == budget.share(1)  # it started alone
    finally:
        r.shutdown(wait=True)
