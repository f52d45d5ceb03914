"""Uncertainty of accuracies and gains, checked against values computed independently of kdcore.stats."""

import math
import statistics

import numpy as np
import pytest
import torch

from kdcore.stats import (
    accuracy_interval,
    best_with_ties,
    fmt_percent,
    fmt_points,
    gain_from_counts,
    mcnemar_p,
    paired_gain,
    seeds_summary,
    tango_interval,
    verdict,
)

Z95 = statistics.NormalDist().inv_cdf(0.975)


# --- one accuracy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "correct,n,low,high",
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in
    # Medicine 17: 857-872, Table I, method 3 (Wilson score interval without continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_published_values(correct, n, low, high):
    iv = accuracy_interval(correct, n)
    assert (iv.low, iv.high) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))
    assert iv.estimate == correct / n and iv.n == n and iv.level == 0.95


@pytest.mark.parametrize("correct,n,level", [(964, 1000, 0.95), (9990, 10000, 0.9), (7, 12, 0.99)])
def test_wilson_endpoints_are_where_the_score_test_just_rejects(correct, n, level):
    iv = accuracy_interval(correct, n, level)
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    p_hat = correct / n
    for p in (iv.low, iv.high):
        assert abs(p_hat - p) / math.sqrt(p * (1 - p) / n) == pytest.approx(z, rel=1e-9)


def test_wilson_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(12)
    n, p = 1000, 0.964
    draws = rng.binomial(n, p, size=2000)
    covered = np.mean([(iv := accuracy_interval(int(k), n)).low <= p <= iv.high for k in draws])
    assert 0.93 <= covered <= 0.97


def test_accuracy_interval_is_never_zero_width_at_100_percent():
    iv = accuracy_interval(1000, 1000)
    assert iv.high == 1.0 and iv.low < 0.997


def test_accuracy_interval_text_names_the_range_and_the_test_set_size():
    assert accuracy_interval(964, 1000).text == "96.4 % (95 % range 95.1 to 97.4 %, 1,000 test images)"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(correct=1, n=0), "n .*>= 1"),
        (dict(correct=5, n=4), "correct must be at most n"),
        (dict(correct=-1, n=4), "correct must be an integer >= 0"),
        (dict(correct=1.5, n=4), "correct must be an integer"),
        (dict(correct=1, n=4, level=1.0), "level must be a number strictly between 0 and 1"),
        (dict(correct=1, n=4, level=0), "level must be"),
        (dict(correct=1, n=4, level=95), "level must be"),
    ],
)
def test_accuracy_interval_rejects_bad_input_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        accuracy_interval(**kwargs)


# --- a gain between two models on the same images -----------------------------------------------


def _restricted_p01(delta, n10, n01, n):
    """p01 maximising the multinomial likelihood under p10 - p01 = delta, by golden-section search."""
    m = n - n10 - n01

    def loglik(q):
        terms = [(n10, q + delta), (n01, q), (m, 1 - 2 * q - delta)]
        return sum(k * math.log(p) for k, p in terms if k)

    lo, hi = max(0.0, -delta), (1 - delta) / 2
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if loglik(a) < loglik(b):
            lo = a
        else:
            hi = b
    return (lo + hi) / 2


@pytest.mark.parametrize("n10,n01,n", [(30, 14, 1000), (1, 7, 21), (0, 3, 500), (120, 80, 10000)])
def test_gain_interval_ends_where_the_paired_score_test_just_rejects(n10, n01, n):
    # Tango's statistic rebuilt with a numerically maximised likelihood instead of the closed form.
    low, high = tango_interval(n10, n01, n)
    for delta, sign in ((low, 1), (high, -1)):
        q = _restricted_p01(delta, n10, n01, n)
        stat = (n10 - n01 - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))
        assert stat == pytest.approx(sign * Z95, abs=1e-4)


def test_gain_interval_coverage_by_exact_enumeration_with_few_discordant_pairs():
    n = 40
    intervals = {(a, b): tango_interval(a, b, n) for a in range(n + 1) for b in range(n + 1 - a)}
    for (a, b), (low, high) in intervals.items():
        assert low <= (a - b) / n <= high
    for p10, p01 in [(0.05, 0.02), (0.1, 0.1), (0.15, 0.05), (0.3, 0.1)]:
        coverage = sum(
            math.comb(n, a) * math.comb(n - a, b) * p10**a * p01**b * (1 - p10 - p01) ** (n - a - b)
            for (a, b), (low, high) in intervals.items()
            if low <= p10 - p01 <= high
        )
        # With 1 to 16 discordant pairs expected, a 95 % interval should neither undercover nor be useless.
        assert 0.93 <= coverage <= 0.99, (p10, p01, coverage)


