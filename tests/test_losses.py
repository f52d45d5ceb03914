"""The distillation losses against values computed by hand: Hinton's KD and decoupled KD."""

import math

import pytest
import torch

from kdcore.losses import distillation_loss, dkd_loss, kd_split, soft_targets


def _by_hand(s, t, y, T, alpha):
    ps = [math.exp(v / T) for v in s]
    pt = [math.exp(v / T) for v in t]
    ps = [p / sum(ps) for p in ps]
    pt = [p / sum(pt) for p in pt]
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    p1 = [math.exp(v) for v in s]
    hard = -math.log(p1[y] / sum(p1))
    return (1 - alpha) * hard + alpha * T * T * kl, hard, T * T * kl


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (10.0, 0.3)])
def test_matches_hand_computed_values(T, alpha):
    s, t, y = [2.0, 0.5, -1.0], [1.0, 3.0, 0.0], 1
    out = distillation_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), T, alpha)
    total, hard, soft = _by_hand(s, t, y, T, alpha)
    assert out.total.item() == pytest.approx(total, rel=1e-5)
    assert out.hard.item() == pytest.approx(hard, rel=1e-5)
    assert out.soft.item() == pytest.approx(soft, rel=1e-5)


def test_soft_term_is_scaled_by_t_squared_and_averaged_over_batch():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    y = torch.tensor([1, 0])
    T = 3.0
    one = [_by_hand(s[i].tolist(), t[i].tolist(), int(y[i]), T, 1.0)[2] for i in range(2)]
    assert distillation_loss(s, t, y, T, 1.0).soft.item() == pytest.approx(sum(one) / 2, rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy_and_alpha_one_ignores_labels():
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.0).total, torch.nn.functional.cross_entropy(s, y))
    other_y = (y + 1) % 10
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 1.0).total, distillation_loss(s, t, other_y, 4.0, 1.0).total)


def test_identical_logits_give_zero_soft_loss():
    s = torch.randn(4, 10)
    assert distillation_loss(s, s.clone(), torch.zeros(4, dtype=torch.long), 5.0, 1.0).soft.item() == pytest.approx(
        0, abs=1e-6
    )


def test_gradients_flow_only_to_the_student():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    distillation_loss(s, t, torch.zeros(4, dtype=torch.long), 4.0, 0.7).total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
    ],
)
def test_bad_temperature_or_alpha_is_rejected_with_its_name(kwargs, word):
    args = {"temperature": 4.0, "alpha": 0.5, **kwargs}
    with pytest.raises(ValueError, match=word):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, dtype=torch.long), **args)


def test_higher_temperature_gives_softer_targets():
    t = torch.tensor([[5.0, 1.0, 0.0]])
    assert soft_targets(t, 1.0)[0, 0] > soft_targets(t, 4.0)[0, 0] > soft_targets(t, 20.0)[0, 0] > 1 / 3


# --------------------------------------------------------------------------- decoupled KD (Zhao et al. 2022)


def _softmax_by_hand(z):
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def _parts_by_hand(s, t, y, T):
    """Per-sample KL, TCKD, NCKD and the teacher's target probability, written out from the paper's definitions."""
    ps, pt = _softmax_by_hand(s / T), _softmax_by_hand(t / T)
    kl = (pt * (torch.log(pt) - torch.log(ps))).sum(-1)
    rows = torch.arange(len(y))
    ps_t, pt_t = ps[rows, y], pt[rows, y]
    tckd = pt_t * torch.log(pt_t / ps_t) + (1 - pt_t) * torch.log((1 - pt_t) / (1 - ps_t))
    nckd = torch.zeros(len(y), dtype=s.dtype)
    for i in range(len(y)):
        others = [k for k in range(s.shape[1]) if k != int(y[i])]
        qs = ps[i, others] / (1 - ps_t[i])
        qt = pt[i, others] / (1 - pt_t[i])
        nckd[i] = (qt * torch.log(qt / qs)).sum()
    return kl, tckd, nckd, pt_t


