"""Teacher ensembles: member names, combining members, and a cache that never serves a bad entry."""

import dataclasses
import hashlib
import math
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
import torch

from kdcore import budget, models, teachers
from kdcore import events as ev
from kdcore.teachers import Member, combine_logits, parse_members
from kdcore.train import teacher_settings
from tests.synthetic import synthetic

ARCH = "mlp-wide"  # the fastest teacher to train


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty teacher cache of this test's own, so corrupting entries cannot affect other tests."""
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    return teachers.cache_dir()


@pytest.fixture(scope="module")
def data():
    return synthetic()


DEFAULT_MEMBERS = (Member(ARCH, 1),)


def build(data, members=DEFAULT_MEMBERS, epochs=1, **kwargs):
    events = []
    ens = teachers.ensemble(
        data, list(members), epochs=epochs, on_event=events.append, device=torch.device("cpu"), **kwargs
    )
    return ens, events


def statuses(events):
    return [(e.member, e.status.value) for e in events if isinstance(e, ev.TeacherUpdate)]


def entry_files(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock"))


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --------------------------------------------------------------------------- member names


def test_parse_members_accepts_the_same_architecture_with_different_seeds():
    members = parse_members("cnn-wide, cnn-wide@1 ,mlp-wide@2")
    assert members == (Member("cnn-wide", 0), Member("cnn-wide", 1), Member("mlp-wide", 2))
    assert [m.name for m in members] == ["cnn-wide", "cnn-wide@1", "mlp-wide@2"]
    assert parse_members(["cnn-deep", "cnn-deep@3"]) == (Member("cnn-deep", 0), Member("cnn-deep", 3))
    assert parse_members("cnn-wide", default_seed=4) == (Member("cnn-wide", 4),)


@pytest.mark.parametrize("spec", ["cnn-wide,cnn-wide", "cnn-wide@0,cnn-wide", "cnn-deep@2,cnn-deep@2"])
def test_an_exact_duplicate_is_rejected_with_a_hint_to_add_a_seed(spec):
    with pytest.raises(ValueError, match="same member twice") as info:
        parse_members(spec)
    assert "@1" in str(info.value)


def test_the_duplicate_hint_names_the_duplicated_teacher():
    with pytest.raises(ValueError) as info:
        parse_members("mlp-wide,cnn-deep,cnn-deep")
    assert "cnn-deep@" in str(info.value)


def test_unknown_teacher_lists_the_zoo():
    with pytest.raises(ValueError, match="resnet") as info:
        parse_members("cnn-wide,resnet")
    assert all(name in str(info.value) for name in ("cnn-wide", "cnn-deep", "mlp-wide"))


@pytest.mark.parametrize("spec,count", [("", 0), (" , ", 0), (",".join(f"cnn-wide@{i}" for i in range(6)), 6)])
def test_zero_or_six_members_are_rejected(spec, count):
    with pytest.raises(ValueError, match=rf"1 to 5 members .* got {count}"):
        parse_members(spec)


def test_a_seed_that_is_not_a_number_is_rejected():
    with pytest.raises(ValueError, match="whole number, e.g. cnn-wide@1"):
        parse_members("cnn-wide@two")


# --------------------------------------------------------------------------- combining members


def test_prob_combine_averages_member_probabilities():
    a = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]])  # first row: probabilities 1/4, 3/4
    b = torch.tensor([[0.0, 0.0], [-3.0, 5.0]])  # first row: 1/2, 1/2
    combined = combine_logits([a, b], "prob")
    assert torch.allclose(combined.softmax(-1)[0], torch.tensor([0.375, 0.625]))
    assert torch.allclose(combined.softmax(-1), (a.softmax(-1) + b.softmax(-1)) / 2)
    # Already normalised log-probabilities, so exp sums to one without a softmax.
    assert torch.allclose(combined.exp().sum(-1), torch.ones(2))


def test_logit_combine_averages_logits():
    a, b = torch.tensor([[1.0, 4.0]]), torch.tensor([[3.0, -2.0]])
    assert torch.equal(combine_logits([a, b], "logit"), torch.tensor([[2.0, 1.0]]))


def test_a_single_member_ensemble_keeps_its_predictions():
    a = torch.randn(5, 10)
    assert torch.allclose(combine_logits([a], "prob").softmax(-1), a.softmax(-1), atol=1e-6)


