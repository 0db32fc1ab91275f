"""Hint layers resolve by name, record what the layer computed, and get adapters that fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques.distill import FeatureRecorder, HintAdapter, find_layer, layer_names


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 2)
        self.spare = nn.Linear(4, 2)  # never called in forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x.flatten(1))


def test_layers_resolve_by_name(trained_lenet: nn.Module) -> None:
    assert find_layer(trained_lenet, "features.2", role="teacher") is trained_lenet.features[2]
    assert "classifier.0" in layer_names(trained_lenet)


def test_recorder_catches_the_named_layer_output(trained_lenet: nn.Module, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits.test.x[:5]
    recorder = FeatureRecorder(trained_lenet, ["features.2", "classifier.1"], role="teacher")
    with torch.no_grad():
        trained_lenet(x)
        expected_features = trained_lenet.features[:3](x)
        expected_hidden = trained_lenet.classifier[:2](trained_lenet.features(x))
    torch.testing.assert_close(recorder.get("features.2"), expected_features)
    torch.testing.assert_close(recorder.get("classifier.1"), expected_hidden)
    recorder.remove()
    recorder.features.clear()
    with torch.no_grad():
        trained_lenet(x)
    assert recorder.features == {}  # the hooks are gone


def test_a_missing_layer_lists_the_layers_there_are(trained_lenet: nn.Module) -> None:
    with pytest.raises(
        ConfigError, match=r"'features\.9' does not exist in the teacher.*features\.0"
    ):
        FeatureRecorder(trained_lenet, ["features.9"], role="teacher")
    with pytest.raises(ConfigError, match="does not exist"):
        find_layer(trained_lenet, "", role="student")  # the root is not a layer


def test_a_layer_that_never_runs_is_named() -> None:
    model = _Unused()
    recorder = FeatureRecorder(model, ["spare"], role="student")
    model(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="'spare' of the student did not run in the forward pass"):
        recorder.get("spare")


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape", "layer"),
    [
        ((8, 4, 4), (16, 4, 4), nn.Conv2d),
        ((8, 4, 4), (16, 2, 2), nn.Conv2d),
        ((32,), (120,), nn.Linear),
        ((8, 4, 4), (120,), nn.Linear),
    ],
)
def test_adapters_map_student_features_to_teacher_shapes(
    student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], layer: type
) -> None:
    adapter = HintAdapter(student_shape, teacher_shape)
    assert isinstance(adapter.layer, layer)
    out = adapter(torch.randn(3, *student_shape))
    assert tuple(out.shape) == (3, *teacher_shape)
    if layer is nn.Conv2d:
        assert adapter.layer.kernel_size == (1, 1)
