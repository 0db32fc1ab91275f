"""The distillation losses: soft targets at a temperature, mixed with hard labels, and hints.

Hinton, Vinyals and Dean 2015 ("Distilling the Knowledge in a Neural Network", §2): the student
matches the teacher's class probabilities softened at temperature ``T``, ``softmax(z / T)``. The
gradient of the soft cross-entropy with respect to a student logit is ``(p_s − p_t) / T``, which
for large ``T`` (zero-mean logits) is about ``(z_s − z_t) / (K T²)``: its magnitude falls as
``1 / T²``, so the soft loss is multiplied by ``T²`` to keep the soft and hard terms' relative
contribution roughly unchanged when ``T`` changes. KL divergence and soft cross-entropy differ by
the teacher's entropy, a constant, so they have the same gradient.

Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets", ICLR): a hint is the squared distance
between an adapted student feature and a teacher feature.

Example:
    >>> s, t = torch.zeros(2, 3), torch.zeros(2, 3)
    >>> float(soft_target_loss(s, t, temperature=4.0))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))``, averaged over the batch.

    Args:
        student_logits: ``(N, K)``; gradients flow into them.
        teacher_logits: ``(N, K)``; treated as constants (detached).
        temperature: ``T`` > 0.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (N, K)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)  # (N, K)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``α · soft_target_loss + (1 − α) · CE(student, targets)``.

    Args:
        student_logits: ``(N, K)``.
        teacher_logits: ``(N, K)``.
        targets: int labels ``(N,)`` or class probabilities ``(N, K)`` (mixed batches).
        temperature: ``T`` of the soft targets.
        alpha: weight of the soft-target term in [0, 1].
        label_smoothing: smoothing of the hard targets.
    """
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def hint_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between an adapted student feature and a teacher feature."""
    return F.mse_loss(adapted_student, teacher_feature.detach())