def test_unknown_combine_is_rejected_with_the_choices(data):
    with pytest.raises(ValueError, match="prob.*logit.*'median'"):
        combine_logits([torch.zeros(1, 10)], "median")
    with pytest.raises(ValueError, match="prob.*logit"):
        teachers.ensemble(data, [Member(ARCH)], epochs=1, combine="median")


# --------------------------------------------------------------------------- cache


def test_second_ensemble_call_loads_from_the_cache_with_identical_logits(cache, data):
    first, events = build(data, [Member(ARCH, 1), Member(ARCH, 2)])
    # Side by side (two threads) both train before either is trained; on one thread, one after the other.
    assert sorted(statuses(events)) == [
        (f"{ARCH}@1", "trained"),
        (f"{ARCH}@1", "training"),
        (f"{ARCH}@2", "trained"),
        (f"{ARCH}@2", "training"),
    ]
    assert [t.cached for t in first.members] == [False, False]
    assert torch.equal(first.test_logits, combine_logits([t.test_logits for t in first.members]))
    assert first.train_logits.shape == (len(data.train_y), 10)

    second, events = build(data, [Member(ARCH, 1), Member(ARCH, 2)])
    assert [t.cached for t in second.members] == [True, True]
    assert "training" not in [s for _, s in statuses(events)]
    assert not any(isinstance(e, ev.Epoch) for e in events)
    assert torch.equal(second.train_logits, first.train_logits)
    assert torch.equal(second.test_logits, first.test_logits)
    for a, b in zip(first.members, second.members):
        assert same_weights(a.model, b.model)
    assert not any(".tmp-" in name for name in os.listdir(cache))


def test_different_seeds_make_different_teachers(cache, data):
    ens, _ = build(data, [Member(ARCH, 1), Member(ARCH, 2)])
    a, b = ens.members
    assert a.key != b.key
    assert not torch.equal(a.test_logits, b.test_logits)


def test_cache_key_changes_with_epochs_seed_architecture_and_data(data):
    key = teachers.teacher_key(data, Member(ARCH, 1), teacher_settings(data.name, 1))
    assert key == teachers.teacher_key(data, Member(ARCH, 1), teacher_settings(data.name, 1))
    others = [
        teachers.teacher_key(data, Member(ARCH, 1), teacher_settings(data.name, 2)),
        teachers.teacher_key(data, Member(ARCH, 2), teacher_settings(data.name, 1)),
        teachers.teacher_key(data, Member("cnn-wide", 1), teacher_settings(data.name, 1)),
        teachers.teacher_key(synthetic(seed=1), Member(ARCH, 1), teacher_settings(data.name, 1)),
    ]
    assert key not in others and len(set(others)) == len(others)


def test_a_setting_added_later_leaves_the_keys_of_teachers_cached_before_it_alone(data):
    mnist = teacher_settings(data.name, 1)
    # The key this teacher had before alternate_flip existed: its cached weights are still found.
    assert teachers.teacher_key(data, Member(ARCH, 1), mnist) == "mnist-sample-mlp-wide-s1-bde6720f9911d5d0"
    flipped = dataclasses.replace(mnist, alternate_flip=True)
    assert teachers.teacher_key(data, Member(ARCH, 1), flipped) != teachers.teacher_key(data, Member(ARCH, 1), mnist)


def _flip_middle_bytes(path):
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # inside the tensor data, so the file still parses
    raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))


