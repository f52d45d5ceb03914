"""Jobs on a real Dask cluster: a scheduler and two worker processes started here, on 127.0.0.1 only."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from kdcore import data as kdata
from kdcore import events as ev
from kdcore import experiments, jobs, teachers
from kdcore.cluster import DaskBackend
from kdcore.jobs import JobKind, JobRunner, JobSpec, JobState

ROOT = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).with_name("dask")
TIMEOUT = 240


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, fast_run):
    """A scheduler and two single-thread workers, sharing this test session's data folder (teachers cached)."""
    folder = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    file = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        log = stack.enter_context(open(folder / f"{name}.log", "w"))  # noqa: SIM115 - the stack closes it
        procs.append(subprocess.Popen([str(DASK), *args, "--no-dashboard"], cwd=ROOT, env=env, stdout=log, stderr=log))

    with contextlib.ExitStack() as stack:
        try:
            start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(file))
            _wait_for(lambda: file.exists() and file.stat().st_size > 0, 60, "the scheduler to start")
            address = json.loads(file.read_text())["address"]
            for n in (1, 2):
                start(f"worker{n}", "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-nanny")
            backend = DaskBackend(address)
            _wait_for(lambda: len(backend.client.nthreads()) == 2, 60, "two workers to join")
            runner = JobRunner(backend)
            yield runner, address
            runner.shutdown(wait=False)
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def spec(config=None, **kwargs) -> JobSpec:
    config = config or experiments.default_config("mnist-sample", epochs=2)
    return JobSpec(JobKind.DISTILL, config, name="cluster test", record=False, **kwargs)


def test_a_distillation_runs_on_a_worker_with_its_progress(cluster):
    runner, _ = cluster
    assert runner.backend.slots() == 2 and "2 workers" in runner.backend.describe()
    job = runner.submit(spec())
    result = job.result(timeout=TIMEOUT)
    assert job.state is JobState.DONE and [r.role for r in result.rows][-2:] == ["scratch", "distilled"]
    p = _wait_for(lambda: (q := job.progress()).phase is ev.Phase.FINISHED and q, 30, "the last events")
    assert [e.epoch for e in p.epochs("distilled")] == [1, 2]  # the curves arrived through Dask's event log


def test_a_job_error_comes_back_as_the_users_message(cluster):
    runner, _ = cluster
    job = runner.submit(spec(function="tests.jobfns:fail"))
    assert job.wait(TIMEOUT) and job.state is JobState.FAILED
    assert job.error.user and job.error.message == "epochs must be at least 1, got 0"


def test_stop_on_the_cluster_keeps_a_partial_result(cluster):
    runner, _ = cluster
    job = runner.submit(spec(experiments.default_config("mnist-sample", epochs=60)))
    # a partial result compares both students after a common epoch, so wait for the distilled one's first
    _wait_for(lambda: len(job.progress().epochs("distilled")) >= 1, TIMEOUT, "both students' first epoch")
    stopped = time.monotonic()
    job.cancel()
    result = job.result(timeout=TIMEOUT)
    assert time.monotonic() - stopped < 30
    assert job.state is JobState.CANCELLED and result.partial and 1 <= result.epochs_done < 60


def test_a_killed_worker_mid_job_restarts_the_job_elsewhere_and_corrupts_nothing(cluster):
    runner, _ = cluster
    pids = runner.backend.client.run(os.getpid)  # worker address -> its process id
    job = runner.submit(spec(experiments.default_config("mnist-sample", epochs=12)))
    p = _wait_for(lambda: (q := job.progress()).epochs("scratch") and q, TIMEOUT, "the job to train")
    os.kill(pids[p.worker], signal.SIGKILL)
    result = job.result(timeout=TIMEOUT)
    notices = [n for n in job.progress().notices if n.cause == "restarted"]
    assert job.state is JobState.DONE and result.epochs_done == 12
    assert notices and "started again on" in notices[0].message
    assert p.phase is ev.Phase.STUDENTS
    # The teacher cache is whole: every member loads without training.
    config = experiments.default_config("mnist-sample")
    assert teachers.missing_members(kdata.load("mnist-sample"), teachers.parse_members(config.teachers)) == []


def test_the_cli_runs_a_job_on_the_cluster(cluster):
    _, address = cluster
    proc = subprocess.run(
        [sys.executable, "-m", "kdcore", "distill", "--scheduler", address, "--epochs", "1", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["config"]["epochs"] == 1 and out["kd_gain"] is not None


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ConnectionError, match="Cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskBackend("tcp://127.0.0.1:9", timeout=2)
    assert jobs  # the module under test is importable without a cluster
