"""Lessons: the file loads and a bad one is named by lesson and field; each reveal quotes the run it grades.

Grading is tested on results built by hand with chosen numbers, so each branch (prediction right or wrong,
outcome expected or not, too close to call, stopped run) is reached without training. One test runs
lesson 1's job for real against the session's cached default teachers.
"""

import copy
import re

import pytest
import torch
import yaml

from kdcore import events as ev
from kdcore import jobs, lessons, links, studies
from kdcore.experiments import ModelRow, RunResult, default_config

DEFAULT = lessons.load_lessons()
RAW = yaml.safe_load(lessons.DEFAULT_PATH.read_text(encoding="utf-8"))


def lesson(key):
    found = lessons.find(DEFAULT, key)
    assert found is not None, key
    return found


def parse(data):
    return lessons.parse_lessons(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def edited(number, change):
    """The default file with lesson `number` changed by change(entry)."""
    data = copy.deepcopy(RAW)
    change(next(e for e in data["lessons"] if e["number"] == number))
    return data


# --------------------------------------------------------------------------- fake results


def sweep(temperatures, alphas, accuracy, scratch=0.90, partial=False, **config):
    return studies.SweepResult(
        default_config("mnist-sample", **config), temperatures, alphas, accuracy, scratch, 0.97, partial
    )


def capacity(small, large):
    """small and large are (scratch, distilled) accuracies of mlp-tiny and mlp-medium."""
    points = [
        studies.CapacityPoint("mlp-tiny", 12_730, scratch_acc=small[0], distilled_acc=small[1]),
        studies.CapacityPoint("mlp-medium", 269_322, scratch_acc=large[0], distilled_acc=large[1]),
    ]
    return studies.CapacityResult(default_config("mnist-sample"), points, 2_000_000, 0.98)


def fraction(small, large):
    points = [
        studies.FractionPoint(0.05, 200, 200, 400, scratch_acc=small[0], distilled_acc=small[1]),
        studies.FractionPoint(1.0, 4000, 20, 640, scratch_acc=large[0], distilled_acc=large[1]),
    ]
    return studies.FractionResult(default_config("mnist-sample"), points, 0.98)


def missing(scratch, distilled, fixed, bias=2.9):
    rows = [
        studies.MissingClassRow("teacher", 0.99, 0.98),
        studies.MissingClassRow("scratch", scratch, 0.86),
        studies.MissingClassRow("distilled", distilled, 0.88),
    ]
    if fixed is not None:
        rows.append(studies.MissingClassRow("distilled + bias fix", fixed, 0.92))
    return studies.MissingClassResult(
        default_config("mnist-sample"),
        3,
        "3",
        rows,
        torch.arange(10),
        bias_fix=fixed is not None,
        bias_value=bias if fixed is not None else None,
    )


def look(logits, temperature=8.0, label=3):
    return lessons.LookResult(
        default_config("mnist-sample", temperature=temperature),
        7,
        label,
        tuple(str(d) for d in range(10)),
        torch.tensor(logits, dtype=torch.float32),
        torch.zeros(1, 28, 28, dtype=torch.uint8),
    )


def run(scratch, distilled, partial=False, **config):
    def row(role, acc):
        return ModelRow(role, role, acc, 1000, 4000, None, None, None, None, 0.01, [acc] * 10)

    rows = [row("ensemble", 0.98), row("scratch", scratch), row("distilled", distilled)]
    cfg = default_config("mnist-sample", **config)
    return RunResult(cfg, rows, {}, partial, 3.0, tuple(str(d) for d in range(10)))


# A confident 3 whose runner-up is a 5.
CONFIDENT_3 = [0.0, 0.0, 1.0, 12.0, 0.0, 6.0, 0.0, 0.0, 2.0, 0.0]


# --------------------------------------------------------------------------- the default file


def test_the_default_file_has_the_six_lessons_of_the_issue_in_order():
    assert [x.number for x in DEFAULT[:6]] == [1, 2, 3, 4, 5, 6]
    assert [x.preset.kind for x in DEFAULT[:6]] == ["look", "sweep", "sweep", "capacity", "fraction", "missing-class"]
    assert [x.grader for x in DEFAULT[:6]] == [
        "soft-targets",
        "best-temperature",
        "best-alpha",
        "capacity",
        "fraction",
        "missing-class",
    ]
    assert len({x.id for x in DEFAULT}) == len(DEFAULT)
    assert lesson(1).preset.config.temperature == 8
    assert lesson(2).preset.options["temperatures"] == [1.0, 4.0, 20.0]
    assert lesson(3).preset.options["alphas"] == [0.0, 0.5, 1.0]
    assert lesson(4).preset.options["students"] == ["mlp-tiny", "mlp-medium"]
    assert lesson(5).preset.options["fractions"] == [0.05, 1.0]
    assert lesson(6).preset.options == {"missing": 3, "bias_fix": True}


def students_trained(x):
    o = x.preset.options
    return {
        "look": 0,
        "distill": 2,
        "sweep": 1 + len(o.get("temperatures", [])) * sum(a > 0 for a in o.get("alphas", [])),
        "fraction": 2 * len(o.get("fractions", [])),
        "capacity": 2 * len(o.get("students") or []),
        "missing-class": 2,
    }[x.preset.kind]


@pytest.mark.parametrize("x", DEFAULT, ids=lambda x: x.id)
def test_every_lesson_runs_offline_with_a_handful_of_short_trainings(x):
    for variant in (x, x.tried_next()):
        cfg = variant.preset.config
        assert cfg.dataset == "mnist-sample" and cfg.epochs <= 20
        assert students_trained(variant) <= 4
        assert len(x.choices) in (2, 3, 4) and x.expected in {c.outcome for c in x.choices}


def test_each_lesson_job_calls_the_study_with_the_preset():
    spec = lesson(2).spec(owner="s1")
    assert spec.kind is jobs.JobKind.SWEEP and spec.function == "kdcore.studies:sweep"
    assert spec.config == lesson(2).preset.config and spec.owner == "s1" and spec.record
    assert dict(spec.options) == {"temperatures": (1.0, 4.0, 20.0), "alphas": (0.5,)}
    look = lesson(1).spec()
    assert look.function == "kdcore.lessons:look" and dict(look.options) == {"image_class": 3}
    assert not look.record  # a look at one image is not a run for the history or the class board
    assert dict(lesson(6).spec().options) == {"missing": 3, "bias_fix": True}
    assert lesson(2).spec().name == "Lesson 2: " + lesson(2).title
    # A learner who changed the sidebar runs the lesson's study on their own configuration.
    mine = default_config("mnist-sample", epochs=5)
    assert lesson(4).spec(mine).config == mine
    assert dict(lesson(4).spec(mine).options) == {"students": ("mlp-tiny", "mlp-medium")}


def test_try_next_changes_exactly_one_thing():
    for x in DEFAULT:
        before, after = x.preset, x.tried_next().preset
        changed = [k for k in before.config.to_dict() if before.config.to_dict()[k] != after.config.to_dict()[k]]
        changed += [k for k in before.options if before.options[k] != after.options[k]]
        assert len(changed) == 1, (x.id, changed)
    assert lesson(2).tried_next().preset.config.seed == 1
    assert lesson(4).tried_next().preset.config.teachers == ("cnn-wide",)
    assert lesson(6).tried_next().preset.options["missing"] == 8
    assert lesson(2).tried_next().question == lesson(2).question


def test_look_shows_one_test_image_of_the_class_through_the_cached_teachers(fast_config):
    x = lesson(1)
    spec = x.spec(default_config("mnist-sample", temperature=8, epochs=fast_config.epochs))
    events = []
    result = jobs.run(spec, events.append, None)
    assert result.label == 3 and result.logits.shape == (10,)
    assert result.image.shape == (1, 28, 28)
    assert sum(result.probabilities(8.0)) == pytest.approx(1.0)
    assert isinstance(events[-1], ev.Finished)
    reveal = lessons.grade(x, "softer", result)
    assert reveal.outcome is not None and "T = 8" in reveal.measured


# --------------------------------------------------------------------------- grading each lesson


def test_every_grader_fills_exactly_the_placeholders_it_declares():
    results = {
        "soft-targets": look(CONFIDENT_3),
        "best-temperature": sweep([1.0, 4.0, 20.0], [0.5], [[0.91], [0.93], [0.92]]),
        "best-alpha": sweep([4.0], [0.0, 0.5, 1.0], [[0.90, 0.93, 0.92]]),
        "capacity": capacity((0.90, 0.89), (0.94, 0.96)),
        "fraction": fraction((0.80, 0.85), (0.94, 0.95)),
        "missing-class": missing(0.0, 0.14, 0.84),
        "kd-gain": run(0.94, 0.96),
    }
    assert set(results) == set(lessons.GRADERS)
    for name, result in results.items():
        measured = lessons.GRADERS[name].measure(result)
        assert set(measured.fields) == set(lessons.GRADERS[name].fields), name


def test_lesson_1_softer_targets_as_expected_quote_this_image():
    reveal = lessons.grade(lesson(1), "softer", look(CONFIDENT_3))
    assert reveal.matched is True and reveal.expected is True and reveal.outcome == "softer"
    p1 = torch.softmax(torch.tensor(CONFIDENT_3), 0)
    p8 = torch.softmax(torch.tensor(CONFIDENT_3) / 8, 0)
    wrong_1, wrong_8 = f"{(1 - p1[3].item()) * 100:.1f} %", f"{(1 - p8[3].item()) * 100:.1f} %"
    assert f"from {wrong_1} to {wrong_8}" in reveal.explanation
    assert "most like class 5" in reveal.explanation
    assert "This test image is a 3" in reveal.measured and f"{p8[5].item() * 100:.1f} %" in reveal.measured


def test_lesson_1_wrong_prediction_names_what_was_measured():
    reveal = lessons.grade(lesson(1), "sharper", look(CONFIDENT_3))
    assert reveal.matched is False and reveal.expected is True
    assert reveal.outcome_text == lesson(1).choice("softer").text
    assert lesson(1).choice("sharper").text in reveal.verdict and reveal.outcome_text in reveal.verdict


@pytest.mark.parametrize(
    "logits,temperature,why",
    [
        (CONFIDENT_3, 1.0, "At T = 1 the soft targets are the teacher's own probabilities"),
        ([0.0, 0.0, 0.0, 200.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0], 8.0, "so sure of this image"),
        ([0.0] * 3 + [0.01] + [0.0] * 6, 8.0, "already unsure"),
    ],
)
def test_lesson_1_when_the_other_classes_do_not_gain_the_reveal_says_why(logits, temperature, why):
    reveal = lessons.grade(lesson(1), "softer", look(logits, temperature))
    assert reveal.outcome == "same" and reveal.matched is False and reveal.expected is False
    assert "did not gain" in reveal.explanation and why in reveal.explanation
    assert "Dividing the logits" not in reveal.explanation


def test_lesson_1_a_temperature_below_one_sharpens():
    reveal = lessons.grade(lesson(1), "sharper", look([0.0, 0.0, 0.0, 2.0, 0.0, 1.5, 0, 0, 0, 0], 0.5))
    assert reveal.outcome == "sharper" and reveal.matched is True and reveal.expected is False
    assert "below 1" in reveal.explanation


def test_lesson_2_middle_t_best_as_expected_with_a_clear_margin():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.902], [0.931], [0.911]], scratch=0.900)
    reveal = lessons.grade(lesson(2), "middle", result)
    assert reveal.matched is True and reveal.expected is True
    assert reveal.measured.startswith("At α = 0.5, T = 4 did best: 93.1 % (+3.1 points against the scratch")
    assert "T = 1 scored 90.2 % (+0.2 points); T = 20 scored 91.1 % (+1.1 points)" in reveal.measured
    assert reveal.explanation.startswith("T = 4 did best (+3.1 points against the scratch student), ahead of T = 1")
    assert "only" not in reveal.explanation  # 2 points ahead on 1,000 images: no noise caveat


