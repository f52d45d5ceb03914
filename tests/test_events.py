"""The progress reducer: the one place that turns a job's events into what the CLI, pages and tests show."""

import time

import pytest

from kdcore import events as ev


def fold(events, steps=2) -> ev.Progress:
    tracker = ev.ProgressTracker(steps=steps)
    for e in events:
        tracker.apply(e)
    return tracker.progress()


def step(model, epoch, t, epochs=10):
    return ev.Step(model=model, epoch=epoch, epochs=epochs, loss=1.0, hard=1.0, soft=0.5, t=t)


def epoch(model, n, t, acc=0.9, epochs=10):
    return ev.Epoch(model=model, epoch=n, epochs=epochs, loss=1.0, hard=1.0, soft=0.5, test_acc=acc, t=t)


def test_a_new_job_waits_to_start():
    p = fold([])
    assert p.phase is ev.Phase.QUEUED and p.fraction == 0.0 and p.eta_seconds is None


def test_teacher_phase_counts_cached_members_as_done_and_times_only_the_trained_ones():
    p = fold(
        [
            ev.DatasetLoading(dataset="mnist-sample", t=0.0),
            ev.TeacherStart(member="a", index=0, count=2, epochs=4, t=1.0),
            ev.TeacherUpdate(member="a", status=ev.TeacherStatus.CACHED, t=1.5),
            ev.TeacherStart(member="b", index=1, count=2, epochs=4, t=2.0),
            ev.TeacherUpdate(member="b", status=ev.TeacherStatus.TRAINING, t=2.0),
            step("b", 1.0, t=12.0, epochs=4),
        ]
    )
    assert p.phase is ev.Phase.TEACHERS and (p.step, p.steps) == (1, 2)
    assert p.fraction == pytest.approx(5 / 8)  # 4 cached + 1 trained of 8 teacher epochs
    # 1 epoch took 10 s, 3 remain: the cached member's instant load does not shorten the estimate.
    assert p.eta_seconds == pytest.approx(30.0)
    assert p.text.startswith("Step 1 of 2 · Preparing the teacher ensemble: 5.0 of 8 teacher epochs")
    assert "30 s left" in p.text
    assert p.teachers["a"].label == "loaded from the cache"
    assert p.teachers["b"].label == "training, epoch 1.0 of 4"
    assert p.curves == {}  # a teacher's epochs are its line, not a student curve


def test_student_phase_reports_both_students_epochs_and_an_eta():
    p = fold(
        [
            ev.StudentsStart(models=("scratch", "distilled"), epochs=10, train_size=4000, t=10.0),
            epoch("scratch", 1, t=11.0, acc=0.8),
            epoch("distilled", 1, t=12.0, acc=0.85),
            step("scratch", 1.5, t=12.5),
        ]
    )
    assert p.phase is ev.Phase.STUDENTS and p.step == 2
    assert p.fraction == pytest.approx(2.5 / 20)
    assert p.eta_seconds == pytest.approx(2.5 * 17.5 / 2.5)  # 2.5 s for 2.5 of 20 student epochs
    assert "on 4,000 images: epoch 1.2 of 10" in p.text
    assert [e.test_acc for e in p.epochs("distilled")] == [0.85]
    assert len(p.curves["scratch"]) == 2  # the epoch and the newer step both draw


def test_a_teacher_assistant_is_a_step_of_its_own_with_its_own_line():
    name = "assistant (mlp-medium)"
    before = [
        ev.TeacherStart(member="a", index=0, count=1, epochs=4, t=0.0),
        ev.TeacherUpdate(member="a", status=ev.TeacherStatus.CACHED, t=0.5),
        ev.AssistantStart(model=name, epochs=10, t=1.0),
        ev.AssistantUpdate(model=name, status=ev.TeacherStatus.TRAINING, t=1.0),
        step(name, 2.0, t=5.0),
    ]
    p = fold(before)
    assert p.phase is ev.Phase.ASSISTANT and (p.step, p.steps) == (2, 3)
    assert p.fraction == pytest.approx(0.2)
    assert p.eta_seconds == pytest.approx(16.0)  # 2 epochs took 4 s, 8 remain
    assert p.text.startswith("Step 2 of 3 · Teacher assistant assistant (mlp-medium): training, epoch 2.0 of 10")
    assert p.curves == {} and list(p.teachers) == ["a"]  # neither a student curve nor an ensemble member
    after = fold(
        [
            *before,
            ev.AssistantUpdate(model=name, status=ev.TeacherStatus.TRAINED, seconds=20.0, t=21.0),
            ev.StudentsStart(models=("scratch", "distilled"), epochs=10, train_size=4000, t=21.0),
        ]
    )
    assert after.assistant[1].label == "trained in 20 s and cached"
    assert after.phase is ev.Phase.STUDENTS and (after.step, after.steps) == (3, 3)


