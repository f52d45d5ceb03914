"""The distillation loss: the one definition of temperature T and weight alpha.

total = (1 - alpha) * hard + alpha * soft, where
  hard = cross-entropy of the student with the true labels, and
  soft = T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch.
alpha = 0 is plain training on labels; alpha = 1 learns from the teacher alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .limits import check_alpha, check_temperature


class DistillationLoss(NamedTuple):
    total: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor


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
