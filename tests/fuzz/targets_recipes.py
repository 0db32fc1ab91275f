"""Fuzz targets for what a user writes: recipes, search files, search spaces and storage URLs.

Seeds are the recipes that ship (``recipes/*.yaml``), small recipes that use every key, the
default search space and search files. Inputs are byte mutations of the seeds' text, structural
mutations of their data (a value replaced by a random one, a key dropped or invented, a list
where a mapping belongs, deep nesting, huge numbers), YAML's own tricks (anchors and aliases,
tags, several documents, bad UTF-8), and storage URLs built from odd pieces.

Each input is parsed as ``slimkit optimize`` / ``slimkit search run`` parse it; nothing trains.
The storage target also checks that a password never survives redaction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuzzlib import Input, Target, expect_clean, mutate_bytes, random_json

REPO = Path(__file__).resolve().parents[2]

SMALL_RECIPES = [
    "name: a\ndata: digits\nmodel: {name: mlp, args: {hidden: [16]}}\ntrain: {epochs: 2}\n",
    (
        "name: b\nmodel: lenet5\ntarget: {runtime: onnxruntime, batch_size: 8, threads: 1,"
        " latency_budget_s: 0.5}\nobjectives: [accuracy, size]\nconstraints: ['size <= 100KB']\n"
        "candidates:\n  - name: int8\n"
        "    techniques: [{technique: static_int8, calibration: mse}]\n"
        "  - name: d\n    model: {name: mlp, args: {hidden: [8]}}\n    train: {epochs: 1}\n"
        "    techniques: [{technique: distillation, temperature: 2.0}]\n"
        "search: {trials: 3, sampler: tpe, pruner: none, workers: 1, seed: 3, storage: journal,"
        " space: {model: {mlp: {hidden: {choice: [[8], [16]]}}}, train: {lr: {float: [0.001,"
        " 0.01], log: true}, epochs: {int: [1, 3]}}}}\nseed: 7\n"
    ),
    "name: c\nobjectives: {mnasnet: {target_ms: 1.0}}\nsearch: {trials: 2, pruner: median}\n",
]

SEARCH_FILES = [
    "data: digits\ntrials: 4\nsampler: random\nspace: {model: {mlp: {}}, train: {epochs: 1}}\n",
    (
        "data: digits\ntarget: {runtime: onnxruntime, batch_size: 16}\nobjectives: [accuracy,"
        " latency]\nconstraints: ['latency <= 5ms']\ntrials: 6\nsampler: nsga2\npruner: pareto\n"
        "seed: 1\nstudy: s\n"
    ),
]

YAML_TRICKS = (
    "a: &x [1, 2]\nb: *x\n",
    "--- \nname: a\n---\nname: b\n",
    "name: !!python/object/apply:os.system ['id']\n",
    "name: !!binary aGVsbG8=\n",
    "name: 2026-12-07\n",
    "? [a, b]\n: c\n",
    "name: a\nname: b\n",
    "<<: {name: a}\n",
    "[" * 200 + "]" * 200,
    'name: "\\ud800"\n',
    "\ufeffname: a\n",
    "name: a\tb\n",
    "%YAML 1.1\n---\nname: a\n",
)


def _yaml() -> Any:
    import yaml

    return yaml


def _recipe_seeds(folder: Path) -> list[Input]:
    shipped = sorted((REPO / "recipes").glob("*.yaml"))
    texts = [p.read_bytes() for p in shipped if b"examples." not in p.read_bytes()]
    return texts + [text.encode() for text in SMALL_RECIPES]


def _random_scalar(rng: Any) -> Any:
    return random_json(rng, depth=3)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _mutate_tree(rng: Any, data: Any) -> Any:
    """One structural change: a value replaced, a key dropped or invented, a type swapped."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    path = rng.choice(paths)
    if not path:
        return random_json(rng)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    roll = rng.randint(0, 7)
    if roll == 0 and isinstance(parent, dict):
        del parent[last]
    elif roll == 1 and isinstance(parent, dict):
        parent[rng.choice(("epochz", "technique", "name", "args", "choice", "float", "slot"))] = (
            random_json(rng)
        )
    elif roll == 2:
        parent[last] = [parent[last]]
    elif roll == 3:
        parent[last] = {"choice": [parent[last], random_json(rng, 2)]}
    elif roll == 4:
        parent[last] = rng.choice((10**30, -1, 0, 2**63, 1e308, float("nan"), "", None, True))
    elif roll == 5:
        node: Any = parent[last]
        for _ in range(rng.randint(1, 80)):
            node = [node] if rng.random() < 0.5 else {"a": node}
        parent[last] = node
    else:
        parent[last] = random_json(rng)
    return data


