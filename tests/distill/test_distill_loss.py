"""The distillation loss against hand-computed values, and its T² gradient scaling."""

from __future__ import annotations

import math

import pytest
import torch

from slimkit.techniques.distill import distillation_loss, hint_loss, soft_target_loss

STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [1.0, 0.0, 4.0]]


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_soft_loss(temperature: float) -> float:
    """T² · mean over rows of Σ_k p_t[k] · (log p_t[k] − log p_s[k]), in plain Python."""
    total = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER, strict=True):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t, strict=True))
    return temperature**2 * total / len(STUDENT)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 20.0])
def test_soft_target_loss_equals_the_hand_computed_value(temperature: float) -> None:
    student = torch.tensor(STUDENT, dtype=torch.float64)
    teacher = torch.tensor(TEACHER, dtype=torch.float64)
    loss = soft_target_loss(student, teacher, temperature)
    assert float(loss) == pytest.approx(_hand_soft_loss(temperature), rel=1e-9)


def test_distillation_loss_mixes_soft_and_hard_terms_by_alpha() -> None:
    labels = [1, 2]
    hard = 0.0
    for row, label in zip(STUDENT, labels, strict=True):
        hard -= math.log(_softmax(row, 1.0)[label])
    hard /= len(labels)
    for alpha in (0.0, 0.3, 1.0):
        loss = distillation_loss(
            torch.tensor(STUDENT),
            torch.tensor(TEACHER),
            torch.tensor(labels),
            temperature=4.0,
            alpha=alpha,
        )
        expected = alpha * _hand_soft_loss(4.0) + (1 - alpha) * hard
        assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_identical_logits_give_zero_soft_loss() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    assert float(soft_target_loss(logits, logits.clone(), 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_gradient_is_t_times_the_probability_difference() -> None:
    """d/ds [T² KL(p_t ‖ p_s)] = T (p_s − p_t) / N, exactly."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 5, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 5, generator=generator, requires_grad=True)
    temperature = 3.0
    soft_target_loss(student, teacher, temperature).backward()
    p_s = torch.softmax(student.detach() / temperature, dim=1)
    p_t = torch.softmax(teacher.detach() / temperature, dim=1)
    assert student.grad is not None
    torch.testing.assert_close(student.grad, temperature * (p_s - p_t) / 4)
    assert teacher.grad is None  # the teacher's logits are constants


def _gradient_norm(temperature: float, scaled: bool) -> float:
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(8, 10, generator=generator)
    teacher = torch.randn(8, 10, generator=generator)
    student = (student - student.mean(1, keepdim=True)).requires_grad_(True)  # zero-mean logits
    teacher = teacher - teacher.mean(1, keepdim=True)
    loss = soft_target_loss(student, teacher, temperature)
    if not scaled:
        loss = loss / temperature**2
    loss.backward()
    assert student.grad is not None
    return float(student.grad.norm())


def test_t_squared_scaling_keeps_the_gradient_magnitude_as_t_grows() -> None:
    """Hinton et al. §2: soft-target gradients scale as 1/T²; the T² factor cancels that."""
    scaled = [_gradient_norm(t, scaled=True) for t in (10.0, 20.0, 40.0)]
    unscaled = [_gradient_norm(t, scaled=False) for t in (10.0, 20.0, 40.0)]
    assert scaled[1] / scaled[0] == pytest.approx(1.0, rel=0.02)
    assert scaled[2] / scaled[1] == pytest.approx(1.0, rel=0.02)
    assert unscaled[0] / unscaled[1] == pytest.approx(4.0, rel=0.05)
    assert unscaled[1] / unscaled[2] == pytest.approx(4.0, rel=0.05)
    # and it tends to the logit-matching gradient (z_s − z_t) / (K N) of the high-T limit
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(8, 10, generator=generator)
    teacher = torch.randn(8, 10, generator=generator)
    limit = (student - student.mean(1, keepdim=True)) - (teacher - teacher.mean(1, keepdim=True))
    assert scaled[2] == pytest.approx(float(limit.norm()) / (10 * 8), rel=0.03)


def test_hint_loss_is_the_mean_squared_difference() -> None:
    adapted = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0], [0.0, 4.0]], requires_grad=True)
    loss = hint_loss(adapted, target)
    assert float(loss.detach()) == pytest.approx((0 + 4 + 9 + 0) / 4)
    loss.backward()
    assert target.grad is None
