"""The model registry, and the conformance suite every registered model passes."""

from __future__ import annotations

import math

import pytest
import torch

from slimkit.errors import ModelError
from slimkit.measure import count_costs
from slimkit.models import (
    ModelSpec,
    build_model,
    create_model,
    list_models,
    model_spec_of,
    register_model,
)

SHAPES = [(1, 8, 8), (1, 28, 28)]


def test_builtin_models_are_registered() -> None:
    assert {"mlp", "lenet5", "lenet300_100"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_builds_runs_and_learns_a_step(name: str, shape: tuple[int, int, int]) -> None:
    model = create_model(name, input_shape=shape, num_classes=10)
    x = torch.rand(4, *shape)
    y = torch.tensor([0, 1, 2, 3])
    logits = model(x)
    assert logits.shape == (4, 10)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("name", list_models())
def test_spec_rebuilds_the_same_architecture(name: str) -> None:
    model = create_model(name, input_shape=(1, 8, 8), num_classes=7)
    spec = model_spec_of(model)
    assert spec is not None and spec.name == name and spec.num_classes == 7
    again = build_model(ModelSpec.from_dict(spec.to_dict()))
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_lenet300_100_has_the_paper_parameter_count() -> None:
    model = create_model("lenet300_100", input_shape=(1, 28, 28))
    expected = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert expected == 266_610
    assert count_costs(model, (1, 28, 28)).params == expected


def test_lenet5_on_mnist_has_the_classic_shape() -> None:
    model = create_model("lenet5", input_shape=(1, 28, 28))
    features = model.features(torch.zeros(1, 1, 28, 28))
    assert features.shape == (1, 16, 5, 5)
    # conv1 156 + conv2 2,416 + fc 48,120 + 10,164 + 850
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_model_kwargs_are_used_and_stored() -> None:
    model = create_model("mlp", input_shape=(1, 8, 8), hidden=[32, 16], dropout=0.2)
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [32, 16, 10]
    assert model_spec_of(model).kwargs == {"hidden": [32, 16], "dropout": 0.2}  # type: ignore[union-attr]


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet9000'.*lenet5"):
        create_model("resnet9000")


def test_unknown_argument_names_the_allowed_ones() -> None:
    with pytest.raises(ModelError, match=r"takes no argument.*widht.*hidden"):
        create_model("mlp", widht=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 8)}, "input_shape"),
        ({"num_classes": 1}, "num_classes"),
        ({"hidden": [0]}, "hidden"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments_are_model_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model("mlp", **kwargs)  # type: ignore[arg-type]


def test_registering_a_model_is_one_decorator() -> None:
    @register_model("test_tiny_linear", "one linear layer")
    def tiny(input_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_classes)
        )

    try:
        assert "test_tiny_linear" in list_models()
        assert create_model("test_tiny_linear", input_shape=(1, 8, 8))(
            torch.zeros(2, 1, 8, 8)
        ).shape == (2, 10)
        with pytest.raises(ModelError, match="registered twice"):
            register_model("test_tiny_linear")(tiny)
    finally:
        from slimkit.models import registry

        registry._REGISTRY.pop("test_tiny_linear", None)


# --- specs read from files are validated (issue #18, items 9 and 12) -------------------------

GOOD_SPEC = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "kwargs": {"hidden": [8]}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": 5}, "name"),
        ({"input_shape": [1, 8, 8, 8, 8]}, "input_shape"),
        ({"input_shape": []}, "input_shape"),
        ({"input_shape": "1x8x8"}, "input_shape"),
        ({"input_shape": [1, 8, True]}, "input_shape"),
        ({"input_shape": [1, 8, 8.0]}, "input_shape"),
        ({"input_shape": [1, 0, 8]}, "input_shape"),
        ({"input_shape": [1, 2**20, 2**20]}, "input_shape"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2**40}, "num_classes"),
        ({"num_classes": None}, "num_classes"),
        ({"kwargs": [8]}, "kwargs"),
        ({"kwargs": {"hidden": [2**40]}}, "kwargs"),
        ({"kwargs": {"hidden": [1] * 5000}}, "too large"),
        ({"kwargs": {"dropout": float("nan")}}, "finite"),
        ({"kwargs": {"input_shape": [1, 2, 3]}}, "may not set input_shape"),
        ({"extra": 1}, "unknown keys"),
    ],
)
def test_spec_from_a_file_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        ModelSpec.from_dict({**GOOD_SPEC, **change})
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("data", [[1, 2], "mlp", 5, None])
def test_a_spec_that_is_not_a_mapping_is_a_model_error(data: object) -> None:
    with pytest.raises(ModelError, match="must be a mapping"):
        ModelSpec.from_dict(data)  # type: ignore[arg-type]


def test_a_valid_spec_round_trips() -> None:
    spec = ModelSpec.from_dict(GOOD_SPEC)
    assert spec.to_dict() == GOOD_SPEC
    assert ModelSpec.from_dict(create_model("lenet5", input_shape=(1, 8, 8)).slimkit_spec.to_dict())


def test_torch_errors_of_a_builder_are_model_errors() -> None:
    """A negative width reached torch (RuntimeError: negative dimension): an internal error."""
    with pytest.raises(ModelError, match="negative dimension"):
        create_model("lenet5", input_shape=(1, 8, 8), hidden=[-1, 12])
