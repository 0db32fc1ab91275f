"""Recipes a careless or hostile hand wrote: each is refused before any work, in one line that
names the line of the bad value. Each test is a reproducer of issue #18."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slimkit.errors import ConfigError
from slimkit.pipeline import Recipe
from slimkit.pipeline.optimize import file_stem, remove_run_folder

HERE = Path(__file__).parent


def _recipe_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "function",
    [
        "os:system",  # the standard library
        "builtins:eval",
        "subprocess:run",  # a plain def, but not one of the user's files
        "torch:load",  # a dependency
        "slimkit.models:create_model",
    ],
)
def test_functions_outside_the_users_files_are_refused_before_anything_runs(
    tmp_path: Path, function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    witness = tmp_path / "ran"
    recipe = {"model": {"function": function, "args": {"command": f"touch {witness}"}}}
    with pytest.raises(ConfigError, match=r"not a function of yours|installed Python code"):
        Recipe.from_dict(recipe, base_dir=tmp_path)
    assert not witness.exists()


def test_a_users_function_in_the_recipes_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "my_net.py").write_text(
        "import os\nfrom os import getcwd\n"
        "def build(input_shape, num_classes, width=4):\n    return None\n"
        "class Net:\n    pass\n",
        encoding="utf-8",
    )
    recipe = Recipe.from_dict(
        {"model": {"function": "my_net:build", "args": {"width": 8}}}, base_dir=tmp_path
    )
    assert recipe.model.function == "my_net:build"
    for name, message in [
        ("my_net:getcwd", "not a function defined in my_net"),  # imported into the file
        ("my_net:Net", "type defined in my_net"),  # a class runs its __init__
        ("my_net:os", "no function|not a function"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Recipe.from_dict({"model": {"function": name}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"build\(\) takes no argument\(s\) depth"):
        Recipe.from_dict(
            {"model": {"function": "my_net:build", "args": {"depth": 2}}}, base_dir=tmp_path
        )
    sys.modules.pop("my_net", None)


def test_an_allowed_package_may_be_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--allow-module json"):
        Recipe.from_dict({"model": {"function": "json.decoder:py_scanstring"}})
    recipe = Recipe.from_dict(
        {"model": {"function": "json.decoder:py_scanstring"}}, allow_modules=["json"]
    )
    assert recipe.model.function == "json.decoder:py_scanstring"


def test_cli_refuses_os_system_before_running_it(tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    path = _recipe_file(
        tmp_path,
        f'name: x\nmodel: {{function: "os:system", args: {{command: "touch {witness}"}}}}\n',
    )
    done = subprocess.run(
        ["slimkit", "optimize", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert "error:" in done.stderr and "not a function of yours" in done.stderr
    assert not witness.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-x", "a/b", "a" * 101, ""])
def test_run_names_are_one_plain_folder_name(name: str) -> None:
    with pytest.raises(ConfigError, match="a run name is one folder name"):
        Recipe.from_dict({"name": name})


def test_fresh_never_deletes_a_folder_slimkit_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="is not a slimkit run folder"):
        remove_run_folder(precious)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_cli_fresh_with_dotdot_name_keeps_the_current_directory(tmp_path: Path) -> None:
    """The reproducer: ``name: ..`` with ``--fresh`` deleted the contents of the cwd."""
    (tmp_path / "keep.txt").write_text("keep")
    path = _recipe_file(tmp_path, "name: ..\ndata: digits\n")
    done = subprocess.run(
        ["slimkit", "optimize", str(path), "--fresh"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1 and "a run name is one folder name" in done.stderr
    assert (tmp_path / "keep.txt").is_file() and path.is_file()
    done = subprocess.run(
        ["slimkit", "optimize", str(path.name), "--fresh", "--out", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert (tmp_path / "keep.txt").is_file()


def test_candidate_names_that_differ_in_punctuation_get_their_own_files() -> None:
    names = ["dyn (a)", "dyn [a]", "baseline!", "baseline ", "Int8", "int8"]
    stems = {file_stem(n) for n in names}
    assert len(stems) == len(names)
    assert file_stem("baseline") == "baseline"
    assert all(len(s) <= 80 and "/" not in s for s in stems)


def test_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    """The reproducer: a 399-byte recipe of nested aliases made optimize reach 2.3 GB."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    path = _recipe_file(tmp_path, "\n".join(lines) + "\nname: *a8\n")
    assert path.stat().st_size < 500
    with pytest.raises(ConfigError, match=r"\(line 1\): YAML anchors \(&a0\) are not accepted"):
        Recipe.from_file(path)


