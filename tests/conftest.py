"""Test-wide setup: every test run uses its own data dir, never the user's cache."""

import os
import shutil
import tempfile

import pytest
import torch

# Set before any kdcore import reads it, so even import-time paths land in the temp dir.
_DATA_DIR = tempfile.mkdtemp(prefix="kd-test-data-")
os.environ["KD_DATA_DIR"] = _DATA_DIR
# Two cores: one intra-op thread per process avoids oversubscription when the app's jobs run too.
torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    from kdcore import jobs

    # Join the app tests' worker threads before the interpreter tears down torch's own threads.
    jobs.default_runner().shutdown(wait=True)
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def fast_config():
    """The default preset with a short student run. Its teachers are the default ones, trained once per
    test session and then found in the cache by every later test, the app tests included."""
    from kdcore.experiments import default_config

    return default_config("mnist-sample", epochs=3)


@pytest.fixture(scope="session")
def fast_run(fast_config):
    """One real distillation on mnist-sample shared by the tests that only read its result."""
    from kdcore.experiments import distill

    events = []
    result = distill(fast_config, on_event=events.append)
    return result, events