CORRUPTIONS = {
    "truncated weights": lambda st, mf: st.write_bytes(st.read_bytes()[: st.stat().st_size // 2]),
    "flipped weight bytes": lambda st, mf: _flip_middle_bytes(st),
    "missing weights": lambda st, mf: st.unlink(),
    "missing manifest": lambda st, mf: mf.unlink(),
    "garbled manifest": lambda st, mf: mf.write_text("{not json"),
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS))
def test_a_damaged_weights_entry_is_rebuilt_never_loaded(cache, data, corrupt):
    first, _ = build(data)
    key = first.members[0].key
    CORRUPTIONS[corrupt](cache / f"{key}.safetensors", cache / f"{key}.json")

    again, events = build(data)
    assert (f"{ARCH}@1", "training") in statuses(events)
    assert again.members[0].cached is False
    # Retraining is deterministic, so the rebuilt teacher equals the original, not the damaged file.
    assert same_weights(again.members[0].model, first.members[0].model)
    assert torch.equal(again.test_logits, first.test_logits)

    third, events = build(data)
    assert third.members[0].cached is True and (f"{ARCH}@1", "training") not in statuses(events)
    assert not any(".tmp-" in name for name in os.listdir(cache))


def test_damaged_cached_logits_are_recomputed_from_the_teacher(cache, data):
    first, _ = build(data)
    _flip_middle_bytes(cache / f"{first.members[0].key}.logits.safetensors")
    again, _ = build(data)
    assert again.members[0].cached is True  # the weights were fine, so no retraining
    assert torch.allclose(again.train_logits, first.train_logits, atol=1e-5)
    assert torch.allclose(again.test_logits, first.test_logits, atol=1e-5)


def test_weights_that_do_not_fit_the_architecture_are_rebuilt(cache, data):
    first, _ = build(data)
    base = cache / first.members[0].key
    # A complete, correctly hashed entry for some other network.
    teachers._save_entry(base, {"0.weight": torch.zeros(3, 4)}, {"kind": "teacher"})
    again, events = build(data)
    assert (f"{ARCH}@1", "training") in statuses(events)
    assert same_weights(again.members[0].model, first.members[0].model)


def test_cancel_during_teacher_training_raises_and_caches_nothing(cache, data):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Epoch):  # the first of two epochs is done: stop mid-training
            cancel.set()

    with pytest.raises(teachers.Cancelled, match="nothing was cached"):
        teachers.ensemble(
            data, [Member(ARCH, 1)], epochs=2, on_event=on_event, cancel=cancel, device=torch.device("cpu")
        )
    assert entry_files(cache) == []
    _, events = build(data, epochs=2)
    assert (f"{ARCH}@1", "training") in statuses(events)


def test_cancel_between_members_keeps_the_finished_ones_cached(cache, data, monkeypatch):
    monkeypatch.setattr(budget, "_job_threads", 1)  # one lane: the members train one after another
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.TeacherUpdate) and e.status is ev.TeacherStatus.TRAINED:
            cancel.set()

    with pytest.raises(teachers.Cancelled):
        teachers.ensemble(data, [Member(ARCH, 1), Member(ARCH, 2)], epochs=1, on_event=on_event, cancel=cancel)
    _, events = build(data, [Member(ARCH, 1), Member(ARCH, 2)])
    assert statuses(events) == [
        (f"{ARCH}@1", "cached"),
        (f"{ARCH}@2", "training"),
        (f"{ARCH}@2", "trained"),
    ]


# --------------------------------------------------------------------------- members side by side

NO_DROPOUT = "cnn-deep"  # weights that do not depend on the shared dropout generator


def test_missing_members_train_side_by_side_into_the_teachers_they_are_alone(cache, data, monkeypatch):
    monkeypatch.setattr(budget, "_job_threads", 2)  # two lanes
    members = [Member(NO_DROPOUT, 1), Member(NO_DROPOUT, 2), Member(NO_DROPOUT, 3)]
    ens, events = build(data, members, epochs=2)
    # All three were training before the first one finished, and each is reported once, as trained.
    assert [s for _, s in statuses(events)] == ["training"] * 3 + ["trained"] * 3
    assert sorted(m for m, s in statuses(events) if s == "trained") == sorted(m.name for m in members)
    assert all(not t.cached and t.train_seconds > 0 for t in ens.members)
    lines = ev.ProgressTracker()
    for e in events:
        lines.apply(e)
    assert set(lines.progress().teachers) == {m.name for m in members}
    assert all(line.status == "trained" for line in lines.progress().teachers.values())
    # The same member trained alone, on one thread, is the same teacher with the same logits.
    monkeypatch.setenv("KD_DATA_DIR", str(cache.parent.parent / "alone"))
    monkeypatch.setattr(budget, "_job_threads", 1)
    alone, _ = build(data, members[1:2], epochs=2)
    assert same_weights(alone.members[0].model, ens.members[1].model)
    assert torch.equal(alone.members[0].test_logits, ens.members[1].test_logits)