def test_files_over_one_megabyte_are_refused(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "name: x\n" + "# padding\n" * 110_000)
    with pytest.raises(ConfigError, match="bytes at most"):
        Recipe.from_file(path)


def test_non_utf8_recipe_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: x\ndata: digits\nmodel: lenet\xff5\n")
    with pytest.raises(ConfigError, match=r"\(line 3\) is not UTF-8 text: byte 0xff"):
        Recipe.from_file(path)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "name: x\ntrain: {epochs: 2}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"\(line 3\): train is given twice"):
        Recipe.from_file(path)


def test_errors_name_the_line_of_the_bad_value(tmp_path: Path) -> None:
    text = (
        "name: x\n"
        "candidates:\n"
        "  - name: fine\n"
        "    techniques: [{technique: static_int8}]\n"
        "  - name: bad\n"
        "    techniques:\n"
        "      - {technique: static_int8, calibration: bogus}\n"
    )
    path = _recipe_file(tmp_path, text)
    with pytest.raises(ConfigError, match=r"\(line 7\): candidates\[1\]\.techniques\[0\]"):
        Recipe.from_file(path)


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"trials": "abc"}, r"search\.trials: expected an int"),
        ({"trials": True}, r"search\.trials: expected an int"),
        ({"trials": 0}, r"search\.trials: expected an int"),
        ({"sampler": "bogus"}, r"search\.sampler: expected one of nsga2"),
        ({"workers": 0}, r"search\.workers: expected an int"),
        ({"storage": "not a url"}, r"search\.storage: 'not a url' is not a storage URL"),
        ({"storage": 5}, r"search\.storage: expected 'journal'"),
        ({"pruner": "median"}, "needs a single objective"),
        ({"space": {"model": [{"lenet5": {}}]}}, r"search\.space\.model: a list names zoo"),
        ({"space": {"model": {"mlp": {"depth": 3}}}}, "unknown option 'depth'"),
        (
            {
                "space": {
                    "techniques": [
                        {
                            "slot": "q",
                            "choices": {"static_int8": {"calibration": {"choice": ["mse", "x"]}}},
                        }
                    ]
                }
            },
            r"calibration: the value 'x' is not accepted",
        ),
        (
            {"space": {"train": {"epochs": {"int": [0, 4]}}}},
            r"search\.space\.train\.epochs: the value 0 is not accepted",
        ),
    ],
)
def test_search_settings_are_checked_before_any_work(search: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict({"name": "t", "search": search})


def test_a_search_without_trials_gets_the_default() -> None:
    recipe = Recipe.from_dict({"name": "t", "search": {"sampler": "random"}})
    assert recipe.search is not None and recipe.search["trials"] == 10


def test_candidate_model_args_are_checked_against_the_model() -> None:
    recipe = {
        "candidates": [{"name": "a", "model": {"name": "mlp", "args": {"hiddn": [4]}}}],
    }
    with pytest.raises(ConfigError, match=r"candidates\[0\]\.model\.args: mlp\(\) takes no"):
        Recipe.from_dict(recipe)


def test_the_storage_password_is_not_kept_in_the_recipe_source() -> None:
    url = "postgresql://slim:s3cr@t-pw@db.example:5432/studies"
    recipe = Recipe.from_dict({"name": "t", "search": {"trials": 2, "storage": url}})
    assert recipe.search is not None and recipe.search["storage"] == url
    assert "s3cr" not in repr(recipe.source) and "t-pw" not in repr(recipe.source)
    assert recipe.source["search"]["storage"] == "postgresql://slim:***@db.example:5432/studies"


def test_cli_sampler_without_trials_is_not_an_internal_error(tmp_path: Path) -> None:
    """The reproducer: ``search: {sampler: random}`` without trials was a KeyError in the CLI."""
    path = _recipe_file(
        tmp_path, f"name: x\ndata: idx:{tmp_path / 'no-data'}\nsearch: {{sampler: random}}\n"
    )
    done = subprocess.run(
        ["slimkit", "optimize", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert "error:" in done.stderr and "internal error" not in done.stderr
    path.write_text("name: x\nsearch: {sampler: random, trials: abc}\n")
    done = subprocess.run(
        ["slimkit", "optimize", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "(line 2): search.trials: expected an int" in done.stderr
