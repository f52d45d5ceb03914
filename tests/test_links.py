"""Shareable links: a configuration survives the trip through the URL; bad values are clamped or dropped, said so."""

from urllib.parse import parse_qsl, urlsplit

import pytest

from kdcore import links
from kdcore.experiments import default_config


def test_a_config_round_trips_through_its_link():
    cfg = default_config(
        "mnist-sample",
        teachers=("cnn-wide", "cnn-wide@2"),
        student="cnn-small",
        temperature=7.5,
        alpha=0.25,
        epochs=12,
        fraction=0.05,
        seed=42,
    )
    back, warnings = links.config_from_params(links.config_to_params(cfg))
    assert back == cfg and warnings == []


@pytest.mark.parametrize(
    "params,field,expected,word",
    [
        ({"T": "50"}, "temperature", 20.0, "outside 1 to 20"),
        ({"T": "0"}, "temperature", 1.0, "outside 1 to 20"),
        ({"alpha": "1.7"}, "alpha", 1.0, "outside 0 to 1"),
        ({"epochs": "-3"}, "epochs", 1, "outside 1 to 100"),
        ({"fraction": "0.3"}, "fraction", 0.2, "not one of the offered"),
        ({"T": "abc"}, "temperature", 4.0, "not a number"),
        ({"student": "resnet"}, "student", "mlp-medium", "unknown"),
        ({"teachers": "cnn-wide,nope"}, "teachers", ("cnn-wide", "cnn-deep", "mlp-wide"), "ignored"),
        ({"dataset": "imagenet"}, "dataset", "mnist-sample", "unknown"),
        ({"seed": str(2**70)}, "seed", 10_000, "outside 0 to 10000"),
        ({"teachers": "cnn-wide@" + "1" + "0" * 23}, "teachers", ("cnn-wide", "cnn-deep", "mlp-wide"), "4,294,967,295"),
        ({"epochs": "2.5"}, "epochs", 20, "not a whole number"),
        ({"seed": "3.7"}, "seed", 0, "not a whole number"),
    ],
)
def test_bad_link_values_are_clamped_or_dropped_with_a_warning(params, field, expected, word):
    cfg, warnings = links.config_from_params(params)
    assert getattr(cfg, field) == expected
    assert len(warnings) == 1 and word in warnings[0]


def test_unknown_parameters_are_reported_and_the_rest_kept():
    cfg, warnings = links.config_from_params({"alpha": "0.3", "utm_source": "x"})
    assert cfg.alpha == 0.3 and "utm_source" in warnings[0]


# --------------------------------------------------------------------------- instructor links


def test_lesson_hide_and_lock_are_not_reported_as_unknown_config_parameters():
    cfg, warnings = links.config_from_params({"lesson": "2", "hide": "alpha", "lock": "1", "T": "8"})
    assert cfg.temperature == 8.0 and warnings == []


def test_a_lesson_link_with_hidden_controls_and_a_lock_is_read():
    view, warnings = links.view_from_params({"lesson": "2", "hide": "alpha,teachers,dataset", "lock": "1"})
    assert warnings == []
    assert view == links.LinkView(lesson=2, hidden=("dataset", "teachers", "alpha"), locked=True)
    assert not view.shows("alpha") and view.shows("temperature") and view.shows("seed")


def test_a_lesson_can_be_named_by_its_id_and_t_names_the_temperature_control():
    view, warnings = links.view_from_params({"lesson": "missing-class", "hide": "T, seed,,seed"})
    assert warnings == [] and view.lesson == 6
    assert view.hidden == ("temperature", "seed") and not view.shows("T")


def test_without_view_parameters_everything_shows_and_nothing_is_locked():
    view, warnings = links.view_from_params({"T": "4", "hide": ""})
    assert view == links.LinkView() and warnings == []


