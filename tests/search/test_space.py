"""Search spaces: parsing, checks with clear errors, conditional parameters, fingerprints."""

from __future__ import annotations

import optuna
import pytest

from slimkit.errors import ConfigError
from slimkit.search import SearchSpace

DISTIL_SPACE = {
    "model": {"mlp": {"hidden": {"choice": [[16], [32, 16]]}}, "lenet5": {}},
    "train": {"epochs": 3, "lr": {"float": [1e-4, 1e-2], "log": True}, "augment": {"shift": 1}},
    "techniques": [
        {
            "slot": "distill",
            "choices": {
                "none": {},
                "distillation": {
                    "temperature": {"float": [1.0, 20.0]},
                    "alpha": {"float": [0.1, 0.9]},
                },
            },
        },
        {
            "slot": "prune",
            "choices": {"none": {}, "channel_pruning": {"ratio": {"float": [0.2, 0.6]}}},
        },
    ],
}


def _sample_many(space: SearchSpace, n: int) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        trial = study.ask()
        plan = space.sample(trial)
        trial.set_user_attr("plan", plan.to_dict())
        study.tell(trial, 0.0)
    return study.trials


def test_conditional_parameters_exist_only_when_their_choice_is_taken() -> None:
    space = SearchSpace.from_dict(DISTIL_SPACE)
    trials = _sample_many(space, 40)
    distilled = [t for t in trials if t.params["distill"] == "distillation"]
    plain = [t for t in trials if t.params["distill"] == "none"]
    assert distilled and plain
    for t in distilled:
        assert 1.0 <= t.params["distill.distillation.temperature"] <= 20.0
        assert t.user_attrs["plan"]["distillation"]["temperature"] == pytest.approx(
            t.params["distill.distillation.temperature"]
        )
    for t in plain:
        assert "distill.distillation.temperature" not in t.params
        assert t.user_attrs["plan"]["distillation"] is None
    for t in trials:
        has_hidden = "model.mlp.hidden" in t.params
        assert has_hidden == (t.params["model"] == "mlp")
        assert 1e-4 <= t.params["train.lr"] <= 1e-2
        assert t.user_attrs["plan"]["train"]["epochs"] == 3  # fixed values pass through
        assert t.user_attrs["plan"]["train"]["augment"] == {"shift": 1}


def test_list_choices_round_trip_as_values() -> None:
    space = SearchSpace.from_dict(DISTIL_SPACE)
    plan = space.sample(
        optuna.trial.FixedTrial(
            {
                "model": "mlp",
                "model.mlp.hidden": "[32, 16]",
                "train.lr": 1e-3,
                "distill": "none",
                "prune": "channel_pruning",
                "prune.channel_pruning.ratio": 0.5,
            }
        )
    )
    assert plan.model_kwargs == {"hidden": [32, 16]}
    assert plan.techniques == [{"technique": "channel_pruning", "ratio": 0.5}]
    assert plan.describe() == "mlp(hidden=[32, 16]) + channel_pruning"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model": {"resnet9000": {}}}, "unknown model 'resnet9000'"),
        ({"model": {"mlp": {"depth_of_field": 3}}}, "unknown option 'depth_of_field'"),
        ({"train": {"lr": {"float": [0.1, 0.01]}}}, "empty range"),
        ({"train": {"lr": {"float": [0.0, 0.01], "log": True}}}, "log range needs low > 0"),
        ({"train": {"lr": {"choice": []}}}, "non-empty list"),
        ({"train": {"learning_rate": 0.1}}, "unknown option 'learning_rate'"),
        ({"train": {"lr": {"float": [1, 2], "sigma": 3}}}, "searched value is one of"),
        ({"techniques": [{"slot": "q", "choices": {"quantise": {}}}]}, "unknown technique"),
        (
            {"techniques": [{"slot": "q", "choices": {"static_int8": {"bits": 4}}}]},
            "unknown option 'bits'",
        ),
        ({"techniques": [{"slot": "q"}]}, "a slot is"),
        ({"architecture": {}}, "unknown key(s) architecture"),
    ],
)
def test_bad_spaces_are_one_clear_error(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchSpace.from_dict(space)


def test_fingerprint_is_stable_and_sees_changes() -> None:
    a = SearchSpace.from_dict(DISTIL_SPACE)
    b = SearchSpace.from_dict(dict(DISTIL_SPACE))
    assert a.fingerprint() == b.fingerprint()
    changed = {**DISTIL_SPACE, "train": {"epochs": 4}}
    assert SearchSpace.from_dict(changed).fingerprint() != a.fingerprint()
    assert a.uses_distillation


def test_the_default_space_works_out_of_the_box() -> None:
    from slimkit.search import default_space

    with_teacher = SearchSpace.from_dict(default_space())
    without = SearchSpace.from_dict(default_space(distill=False))
    assert with_teacher.uses_distillation and not without.uses_distillation
    trials = _sample_many(without, 20)
    assert {t.params["model"] for t in trials} == {"lenet5", "mlp", "mobilenet_v1_small"}
    assert all(t.user_attrs["plan"]["train"]["epochs"] in (4, 8, 12) for t in trials)