def test_lesson_2_a_close_call_is_flagged_as_within_noise():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.949], [0.963], [0.960]], scratch=0.947)
    reveal = lessons.grade(lesson(2), "highest", result)
    assert reveal.matched is False and reveal.expected is True
    assert "T = 4 led T = 20 by only 0.3 points" in reveal.explanation
    assert "another seed may well rank them the other way" in reveal.explanation


def test_lesson_2_an_unexpected_winner_is_said_so_with_its_numbers():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.949], [0.955], [0.975]], scratch=0.947)
    reveal = lessons.grade(lesson(2), "highest", result)
    assert reveal.outcome == "highest" and reveal.matched is True and reveal.expected is False
    assert "This run's best was T = 20 (+2.8 points against the scratch student), not the middle" in (
        reveal.explanation
    )
    assert "T = 1 gave +0.2 points and T = 4 gave +0.8 points" in reveal.explanation
    assert "In between" not in reveal.explanation  # the expected branch's text is not used


def test_lesson_2_a_tie_goes_to_the_lower_temperature_and_is_flagged():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.95], [0.95], [0.94]], scratch=0.94)
    reveal = lessons.grade(lesson(2), "lowest", result)
    assert reveal.outcome == "lowest" and "by only 0.0 points" in reveal.explanation


