"""Fault suite: kill, interrupt, starve and cut off slimkit's search, then check nothing was lost.

Each scenario runs the real ``slimkit`` command on the digits data with a tiny space (an MLP,
one epoch, four plans for a budget of three trials), hits it with faults at random moments, re-runs
the same command after each fault, and finally runs it to completion; then it checks:

- exactly the requested trials finished, none RUNNING or WAITING;
- no configuration evaluated twice (the plans of COMPLETE trials that are not reuses differ);
- no torn file (every journal line decodes and the journal ends with a newline; every JSON and
  ONNX file in the run folder loads; leftover ``.*.tmp`` files are counted, not failed);
- exit codes only 0 / 1 / 130 (a SIGKILL's -9 is the fault itself; -2, death by SIGINT while
  Python shuts down, is what a shell shows as 130), no traceback, every exit 1 ends in one
  ``error:`` line.

Scenarios (``--scenarios``):

- ``search``: ``slimkit search run --workers 2`` on the journal file; faults: SIGINT to the process
  group (Ctrl-C) or to the parent only, SIGKILL to the parent only or to the group.
- ``worker``: several ``slimkit worker`` on a throwaway PostgreSQL; a random worker is SIGKILLed or
  SIGINTed and started again.
- ``restart``: PostgreSQL stopped (crash or fast shutdown) for 1-6 s mid-search, workers carry on;
  plus one outage longer than ``--storage-wait``: workers exit 1, then finish when re-run.
- ``disk``: a small tmpfs (mounted here; needs root) filled at three points: before the run (the
  journal cannot be written), during the first trial, after the first finished trial; the run
  stops with one line, space is freed, the re-run finishes.
- ``readonly``: the tmpfs remounted read-only after part of the search: ``search run`` stops with
  one line, ``search show`` works; remounted writable, the re-run finishes.
- ``optimize``: the same kill/re-run loop on ``slimkit optimize RECIPE`` (a hook: its robustness
  belongs to optimize; also checks the report is complete and finished artifacts not rewritten).

Results: a table on stdout and ``benchmarks/results/faults.json`` (command, commit, date, machine).

    python benchmarks/faults.py --kills 5                  # a short check of every scenario
    python benchmarks/faults.py --kills 50 --scenarios search,worker,optimize   # the soak
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "faults.json"
SCENARIOS = ("search", "worker", "restart", "disk", "readonly", "optimize")
FAULTS = ("sigint-group", "sigint-parent", "sigkill-parent", "sigkill-group")
ALLOWED_EXITS = {0, 1, 130}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="faults per command (soak: 50)")
    parser.add_argument("--faults-per-run", type=int, default=2, help="faults before completion")
    parser.add_argument("--trials", type=int, default=3, help="trials per search")
    parser.add_argument("--workers", type=int, default=2, help="workers per search")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per trial")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--storage-wait", type=float, default=60.0, help="outage waited out (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault times")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/slimkit-faults"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return args


# ---------------------------------------------------------------------------------------------
# running slimkit


def slimkit_command() -> list[str]:
    found = shutil.which("slimkit")
    return [found] if found else [sys.executable, "-m", "slimkit"]


def search_spec(args: argparse.Namespace) -> dict[str, Any]:
    """A tiny search: 4 plans (2 widths x 2 learning rates) for a budget of ``--trials``."""
    return {
        "data": "digits",
        "objectives": ["accuracy", "size"],
        "trials": args.trials,
        "sampler": "random",
        "pruner": "none",
        "target": {"latency_budget_s": 0.1},
        "space": {
            "model": {"mlp": {"hidden": {"choice": [[16], [32]]}}},
            "train": {"epochs": args.epochs, "lr": {"choice": [0.01, 0.003]}},
        },
    }


class Process:
    """One ``slimkit`` process in its own session (so a fault can hit its whole group)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [*slimkit_command(), *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        )

    def fault(self, kind: str) -> bool:
        """Send a fault (see FAULTS); False when the process had already ended."""
        if self.popen.poll() is not None:
            return False
        number = signal.SIGINT if kind.startswith("sigint") else signal.SIGKILL
        try:
            if kind.endswith("group"):
                os.killpg(self.popen.pid, number)
            else:
                os.kill(self.popen.pid, number)
        except ProcessLookupError:
            return False
        return True

    def finish(self, timeout_s: float = 900.0) -> tuple[int, str]:
        """Wait for the process and for every process of its group; (exit code, stderr)."""
        try:
            _, stderr = self.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            _, stderr = self.popen.communicate()
            stderr += "\n[faults.py: hung, killed]"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # spawned workers finish marking their trials
            try:
                os.killpg(self.popen.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode, stderr


class Tally:
    """Exit codes and problems of one scenario."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.faults = 0
        self.missed = 0  # faults aimed at a process that had already finished
        self.runs = 0
        self.rounds: list[dict[str, Any]] = []
        self.exits: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def hit(self, delivered: bool) -> None:
        """Count a fault (delivered) or a miss (the process had finished before it)."""
        if delivered:
            self.faults += 1
        else:
            self.missed += 1
        if self.missed > 10 * max(1, self.faults) + 20:
            raise SystemExit(f"{self.name}: faults keep missing; runs end too fast to hit")

    def exit(self, code: int, stderr: str, fault: str | None) -> None:
        """Record one exit; see the module docstring for what counts as a problem.

        -2 is a death by SIGINT (what a shell shows as 130): Python ends so when a Ctrl-C comes
        while it shuts down, after the work is done; it is a problem only with a traceback.
        """
        self.runs += 1
        self.exits[str(code)] += 1
        lines = [line for line in stderr.splitlines() if line.strip()]
        tail = " | ".join(lines[-12:])[-1500:]
        sigkill = code == -9 and fault is not None and "sigkill" in fault
        if "Traceback" in stderr and code == -2 and "slimkit/cli/app.py" not in stderr:
            self.problems.append(
                f"exit -2 after {fault}: SIGINT came during the start-up imports, before "
                "slimkit's main() runs (a KeyboardInterrupt traceback: the CLI's start-up)"
            )
        elif "Traceback" in stderr and not sigkill:
            self.problems.append(f"traceback (exit {code}, {fault or 'no fault'}): {tail}")
        elif code not in ALLOWED_EXITS | {-2} and not sigkill:
            self.problems.append(f"exit {code} after {fault or 'no fault'}: {tail}")
        elif code == 1 and not (lines and lines[-1].startswith("error:")):
            self.problems.append(f"exit 1 without a one-line error: {tail}")

    def check(self, outcome: dict[str, Any]) -> None:
        self.rounds.append(outcome)
        for key in ("exact_trials", "none_running", "no_repeat", "no_torn_file", "completed"):
            if not outcome.get(key, True):
                self.problems.append(f"round {len(self.rounds)}: {key} failed: {outcome}")

    def summary(self) -> dict[str, Any]:
        def passed(key: str) -> str:
            good = sum(bool(r.get(key, True)) for r in self.rounds)
            return f"{good}/{len(self.rounds)}"

        return {
            "scenario": self.name,
            "faults": self.faults,
            "missed": self.missed,
            "runs": self.runs,
            "rounds": len(self.rounds),
            "completed": passed("completed"),
            "exact_trials": passed("exact_trials"),
            "none_running": passed("none_running"),
            "no_repeat": passed("no_repeat"),
            "no_torn_file": passed("no_torn_file"),
            "exit_codes": dict(sorted(self.exits.items())),
            "problems": self.problems,
            "details": self.rounds,
        }


# ---------------------------------------------------------------------------------------------
# checks


def study_checks(storage: Any, name: str, trials: int) -> dict[str, Any]:
    """Exact budget, nothing running, no plan evaluated twice."""
    import optuna
    from optuna.trial import TrialState

    from slimkit.search.run import ATTR_PLAN
    from slimkit.search.study import ATTR_REUSE_OF

    study = optuna.load_study(study_name=name, storage=storage)
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    evaluated = [t for t in complete if ATTR_REUSE_OF not in t.user_attrs]
    plans = [json.dumps(t.user_attrs.get(ATTR_PLAN), sort_keys=True) for t in evaluated]
    states = collections.Counter(t.state.name.lower() for t in all_trials)
    return {
        "exact_trials": sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in all_trials)
        == trials,
        "none_running": not states.get("running") and not states.get("waiting"),
        "no_repeat": len(set(plans)) == len(plans),
        "states": dict(states),
        "reused": len(complete) - len(evaluated),
    }


def torn_files(folder: Path) -> tuple[list[str], int]:
    """Files that do not load (journal lines, JSON, ONNX), and the count of leftover temporaries."""
    bad, leftovers = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            leftovers += 1
        elif path.name == "study.journal":
            data = path.read_bytes()
            lines = data.split(b"\n")[:-1]
            if data and not data.endswith(b"\n"):
                bad.append(f"{path}: torn last record")
            for number, line in enumerate(lines):
                try:
                    json.loads(line)
                except ValueError:
                    bad.append(f"{path}: line {number + 1} does not decode")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                bad.append(str(path))
        elif path.suffix == ".onnx":
            import onnx

            try:
                onnx.load_model(str(path))
            except Exception:  # a torn protobuf: any error of the parser
                bad.append(str(path))
    return bad, leftovers


def folder_checks(folder: Path) -> dict[str, Any]:
    bad, leftovers = torn_files(folder)
    return {"no_torn_file": not bad, "torn": bad, "leftover_temporaries": leftovers}


# ---------------------------------------------------------------------------------------------
# scenario: search run on the journal file


def run_search_round(
    args: argparse.Namespace, rng: random.Random, tally: Tally, folder: Path, faults: int
) -> None:
    """``faults`` faults at random moments, each followed by a re-run; then one to completion."""
    from slimkit.search.study import open_storage

    command = ["search", "run", "spec.yaml", "--out", "run", "--workers", str(args.workers)]
    for _ in range(faults):
        process = Process(command, folder)
        time.sleep(rng.uniform(0, args.expected_s))
        kind = rng.choice(FAULTS)
        tally.hit(process.fault(kind))
        tally.exit(*process.finish(), kind)
    code, stderr = Process(command, folder).finish()
    tally.exit(code, stderr, None)
    outcome = {"completed": code == 0, **folder_checks(folder / "run")}
    if (folder / "run" / "study.journal").is_file():
        outcome.update(study_checks(open_storage(None, folder / "run"), "search", args.trials))
    tally.check(outcome)


def search_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    tally = Tally("search run (journal)")
    index = 0
    while tally.faults < args.kills:
        folder = fresh_folder(args.work_dir / "search" / f"round-{index}")
        write_spec(folder, search_spec(args))
        faults = min(args.faults_per_run, args.kills - tally.faults)
        run_search_round(args, rng, tally, folder, faults)
        index += 1
    return tally


def fresh_folder(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> None:
    (folder / name).write_text(yaml.safe_dump(spec))


# ---------------------------------------------------------------------------------------------
# scenarios on PostgreSQL


def create_study(args: argparse.Namespace, url: str, name: str, folder: Path) -> None:
    from slimkit.search import SearchSettings, open_search

    spec = search_spec(args)
    settings = SearchSettings(
        space=spec["space"],
        objectives=spec["objectives"],
        trials=args.trials,
        sampler="random",
        pruner="none",
        out_dir=str(folder),
        study=name,
        target=spec["target"],
    )
    open_search(settings, url)


def worker_args(url: str, name: str, out: Path, wait_s: float) -> list[str]:
    command = ["worker", "--study", name, "--storage", url, "--out", str(out)]
    return [*command, "--storage-wait", str(wait_s)]


def worker_round(
    args: argparse.Namespace, rng: random.Random, tally: Tally, url: str, index: int
) -> None:
    """Workers on one study; faults hit a random worker, which is started again."""
    name, folder = f"round{index}", fresh_folder(args.work_dir / "worker" / f"round-{index}")
    create_study(args, url, name, folder)
    command = worker_args(url, name, folder, args.storage_wait)
    workers = [Process(command, folder) for _ in range(args.workers)]
    for _ in range(min(args.faults_per_run, args.kills - tally.faults)):
        time.sleep(rng.uniform(0, args.expected_s))
        position = rng.randrange(len(workers))
        kind = rng.choice(("sigint-group", "sigkill-group"))
        tally.hit(workers[position].fault(kind))
        tally.exit(*workers[position].finish(), kind)
        workers[position] = Process(command, folder)
    codes = []
    for worker in workers:
        code, stderr = worker.finish()
        codes.append(code)
        tally.exit(code, stderr, None)
    outcome = {"completed": all(code == 0 for code in codes), **folder_checks(folder)}
    outcome.update(study_checks(url, name, args.trials))
    tally.check(outcome)


def worker_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    from slimkit.search.local_postgres import throwaway_server

    tally = Tally("worker (PostgreSQL)")
    with throwaway_server() as server:
        index = 0
        while tally.faults < args.kills:
            worker_round(args, rng, tally, server.url, index)
            index += 1
    return tally


def restart_round(
    args: argparse.Namespace, rng: random.Random, tally: Tally, server: Any, index: int
) -> None:
    """A database outage mid-search: shorter than the workers wait (they carry on) or longer
    (they exit 1 with one line and finish when started again)."""
    long = index == 0
    name, folder = f"restart{index}", fresh_folder(args.work_dir / "restart" / f"round-{index}")
    create_study(args, server.url, name, folder)
    wait_s = 3.0 if long else args.storage_wait
    command = worker_args(server.url, name, folder, wait_s)
    workers = [Process(command, folder) for _ in range(args.workers)]
    time.sleep(rng.uniform(0.3, 0.6) * args.expected_s)
    server.stop(rng.choice(("immediate", "fast")))
    tally.hit(any(worker.popen.poll() is None for worker in workers))
    time.sleep(10.0 if long else rng.uniform(1.0, 6.0))
    results = [worker.finish(timeout_s=30) for worker in workers] if long else []
    server.start()
    for code, stderr in results:
        tally.exit(code, stderr, "outage")
    if long:
        workers = [Process(worker_args(server.url, name, folder, args.storage_wait), folder)]
    codes = []
    for worker in workers:
        code, stderr = worker.finish()
        codes.append(code)
        tally.exit(code, stderr, None)
    outcome = {"completed": all(code == 0 for code in codes), "long_outage": long}
    outcome.update(folder_checks(folder))
    outcome.update(study_checks(server.url, name, args.trials))
    tally.check(outcome)


def restart_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    from slimkit.search.local_postgres import throwaway_server

    tally = Tally("PostgreSQL restarted")
    with throwaway_server() as server:
        for index in range(max(2, args.kills // args.faults_per_run)):
            restart_round(args, rng, tally, server, index)
    return tally


# ---------------------------------------------------------------------------------------------
# scenarios on a small tmpfs: disk full, read-only


@contextmanager
def tmpfs(folder: Path, size: str = "64m") -> Iterator[Path]:
    """Mount a tmpfs at ``folder`` (root only); unmount after."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill the file system of ``disk`` until ``leave_bytes`` are free; returns the filler."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    if free > leave_bytes:
        with open(filler, "ab") as f:
            os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), free - leave_bytes)
    return filler