def test_a_stop_while_members_train_side_by_side_keeps_only_finished_members(cache, data, monkeypatch):
    monkeypatch.setattr(budget, "_job_threads", 2)  # two lanes
    cancel = threading.Event()
    short, long = Member(NO_DROPOUT, 1), Member(NO_DROPOUT, 2)
    settings = teacher_settings(data.name, 1)

    def stop_once_the_first_is_cached(e):
        if isinstance(e, ev.TeacherUpdate) and e.status is ev.TeacherStatus.TRAINED:
            cancel.set()

    trained = teachers.train_side_by_side(data, [short], settings, device=torch.device("cpu"))
    assert trained == {}  # one missing member: nothing to put side by side, get_teacher trains it
    with pytest.raises(teachers.Cancelled, match="those that finished stay cached"):
        teachers.ensemble(
            data,
            [short, long, Member(NO_DROPOUT, 3)],
            epochs=3,
            on_event=stop_once_the_first_is_cached,
            cancel=cancel,
            device=torch.device("cpu"),
        )
    assert not any(".tmp-" in p.name for p in cache.iterdir())
    left = teachers.missing_members(data, [short, long, Member(NO_DROPOUT, 3)], epochs=3)
    assert len(left) >= 1  # stopped before all three finished
    for member in {short, long, Member(NO_DROPOUT, 3)} - set(left):  # what was cached loads and is whole
        assert teachers.get_teacher(data, member, teacher_settings(data.name, 3)).cached


# --------------------------------------------------------------------------- concurrent writers


def _train_same_teacher(data_dir, barrier, results):
    """Runs in a fresh (spawned) process: wait for the other one, then train or load the same teacher."""
    os.environ["KD_DATA_DIR"] = data_dir
    torch.set_num_threads(1)
    events = []
    data = synthetic(n_train=1000)
    barrier.wait(timeout=60)
    t = teachers.get_teacher(
        data, Member(ARCH, 3), teacher_settings(data.name, 1), on_event=events.append, device=torch.device("cpu")
    )
    digest = hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for v in t.model.state_dict().values()))
    results.put((t.cached, statuses(events), digest.hexdigest(), t.test_logits.numpy().tobytes()))


def test_two_processes_training_the_same_teacher_share_one_training_run(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_train_same_teacher, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(cached for cached, *_ in outcomes) == [False, True]  # exactly one trained
    trained = next(o for o in outcomes if not o[0])
    assert (f"{ARCH}@3", "training") in trained[1]
    assert outcomes[0][2] == outcomes[1][2]  # identical weights
    assert outcomes[0][3] == outcomes[1][3]  # identical logits
    leftovers = os.listdir(tmp_path / "cache" / "teachers")
    assert not any(".tmp-" in name for name in leftovers)


def test_missing_members_are_the_ones_loading_would_train(cache):
    data = synthetic()
    members = parse_members("mlp-wide,mlp-wide@1")
    assert teachers.missing_members(data, members, epochs=1) == list(members)
    teachers.ensemble(data, members[:1], epochs=1)
    assert teachers.missing_members(data, members, epochs=1) == [members[1]]
    # Other teacher epochs are another teacher: nothing of that is cached yet.
    assert teachers.missing_members(data, members, epochs=2) == list(members)
    teachers.ensemble(data, members, epochs=1)
    assert teachers.missing_members(data, members, epochs=1) == []


# --------------------------------------------------------------------------- logits that do not fit the dataset


def _bad_logits(data):
    n_train, n_test = len(data.train_x), len(data.test_x)
    good = {"train": torch.zeros(n_train, 10), "test": torch.zeros(n_test, 10)}
    nan = torch.zeros(n_test, 10)
    nan[3, 4] = float("nan")
    return {
        "too few train rows": {**good, "train": torch.zeros(n_train - 1, 10)},
        "train and test swapped": {"train": good["test"], "test": good["train"]},
        "too few classes": {**good, "test": torch.zeros(n_test, 9)},
        "one row per image, flat": {**good, "test": torch.zeros(n_test)},
        "whole numbers": {**good, "test": torch.zeros(n_test, 10, dtype=torch.int64)},
        "not finite": {**good, "test": nan},
        "test set missing": {"train": good["train"]},
    }


@pytest.mark.parametrize("case", list(_bad_logits(synthetic())))
def test_cached_logits_that_do_not_fit_the_dataset_are_recomputed(cache, data, case):
    first, _ = build(data)
    key = first.members[0].key
    # A complete, correctly hashed entry whose tensors do not match this dataset.
    teachers._save_entry(cache / f"{key}.logits", _bad_logits(data)[case], {"kind": "logits", "teacher": key})

    again, events = build(data)
    assert again.members[0].cached is True  # the weights were fine, so no retraining
    assert (f"{ARCH}@1", "training") not in statuses(events)
    assert torch.equal(again.train_logits, first.train_logits)
    assert torch.equal(again.test_logits, first.test_logits)
    # The bad entry was replaced by the recomputed logits, so the next load finds good ones.
    third, _ = build(data)
    assert torch.equal(third.test_logits, first.test_logits)
    assert not any(".tmp-" in name for name in os.listdir(cache))


# --------------------------------------------------------------------------- cache paths taken by something else


def test_a_file_where_the_cache_folder_should_be_is_a_one_line_error(tmp_path, monkeypatch, data):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(teachers.CacheError) as info:
        build(data)
    message = str(info.value)
    assert f"folder at {tmp_path / 'cache'}," in message and "a file is there" in message
    assert "KD_DATA_DIR" in message and "\n" not in message
    assert (tmp_path / "cache").read_text() == "not a folder"  # the user's file is never removed


def test_a_file_where_the_teachers_cache_folder_should_be_is_a_one_line_error(tmp_path, monkeypatch, data):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "teachers").write_text("not a folder")
    with pytest.raises(teachers.CacheError) as info:
        build(data)
    message = str(info.value)
    assert f"folder at {tmp_path / 'cache' / 'teachers'}," in message and "a file is there" in message
    assert "KD_DATA_DIR" in message and "\n" not in message
    assert teachers.missing_members(data, DEFAULT_MEMBERS, epochs=1) == list(DEFAULT_MEMBERS)  # pages ask, never fail


