"""The distillation loss against values computed by hand."""

import math

import pytest
import torch

from kdcore.losses import distillation_loss, soft_targets


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
