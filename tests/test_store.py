"""Run history: saved runs come back whole, filter and sort, survive restarts, concurrent writers and damage."""

import dataclasses
import multiprocessing
import os
import sqlite3
import threading

import numpy as np
import pytest
import torch

from kdcore import events as ev
from kdcore import jobs, models
from kdcore import store as store_module
from kdcore.experiments import default_config
from kdcore.store import SORT_KEYS, RunStore, StoreError, load_student, open_store
from tests.synthetic import run_result


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    return open_store()


def test_default_history_is_one_wal_file_in_the_data_dir(store, tmp_path):
    assert store.path == tmp_path / "history.sqlite3"
    assert store.path.is_file() and store.recovered_message is None
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 2


def test_a_saved_run_comes_back_whole_and_its_student_predicts_the_same(store, tmp_path):
    result = run_result(partial=True)
    run_id = store.save_run(result)
    record = store.get_run(run_id)
    assert record.kind == "distill" and record.dataset == "mnist-sample" and record.partial
    assert record.config == result.config.to_dict()
    assert record.metrics["rows"] == [r.to_json() for r in result.rows]
    assert record.metrics["kd_gain"] == pytest.approx(result.kd_gain)
    assert record.row("distilled")["accuracy"] == 0.85
    assert record.curves == {role: [dataclasses.asdict(e) for e in epochs] for role, epochs in result.curves.items()}
    assert record.student_path == tmp_path / "students" / f"run-{run_id}.safetensors"
    assert [p.name for p in record.student_path.parent.iterdir()] == [record.student_path.name]  # no temp files

    student = load_student(record)
    x = torch.randn(5, *models.image_shape("mnist-sample"))
    original = result.students["distilled"].eval()
    assert not student.training
    assert torch.equal(student(x), original(x))


def test_runs_filter_by_dataset_and_kind_and_sort_by_kd_gain(store):
    ids = {gain: store.save_run(run_result(scratch=0.8, distilled=0.8 + gain)) for gain in (0.02, -0.01, 0.05)}
    cifar = store.save_run(run_result(dataset="cifar10", student="cnn-tiny", scratch=0.5, distilled=0.6))
    sweep = store.save_record(
        "sweep", "mnist-sample", {"temperatures": [1, 4]}, {"points": [0.1, 0.2]}, None, partial=False
    )

    best_first = store.list_runs(dataset="mnist-sample", kind="distill", sort_by="kd_gain")
    assert [s.id for s in best_first] == [ids[0.05], ids[0.02], ids[-0.01]]
    assert best_first[0].kd_gain == pytest.approx(0.05) and best_first[0].distilled_acc == pytest.approx(0.85)
    assert best_first[0].student == "mlp-tiny" and best_first[0].temperature == 4.0 and best_first[0].epochs == 2
    worst_first = store.list_runs(dataset="mnist-sample", kind="distill", sort_by="kd_gain", descending=False)
    assert [s.id for s in worst_first] == [ids[-0.01], ids[0.02], ids[0.05]]

    assert [s.id for s in store.list_runs(dataset="cifar10")] == [cifar]
    assert [s.id for s in store.list_runs(kind="sweep")] == [sweep]
    everything = store.list_runs(sort_by="kd_gain")
    assert len(everything) == 5 and everything[-1].id == sweep  # a run without a KD gain sorts last
    assert next(s.id for s in store.list_runs()) == sweep  # newest first by default


def test_every_sort_key_works_and_a_bad_one_names_the_allowed_ones(store):
    store.save_run(run_result())
    store.save_record("fraction", "mnist-sample", {"fractions": [0.1]}, {"kd_gain": 0.01})
    for key in SORT_KEYS:
        assert len(store.list_runs(sort_by=key)) == 2
    with pytest.raises(ValueError, match=r"sort_by.*kd_gain.*distilled_acc.*'accuracy'"):
        store.list_runs(sort_by="accuracy")