def wait_for_complete(folder: Path, count: int, process: Process, timeout_s: float) -> None:
    """Until ``count`` trials are COMPLETE in the journal (or the process ended)."""
    deadline = time.monotonic() + timeout_s
    journal = folder / "study.journal"
    while time.monotonic() < deadline and process.popen.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b'"state":1') >= count:
            return
        time.sleep(0.2)


def disk_point(args: argparse.Namespace, tally: Tally, disk: Path, point: str) -> None:
    """Fill the disk at one point of the run; the run stops; free space; the re-run finishes."""
    folder = fresh_folder(disk / point)
    write_spec(folder, search_spec(args))
    command = ["search", "run", "spec.yaml", "--out", "run", "--workers", str(args.workers)]
    if point == "after-first-trial":
        process = Process(command, folder)
        wait_for_complete(folder / "run", 1, process, 600)
        filler = fill(disk, 0)
    else:
        filler = fill(disk, 0 if point == "at-start" else 16 * 1024)
        process = Process(command, folder)
    tally.hit(True)
    stop_code, stop_err = process.finish()
    tally.exit(stop_code, stop_err, f"disk full {point}")
    torn_while_full = folder_checks(folder / "run")["torn"]
    filler.unlink(missing_ok=True)  # space freed
    code, stderr = Process(command, folder).finish()
    tally.exit(code, stderr, None)
    lines = [line for line in stop_err.splitlines() if line.strip()]
    outcome = {"point": point, "stop_exit": stop_code, "stop_message": lines[-1:]}
    outcome.update({"completed": code == 0, "torn_while_full": torn_while_full})
    outcome.update(folder_checks(folder / "run"))
    outcome["no_torn_file"] = outcome["no_torn_file"] and not torn_while_full
    from slimkit.search.study import open_storage

    outcome.update(study_checks(open_storage(None, folder / "run"), "search", args.trials))
    tally.check(outcome)


