"""Fuzz soak: many inputs per parser, each run in a persistent child process with a timeout.

The targets are the tests' (``tests/fuzz/targets_*.py``, registry ``tests/fuzz/targets.py``,
imported here by file path); the property is theirs: success, or a slimkit error with a one-line
message. Where the tests run a few dozen inputs per parser under Hypothesis, this runs thousands
from a seeded ``random.Random`` per input (input ``i`` of parser ``p`` is always the same for one
``--seed``), in a child process that a hang or a crash (a segfault in a native runtime) does not
take down: the child is killed or replaced, the input counted, and the run goes on.

    python benchmarks/fuzz.py                                  # every parser, 10,000 inputs each
    python benchmarks/fuzz.py --parsers idx checkpoint --count 2000 --timeout 20

Each parser's regression inputs (``Target.regressions``: the reproducers of fixed bugs) run first.
Prints a table (parser, inputs, ok, clean errors, foreign exceptions, hangs, crashes) and writes
``benchmarks/results/fuzz.json`` (command, commit, CPU, date, per-parser counts, the first failures
of each kind with the file that replays them) after every parser. Failing inputs are kept under
``benchmarks/results/fuzz/failures/`` (the input as tagged JSON; replay one with
``TARGETS[parser].check(harness.loads(path.read_bytes()), tmp_dir)``: nothing is unpickled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from slimkit.io import write_json_atomic
from slimkit.measure import describe_cpu, environment
from slimkit.report import markdown_table

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
RESULTS = ROOT / "benchmarks" / "results"
KEPT_PER_KIND = 5  # failures of each kind recorded in the JSON, per parser
BAD = ("foreign", "hang", "crash")


def _load(name: str) -> ModuleType:
    """A module of tests/fuzz, imported by file path (they import each other by name)."""
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _commit() -> str:
    """``git describe``-like: the commit, with ``-dirty`` when the tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _keep(folder: Path, parser: str, blob: bytes) -> Path:
    path = folder / f"{parser}-{hashlib.sha256(blob).hexdigest()[:12]}.json"
    path.write_bytes(blob)
    return path


def soak(
    parser: str, targets: dict[str, Any], worker: Any, seeds: list[Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Run ``args.count`` inputs of one parser; its counts and first failures."""
    target = targets[parser]
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    seconds = 0.0
    started = time.perf_counter()
    failures_dir = RESULTS / "fuzz" / "failures"
    regressions = target.regressions(seeds)
    regression_kinds: Counter[str] = Counter()
    for data in regressions:  # the reproducers of fixed bugs first
        outcome = worker.run(parser, data)
        regression_kinds[outcome.kind] += 1
        if not outcome.passed:
            failures_dir.mkdir(parents=True, exist_ok=True)
            saved = _keep(failures_dir, parser, worker.dumps(data))
            print(f"  {parser} regression: {outcome.kind}: {outcome.detail[:200]} ({saved.name})")
    for index in range(args.count):
        rng = random.Random(f"{args.seed}:{parser}:{index}")
        data = target.generate(rng, seeds)
        outcome = worker.run(parser, data)
        counts[outcome.kind] += 1
        seconds += outcome.seconds
        if not outcome.passed:
            failures_dir.mkdir(parents=True, exist_ok=True)
            saved = _keep(failures_dir, parser, worker.dumps(data))
            print(f"  {parser} #{index}: {outcome.kind}: {outcome.detail[:200]} ({saved.name})")
            if sum(f["kind"] == outcome.kind for f in failures) < KEPT_PER_KIND:
                failures.append(
                    {
                        "index": index,
                        "kind": outcome.kind,
                        "detail": outcome.detail,
                        "input": str(saved.relative_to(ROOT)),
                    }
                )
        if (index + 1) % max(args.count // 10, 1) == 0:
            print(f"  {parser}: {index + 1}/{args.count} {dict(counts)}", flush=True)
    return {
        "parser": parser,
        "description": target.description,
        "inputs": args.count,
        **{kind: counts[kind] for kind in ("ok", "clean", "foreign", "hang", "crash")},
        "regressions": dict(regression_kinds),
        "check_seconds": round(seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "failures": failures,
    }


TABLE = (
    ("parser", "parser"),
    ("inputs", "inputs"),
    ("ok", "ok"),
    ("clean", "clean errors"),
    ("foreign", "foreign exceptions"),
    ("hang", "hangs"),
    ("crash", "crashes"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parsers", nargs="+", help="targets to run [default: all available]")
    parser.add_argument("--count", type=int, default=10_000, help="inputs per parser")
    parser.add_argument("--seed", type=int, default=0, help="seed of every input's generator")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per input at most")
    parser.add_argument(
        "--memory", type=int, default=4096, help="MiB of address space for the child process"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()

    targets: dict[str, Any] = _load("targets").TARGETS
    harness = _load("harness")
    unknown = sorted(set(args.parsers or ()) - set(targets))
    if unknown:
        print(f"error: unknown parser(s) {', '.join(unknown)}; known: {', '.join(targets)}")
        return 2
    chosen = args.parsers or sorted(targets)
    skipped = {name: targets[name].available() for name in chosen if targets[name].available()}
    env = environment()
    print(f"CPU: {describe_cpu(env)}; {os.cpu_count()} CPUs; load {os.getloadavg()}", flush=True)
    if skipped:
        print(f"skipped: {skipped}", flush=True)
    rows: list[dict[str, Any]] = []
    record = {
        "benchmark": "fuzz",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": describe_cpu(env),
        "environment": env,
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
        "skipped": skipped,
        "rows": rows,
    }
    with tempfile.TemporaryDirectory(prefix="slimkit-fuzz-seeds-") as folder:
        seeds: dict[str, list[Any]] = {}

        def seeds_of(name: str) -> list[Any]:
            if name not in seeds:
                seeds[name] = targets[name].seeds(Path(folder))
            return seeds[name]

        log = RESULTS / "fuzz" / "child.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with harness.Worker(
            lambda name: seeds_of(name)[0],
            timeout=args.timeout,
            memory=args.memory << 20,
            log=log,
        ) as worker:
            for name in chosen:
                if name in skipped:
                    continue
                print(f"{name}: building seeds", flush=True)
                rows.append(soak(name, targets, worker, seeds_of(name), args))
                record["child_restarts"] = worker.restarts
                write_json_atomic(args.out, record)
    header = [title for _, title in TABLE]
    print(markdown_table(header, [[row[key] for key, _ in TABLE] for row in rows]))
    print(f"results: {args.out}")
    for row in rows:
        print(f"{row['parser']}: regression inputs {row['regressions']}")
    failed = sum(row["foreign"] + row["hang"] + row["crash"] for row in rows)
    failed += sum(n for row in rows for kind, n in row["regressions"].items() if kind in BAD)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