def test_bad_record_arguments_are_named(store):
    with pytest.raises(ValueError, match="dataset.*mnist-sample"):
        store.save_record("sweep", "imagenet", {}, {})
    with pytest.raises(ValueError, match="kind"):
        store.save_record("", "mnist-sample", {}, {})
    with pytest.raises(ValueError, match="metrics"):
        store.save_record("sweep", "mnist-sample", {}, [0.1])
    assert store.count() == 0


def test_a_missing_run_is_a_clear_key_error(store):
    with pytest.raises(KeyError, match="no saved run with id 42"):
        store.get_run(42)


def test_history_survives_a_restart(tmp_path):
    path = tmp_path / "h.sqlite3"
    first = RunStore(path)
    run_id = first.save_run(run_result())
    del first
    again = RunStore(path)
    assert [s.id for s in again.list_runs()] == [run_id]
    assert load_student(again.get_run(run_id)) is not None


def test_delete_removes_the_rows_and_their_student_files(store):
    keep, gone = store.save_run(run_result()), store.save_run(run_result())
    record = store.save_record("capacity", "mnist-sample", {}, {})
    gone_file = store.get_run(gone).student_path
    deletion = store.delete_runs([np.int64(gone), record, 999])  # ids from a table selection are numpy ints
    assert deletion.count == 2 and deletion.refused == () and deletion.warning is None
    assert not gone_file.exists() and store.get_run(keep).student_path.exists()
    assert [s.id for s in store.list_runs()] == [keep]
    with pytest.raises(KeyError):
        store.get_run(gone)
    with pytest.raises(ValueError, match="run id"):
        store.delete_runs(["1"])


def test_a_record_without_a_student_or_with_a_lost_file_says_so(store):
    record = store.get_run(store.save_record("sweep", "mnist-sample", {}, {}))
    with pytest.raises(StoreError, match="no saved student"):
        load_student(record)
    run = store.get_run(store.save_run(run_result()))
    run.student_path.unlink()
    with pytest.raises(StoreError, match="missing"):
        load_student(run)


def _write_records(path, n):
    store = RunStore(path)
    for i in range(n):
        store.save_record("sweep", "mnist-sample", {"writer": os.getpid(), "i": i}, {"kd_gain": i / 100})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = RunStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_records, args=(path, 25)) for _ in range(2)]
    for p in procs:
        p.start()
    result, errors = run_result(), []

    def thread_writes():
        try:
            for _ in range(25):
                store.save_run(result)
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=thread_writes) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=60)
    assert errors == [] and [p.exitcode for p in procs] == [0, 0]
    runs = store.list_runs()
    assert len(runs) == 150 and len({r.id for r in runs}) == 150
    assert sum(r.kind == "distill" for r in runs) == 100
    assert len(list((tmp_path / "students").glob("run-*.safetensors"))) == 100


def _real_db_with_runs(path, n=3):
    store = RunStore(path)
    for i in range(n):
        store.save_record("sweep", "mnist-sample", {"i": i, "pad": "x" * 5000}, {"kd_gain": i})
    store.close()  # the last connection folds the WAL into the file, so the damage below hits real data


@pytest.mark.parametrize("damage", ["random bytes", "overwritten header", "damaged page"])
def test_a_damaged_history_is_kept_aside_and_a_fresh_one_started(tmp_path, damage):
    path = tmp_path / "history.sqlite3"
    if damage == "random bytes":
        path.write_bytes(os.urandom(8192))
    else:
        _real_db_with_runs(path)
        raw = bytearray(path.read_bytes())
        if damage == "overwritten header":
            raw[:100] = os.urandom(100)
        else:  # garbage over the second page (the table's b-tree), header intact
            page = int.from_bytes(raw[16:18], "big")
            raw[page : 2 * page] = b"\xff" * page
        path.write_bytes(bytes(raw))
    broken = path.read_bytes()

    store = RunStore(path)
    assert store.list_runs() == []
    assert store.damaged_path is not None and store.damaged_path.parent == tmp_path
    assert store.damaged_path.name.startswith("history.sqlite3.damaged-")
    assert store.damaged_path.read_bytes() == broken
    assert "damaged" in store.recovered_message and str(store.damaged_path) in store.recovered_message
    assert store.get_run(store.save_record("sweep", "mnist-sample", {}, {})).kind == "sweep"
    assert RunStore(path).recovered_message is None  # the fresh file is healthy: no second recovery