def _generate_text(rng: Any, seeds: Sequence[Input]) -> Input:
    yaml = _yaml()
    seed = rng.choice(list(seeds))
    roll = rng.random()
    if roll < 0.35:
        return mutate_bytes(rng, seed, seeds)
    if roll < 0.45:
        trick = rng.choice(YAML_TRICKS)
        return (trick + seed.decode("utf-8", "replace")).encode("utf-8", "surrogatepass")
    data = yaml.safe_load(seed)
    for _ in range(rng.randint(1, 4)):
        data = _mutate_tree(rng, data)
    try:
        text = yaml.safe_dump(data, allow_unicode=rng.random() < 0.5, sort_keys=False)
    except (ValueError, yaml.YAMLError, RecursionError):
        text = str(data)
    return text.encode("utf-8", "surrogatepass")


def _check_recipe(data: Input, tmp: Path) -> str:
    path = tmp / "recipe.yaml"
    path.write_bytes(data)
    from slimkit.pipeline import Recipe

    with expect_clean() as verdict:
        Recipe.from_file(path)
    return verdict[0]


def _search_seeds(folder: Path) -> list[Input]:
    return [text.encode() for text in SEARCH_FILES]


def _check_search_file(data: Input, tmp: Path) -> str:
    path = tmp / "search.yaml"
    path.write_bytes(data)
    from slimkit.search.spec import settings_from_file

    with expect_clean() as verdict:
        settings_from_file(path, out_dir=str(tmp / "out"))
    return verdict[0]


def _space_seeds(folder: Path) -> list[Input]:
    from slimkit.search import default_space

    yaml = _yaml()
    digits = yaml.safe_load((REPO / "recipes" / "digits.yaml").read_text())["search"]["space"]
    return [default_space(), default_space(distill=False), digits, {}]


def _generate_space(rng: Any, seeds: Sequence[Input]) -> Input:
    data = rng.choice(list(seeds))
    for _ in range(rng.randint(1, 5)):
        data = _mutate_tree(rng, data)
    return data


def _check_space(data: Input, tmp: Path) -> str:
    from slimkit.search.space import SearchSpace

    with expect_clean() as verdict:
        SearchSpace.from_dict(data)
    return verdict[0]


URL_SCHEMES = ("postgresql", "postgresql+psycopg", "sqlite", "mysql", "journal", "http", "", "1x")
URL_PIECES = ("@", ":", "/", "%", "%40", "?", "#", "[", "]", "//", " ", "\x00", "é", "localhost")


def _storage_seeds(folder: Path) -> list[Input]:
    return [
        ("journal", None),
        (f"journal:{folder}/study.journal", None),
        ("postgresql://slim:s3cret@db.example:5432/studies", "s3cret"),
        ("postgresql://slim:p@ss@127.0.0.1/db", "p@ss"),
        ("postgresql+psycopg://u@host/db", None),
    ]


