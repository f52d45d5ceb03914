"""Shareable links: a configuration survives the trip through the URL; bad values are clamped or dropped, said so."""

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
    ],
)
def test_bad_link_values_are_clamped_or_dropped_with_a_warning(params, field, expected, word):
    cfg, warnings = links.config_from_params(params)
    assert getattr(cfg, field) == expected
    assert len(warnings) == 1 and word in warnings[0]


def test_unknown_parameters_are_reported_and_the_rest_kept():
    cfg, warnings = links.config_from_params({"alpha": "0.3", "utm_source": "x"})
    assert cfg.alpha == 0.3 and "utm_source" in warnings[0]