def _batch(seed, n=64, k=10, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    t = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    return s, t, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("seed,T", [(0, 1.0), (1, 4.0), (2, 10.0), (3, 0.5)])
def test_classical_kd_splits_exactly_into_tckd_plus_weighted_nckd(seed, T):
    s, t, y = _batch(seed)
    kl, tckd, nckd, pt_t = _parts_by_hand(s, t, y, T)
    split = kd_split(s, t, y, T)
    torch.testing.assert_close(split.tckd, tckd, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(split.nckd, nckd, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(split.teacher_target, pt_t, rtol=1e-12, atol=1e-12)
    # The identity, per sample: NCKD is weighted by the teacher's (not the student's) target probability.
    torch.testing.assert_close(split.tckd + (1 - split.teacher_target) * split.nckd, kl, rtol=1e-9, atol=1e-12)
    # Averaged over the batch, it is the classical soft term without its T^2.
    soft = distillation_loss(s, t, y, T, 1.0).soft
    torch.testing.assert_close((split.tckd + (1 - split.teacher_target) * split.nckd).mean() * T * T, soft)


@pytest.mark.parametrize("a,b,w,T", [(1.0, 8.0, 1.0, 4.0), (0.0, 2.0, 0.5, 2.0), (3.0, 0.0, 0.0, 1.0)])
def test_dkd_loss_weights_each_part_and_scales_by_t_squared(a, b, w, T):
    s, t, y = _batch(7, n=16)
    _, tckd, nckd, _ = _parts_by_hand(s, t, y, T)
    ce = (-torch.log(_softmax_by_hand(s)[torch.arange(len(y)), y])).mean()
    out = dkd_loss(s, t, y, T, alpha_tc=a, beta_nc=b, ce_weight=w)
    torch.testing.assert_close(out.hard, ce)
    torch.testing.assert_close(out.tckd, tckd.mean() * T * T)
    torch.testing.assert_close(out.nckd, nckd.mean() * T * T)
    torch.testing.assert_close(out.soft, a * tckd.mean() * T * T + b * nckd.mean() * T * T)
    torch.testing.assert_close(out.total, w * ce + out.soft)
    # The trainer reads the first three fields, as it does for the classical loss.
    total, hard, soft = out[:3]
    assert total is out.total and hard is out.hard and soft is out.soft


def test_dkd_stays_finite_for_a_teacher_sure_to_float_precision():
    # At T = 1 a teacher logit margin of 200 puts every non-target probability below float32's smallest number.
    t = torch.tensor([[200.0, 0.0, -5.0], [0.0, 150.0, 3.0]])
    s = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    out = dkd_loss(s, t, y, 1.0, alpha_tc=1.0, beta_nc=8.0)
    out.total.backward()
    assert all(torch.isfinite(v).all() for v in out) and torch.isfinite(s.grad).all()
    split = kd_split(s.detach(), t, y, 1.0)
    assert torch.isfinite(split.nckd).all() and (split.nckd >= 0).all()


def test_dkd_gradients_flow_only_to_the_student():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    dkd_loss(s, t, torch.zeros(4, dtype=torch.long), 4.0, 1.0, 8.0).total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"alpha_tc": -1.0}, ["alpha_tc", "0 to 100"]),
        ({"beta_nc": float("nan")}, ["beta_nc", "0 to 100"]),
        ({"beta_nc": 1e9}, ["beta_nc", "0 to 100"]),
        ({"ce_weight": -0.5}, ["ce_weight", "0 to 100"]),
        ({"temperature": 0.0}, ["temperature"]),
    ],
)
def test_bad_dkd_weights_are_rejected_with_their_name(kwargs, words):
    args = {"temperature": 4.0, "alpha_tc": 1.0, "beta_nc": 8.0, **kwargs}
    with pytest.raises(ValueError) as info:
        dkd_loss(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, dtype=torch.long), **args)
    assert all(w in str(info.value) for w in words), str(info.value)
