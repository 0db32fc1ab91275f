"""How fast ``slimkit`` answers: ``--help``, ``--version`` and a missing model file, side by side
with ``python -c pass``.

The four commands run in interleaved rounds (A B C D, A B C D, ...) so that load on a shared
machine falls on all of them alike; the table compares median wall times with ``python -c pass``,
the floor any Python command pays. Acceptance (issue #22): each within 0.5 s of it. Both ``python``
and ``slimkit`` are found on PATH, as a user types them (a pyenv or venv launcher counts for both).

Results: a table on stdout and ``benchmarks/results/cli_startup.json`` (command, commit, date,
machine, every sample)::

    python benchmarks/cli_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from faults import commit  # the benchmarks' record of the commit (and uncommitted changes)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cli_startup.json"
LIMIT_S = 0.5
FLOOR = "python -c pass"


def commands() -> dict[str, list[str]]:
    """Label → argv; the first is the floor the others are compared with."""
    python = shutil.which("python") or sys.executable
    slimkit = shutil.which("slimkit")
    if slimkit is None:
        raise SystemExit("slimkit is not on PATH: pip install -e . first")
    return {
        FLOOR: [python, "-c", "pass"],
        "slimkit --help": [slimkit, "--help"],
        "slimkit --version": [slimkit, "--version"],
        "slimkit measure missing.onnx": [slimkit, "measure", "missing.onnx"],
    }


def time_once(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, exit code and the last stderr line of one run."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    lines = done.stderr.strip().splitlines()
    return seconds, done.returncode, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    argvs = commands()
    samples: dict[str, list[float]] = {label: [] for label in argvs}
    outcomes: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:  # measure's missing.onnx: surely missing
        for command in argvs.values():  # one untimed round: the file cache, not startup
            time_once(command, Path(folder))
        for _ in range(args.rounds):
            for label, command in argvs.items():
                seconds, code, last = time_once(command, Path(folder))
                samples[label].append(seconds)
                outcomes[label] = {"exit_code": code, "stderr_last_line": last}
    floor = statistics.median(samples[FLOOR])
    rows = []
    for label, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "command": label,
                "argv": argvs[label],
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "minus_floor_s": median - floor,
                "within_limit": median - floor <= LIMIT_S,
                "samples_s": values,
                **outcomes[label],
            }
        )
    print(f"{'command':<30} {'median s':>9} {'- python':>9}  within {LIMIT_S} s")
    for row in rows:
        print(
            f"{row['command']:<30} {row['median_s']:>9.3f} {row['minus_floor_s']:>+9.3f}  "
            f"{'yes' if row['within_limit'] else 'NO'}"
        )
    # imported after the timing: torch (under slimkit.measure) must not load during it
    from slimkit.io import write_json_atomic
    from slimkit.measure import describe_cpu, environment

    env = environment()
    print(f"CPU: {describe_cpu(env)}; {args.rounds} interleaved rounds")
    result = {
        "benchmark": "cli_startup",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": describe_cpu(env),
        "environment": env,
        "rounds": args.rounds,
        "limit_s": LIMIT_S,
        "rows": rows,
        "all_within_limit": all(row["within_limit"] for row in rows),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    print("exit codes: " + json.dumps({r["command"]: r["exit_code"] for r in rows}))
    return 0 if result["all_within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