def test_lesson_2_a_stopped_sweep_gives_no_verdict():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.95], [None], [None]], partial=True)
    reveal = lessons.grade(lesson(2), "middle", result)
    assert reveal.matched is None and reveal.expected is None and reveal.outcome is None
    assert "stopped" in reveal.measured and "No verdict" in reveal.verdict


def test_lesson_2_a_stopped_sweep_with_two_temperatures_is_graded_on_those():
    result = sweep([1.0, 4.0, 20.0], [0.5], [[0.93], [0.95], [None]], scratch=0.92, partial=True)
    reveal = lessons.grade(lesson(2), "highest", result)
    assert reveal.outcome == "highest" and "only T = 1, T = 4 could be compared" in reveal.explanation


def test_lesson_3_labels_and_teacher_mixed_best_as_expected():
    result = sweep([4.0], [0.0, 0.5, 1.0], [[0.947, 0.963, 0.953]], scratch=0.947)
    reveal = lessons.grade(lesson(3), "middle", result)
    assert reveal.matched is True and reveal.expected is True
    assert reveal.explanation.startswith("α = 0.5 did best: 96.3 %, +1.6 points against labels only.")
    assert "α = 0 (labels only) scored 94.7 %" in reveal.explanation
    assert "α = 1 (teacher only) scored 95.3 %" in reveal.explanation