def _generate_url(rng: Any, seeds: Sequence[Input]) -> Input:
    if rng.random() < 0.3:
        url, secret = rng.choice(list(seeds))
        return mutate_bytes(rng, url.encode(), [s.encode() for s, _ in seeds]).decode(
            "utf-8", "replace"
        ), None
    secret = "".join(rng.choice("abcXYZ019@:/%#?!") for _ in range(rng.randint(1, 12)))
    user = "".join(rng.choice("abc_.@:") for _ in range(rng.randint(0, 6)))
    host = "".join(rng.choice((*URL_PIECES, "db", "127.0.0.1")) for _ in range(rng.randint(0, 3)))
    port = rng.choice(("", ":5432", ":0", ":99999999999", ":-1", ":x"))
    path = rng.choice(("/db", "", "/", "/a/b", "?sslmode=require", "/db?x=1#f"))
    scheme = rng.choice(URL_SCHEMES)
    return f"{scheme}://{user}:{secret}@{host}{port}{path}", secret


def _check_storage(data: Input, tmp: Path) -> str:
    from slimkit.search.validate import check_storage_url, redact_url

    url, secret = data
    redacted = redact_url(url)
    if secret and "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        assert f":{secret}@" not in redacted, f"password left in {redacted!r}"
    with expect_clean() as verdict:
        checked = check_storage_url(url, "search.storage")
        if checked.startswith("journal:"):
            from slimkit.search.study import open_storage

            open_storage(f"journal:{tmp / 'study.journal'}", tmp)
    return verdict[0]


ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    + ["name: *a8", ""]
)


def _recipe_regressions(seeds: Sequence[Input]) -> list[Input]:
    """The reproducers of issue #18: each once ran code, blew up memory or was an internal error."""
    return [
        ALIAS_BOMB.encode(),
        b"name: x\ndata: digits\nmodel: lenet\xff5\n",
        b'name: x\nmodel: {function: "os:system", args: {command: "touch RAN"}}\n',
        b'name: x\nmodel: {function: "builtins:eval", args: {source: "1"}}\n',
        b"name: ..\n",
        b"name: x\nsearch: {space: {model: [{lenet5: {}}]}}\n",
        b"name: x\nsearch: {sampler: random}\n",
        b"name: x\nsearch: {trials: abc}\n",
        b"name: x\nsearch: {sampler: bogus}\n",
        b"name: x\ncandidates: [{name: a, model: {name: mlp, args: {hiddn: [4]}}}]\n",
        b"name: x\n\x10\n",
        ("[" * 5000 + "]" * 5000).encode(),
    ]


def _check_recipe_runs_nothing(data: Input, tmp: Path) -> str:
    verdict = _check_recipe(data, tmp)
    assert not (tmp / "RAN").exists() and not Path("RAN").exists(), "a recipe ran a command"
    return verdict


def _storage_regressions(seeds: Sequence[Input]) -> list[Input]:
    return [
        ("postgresql://u:pa/ss#1@host/db", "pa/ss#1"),
        ("mysql://u:a?b@c@host:5432/db", "a?b@c"),
        ("postgresql://u:x@host/d@b", "x"),
    ]


TARGETS = [
    Target(
        "recipe",
        "recipe YAML files (slimkit optimize RECIPE)",
        _recipe_seeds,
        _generate_text,
        _check_recipe_runs_nothing,
        requires=("yaml",),
        ci_examples=60,
        regressions=_recipe_regressions,
    ),
    Target(
        "search-file",
        "search YAML files (slimkit search run FILE)",
        _search_seeds,
        _generate_text,
        _check_search_file,
        requires=("yaml",),
        ci_examples=40,
    ),
    Target(
        "search-space",
        "search spaces (a recipe's search.space, a search file's space)",
        _space_seeds,
        _generate_space,
        _check_space,
        ci_examples=60,
    ),
    Target(
        "storage-url",
        "study storage URLs (search.storage, --storage): checked, and redacted",
        _storage_seeds,
        _generate_url,
        _check_storage,
        requires=("sqlalchemy",),
        ci_examples=60,
        regressions=_storage_regressions,
    ),
]