def test_gain_interval_covers_the_true_gain_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    n, p10, p01 = 1000, 0.03, 0.015
    counts = rng.multinomial(n, [p10, p01, 1 - p10 - p01], size=2000)
    covered = np.mean([(g := gain_from_counts(int(a), int(b), n)).low <= p10 - p01 <= g.high for a, b, _ in counts])
    assert 0.93 <= covered <= 0.97


def test_two_students_that_never_disagree_still_get_a_range():
    g = gain_from_counts(0, 0, 1000)
    assert g.gain == 0 and g.p_value == 1.0
    assert g.low < 0 < g.high


def test_mcnemar_p_value_is_the_exact_binomial_tail():
    def reference(n10, n01):
        d, k = n10 + n01, min(n10, n01)
        log_pmf = [
            math.lgamma(d + 1) - math.lgamma(i + 1) - math.lgamma(d - i + 1) - d * math.log(2) for i in range(k + 1)
        ]
        return min(1.0, 2 * sum(math.exp(v) for v in log_pmf))

    assert mcnemar_p(1, 7) == pytest.approx(2 * (1 + 8) / 256)
    for n10, n01 in [(60, 40), (40, 60), (3, 0), (500, 430), (12, 12), (4800, 5200)]:
        assert mcnemar_p(n10, n01) == pytest.approx(reference(n10, n01), rel=1e-9)
    assert mcnemar_p(5000, 5000) == 1.0


def test_paired_gain_counts_the_images_where_exactly_one_model_is_right():
    a = torch.tensor([1, 1, 1, 0, 0, 1, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0], dtype=torch.bool)
    g = paired_gain(a, b)
    assert (g.n, g.n10, g.n01) == (8, 3, 1)
    assert g.gain == pytest.approx(a.double().mean().item() - b.double().mean().item())
    assert g.low <= g.gain <= g.high
    assert paired_gain(a.numpy(), b.int().tolist()) == g


