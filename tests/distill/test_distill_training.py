"""Distillation through the training loop on real digits: checks first, then a frozen teacher."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import CheckpointError, ConfigError
from slimkit.models import create_model
from slimkit.techniques import compress
from slimkit.techniques.distill import (
    DistillationConfig,
    DistillationLoss,
    HintedStudent,
    distill,
)
from slimkit.techniques.quantize import DynamicInt8Config, QATConfig, convert, prepare_qat
from slimkit.train import AugmentConfig, Callback, TrainState, evaluate, save_checkpoint


def _student(data: Dataset, num_classes: int = 10, hidden: tuple[int, ...] = (32,)) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "mlp", input_shape=data.input_shape, num_classes=num_classes, hidden=list(hidden)
    )


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_teacher_and_student_with_different_classes_fail_before_training(
    digits: Dataset, trained_lenet: nn.Module
) -> None:
    student = _student(digits, num_classes=5)
    before = _weights(student)
    with pytest.raises(ConfigError, match="the teacher outputs 10 logits, the student 5"):
        distill(student, digits, DistillationConfig(teacher=trained_lenet, epochs=1))
    assert torch.equal(_weights(student), before)
    teacher = create_model("mlp", input_shape=digits.input_shape, num_classes=5, hidden=[8])
    with pytest.raises(ConfigError, match="output 5 logits but data 'digits' has 10 classes"):
        distill(student, digits, DistillationConfig(teacher=teacher, epochs=1))


def test_missing_hint_layers_fail_before_training(
    digits: Dataset, trained_lenet: nn.Module
) -> None:
    student = _student(digits)
    before = _weights(student)
    config = DistillationConfig(teacher=trained_lenet, hints=["layers.7:features.2"])
    with pytest.raises(ConfigError, match=r"'layers\.7' does not exist in the student.*layers\.1"):
        distill(student, digits, config)
    config = DistillationConfig(teacher=trained_lenet, hints=["layers.1:conv9"])
    with pytest.raises(ConfigError, match=r"'conv9' does not exist in the teacher.*features\.0"):
        distill(student, digits, config)
    assert torch.equal(_weights(student), before)
    assert not student._forward_hooks and not student.layers[1]._forward_hooks


def test_a_missing_teacher_checkpoint_is_a_slimkit_error(digits: Dataset, tmp_path: Path) -> None:
    config = DistillationConfig(teacher=str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="does not exist"):
        distill(_student(digits), digits, config)


class _TeacherWatch(Callback):
    """Checks the teacher at every step and the adapters at the start and the end."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.steps = 0
        self.adapters_before: torch.Tensor | None = None
        self.adapters_after: torch.Tensor | None = None
        self.optimized = 0
        self.model_params = 0

    def on_train_start(self, state: TrainState) -> None:
        assert isinstance(state.model, HintedStudent)
        self.adapters_before = _weights(state.model.adapters)
        self.optimized = sum(
            p.numel() for group in state.optimizer.param_groups for p in group["params"]
        )
        self.model_params = sum(p.numel() for p in state.model.parameters())

    def on_step_end(self, state: TrainState) -> None:
        self.steps += 1
        assert not self.teacher.training
        assert all(p.grad is None for p in self.teacher.parameters())

    def on_train_end(self, state: TrainState) -> None:
        assert isinstance(state.model, HintedStudent)
        self.adapters_after = _weights(state.model.adapters)


def test_teacher_gets_no_gradient_and_adapters_train_with_the_student(
    digits: Dataset, trained_lenet: nn.Module
) -> None:
    teacher = copy.deepcopy(trained_lenet).train()  # given in train mode: restored afterwards
    teacher_before = _weights(teacher)
    student = _student(digits)
    student_before = _weights(student)
    watch = _TeacherWatch(teacher)
    config = DistillationConfig(
        teacher=teacher,
        epochs=1,
        hints=["layers.1:classifier.1", "layers.2:features.2"],  # linear and conv adapters
    )
    result = distill(student, digits, config, callbacks=[watch])
    assert result.model is student and watch.steps > 0
    assert torch.equal(_weights(teacher), teacher_before)
    assert all(p.grad is None for p in teacher.parameters())
    assert teacher.training  # its mode is given back
    assert not torch.equal(_weights(student), student_before)
    assert watch.adapters_before is not None and watch.adapters_after is not None
    assert not torch.equal(watch.adapters_before, watch.adapters_after)
    assert watch.optimized == watch.model_params  # one optimizer: student and adapters
    assert not student.layers[1]._forward_hooks and not teacher.classifier[1]._forward_hooks


def _count_calls(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda module, inputs, output: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_cached_teacher_logits_train_the_same_student(
    digits: Dataset, trained_lenet: nn.Module
) -> None:
    weights, calls = [], []
    for cache in (True, False):
        teacher = copy.deepcopy(trained_lenet)
        counter = _count_calls(teacher)
        student = _student(digits)
        config = DistillationConfig(teacher=teacher, epochs=1, cache_teacher_logits=cache)
        result = distill(student, digits, config)
        weights.append(_weights(student))
        calls.append(counter[0])
    steps = len(result.history) * -(-len(digits.train) // config.batch_size)
    assert calls[0] < 5  # the class check and the cache
    assert calls[1] >= steps  # once per step
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_augmentation_or_hints_turn_the_cache_off(digits: Dataset) -> None:
    teacher = nn.Linear(64, 10)
    shifted = DistillationConfig(teacher=teacher, augment=AugmentConfig(shift=1))
    hinted = DistillationConfig(teacher=teacher, hints=["a:b"])
    plain = DistillationConfig(teacher=teacher)
    assert DistillationLoss(teacher, plain, digits).caches
    assert not DistillationLoss(teacher, shifted, digits).caches
    assert not DistillationLoss(teacher, hinted, digits).caches


def test_soft_targets_alone_teach_digits_through_compress(
    digits: Dataset, trained_lenet: nn.Module, tmp_path: Path
) -> None:
    """With alpha = 1 the student never sees a label: what it learns comes from the teacher."""
    path = save_checkpoint(trained_lenet, tmp_path / "teacher.safetensors")
    _, teacher_accuracy = evaluate(trained_lenet, digits.test)
    student = _student(digits)
    before = _weights(student)
    config = DistillationConfig(teacher=str(path), temperature=2.0, alpha=1.0, epochs=15, lr=1e-2)
    compressed = compress(student, [config, DynamicInt8Config()], data=digits)
    assert torch.equal(_weights(student), before)  # compress works on a copy
    _, accuracy = evaluate(compressed, digits.test)
    assert accuracy >= min(0.85, teacher_accuracy - 0.05)  # chance: 0.1
    with torch.no_grad():
        agree = compressed(digits.test.x).argmax(1) == trained_lenet(digits.test.x).argmax(1)
    assert float(agree.float().mean()) >= 0.85


def test_distilling_into_a_quantization_aware_student(
    digits: Dataset, trained_lenet: nn.Module
) -> None:
    student = _student(digits, hidden=(64,))
    qat = prepare_qat(student, digits.train.x[:256])
    config = DistillationConfig(teacher=trained_lenet, epochs=6, lr=1e-2, temperature=4.0)
    distill(qat, digits, config)
    int8 = convert(qat.eval(), QATConfig())
    _, accuracy = evaluate(int8, digits.test)
    assert accuracy >= 0.6  # chance: 0.1; 0.73-0.76 seen across thread counts and test orders