def test_lesson_3_teacher_only_best_is_the_unexpected_branch():
    result = sweep([4.0], [0.0, 0.5, 1.0], [[0.947, 0.955, 0.975]], scratch=0.947)
    reveal = lessons.grade(lesson(3), "middle", result)
    assert reveal.outcome == "highest" and reveal.matched is False and reveal.expected is False
    assert reveal.explanation.startswith("This run's best was α = 1 (teacher only) (97.5 %), not the mix")
    assert reveal.verdict.endswith(f"“{lesson(3).choice('highest').text}”.")


def test_lesson_4_bigger_student_gains_more_as_expected():
    reveal = lessons.grade(lesson(4), "larger", capacity((0.907, 0.889), (0.947, 0.963)))
    assert reveal.matched is True and reveal.expected is True
    assert reveal.measured == (
        "mlp-tiny (12,730 parameters) gained -1.8 points from the teacher (88.9 % against 90.7 % from scratch); "
        "mlp-medium (269,322 parameters) gained +1.6 points (96.3 % against 94.7 %)."
    )
    assert reveal.explanation.startswith("mlp-medium gained +1.6 points from the teacher and mlp-tiny -1.8 points.")


def test_lesson_4_tiny_student_gaining_more_is_unexpected():
    reveal = lessons.grade(lesson(4), "larger", capacity((0.88, 0.92), (0.947, 0.950)))
    assert reveal.outcome == "smaller" and reveal.matched is False and reveal.expected is False
    assert reveal.explanation.startswith("Here mlp-tiny gained +4.0 points and mlp-medium +0.3 points")


def test_lesson_4_gains_within_noise_are_about_the_same():
    reveal = lessons.grade(lesson(4), "same", capacity((0.900, 0.910), (0.940, 0.952)))
    assert reveal.outcome == "same" and reveal.matched is True and reveal.expected is False
    assert "differ by 0.2 points" in reveal.explanation and "cannot tell them apart" in reveal.explanation


def test_lesson_5_kd_helps_more_with_less_data_as_expected():
    reveal = lessons.grade(lesson(5), "more", fraction((0.799, 0.848), (0.947, 0.963)))
    assert reveal.matched is True and reveal.expected is True
    assert reveal.explanation.startswith(
        "With 5 % of the images (200) the teacher added +4.9 points (84.8 % against 79.9 % from scratch); "
        "with 100 % it added +1.6 points."
    )