def disk_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    tally = Tally("disk full (tmpfs)")
    with tmpfs(args.work_dir / "disk") as disk:
        for point in ("at-start", "in-first-trial", "after-first-trial"):
            disk_point(args, tally, disk, point)
    return tally


def readonly_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    """Part of a search, then the folder read-only: run stops with one line, show works."""
    from slimkit.search.study import open_storage

    tally = Tally("read-only run folder")
    with tmpfs(args.work_dir / "readonly") as disk:
        folder = fresh_folder(disk / "round-0")
        write_spec(folder, search_spec(args))
        command = ["search", "run", "spec.yaml", "--out", "run"]
        tally.exit(*Process([*command, "--trials", "1"], folder).finish(), None)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        tally.hit(True)
        code, stderr = Process(command, folder).finish()
        tally.exit(code, stderr, "read-only")
        show, show_err = Process(["search", "show", "run"], folder).finish()
        tally.exit(show, show_err, None)
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        final, stderr = Process(command, folder).finish()
        tally.exit(final, stderr, None)
        outcome = {"refused": code == 1, "show_read_only": show == 0, "completed": final == 0}
        outcome.update(folder_checks(folder / "run"))
        outcome.update(study_checks(open_storage(None, folder / "run"), "search", args.trials))
        tally.check(outcome)
        if code != 1 or show != 0:
            tally.problems.append(f"read-only: run exited {code} (want 1), show {show} (want 0)")
    return tally