ENTRY_FILES = {
    "weights": ".safetensors",
    "manifest": ".json",
    "lock": ".lock",
    "logits": ".logits.safetensors",
    "logits manifest": ".logits.json",
}


@pytest.mark.parametrize("what", list(ENTRY_FILES))
def test_a_folder_where_a_cache_file_should_be_is_a_one_line_error_before_any_training(cache, data, what):
    key = teachers.teacher_key(data, DEFAULT_MEMBERS[0], teacher_settings(data.name, 1))
    taken = cache / f"{key}{ENTRY_FILES[what]}"
    taken.mkdir()
    (taken / "notes.txt").write_text("someone's file")
    events = []
    with pytest.raises(teachers.CacheError) as info:
        teachers.ensemble(data, list(DEFAULT_MEMBERS), epochs=1, on_event=events.append, device=torch.device("cpu"))
    message = str(info.value)
    assert f"file at {taken}," in message and "a folder is there" in message
    assert "KD_DATA_DIR" in message and "\n" not in message
    assert not any(isinstance(e, ev.Epoch) for e in events)  # no training time wasted before the error
    assert (taken / "notes.txt").read_text() == "someone's file"


# --------------------------------------------------------------------------- leftovers of killed runs


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_dead_processes_are_removed_when_the_cache_is_first_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    folder = tmp_path / "cache" / "teachers"
    folder.mkdir(parents=True)
    stale = folder / f"abc.safetensors.tmp-{_dead_pid()}-140241"
    live = folder / f"abc.safetensors.tmp-{os.getpid()}-140241"
    entry = folder / "abc.json"
    for path in (stale, live, entry):
        path.write_bytes(b"x" * 1000)
    assert teachers.cache_dir() == folder
    assert not stale.exists()
    assert live.exists() and entry.exists()  # another thread of a live process may be writing it right now


# --------------------------------------------------------------------------- latency, once per architecture


def test_a_teachers_latency_is_measured_once_and_then_read_from_the_cache(cache, data, monkeypatch):
    ens, _ = build(data)
    first = teachers.model_latency(ARCH, data.name, ens.members[0].model)
    assert first.ms_batch1 > 0 and first.throughput_b256 > 0

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached latency was measured again")

    monkeypatch.setattr(teachers.metrics, "measure_latency", no_measuring)
    assert teachers.model_latency(ARCH, data.name, ens.members[0].model) == first
    # Another model of the same architecture (other weights) shares the measurement.
    assert teachers.model_latency(ARCH, data.name, models.build(ARCH, data.name, seed=5)) == first


def test_a_latency_recorded_on_another_machine_or_a_damaged_record_is_measured_again(cache, data, monkeypatch):
    import json

    ens, _ = build(data)
    teacher = ens.members[0]
    teachers.model_latency(ARCH, data.name, teacher.model)
    record_path = cache / f"latency-{data.name}-{ARCH}.json"
    record = json.loads(record_path.read_text())
    measured = []
    real = teachers.metrics.measure_latency
    monkeypatch.setattr(teachers.metrics, "measure_latency", lambda *a, **k: measured.append(1) or real(*a, **k))
    for damaged in (json.dumps({**record, "host": "another-machine"}), "{not json", json.dumps({"host": 1})):
        record_path.write_text(damaged)
        teachers.model_latency(ARCH, data.name, teacher.model)
    assert len(measured) == 3
    assert json.loads(record_path.read_text())["host"] == record["host"]