def test_damage_found_while_the_app_runs_still_saves_the_run(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = RunStore(path)
    old_id = store.save_run(run_result())
    old_file = store.get_run(old_id).student_path
    old_weights = old_file.read_bytes()
    path.write_bytes(os.urandom(4096))

    new_id = store.save_run(run_result())
    assert store.recovered_message is not None
    assert [s.id for s in store.list_runs()] == [new_id]
    # The damaged history's student file is not overwritten by the fresh history's first run.
    assert new_id != old_id and old_file.read_bytes() == old_weights


def test_a_history_from_a_newer_app_is_refused_not_wiped(tmp_path):
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        RunStore(path)
    assert path.exists() and not list(tmp_path.glob("*.damaged-*"))


def fake_distill(config, *, on_event, cancel):
    return run_result(partial=True)


def recorded_spec(owner=None):
    return jobs.JobSpec(jobs.JobKind.DISTILL, default_config(), function="tests.test_store:fake_distill", owner=owner)


def test_a_recorded_job_keeps_its_result_in_the_history_under_its_owner(store):
    events = []
    result = jobs.run(recorded_spec(owner="session-a"), events.append, None)
    assert result.partial
    (saved,) = [e for e in events if isinstance(e, ev.Saved)]
    runs = open_store().list_runs()
    assert [r.id for r in runs] == [saved.run_id] and runs[0].partial and runs[0].owner == "session-a"


def test_a_history_that_cannot_be_written_does_not_lose_the_result(store, monkeypatch):
    events = []

    def broken(*args, **kwargs):
        raise StoreError("disk full (test)")

    monkeypatch.setattr(RunStore, "save_run", broken)
    result = jobs.run(recorded_spec(), events.append, None)
    assert result.kd_gain == pytest.approx(0.05)
    assert any(isinstance(e, ev.SaveFailed) and "disk full" in e.message for e in events)


def test_each_session_sees_and_deletes_only_its_own_runs(store):
    mine = store.save_run(run_result(), owner="me")
    theirs = store.save_run(run_result(), owner="them")
    cli = store.save_run(run_result())
    assert [r.id for r in store.list_runs(owner="me")] == [mine]
    assert {r.id for r in store.list_runs()} == {mine, theirs, cli}  # the all-runs view
    assert store.delete_runs([mine, theirs, cli], owner="me").count == 1
    assert {r.id for r in store.list_runs()} == {theirs, cli}
    assert store.delete_runs([theirs, cli]).count == 2  # an instructor's server may delete any run


def test_only_a_server_started_as_instructor_may_delete_other_sessions_runs(monkeypatch):
    monkeypatch.delenv("KD_INSTRUCTOR", raising=False)
    assert not store_module.may_delete_all()
    monkeypatch.setenv("KD_INSTRUCTOR", "1")
    assert store_module.may_delete_all()


def test_a_version_1_history_is_upgraded_and_keeps_its_runs(tmp_path):
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, kind TEXT NOT NULL,
            dataset TEXT NOT NULL, partial INTEGER NOT NULL, config_json TEXT NOT NULL, metrics_json TEXT NOT NULL,
            curves_json TEXT NOT NULL, student_path TEXT);
            INSERT INTO runs (created, kind, dataset, partial, config_json, metrics_json, curves_json)
            VALUES (1.0, 'sweep', 'mnist-sample', 0, '{}', '{}', '{}');
            PRAGMA user_version = 1;"""
        )
    store = RunStore(path)
    (old,) = store.list_runs()
    assert old.kind == "sweep" and old.owner is None and store.recovered_message is None
    new = store.save_record("sweep", "mnist-sample", {}, {}, owner="me")
    assert new > old.id and [r.id for r in store.list_runs(owner="me")] == [new]


def _point_student_at(store, run_id, stored_path):
    """Rewrite a run's stored student path, as a copied or hand-edited history file would have it."""
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET student_path = ? WHERE id = ?", (stored_path, run_id))


