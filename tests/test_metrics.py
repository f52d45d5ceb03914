"""Metrics against small examples whose answers can be checked by hand."""

import copy
import math

import pytest
import torch
from torch import nn

from kdcore.metrics import (
    Latency,
    accuracy,
    agreement,
    confusion_matrix,
    expected_calibration_error,
    kl_to_teacher,
    measure_latency,
    param_count,
    per_class_accuracy,
    size_bytes,
)


def _one_hot_logits(preds, k):
    """Logits whose argmax is each given class."""
    return torch.nn.functional.one_hot(torch.tensor(preds), k).float() * 5.0


# 4 classes, class 3 never appears in y.
PRED = [0, 0, 1, 1, 2, 0]
Y = torch.tensor([0, 1, 1, 1, 2, 2])


def test_accuracy_per_class_and_confusion_on_hand_made_example():
    logits = _one_hot_logits(PRED, 4)
    assert accuracy(logits, Y) == pytest.approx(4 / 6)
    assert per_class_accuracy(logits, Y, 4) == pytest.approx([1.0, 2 / 3, 0.5, None])
    assert per_class_accuracy(logits, Y, 4)[3] is None
    cm = confusion_matrix(logits, Y, 4)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [
        [1, 0, 0, 0],  # true 0: predicted 0
        [1, 2, 0, 0],  # true 1: once as 0, twice as 1
        [1, 0, 1, 0],  # true 2: once as 0, once as 2
        [0, 0, 0, 0],
    ]  # true 3: absent


def test_label_checks_name_the_bad_argument():
    logits = _one_hot_logits(PRED, 4)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(logits, Y, 3)
    with pytest.raises(ValueError, match="y must have one label per row"):
        accuracy(logits, Y[:3])
    with pytest.raises(ValueError, match="y must hold class indices"):
        accuracy(logits, torch.tensor([0, 1, 1, 1, 2, 4]))
    with pytest.raises(ValueError, match="logits"):
        accuracy(torch.zeros(6), Y)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(logits, Y, n_bins=0)


def _two_class(conf, n):
    """n rows predicting class 0 with softmax probability conf."""
    return torch.tensor([[math.log(conf / (1 - conf)), 0.0]] * n)


def test_ece_is_zero_when_confident_and_correct():
    logits = torch.tensor([[100.0, 0.0], [0.0, 100.0], [100.0, 0.0]])
    assert expected_calibration_error(logits, torch.tensor([0, 1, 0])) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_predictions():
    # Always 80% sure, right half of the time: ECE = |0.5 - 0.8| = 0.3.
    logits = _two_class(0.8, 4)
    assert expected_calibration_error(logits, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.3)


def test_ece_weights_each_bin_by_its_share_of_samples():
    # Bin of 0.9: 2/2 correct (gap 0.1). Bin of 0.6: 1/2 correct (gap 0.1). ECE = 0.5*0.1 + 0.5*0.1.
    logits = torch.cat([_two_class(0.9, 2), _two_class(0.6, 2)])
    y = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(logits, y) == pytest.approx(0.1)
    # One bin averages over-confidence against under-confidence: |0.75 - 0.75| = 0.
    assert expected_calibration_error(logits, y, n_bins=1) == pytest.approx(0.0, abs=1e-6)  # float32 logits


def test_identical_logits_agree_fully_with_zero_kl():
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    assert agreement(logits, logits.clone()) == 1.0
    assert kl_to_teacher(logits, logits.clone()) == pytest.approx(0.0, abs=1e-12)
    assert agreement(logits, -logits) == 0.0


def _kl_by_hand(s, t, T):
    ps = [math.exp(v / T) for v in s]
    pt = [math.exp(v / T) for v in t]
    ps = [p / sum(ps) for p in ps]
    pt = [p / sum(pt) for p in pt]
    return sum(a * math.log(a / b) for a, b in zip(pt, ps))


def test_kl_matches_hand_computed_two_class_value_and_depends_on_temperature():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # teacher probabilities 0.75 / 0.25
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_to_teacher(student, teacher) == pytest.approx(expected)
    soft = kl_to_teacher(student, teacher, temperature=2.0)
    assert soft == pytest.approx(_kl_by_hand([0.0, 0.0], [math.log(3.0), 0.0], 2.0))
    assert soft < expected  # softening both towards uniform brings them closer


def test_kl_is_a_mean_over_samples():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    by_hand = (_kl_by_hand(s[0].tolist(), t[0].tolist(), 3.0) + _kl_by_hand(s[1].tolist(), t[1].tolist(), 3.0)) / 2
    assert kl_to_teacher(s, t, temperature=3.0) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="temperature"):
        kl_to_teacher(s, t, temperature=0)
    with pytest.raises(ValueError, match="teacher_logits"):
        kl_to_teacher(s, t[:, :2])


def test_param_count_and_size_of_a_model_and_an_ensemble():
    lin = nn.Linear(10, 5)
    assert param_count(lin) == 55
    assert param_count([lin, nn.Linear(10, 5)]) == 110
    one = size_bytes(lin)
    assert 55 * 4 <= one <= 55 * 4 + 512  # float32 weights plus a small JSON header
    assert size_bytes([lin, copy.deepcopy(lin)]) == 2 * one
    assert size_bytes(nn.ModuleList([lin, copy.deepcopy(lin)])) == 2 * one


def test_tied_weights_are_stored_once():
    lin = nn.Linear(10, 5)
    assert size_bytes(nn.Sequential(lin, lin)) <= 55 * 4 + 512


def test_empty_ensemble_is_rejected():
    with pytest.raises(ValueError, match="models"):
        param_count([])
    with pytest.raises(ValueError, match="models"):
        measure_latency([], (1, 28, 28))


def _big_mlp():
    # ~4M weights: large enough that forward time, not Python overhead, dominates at batch 1.
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 32 * 32, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_latency_is_positive_and_restores_threads_and_training_flags(restore_threads):
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.Dropout(0.5), nn.Linear(32, 10))
    model.train()
    model[2].eval()  # a deliberately mixed model must come back exactly as it was
    torch.set_num_threads(1)
    lat = measure_latency(model, (1, 28, 28), threads=2, warmup=1, repeats=5, repeats_b256=2)
    assert isinstance(lat, Latency)
    assert lat.ms_batch1 > 0 and lat.throughput_b256 > 0 and lat.threads == 2
    assert torch.get_num_threads() == 1
    assert [m.training for m in model.modules()] == [True, True, True, False, True]


def test_latency_restores_state_when_the_forward_fails(restore_threads):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    torch.set_num_threads(1)
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(model, (1, 4, 4), threads=2)
    assert torch.get_num_threads() == 1
    assert model.training


def test_latency_argument_checks():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(model, (1, 2, 2), threads=0)
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency(model, (4,))
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, (1, 2, 2), repeats=0)


def test_ensemble_latency_covers_all_members():
    single = _big_mlp()
    kwargs = dict(warmup=3, repeats=30, repeats_b256=2)
    one = measure_latency(single, (3, 32, 32), **kwargs)
    three = measure_latency([single] + [copy.deepcopy(single) for _ in range(2)], (3, 32, 32), **kwargs)
    assert three.ms_batch1 > 1.5 * one.ms_batch1
    assert three.throughput_b256 < one.throughput_b256