# ---------------------------------------------------------------------------------------------
# the optimize hook


def optimize_recipe(args: argparse.Namespace) -> dict[str, Any]:
    spec = search_spec(args)
    return {
        "name": "faults",
        "data": "digits",
        "model": {"name": "mlp", "args": {"hidden": [32]}},
        "train": {"epochs": 3, "lr": 0.01},
        "target": {"runtime": "onnxruntime", "batch_size": 64, "threads": 1},
        "objectives": ["accuracy", "size"],
        "candidates": [
            {"name": "int8 PTQ", "techniques": [{"technique": "static_int8"}]},
            {"name": "dynamic int8", "techniques": [{"technique": "dynamic_int8"}]},
        ],
        "search": {"trials": args.trials, "sampler": "random", "space": spec["space"]},
    }


def finished_files(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of each finished candidate's record and the model file it names: none may
    be rewritten by a later run (a model file whose candidate is unfinished may)."""
    found = {}
    for record in sorted((folder / "candidates").glob("*.json")):
        paths = [record]
        try:
            artifact = json.loads(record.read_text(encoding="utf-8")).get("artifact")
        except (OSError, ValueError):
            artifact = None
        if artifact:
            paths.append(Path(artifact) if Path(artifact).is_absolute() else folder / artifact)
        for path in paths:
            if path.is_file():
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def record_error(path: str) -> str:
    """What the candidate record beside a rewritten file says (to tell why it was re-run)."""
    record = Path(path).parent.parent / "candidates" / (Path(path).stem + ".json")
    try:
        error = json.loads(record.read_text(encoding="utf-8")).get("error")
    except (OSError, ValueError):
        return "no record"
    return f"record error: {error}" if error else "record finished"


def optimize_round(
    args: argparse.Namespace, rng: random.Random, tally: Tally, folder: Path
) -> None:
    from slimkit.search.study import open_storage

    write_spec(folder, optimize_recipe(args), "recipe.yaml")
    command = ["optimize", "recipe.yaml", "--out", "run"]
    rewritten: list[str] = []
    for _ in range(min(args.faults_per_run, args.kills - tally.faults)):
        before = finished_files(folder / "run")
        process = Process(command, folder)
        time.sleep(rng.uniform(0, args.expected_optimize_s))
        kind = rng.choice(FAULTS)
        tally.hit(process.fault(kind))
        tally.exit(*process.finish(), kind)
        after = finished_files(folder / "run")
        rewritten += [
            f"{path} (after {kind}; {record_error(path)})"
            for path, stamp in before.items()
            if after.get(path) != stamp
        ]
    code, stderr = Process(command, folder).finish()
    tally.exit(code, stderr, None)
    outcome: dict[str, Any] = {"completed": code == 0, "rewritten": rewritten}
    outcome.update(folder_checks(folder / "run"))
    report = folder / "run" / "report.json"
    if report.is_file():
        body = json.loads(report.read_text(encoding="utf-8"))
        names = [c.get("name") for c in body.get("candidates", [])]
        outcome["report_complete"] = bool(body.get("complete"))
        outcome["candidates_once"] = len(names) == len(set(names))
    journal = folder / "run" / "search"
    if (journal / "study.journal").is_file():
        outcome.update(study_checks(open_storage(None, journal), "faults", args.trials))
    tally.check(outcome)
    for key in ("report_complete", "candidates_once"):
        if not outcome.get(key, False):
            tally.problems.append(f"optimize: {key} failed")
    if rewritten:
        tally.problems.append(f"optimize: finished files rewritten: {rewritten}")


def optimize_scenario(args: argparse.Namespace, rng: random.Random) -> Tally:
    """The kill/re-run loop on ``slimkit optimize RECIPE`` (baseline, candidates, search)."""
    tally = Tally("optimize")
    index = 0
    while tally.faults < args.kills:
        folder = fresh_folder(args.work_dir / "optimize" / f"round-{index}")
        optimize_round(args, rng, tally, folder)
        index += 1
    return tally


# ---------------------------------------------------------------------------------------------
# calibration, table, results


def calibrate(args: argparse.Namespace) -> None:
    """Time one clean search (and one optimize when asked): faults land within such a run."""
    folder = fresh_folder(args.work_dir / "calibration")
    write_spec(folder, search_spec(args))
    started = time.monotonic()
    command = ["search", "run", "spec.yaml", "--out", "run", "--workers", str(args.workers)]
    code, stderr = Process(command, folder).finish()
    if code != 0:
        raise SystemExit(f"the clean calibration run failed (exit {code}): {stderr[-500:]}")
    args.expected_s = time.monotonic() - started
    args.expected_optimize_s = args.expected_s * 3
    if "optimize" in args.scenarios:
        write_spec(folder, optimize_recipe(args), "recipe.yaml")
        started = time.monotonic()
        code, _ = Process(["optimize", "recipe.yaml", "--out", "opt"], folder).finish()
        args.expected_optimize_s = time.monotonic() - started
    print(
        f"a clean search takes {args.expected_s:.0f} s; faults land uniformly within that",
        flush=True,
    )


def print_table(summaries: list[dict[str, Any]]) -> None:
    from slimkit.report import markdown_table

    header = ["scenario", "faults", "missed", "runs", "completed", "exact trials", "none running"]
    header += ["no repeat", "no torn file", "exit codes", "problems"]
    rows = [
        [
            s["scenario"],
            str(s["faults"]),
            str(s["missed"]),
            str(s["runs"]),
            s["completed"],
            s["exact_trials"],
            s["none_running"],
            s["no_repeat"],
            s["no_torn_file"],
            ", ".join(f"{k}×{v}" for k, v in s["exit_codes"].items()),
            str(len(s["problems"])),
        ]
        for s in summaries
    ]
    print(markdown_table(header, rows))
    for summary in summaries:
        for problem in summary["problems"]:
            print(f"- {summary['scenario']}: {problem}")


def commit() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


RUNNERS: dict[str, Callable[[argparse.Namespace, random.Random], Tally]] = {
    "search": search_scenario,
    "worker": worker_scenario,
    "restart": restart_scenario,
    "disk": disk_scenario,
    "readonly": readonly_scenario,
    "optimize": optimize_scenario,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from slimkit.measure import describe_cpu, environment

    env = environment()
    print(f"CPU: {describe_cpu(env)}", flush=True)
    needs_root = {"disk", "readonly"} & set(args.scenarios)
    if needs_root and os.geteuid() != 0:
        print(f"skipping {', '.join(sorted(needs_root))}: mounting a tmpfs needs root")
        args.scenarios = [s for s in args.scenarios if s not in needs_root]
    started = time.monotonic()
    calibrate(args)
    summaries = []
    for name in args.scenarios:
        print(f"scenario {name}...", flush=True)
        rng = random.Random(f"{args.seed}:{name}")
        tally = RUNNERS[name](args, rng)
        summaries.append(tally.summary())
        print(f"  {tally.faults} faults, {len(tally.problems)} problem(s)", flush=True)
    print()
    print_table(summaries)
    result = {
        "benchmark": "faults",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": describe_cpu(env),
        "environment": env,
        "settings": {k: v for k, v in vars(args).items() if k not in ("work_dir", "out")},
        "scenarios": summaries,
        "seconds": time.monotonic() - started,
    }
    from slimkit.io import write_json_atomic

    write_json_atomic(args.out, result)
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s in all)")
    return 1 if any(s["problems"] for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