def test_lesson_5_kd_helping_less_with_less_data_is_unexpected():
    reveal = lessons.grade(lesson(5), "more", fraction((0.70, 0.68), (0.94, 0.96)))
    assert reveal.outcome == "less" and reveal.matched is False and reveal.expected is False
    assert reveal.explanation.startswith("Here the teacher added -2.0 points with 5 % of the images")


def test_lesson_6_most_of_the_missing_class_recognised_after_the_fix():
    reveal = lessons.grade(lesson(6), "few", missing(0.0, 0.14, 0.84))
    assert reveal.outcome == "most" and reveal.matched is False and reveal.expected is True
    assert "84.0 %" in reveal.measured and "by 2.90" in reveal.measured
    assert "got 14.0 % before the bias fix and 84.0 % after it" in reveal.explanation
    assert "like a 3, told it what a 3 looks like" in reveal.explanation


def test_lesson_6_few_recognised_is_the_unexpected_branch():
    reveal = lessons.grade(lesson(6), "few", missing(0.0, 0.01, 0.04))
    assert reveal.outcome == "few" and reveal.matched is True and reveal.expected is False
    assert reveal.explanation.startswith("Here the distilled student recognised 4.0 % of the test 3s")


def test_lesson_6_without_the_bias_fix_grades_the_distilled_student_and_says_so():
    reveal = lessons.grade(lesson(6), "some", missing(0.0, 0.30, None))
    assert reveal.outcome == "some" and reveal.matched is True
    assert "bias fix was off" in reveal.explanation


def test_lesson_6_a_share_near_a_line_is_flagged():
    reveal = lessons.grade(lesson(6), "most", missing(0.0, 0.2, 0.52))
    assert reveal.outcome == "most" and "close to the 50 % line" in reveal.explanation


def test_grade_refuses_a_result_of_the_wrong_kind_and_an_unknown_choice():
    with pytest.raises(ValueError, match="SweepResult"):
        lessons.grade(lesson(2), "middle", capacity((0.9, 0.9), (0.9, 0.9)))
    with pytest.raises(ValueError, match="lowest, middle, highest"):
        lessons.grade(lesson(2), "best", sweep([1.0, 4.0], [0.5], [[0.9], [0.9]]))


def test_a_reveal_carries_the_try_next_overrides():
    reveal = lessons.grade(lesson(4), "larger", capacity((0.907, 0.889), (0.947, 0.963)))
    assert reveal.try_next.config == {"teachers": ["cnn-wide"]} and reveal.try_next.options == {}
    assert reveal.chart == "gain-vs-student" and reveal.lesson == "capacity-gap"


# --------------------------------------------------------------------------- an instructor's own lesson

SEVENTH = {
    "id": "does-kd-help",
    "number": 7,
    "title": "Does the teacher help at all?",
    "goal": "Compare a distilled student with one trained on the labels alone.",
    "prediction": {
        "question": "Will the distilled student beat the scratch one?",
        "choices": [
            {"outcome": "better", "text": "Yes"},
            {"outcome": "same", "text": "No difference"},
            {"outcome": "worse", "text": "No, it does worse"},
        ],
    },
    "expected": "better",
    "preset": {"kind": "distill", "config": {"dataset": "mnist-sample", "temperature": 6, "epochs": 10}},
    "grader": "kd-gain",
    "chart": "students",
    "explanation": {
        "expected": "KD added {gain}: {distilled_acc} against {scratch_acc} at T = {T}.",
        "unexpected": "Not this time: {gain}, at T = {T} and α = {alpha}.",
    },
    "try_next": {"text": "Lower T to 2.", "config": {"temperature": 2}},
}