@pytest.mark.parametrize(
    "params,expected,word",
    [
        ({"lesson": "9"}, links.LinkView(), "lesson='9' is not a lesson here (lessons: 1, 2, 3, 4, 5, 6)"),
        ({"lesson": "two"}, links.LinkView(), "lesson list is shown instead"),
        ({"hide": "alpha,colour"}, links.LinkView(hidden=("alpha",)), "hide 'colour', which is not a sidebar control"),
        ({"lock": "maybe"}, links.LinkView(), "lock='maybe' is neither 1 nor 0"),
        ({"lock": "0", "lesson": "3"}, links.LinkView(lesson=3), None),
    ],
)
def test_bad_view_values_are_dropped_with_a_warning_each(params, expected, word):
    view, warnings = links.view_from_params(params)
    assert view == expected
    if word is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and word in warnings[0], warnings


def test_each_bad_hidden_name_gets_its_own_warning():
    view, warnings = links.view_from_params({"hide": "colour,alpha,size"})
    assert view.hidden == ("alpha",) and len(warnings) == 2
    assert "'colour'" in warnings[0] and "'size'" in warnings[1]


def test_a_long_bad_value_is_cut_to_a_readable_length_in_the_warning():
    _, warnings = links.view_from_params({"lesson": "x" * 5000, "hide": "y" * 5000, "lock": "z" * 5000})
    assert len(warnings) == 3
    assert all(len(w) < 300 for w in warnings), [len(w) for w in warnings]  # the hide warning lists 14 controls
    assert all("…" in w for w in warnings)


def test_lessons_can_be_given_instead_of_loading_the_file():
    view, warnings = links.view_from_params({"lesson": "7"}, lessons=[1, 7])
    assert view.lesson == 7 and warnings == []
    view, warnings = links.view_from_params({"lesson": "2"}, lessons=[1, 7])
    assert view.lesson is None and "lessons: 1, 7" in warnings[0]


def test_an_instructor_link_round_trips_through_the_parsers():
    cfg = default_config("mnist-sample", teachers=("cnn-wide", "cnn-wide@2"), temperature=8, alpha=0.25)
    url = links.instructor_link(
        "http://class.example:8501/Lessons", lesson=3, hide=("alpha", "T", "dataset"), lock=True, config=cfg
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "class.example:8501", "/Lessons")
    assert "hide=dataset,temperature,alpha" in parts.query and "teachers=cnn-wide,cnn-wide@2" in parts.query
    params = dict(parse_qsl(parts.query))
    view, view_warnings = links.view_from_params(params)
    back, warnings = links.config_from_params(params)
    assert view == links.LinkView(3, ("dataset", "temperature", "alpha"), True) and view_warnings == []
    assert back == cfg and warnings == []


def test_an_instructor_link_replaces_its_own_parameters_and_keeps_others():
    url = links.instructor_link("http://h/Lessons?lesson=1&lock=1&utm=x", lesson=2)
    assert dict(parse_qsl(urlsplit(url).query)) == {"utm": "x", "lesson": "2"}
    assert links.instructor_link("http://h/") == "http://h/"


@pytest.mark.parametrize(
    "kwargs,word",
    [({"hide": ("alpha", "colour")}, "colour"), ({"lesson": 0}, "lesson"), ({"lesson": "2"}, "lesson")],
)
def test_an_instructor_link_refuses_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        links.instructor_link("http://h/", **kwargs)


def test_a_link_becomes_a_qr_code_svg():
    svg = links.qr_svg("http://class.example:8501/Lessons?lesson=2&lock=1")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg != links.qr_svg("http://class.example:8501/Lessons?lesson=3&lock=1")
    with pytest.raises(ValueError, match="too long for a QR code"):
        links.qr_svg("http://h/?" + "x" * 5000)


@pytest.mark.parametrize("key", ["T", "student", "dataset", "teachers", "fraction", "epochs", "x" * 1000])
def test_a_megabyte_link_value_is_cut_to_a_readable_length_in_the_config_warnings(key):
    _, warnings = links.config_from_params({key: "9" * 1_000_000 if key != "student" else "s" * 1_000_000})
    assert len(warnings) == 1
    assert len(warnings[0]) < 300 and "characters" in warnings[0], warnings[0][:300]


def test_a_broken_lessons_file_drops_the_lesson_with_a_warning_instead_of_breaking_the_page(monkeypatch):
    from kdcore import lessons

    def broken(*args, **kwargs):
        raise lessons.LessonError("lessons.yaml, lesson #2 in the list, field goal: must be text")

    monkeypatch.setattr(lessons, "load_lessons", broken)
    view, warnings = links.view_from_params({"lesson": "2", "hide": "alpha"})
    assert view.lesson is None and view.hidden == ("alpha",)
    (warning,) = warnings
    assert "lesson='2' was ignored" in warning and "field goal" in warning


