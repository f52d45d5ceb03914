"""The distillation losses: the one definition of temperature T, weight alpha and DKD's two parts.

Hinton et al. (2015), `distillation_loss`:
  total = (1 - alpha) * hard + alpha * soft, where
  hard = cross-entropy of the student with the true labels, and
  soft = T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch.
alpha = 0 is plain training on labels; alpha = 1 learns from the teacher alone.

Decoupled KD (Zhao et al., CVPR 2022, section 3.1), `kd_split` and `dkd_loss`. With p = softmax(z / T)
for teacher (superscript T in the paper) and student (S), t the target class of a sample:
  b = [p_t, 1 - p_t]                       the binary target / non-target distribution,
  p_hat_i = p_i / (1 - p_t), i != t       the distribution over the non-target classes, renormalised,
  TCKD = KL(b^teacher || b^student),  NCKD = KL(p_hat^teacher || p_hat^student), and per sample exactly
  KL(p^teacher || p^student) = TCKD + (1 - p_t^teacher) * NCKD,
where p_t^teacher is the TEACHER's probability of the target class at T: classical KD weights the
non-target part (the dark knowledge) down by how sure the teacher is. DKD weights the parts apart:
  total = ce_weight * hard + alpha_tc * T^2 * TCKD + beta_nc * T^2 * NCKD   (batch means),
with soft = alpha_tc * T^2 * TCKD + beta_nc * T^2 * NCKD.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .limits import check_alpha, check_temperature, check_weight


class DistillationLoss(NamedTuple):
    total: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor


class DKDLoss(NamedTuple):
    """A DKD loss; unpacks like DistillationLoss in its first three fields. tckd, nckd: T^2 * TCKD and
    T^2 * NCKD, batch means, unweighted (soft = alpha_tc * tckd + beta_nc * nckd)."""

    total: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor
    tckd: torch.Tensor
    nckd: torch.Tensor


class KDSplit(NamedTuple):
    """Per-sample parts of the classical soft term at T (no T^2 factor): KL = tckd + (1 - teacher_target) * nckd."""

    tckd: torch.Tensor
    nckd: torch.Tensor
    teacher_target: torch.Tensor  # p_t^teacher: the teacher's probability of the true class at T


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's probabilities softened by T: softmax(teacher / T)."""
    return F.softmax(teacher_logits / check_temperature(temperature), dim=-1)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float
) -> DistillationLoss:
    """Hinton et al. (2015) knowledge-distillation loss; gradients reach only the student."""
    t = check_temperature(temperature)
    a = check_alpha(alpha)
    hard = F.cross_entropy(student_logits, targets)
    # T^2 keeps the soft term's gradient magnitude comparable to the hard term's as T changes.
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits.detach() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    return DistillationLoss((1.0 - a) * hard + a * soft, hard, soft)


def _binary_and_rest(logits: torch.Tensor, target_mask: torch.Tensor):
    """log p_t, log(1 - p_t), the non-target log-probabilities renormalised (0 at the target) and their
    probabilities (0 at the target), all computed from log-softmaxes so that none of them under- or overflows."""
    log_p = F.log_softmax(logits, dim=-1)
    log_target = log_p.masked_select(target_mask)
    log_rest = torch.logsumexp(log_p.masked_fill(target_mask, float("-inf")), dim=-1)
    log_hat = F.log_softmax(logits.masked_fill(target_mask, float("-inf")), dim=-1)
    return log_target, log_rest, log_hat.masked_fill(target_mask, 0.0), log_hat.exp()


def kd_split(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> KDSplit:
    """TCKD and NCKD of every sample at temperature T (see the module docstring); gradients reach only the student."""
    t = check_temperature(temperature)
    mask = F.one_hot(targets, student_logits.shape[-1]).bool()
    s_t, s_rest, s_hat, _ = _binary_and_rest(student_logits / t, mask)
    q_t, q_rest, q_hat, q_hat_p = _binary_and_rest(teacher_logits.detach() / t, mask)
    tckd = q_t.exp() * (q_t - s_t) + q_rest.exp() * (q_rest - s_rest)
    nckd = (q_hat_p * (q_hat - s_hat)).sum(-1)
    return KDSplit(tckd, nckd, q_t.exp())


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha_tc: float,
    beta_nc: float,
    ce_weight: float = 1.0,
) -> DKDLoss:
    """Zhao et al. (2022) decoupled KD: ce_weight * CE + alpha_tc * T^2 * TCKD + beta_nc * T^2 * NCKD."""
    t = check_temperature(temperature)
    a, b = check_weight(alpha_tc, "alpha_tc"), check_weight(beta_nc, "beta_nc")
    w = check_weight(ce_weight, "ce_weight")
    hard = F.cross_entropy(student_logits, targets)
    split = kd_split(student_logits, teacher_logits, targets, t)
    tckd, nckd = split.tckd.mean() * (t * t), split.nckd.mean() * (t * t)
    soft = a * tckd + b * nckd
    return DKDLoss(w * hard + soft, hard, soft, tckd, nckd)