def test_an_instructor_adds_a_seventh_lesson_by_editing_only_the_file(tmp_path):
    data = copy.deepcopy(RAW)
    data["lessons"].append(copy.deepcopy(SEVENTH))
    path = tmp_path / "lessons.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    loaded = lessons.load_lessons(path)
    assert [x.number for x in loaded] == [1, 2, 3, 4, 5, 6, 7]
    seventh = lessons.find(loaded, 7)
    assert seventh.preset.config.temperature == 6 and seventh.preset.config.epochs == 10
    assert seventh.spec().function == "kdcore.experiments:distill"
    reveal = lessons.grade(seventh, "better", run(0.940, 0.962, temperature=6))
    assert reveal.matched is True and reveal.explanation == "KD added +2.2 points: 96.2 % against 94.0 % at T = 6."
    reveal = lessons.grade(seventh, "better", run(0.950, 0.930, temperature=6))
    assert reveal.outcome == "worse" and reveal.explanation == "Not this time: -2.0 points, at T = 6 and α = 0.5."
    reveal = lessons.grade(seventh, "same", run(0.950, 0.952))
    assert (
        reveal.outcome == "same"
        and reveal.matched is True
        and "cannot tell the two students apart" in (reveal.explanation)
    )


def test_an_instructors_lesson_can_teach_a_later_method_and_its_link_carries_it():
    seventh = copy.deepcopy(SEVENTH)
    seventh["preset"]["config"].update({"method": "dkd", "beta_nc": 2})
    seventh["try_next"] = {"text": "Back to Hinton's KD.", "config": {"method": "kd"}}
    (loaded,) = parse({"lessons": [seventh]})
    config = loaded.preset.config
    assert config.method == "dkd" and config.nckd_weight == 2 and config.temperature == 6
    params = links.config_to_params(config)
    assert params["method"] == "dkd" and params["beta_nc"] == "2" and links.config_from_params(params)[0] == config
    reveal = lessons.grade(loaded, "better", run(0.940, 0.962, temperature=6, method="dkd", beta_nc=2))
    assert reveal.matched is True and reveal.try_next.config == {"method": "kd"}
    seventh["preset"]["config"]["method"] = "fitnets"
    with pytest.raises(lessons.LessonError) as info:
        parse({"lessons": [seventh]})
    assert "field preset.config.method:" in str(info.value) and "dkd" in str(info.value)