def _outside_paths(data_dir, victim):
    """Stored paths that lead out of data_dir/students to `victim`, each set up as it would have to exist on disk."""
    students = data_dir / "students"
    (students / "elsewhere").symlink_to(victim.parent, target_is_directory=True)
    (students / "run-99.safetensors").symlink_to(victim)
    return {
        "absolute": str(victim),
        "dot-dot": f"students/../{os.path.relpath(victim, data_dir)}",
        "beside the students folder": "history.sqlite3",  # the history file itself
        "through a symlinked folder": f"students/elsewhere/{victim.name}",
        "a symlink to a file outside": "students/run-99.safetensors",
    }


OUTSIDE = (
    "absolute",
    "dot-dot",
    "beside the students folder",
    "through a symlinked folder",
    "a symlink to a file outside",
)


@pytest.mark.parametrize("case", OUTSIDE)
def test_deleting_a_run_never_deletes_a_file_outside_the_students_folder(store, tmp_path_factory, case):
    run_id, keep = store.save_run(run_result()), store.save_run(run_result())
    own_file = store.get_run(run_id).student_path
    victim = tmp_path_factory.mktemp("elsewhere") / "precious.txt"
    victim.write_text("not the app's")
    stored = _outside_paths(store.path.parent, victim)[case]
    _point_student_at(store, run_id, stored)

    deletion = store.delete_runs([run_id])
    assert victim.is_file() and store.path.is_file()
    assert deletion.count == 1 and [s.id for s in store.list_runs()] == [keep]
    assert deletion.refused == (stored,)
    assert stored in deletion.warning and str(store.students_dir) in deletion.warning
    # A link that leads outside is left alone too: the app removes only what is really in its own folder.
    assert (store.students_dir / "run-99.safetensors").is_symlink()
    assert own_file.is_file()  # the row no longer named it, so it stays; only named, contained files go


def test_a_symlink_that_stays_inside_the_students_folder_is_followed(store):
    run_id = store.save_run(run_result())
    real = store.get_run(run_id).student_path
    (store.students_dir / "alias.safetensors").symlink_to(real.name)
    _point_student_at(store, run_id, "students/./alias.safetensors")
    assert store.get_run(run_id).student_path == real
    assert load_student(store.get_run(run_id)) is not None
    assert store.delete_runs([run_id]).refused == () and not real.exists()


@pytest.mark.parametrize("case", OUTSIDE)
def test_a_stored_path_outside_the_students_folder_is_never_read(store, tmp_path_factory, case):
    run_id = store.save_run(run_result())
    victim = tmp_path_factory.mktemp("elsewhere") / "run-1.safetensors"
    victim.write_bytes(store.get_run(run_id).student_path.read_bytes())  # a loadable student, but not ours
    stored = _outside_paths(store.path.parent, victim)[case]
    _point_student_at(store, run_id, stored)

    record = store.get_run(run_id)
    assert record.student_path is None and record.config["student"] == "mlp-tiny"
    with pytest.raises(StoreError, match="outside") as info:
        load_student(record)
    assert stored in str(info.value)


def test_a_student_file_swapped_for_an_outside_link_after_get_run_is_not_read(store, tmp_path):
    record = store.get_run(store.save_run(run_result()))
    victim = tmp_path / "victim.safetensors"
    record.student_path.rename(victim)
    record.student_path.symlink_to(victim)
    with pytest.raises(StoreError, match="outside"):
        load_student(record)


@pytest.mark.parametrize("stored", [7, "students/run-1.safetensors\x00.txt", "students", "students/.."])
def test_stored_paths_that_are_not_student_files_are_refused_not_crashed_on(store, stored):
    run_id = store.save_run(run_result())
    _point_student_at(store, run_id, stored)
    assert store.get_run(run_id).student_path is None
    deletion = store.delete_runs([run_id])
    assert deletion.count == 1 and deletion.refused == (str(stored),)
    assert store.students_dir.is_dir()