# --------------------------------------------------------------------------- methods (issue 10)


@pytest.mark.parametrize(
    "overrides",
    [
        {"method": "dkd", "alpha_tc": 2.0, "beta_nc": 4.0},
        {"method": "dkd"},  # beta_nc None: the dataset's measured default, kept as "default" through the link
        {"method": "ta", "student": "mlp-tiny", "assistant": "mlp-medium"},
        {"method": "ta", "student": "mlp-tiny"},
        {"method": "self", "generations": 3},
    ],
)
def test_every_methods_settings_round_trip_through_the_link(overrides):
    cfg = default_config("mnist-sample", **overrides)
    params = links.config_to_params(cfg)
    assert params["method"] == overrides["method"]
    back, warnings = links.config_from_params(params)
    assert back == cfg and warnings == []


def test_a_kd_link_carries_no_method_parameters_and_augment_only_where_it_differs_from_the_preset():
    assert not set(links.config_to_params(default_config())) & set(links.METHOD_PARAMS)
    cifar = default_config("cifar10")  # its preset learns from augmented views
    assert "augment" not in links.config_to_params(cifar)
    off = default_config("cifar10", augment=False)
    assert links.config_to_params(off)["augment"] == "0"
    back, warnings = links.config_from_params(links.config_to_params(off))
    assert back == off and not back.augment and warnings == []


@pytest.mark.parametrize(
    "params,field,expected,word",
    [
        ({"method": "magic"}, "method", "kd", "method='magic' is unknown"),
        ({"method": "dkd", "beta_nc": "50"}, "beta_nc", 10.0, "outside 0 to 10"),
        ({"method": "dkd", "alpha_tc": "x"}, "alpha_tc", 1.0, "not a number"),
        ({"method": "self", "generations": "7"}, "generations", 3, "outside 1 to 3"),
        ({"method": "self", "generations": "1.5"}, "generations", 2, "not a whole number"),
        ({"method": "ta", "assistant": "mlp-tiny"}, "assistant", None, "not a model larger than the student"),
        ({"method": "ta", "student": "bn-medium"}, "method", "kd", "no model is larger than the student bn-medium"),
        ({"dataset": "cifar10", "method": "ta", "augment": "1"}, "augment", False, "works with kd, dkd only"),
        ({"augment": "perhaps"}, "augment", False, "neither 1 nor 0"),
    ],
)
def test_bad_method_values_in_a_link_are_dropped_with_a_warning(params, field, expected, word):
    cfg, warnings = links.config_from_params(params)
    assert getattr(cfg, field) == expected
    assert len(warnings) == 1 and word in warnings[0], warnings


def test_augmentation_on_a_dataset_without_views_is_dropped_with_a_warning(monkeypatch):
    from kdcore import data as kdata

    monkeypatch.delitem(kdata.VIEWS, "mnist")
    cfg, warnings = links.config_from_params({"dataset": "mnist", "augment": "1"})
    assert not cfg.augment and len(warnings) == 1 and "it is off for mnist" in warnings[0], warnings
    cfg, warnings = links.config_from_params({"dataset": "mnist-sample", "augment": "1"})
    assert cfg.augment and warnings == []


def test_a_cifar_preset_with_augmentation_quietly_drops_it_for_a_method_without_views():
    cfg, warnings = links.config_from_params({"dataset": "cifar10", "method": "self"})
    assert cfg.method == "self" and not cfg.augment and warnings == []


def test_method_controls_can_be_hidden_by_an_instructor_link():
    view, warnings = links.view_from_params({"hide": "method,beta_nc,alpha"})
    assert warnings == [] and view.hidden == ("alpha", "method", "beta_nc")
    cfg = default_config("mnist-sample", method="dkd", beta_nc=2.0)
    url = links.instructor_link("http://h/Distill", hide=("method",), lock=True, config=cfg)
    back, warnings = links.config_from_params(dict(parse_qsl(urlsplit(url).query)))
    assert back == cfg and warnings == []