def test_a_cached_teacher_assistant_is_done_at_once():
    p = fold(
        [
            ev.AssistantStart(model="assistant (mlp-small)", epochs=10, t=1.0),
            ev.AssistantUpdate(model="assistant (mlp-small)", status=ev.TeacherStatus.CACHED, t=1.1),
        ]
    )
    assert p.fraction == 1.0 and p.text.endswith("loaded from the cache")


def test_students_trained_one_after_another_are_counted_by_name():
    p = fold(
        [
            ev.StudentsStart(models=("scratch", "generation 1", "distilled"), epochs=10, train_size=4000, t=0.0),
            epoch("scratch", 10, t=10.0),
        ]
    )
    assert p.fraction == pytest.approx(1 / 3) and "Training 3 students" in p.text


def test_a_study_weighs_its_students_by_cost():
    p = fold(
        [
            ev.StudyStart(study="fraction", total=4, weights=(1.0, 1.0, 10.0, 10.0), t=0.0),
            ev.StudyCell(study="fraction", done=2, total=4, snapshot={"points": [1]}, t=2.0),
        ]
    )
    assert p.phase is ev.Phase.STUDY
    assert p.fraction == pytest.approx(2 / 22)  # two cheap students of 22 units of work
    assert p.snapshot == {"points": [1]}
    assert p.text.startswith("Step 2 of 2 · Trained 2 of 4 students")


def test_notices_saves_and_the_end_are_kept():
    p = fold(
        [
            ev.Notice(message="the distilled student is at chance", cause="collapse", t=1.0),
            ev.Finished(partial=True, kd_gain=0.01, t=2.0),
            ev.Saved(run_id=7, t=2.1),
        ]
    )
    assert [n.cause for n in p.notices] == ["collapse"]
    assert p.phase is ev.Phase.FINISHED and p.fraction == 1.0 and p.text == "Stopped: the result is partial"
    assert p.saved.run_id == 7 and p.finished.kd_gain == 0.01


def test_the_eta_needs_some_work_done_first():
    assert ev.eta(done=0.01, total=1.0, spent=1.0) is None
    assert ev.eta(done=0.5, total=1.0, spent=10.0) == pytest.approx(10.0)
    assert ev.eta(done=1.0, total=1.0, spent=10.0) == 0.0


def test_stamped_sets_one_clock_from_the_jobs_start():
    seen = []
    emit = ev.stamped(seen.append, start=time.monotonic() - 5.0)
    emit(ev.Measuring())
    assert 5.0 <= seen[0].t < 6.0


def test_format_seconds():
    assert ev.format_seconds(42.4) == "42 s"
    assert ev.format_seconds(75) == "1 min 15 s"
    assert ev.format_seconds(-3) == "0 s"


@pytest.mark.parametrize(
    "event",
    [
        ev.TeacherUpdate(member="a", status=ev.TeacherStatus.TRAINED, seconds=3.5, t=1.0),
        ev.StudentsStart(models=("scratch", "distilled"), epochs=3, train_size=10, t=2.0),
        ev.StudyStart(study="fraction", total=2, weights=(1.0, 2.0)),
        ev.StudyCell(study="sweep", done=1, total=2, snapshot={"accuracy": [[0.9, None]]}),
        step("scratch", 0.5, t=3.0),
        ev.Epoch(model="distilled", epoch=1, epochs=2, loss=1, hard=1, soft=2, test_acc=0.5, parts={"tckd": 0.1}),
        ev.AssistantStart(model="assistant (mlp-small)", epochs=3),
        ev.AssistantUpdate(model="assistant (mlp-small)", status=ev.TeacherStatus.TRAINED, seconds=2.0),
        ev.Saved(run_id=3, message=""),
    ],
)
def test_events_survive_a_trip_through_plain_data(event):
    import json

    data = json.loads(json.dumps(ev.to_dict(event)))  # what Dask's event log can carry
    assert ev.from_dict(data) == event


def test_a_job_that_starts_again_on_another_worker_starts_its_progress_over_and_says_so():
    p = fold(
        [
            ev.Started(worker="tcp://a:1", t=0.0),
            ev.StudentsStart(models=("scratch", "distilled"), epochs=10, train_size=40, t=1.0),
            epoch("scratch", 1, t=2.0),
            ev.Started(worker="tcp://b:2", t=3.0),
        ]
    )
    assert p.curves == {} and p.phase is ev.Phase.QUEUED and p.worker == "tcp://b:2"
    (notice,) = p.notices
    assert notice.cause == "restarted" and "started again on tcp://b:2" in notice.message