def test_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "lessons.yaml"
    data = {"lessons": [copy.deepcopy(SEVENTH)]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert lessons.load_lessons(path)[0].title == "Does the teacher help at all?"
    data["lessons"][0]["title"] = "Does KD help?"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert lessons.load_lessons(path)[0].title == "Does KD help?"


# --------------------------------------------------------------------------- a bad file


def _drop(key):
    return lambda e: e.pop(key)


def _set(path, value):
    def change(e):
        *parents, last = path
        for p in parents:
            e = e[p]
        e[last] = value

    return change


@pytest.mark.parametrize(
    "number,change,field,words",
    [
        (2, _drop("goal"), "goal", "is missing"),
        (2, _set(["tittle"], "x"), "tittle", "not a field here"),
        (2, _set(["id"], "T Range"), "id", "slug"),
        (2, _set(["number"], 0), "number", "from 1 up"),
        (2, _set(["title"], ""), "title", "non-empty"),
        (2, _set(["preset", "kind"], "train"), "preset.kind", "look, distill, sweep"),
        (2, _set(["preset", "config", "temperture"], 4), "preset.config.temperture", "RunConfig has no such field"),
        (2, _set(["preset", "config", "combine"], "logits"), "preset.config.combine", "cannot be set by a lesson"),
        (2, _set(["preset", "config", "alpha"], 1.5), "preset.config.alpha", "alpha must be in [0, 1]"),
        (2, _set(["preset", "config", "student"], "mlp-huge"), "preset.config.student", "unknown student"),
        (2, _set(["preset", "config", "dataset"], "imagenet"), "preset.config.dataset", "unknown dataset"),
        (2, _set(["preset", "config", "epochs"], "20"), "preset.config.epochs", "whole number"),
        (1, _set(["preset", "config", "temperature"], 25), "preset.config.temperature", "sidebar offers"),
        (2, _set(["preset", "config", "fraction"], 0.3), "preset.config.fraction", "sidebar offers"),
        (2, _set(["preset", "options", "temperatures"], [0, 4]), "preset.options.temperatures", "from 0.1 to 100"),
        (2, _set(["preset", "options", "fractions"], [0.1]), "preset.options.fractions", "not an option of a sweep"),
        (2, _set(["preset", "options", "temperatures"], [1, 4]), "preset.options.temperatures", "at least 3"),
        (4, _set(["preset", "options", "students"], ["mlp-tiny"]), "preset.options.students", "at least 2"),
        (6, _set(["preset", "options", "missing"], 10), "preset.options.missing", "0 to 9"),
        (2, _set(["grader"], "best-alpha-t"), "grader", "best-temperature"),
        (2, _set(["grader"], "capacity"), "grader", "reads capacity runs"),
        (2, _set(["chart"], "pie"), "chart", "gain-vs-temperature"),
        (2, _set(["chart"], "missing-class"), "chart", "draws missing-class runs"),
        (2, _set(["prediction", "choices"], [{"outcome": "middle", "text": "x"}]), "prediction.choices", "2 to 4"),
        (
            2,
            _set(["prediction", "choices", 1, "outcome"], "lowest"),
            "prediction.choices[2].outcome",
            "already the outcome",
        ),
        (2, _set(["prediction", "choices", 0, "outcome"], "low"), "prediction.choices[1].outcome", "lowest, middle"),
        (2, _set(["prediction", "choices", 0, "text"], None), "prediction.choices[1].text", "non-empty"),
        (2, _set(["prediction", "choices", 0, "outcome"], ["middle"]), "prediction.choices[1].outcome", "lowest"),
        (2, _set(["grader"], ["best-temperature"]), "grader", "must be one of"),
        (2, _set(["chart"], {"kind": "bar"}), "chart", "must be one of"),
        (2, _set(["expected"], "hottest"), "expected", "lowest, middle, highest"),
        (2, _set(["explanation", "expected"], "{best_T} won"), "explanation.expected", "unknown placeholder {best_T}"),
        (2, _set(["explanation", "expected"], "{best:.1f} won"), "explanation.expected", "unknown placeholder"),
        (2, _set(["explanation", "unexpected"], "a { b"), "explanation.unexpected", "literal brace"),
        (2, _drop("explanation"), "explanation", "is missing"),
        (2, _set(["try_next", "options"], {"alphas": [0.9]}), "try_next", "exactly one thing"),
        (2, _set(["try_next", "config"], {}), "try_next", "exactly one thing"),
        (2, _set(["try_next", "config"], {"seed": -1}), "try_next.config.seed", "from 0 to 4,294,967,295"),
        (3, _set(["try_next", "options"], {"alphas": [0, 1]}), "try_next.options.alphas", "at least 3"),
    ],
)
def test_a_bad_lesson_is_named_by_lesson_and_field(number, change, field, words):
    with pytest.raises(lessons.LessonError) as info:
        parse(edited(number, change))
    message = str(info.value)
    assert info.value.user_facing is True
    label = {1: "1 (soft-targets)", 2: "2 (temperature-range)", 3: "3 (alpha-range)", 4: "4 (capacity-gap)"}
    label[6] = "6 (missing-class)"
    if field not in ("id", "number"):
        assert f"lesson {label[number]}," in message, message
    assert f"field {field}:" in message and words in message, message


def test_duplicate_ids_and_numbers_name_both_lessons():
    data = copy.deepcopy(RAW)
    data["lessons"].append({**copy.deepcopy(SEVENTH), "id": "missing-class"})
    with pytest.raises(lessons.LessonError, match=r"lesson 7 \(missing-class\), field id: .*also the id of lesson 6"):
        parse(data)
    data["lessons"][-1] = {**copy.deepcopy(SEVENTH), "number": 3}
    with pytest.raises(lessons.LessonError, match=r"field number: 3 is also the number of lesson 'alpha-range'"):
        parse(data)


@pytest.mark.parametrize(
    "text,words",
    [
        ("lessons:\n  - id: a\n    title: [unclosed\n", "not valid YAML at line"),
        ("- just a list\n", "one key, lessons"),
        ("lessons: []\n", "no lessons"),
        ("lessons:\n  - 42\n", "lesson #1 in the list"),
    ],
)
def test_a_broken_file_says_where(text, words):
    with pytest.raises(lessons.LessonError, match=re.escape(words)):
        lessons.parse_lessons(text)


def test_a_missing_file_is_a_lesson_error(tmp_path):
    with pytest.raises(lessons.LessonError, match="Cannot read the lessons file"):
        lessons.load_lessons(tmp_path / "nope.yaml")