@pytest.mark.parametrize(
    "a,b,kwargs,match",
    [
        ([True, False], [True, False, True], {}, "must score the same test images, got 2 and 3"),
        ([], [], {}, "a_correct must hold at least one test image"),
        ([[True]], [[True]], {}, "a_correct must be a 1-D vector"),
        ([0.5, 1.0], [1, 1], {}, "a_correct must hold True/False"),
        ([True], [False], {"level": 1.5}, "level must be a number strictly between 0 and 1"),
    ],
)
def test_paired_gain_rejects_bad_input_by_name(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_gain(a, b, **kwargs)


def test_gain_from_counts_rejects_more_disagreements_than_images():
    with pytest.raises(ValueError, match="must be at most n"):
        gain_from_counts(60, 50, 100)


# --- verdict --------------------------------------------------------------------------------------


def test_verdict_says_beyond_noise_with_the_numbers():
    v = verdict(gain_from_counts(30, 14, 1000))
    assert not v.within_noise and v.direction == "better"
    assert v.sentence == (
        "+1.6 points (95 % range +0.3 to +3.0, 1,000 test images): distillation helped, beyond test-set noise."
    )


def test_verdict_says_within_noise_when_the_range_includes_zero():
    v = verdict(gain_from_counts(14, 16, 1000))
    assert v.within_noise and v.direction == "tied"
    assert v.sentence == (
        "−0.2 points (95 % range −1.3 to +0.9, 1,000 test images): within test-set noise — "
        "the two students are about equally good here."
    )


def test_verdict_says_when_distillation_hurt():
    v = verdict(gain_from_counts(10, 30, 1000))
    assert not v.within_noise and v.direction == "worse"
    assert v.sentence.startswith("−2.0 points (95 % range −3.4 to −0.8") and "hurt, beyond test-set noise" in v.sentence


def test_verdict_names_other_pairs():
    v = verdict(gain_from_counts(5, 4, 1000), change="this setting", pair="the two settings")
    assert v.sentence.endswith("within test-set noise — the two settings are about equally good here.")


def test_a_range_end_just_above_zero_is_not_shown_as_zero():
    # 40 vs 24 discordant pairs: the lower end is +0.03 points; "0.0 to +3.2" would contradict "beyond noise".
    g = gain_from_counts(40, 24, 1000)
    assert 0 < g.low < 0.0005
    assert "range +0.03 to +3.2" in g.text


def test_formatting_uses_one_decimal_and_a_real_minus_sign():
    assert fmt_points(-0.0123) == "−1.2"
    assert fmt_points(0.0004) == "0.0"
    assert fmt_points(-0.0004) == "0.0"
    assert fmt_percent(0.96449) == "96.4 %"


# --- sweeps ---------------------------------------------------------------------------------------


def test_equal_accuracies_are_tied_for_best_not_best_and_second():
    cells = [
        ("T = 1, α = 0.5", 0.950, 1000),
        ("T = 2, α = 0.25", 0.964, 1000),
        ("T = 4, α = 0.25", 0.964, 1000),
        ("T = 4, α = 0.5", 0.962, 1000),
        ("T = 20, α = 1", 0.900, 1000),
    ]
    ties = best_with_ties(cells)
    assert ties.method == "wilson"
    assert ties.best == ("T = 2, α = 0.25", "T = 4, α = 0.25")
    assert ties.tied == ("T = 4, α = 0.5", "T = 1, α = 0.5")
    assert ties.beaten == ("T = 20, α = 1",)
    assert ties.sentence == (
        "Tied for best: T = 2, α = 0.25 (96.4 %), T = 4, α = 0.25 (96.4 %); "
        "tied within noise: T = 4, α = 0.5 (96.2 %), T = 1, α = 0.5 (95.0 %)."
    )
    assert "Best:" not in ties.sentence


def _vector(correct_first, n=1000):
    v = np.zeros(n, dtype=bool)
    v[:correct_first] = True
    return v


def test_sweep_with_per_image_results_uses_the_paired_test():
    best = _vector(964)
    close = best.copy()
    close[[0, 1, 2]] = False  # 961 right, only 3 discordant images: within noise
    worse = _vector(950)  # 14 discordant images, all won by the best: beyond noise
    ties = best_with_ties([((2, 0.25), best, 1000), ((4, 0.25), close, 1000), ((20, 1.0), worse, 1000)], label=str)
    assert ties.method == "paired"
    assert ties.best == ((2, 0.25),) and ties.tied == ((4, 0.25),) and ties.beaten == ((20, 1.0),)
    assert ties.sentence == "Best: (2, 0.25) (96.4 %); tied within noise: (4, 0.25) (96.1 %)."
    # Without per-image results only the intervals are known: those of 95.0 % and 96.4 % overlap.
    assert best_with_ties([("a", 0.964, 1000), ("b", 0.950, 1000)]).tied == ("b",)


def test_sweep_with_a_clear_winner_says_so():
    ties = best_with_ties([("a", 0.99, 10000), ("b", 0.95, 10000)])
    assert ties.best == ("a",) and ties.tied == () and ties.beaten == ("b",)
    assert ties.sentence == "Best: a (99.0 %); every other setting is lower, beyond test-set noise."
    assert best_with_ties([("only", 0.5, 10)]).sentence == "Only one setting: only (50.0 %)."
    assert best_with_ties([("a", 0.5, 10), ("b", 0.5, 10)]).sentence == "Tied for best: a (50.0 %), b (50.0 %)."


@pytest.mark.parametrize(
    "cells,match",
    [
        ([], "cells must be a non-empty list"),
        ([("a", 0.9)], r"cells\[0\] must be a \(key, correct vector or accuracy, n\) triple"),
        ([("a", 1.2, 100)], r"the accuracy of cells\[0\] must be a fraction in \[0, 1\]"),
        ([("a", 0.9, 0)], r"n of cells\[0\] must be an integer >= 1"),
        ([("a", [True, False], 3)], r"n of cells\[0\] must equal the length of its correct vector \(2\)"),
        ([("a", [True], 1), ("b", [True, True], 2)], "must score the same test images"),
        ([("a", 0.9, 10), ("a", 0.8, 10)], "own key"),
    ],
)
def test_best_with_ties_rejects_bad_cells_by_name(cells, match):
    with pytest.raises(ValueError, match=match):
        best_with_ties(cells)


# --- seeds ----------------------------------------------------------------------------------------


def test_seeds_summary_gives_mean_and_sample_std():
    values = [0.9555, 0.9597, 0.9639]
    s = seeds_summary(values)
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert (s.n, s.min, s.max) == (3, 0.9555, 0.9639)
    assert s.sentence == "95.97 ± 0.42 % over 3 seeds"


def test_seeds_summary_of_gains_and_of_a_single_seed():
    assert seeds_summary([-0.004, 0.0, -0.002], unit="points").sentence == "−0.20 ± 0.20 points over 3 seeds"
    one = seeds_summary([0.9])
    assert one.std is None and one.sentence.startswith("90.00 % from 1 seed")


@pytest.mark.parametrize(
    "values,kwargs,match",
    [
        ([], {}, "at least one result"),
        ([96.4, 95.0], {}, r"fractions in \[0, 1\]"),
        ([float("nan")], {}, "fractions"),
        ("0.9", {}, "values must be a list"),
        ([0.9], {"unit": "percent"}, 'unit must be "%"'),
    ],
)
def test_seeds_summary_rejects_bad_input_by_name(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        seeds_summary(values, **kwargs)
