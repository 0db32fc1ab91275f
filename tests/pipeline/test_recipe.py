"""Recipes are checked up front: each bad input is one error naming the key and what is allowed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slimkit.errors import ConfigError
from slimkit.pipeline import Recipe
from slimkit.pipeline.recipe import CodeRules, build_user_model

HERE = Path(__file__).parent
SHIPPED = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_recipes_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(path.parent.parent / "examples"))
    recipe = Recipe.from_file(path)
    assert recipe.name == path.stem.replace("_", "-")
    assert recipe.target.runtime in ("onnxruntime", "tflite-micro")


def test_unknown_key_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ndata: digits\nepochz: 3\n")
    with pytest.raises(ConfigError, match=r"\(line 3\): epochz: unknown key; allowed: name"):
        Recipe.from_file(path)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"model": "resnet"}, "unknown model 'resnet'; choose from"),
        ({"train": {"epochz": 2}}, "unknown training option"),
        ({"target": {"runtime": "tensorrt"}}, "not searchable; choose from"),
        ({"target": {"batchsize": 2}}, "allowed: runtime, batch_size"),
        ({"objectives": ["speed"]}, "unknown metric 'speed'"),
        ({"constraints": ["latency < 2"]}, "not of the form"),
        ({"candidates": [{"name": "a", "techniques": [{"technique": "zip"}]}]}, "unknown"),
        (
            {
                "candidates": [
                    {"name": "a", "techniques": [{"technique": "static_int8", "bitz": 4}]}
                ]
            },
            "bitz",
        ),
        ({"candidates": [{"name": "a", "techniques": []}]}, "a candidate needs"),
        ({"candidates": [{"name": "baseline", "techniques": []}]}, "a name the report gives"),
        ({"candidates": [{"name": "trial 3", "techniques": []}]}, "a name the report gives"),
        ({"search": {"trials": 2, "space": {"model": {"nope": {}}}}}, "unknown model 'nope'"),
        ({"search": {"trails": 2}}, "search.trails: unknown key"),
        ({"model": {"function": "no_colon"}}, "expected 'module:function'"),
        ({"model": {"checkpoint": "/does/not/exist.safetensors"}}, "does not exist"),
        ({"name": "a b"}, "letters, digits"),
    ],
)
def test_bad_recipes(recipe: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Recipe.from_dict({"name": "t", **recipe})


def test_user_model_functions() -> None:
    code = CodeRules(roots=(str(HERE),))
    model = build_user_model("user_models:tiny_cnn", {"width": 2}, (1, 8, 8), 10, code=code)
    assert sum(p.numel() for p in model.parameters()) == (9 * 2 + 2) + (2 * 64 * 10 + 10)
    with pytest.raises(ConfigError, match=r"module 'no_such_module' is not a \.py file under"):
        build_user_model("no_such_module:f", {}, (1, 8, 8), 10, code=code)
    with pytest.raises(ConfigError, match="has no function 'missing'"):
        build_user_model("user_models:missing", {}, (1, 8, 8), 10, code=code)
    with pytest.raises(ConfigError, match=r"returned str, not a torch\.nn\.Module"):
        build_user_model("user_models:not_a_model", {}, (1, 8, 8), 10, code=code)
    sys.modules.pop("user_models", None)


def test_candidates_breaking_a_constraint_are_never_on_a_front() -> None:
    from slimkit.pipeline.optimize import mark_feasibility
    from slimkit.report import Report
    from slimkit.report.candidates import Candidate

    recipe = Recipe.from_dict({"name": "t", "constraints": ["ram <= 32KB", "flash <= 64KB"]})

    def mcu(name: str, accuracy: float, arena: int, flash: int) -> Candidate:
        return Candidate(
            name,
            accuracy=accuracy,
            latency_p50_ms=1.0,
            file_bytes=flash - 20000,
            details={"arena_bytes": arena, "flash_bytes": flash},
        )

    big = mcu("baseline", 0.99, 8000, 74000)  # the most accurate, but over the flash budget
    small = mcu("small", 0.98, 7000, 50000)
    for candidate in (big, small):
        mark_feasibility(candidate, recipe)
    assert big.details["feasible"] is False
    assert big.details["constraints_broken"] == ["flash <= 64KB"]
    assert small.details["feasible"] is True
    report = Report("t", {}, "tflite-micro", 1, 1, {}, [big, small])
    assert report.front("latency") == ["small"] and report.front("size") == ["small"]
