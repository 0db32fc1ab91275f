"""int8 models count what they store and compute: the totals of the float model they came from
(issue #18, item 16: static int8 reported 0 parameters and 0 MACs; dynamic and weight-only int8
left out their linear layers, 2,786 / 48,000 for LeNet-5 on digits instead of 21,386 / 66,600)."""

from __future__ import annotations

import pytest
import torch

from slimkit.data import Dataset
from slimkit.measure import count_costs, count_parameters
from slimkit.models import create_model
from slimkit.techniques import compress, config_from_dict

TECHNIQUES = ("static_int8", "dynamic_int8", "weight_only_int8")


def _config(technique: str) -> object:
    options = {"calibration_samples": 64} if technique == "static_int8" else {}
    return config_from_dict({"technique": technique, **options})


@pytest.fixture(scope="module")
def float_models(digits: Dataset) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        name: create_model(name, input_shape=digits.input_shape, num_classes=10).eval()
        for name in ("lenet5", "mlp")
    }


@pytest.mark.parametrize("technique", TECHNIQUES)
@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_int8_totals_are_the_float_totals(
    float_models: dict[str, torch.nn.Module], digits: Dataset, name: str, technique: str
) -> None:
    model = float_models[name]
    quantized = compress(model, [_config(technique)], data=digits)
    expected = count_costs(model, digits.input_shape)
    cost = count_costs(quantized, digits.input_shape)
    assert (cost.params, cost.macs) == (expected.params, expected.macs)
    assert count_parameters(quantized) == expected.params
    assert sum(layer.macs for layer in cost.layers) == cost.macs


def test_lenet5_on_digits_figures_of_the_issue(
    float_models: dict[str, torch.nn.Module], digits: Dataset
) -> None:
    for technique in TECHNIQUES:
        quantized = compress(float_models["lenet5"], [_config(technique)], data=digits)
        cost = count_costs(quantized, digits.input_shape)
        assert (cost.params, cost.macs) == (21_386, 66_600), technique


def test_static_int8_rows_are_the_graph_layers(
    float_models: dict[str, torch.nn.Module], digits: Dataset
) -> None:
    config = config_from_dict({"technique": "static_int8", "calibration_samples": 64})
    quantized = compress(float_models["lenet5"], [config], data=digits)
    rows = count_costs(quantized, digits.input_shape).layers
    float_rows = count_costs(float_models["lenet5"], digits.input_shape).layers
    weighted = [(row.output_shape, row.params, row.macs) for row in rows if row.macs]
    expected = [(row.output_shape, row.params, row.macs) for row in float_rows if row.macs]
    assert weighted == expected
    assert {row.type for row in rows if row.macs} == {"conv", "linear"}


def test_dynamic_int8_counts_the_int8_weight_as_the_layers_parameters(
    float_models: dict[str, torch.nn.Module], digits: Dataset
) -> None:
    quantized = compress(
        float_models["mlp"], [config_from_dict({"technique": "dynamic_int8"})], data=digits
    )
    rows = [row for row in count_costs(quantized, digits.input_shape).layers if row.macs]
    assert [row.type for row in rows] == ["Int8Linear", "Int8Linear", "Int8Linear"]
    assert [row.params for row in rows] == [64 * 256 + 256, 256 * 128 + 128, 128 * 10 + 10]
    assert [row.macs for row in rows] == [64 * 256, 256 * 128, 128 * 10]


def test_batch_norm_folded_into_int8_counts_what_is_stored(digits: Dataset) -> None:
    """With batch norm folded in, the int8 graph stores the convolutions and a bias per
    output channel: the float count without batch norm, plus the biases folding adds."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_small", input_shape=digits.input_shape).eval()
    config = config_from_dict({"technique": "static_int8", "calibration_samples": 64})
    quantized = compress(model, [config], data=digits)
    without_bn = count_costs(model, digits.input_shape, include_batchnorm=False)
    cost = count_costs(quantized, digits.input_shape)
    added_biases = sum(
        m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is None
    )
    assert cost.macs == without_bn.macs
    assert cost.params == without_bn.params + added_biases


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_optimize_candidates_report_the_int8_counts(
    float_models: dict[str, torch.nn.Module], digits: Dataset, technique: str, tmp_path: object
) -> None:
    """The counts that reach ``optimize`` reports: a candidate is counted as it is exported
    (``evaluate_plan`` counted an earlier model, or the int8 one with its linear layers lost)."""
    from slimkit.search.evaluate import Target, evaluate_plan
    from slimkit.search.space import TrialPlan

    trained = float_models["lenet5"]
    plan = TrialPlan(
        model="lenet5", techniques=[dict(vars(_config(technique)), technique=technique)]
    )
    candidate, metrics = evaluate_plan(
        plan,
        digits,
        Target(batch_size=8, latency_budget_s=0.05),
        tmp_path,  # type: ignore[arg-type]
        name=technique,
        trained=trained,
    )
    assert (candidate.params, candidate.macs) == (21_386, 66_600)
    assert (metrics["params"], metrics["macs"]) == (21_386, 66_600)
    assert candidate.record is not None
    assert (candidate.record["params"], candidate.record["macs"]) == (21_386, 66_600)
