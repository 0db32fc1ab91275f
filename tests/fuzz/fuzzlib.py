"""What every fuzz target is made of: the :class:`Target` record, byte mutators, random JSON, and
the property every parser must hold.

The property: given any input, a parser that a user reaches either succeeds, or raises an error of
slimkit's tree (:class:`slimkit.errors.SlimkitError`) whose message is one line. Any other
exception, a hang or a crash of the process is a failure. :func:`expect_clean` turns a check's body
into that verdict; :func:`memory_bound` adds "and without spending memory out of proportion to the
input" where a parser promises it (checkpoints).

A target's inputs are made the same way in the tests (Hypothesis drives the ``random.Random``
through ``st.randoms()``, so failures shrink and replay) and in the soak script
(``benchmarks/fuzz.py``, a plain seeded ``random.Random`` per input): ``generate(rng, seeds)``.

This module is imported by file path (``tests/fuzz/targets.py`` puts this folder on
``sys.path``); it imports slimkit lazily so that the harness's parent process stays light.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An input: the bytes of one file, or {file name: bytes} for a target that reads a folder.
Input = Any
OK = "ok"  # the parser accepted the input
CLEAN = "clean"  # the parser refused it with a one-line SlimkitError


@dataclass(frozen=True)
class Target:
    """One parser under fuzz.

    Attributes:
        name: short id (``idx``, ``checkpoint``, ``onnx``, ...), used on the command line.
        description: one line for the soak table.
        seeds: ``seeds(folder) -> inputs``: real, small, valid inputs, built (once per run) under
            ``folder``; mutations start from them.
        generate: ``generate(rng, seeds) -> input``: one input, from a ``random.Random``-like
            object (only ``random``, ``randint``, ``choice`` and ``getrandbits`` are used).
        check: ``check(input, tmp_dir) -> OK | CLEAN``: feed the input to the parser; raise
            AssertionError when the property does not hold. Runs in a child process.
        requires: modules that must be importable, else the target is skipped.
        ci_examples: how many generated inputs the tests run (the soak runs many more).
        regressions: ``regressions(seeds) -> inputs``: inputs that once failed (the reproducers
            of fixed bugs), run by the tests and the soak before any generated input.
    """

    name: str
    description: str
    seeds: Callable[[Path], list[Input]]
    generate: Callable[[Any, Sequence[Input]], Input]
    check: Callable[[Input, Path], str]
    requires: tuple[str, ...] = ()
    ci_examples: int = 30
    regressions: Callable[[Sequence[Input]], list[Input]] = lambda seeds: []

    def available(self) -> str | None:
        """None when the target can run here, else why not."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"{module} is not installed"
        return None


def load_targets(folder: Path) -> dict[str, Target]:
    """Every target of the ``targets_*.py`` files in ``folder`` (each lists them in ``TARGETS``)."""
    found: dict[str, Target] = {}
    for path in sorted(folder.glob("targets_*.py")):
        name = f"slimkit_fuzz_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        for target in module.TARGETS:
            if target.name in found:
                raise ValueError(f"fuzz target {target.name!r} is defined twice ({path})")
            found[target.name] = target
    return found


def soak_inputs(
    name: str, generate: Callable[[Any, Sequence[Input]], Input], found: Sequence[tuple[int, int]]
) -> Callable[[Sequence[Input]], list[Input]]:
    """``regressions`` made of soak inputs that once failed: input ``index`` of ``--seed seed``
    of ``benchmarks/fuzz.py`` for target ``name``, regenerated from the seeds (the soak makes
    input ``i`` with ``random.Random(f"{seed}:{name}:{i}")``)."""
    import random

    def regressions(seeds: Sequence[Input]) -> list[Input]:
        return [generate(random.Random(f"{s}:{name}:{i}"), seeds) for s, i in found]

    return regressions


# --- the property ---------------------------------------------------------------------------


@contextlib.contextmanager
def expect_clean() -> Iterator[list[str]]:
    """Run the body; a SlimkitError with a one-line message is a clean refusal, anything else
    (except an AssertionError of the check itself) is a failure.

    Yields a one-item list that holds :data:`OK`, or :data:`CLEAN` after a clean refusal.

    Example:
        >>> with expect_clean() as verdict:
        ...     pass
        >>> verdict[0]
        'ok'
    """
    from slimkit.errors import SlimkitError

    verdict = [OK]
    try:
        yield verdict
    except SlimkitError as error:
        lines = str(error).splitlines()
        if len(lines) != 1 or not lines[0].strip():
            raise AssertionError(
                f"{type(error).__name__} message is not one line: {str(error)[:300]!r}"
            ) from error
        verdict[0] = CLEAN
    except AssertionError:
        raise
    except BaseException as error:  # MemoryError, RecursionError, KeyboardInterrupt too
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        text = str(error).strip().splitlines()
        raise AssertionError(
            f"foreign {type(error).__module__}.{type(error).__name__}: "
            f"{(text[0] if text else '')[:300]}"
        ) from error


def _peak_rss() -> int | None:
    """This process's peak resident memory in bytes (VmHWM), or None where unknown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def memory_bound(limit_bytes: int, what: str) -> Iterator[None]:
    """Fail (AssertionError) when the body raised the process's peak RSS by more than
    ``limit_bytes``, whether it returned or raised. A no-op where peak RSS cannot be reset."""
    measured = _reset_peak_rss()
    before = _peak_rss() if measured else None
    try:
        yield
    finally:
        after = _peak_rss() if before is not None else None
        if before is not None and after is not None and after - before > limit_bytes:
            raise AssertionError(  # the verdict wins over the body's outcome
                f"{what} used {(after - before) >> 20} MiB of memory "
                f"(the bound is {limit_bytes >> 20} MiB)"
            )


# --- mutators -------------------------------------------------------------------------------

INTERESTING = (
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
)


def random_bytes(rng: Any, size: int) -> bytes:
    """``size`` random bytes from ``rng``."""
    return rng.getrandbits(8 * size).to_bytes(size, "little") if size > 0 else b""


def _position(rng: Any, buf: bytearray, *, end: bool = False) -> int:
    return rng.randint(0, len(buf) if end else max(len(buf) - 1, 0))


def _flip_bit(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    if buf:
        buf[_position(rng, buf)] ^= 1 << rng.randint(0, 7)
    return buf


def _set_byte(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    if buf:
        buf[_position(rng, buf)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(8)))
    return buf


def _set_int(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    """Overwrite a 1, 2, 4 or 8-byte integer (either byte order) with an interesting value, or
    nudge the one there (flatbuffer offsets and sizes, IDX dimensions)."""
    width = rng.choice((1, 2, 4, 4, 4, 8))
    if len(buf) < width:
        return buf
    at = rng.randint(0, len(buf) - width)
    order = rng.choice(("little", "little", "big"))
    old = int.from_bytes(buf[at : at + width], order)
    if rng.random() < 0.5:
        new = rng.choice(INTERESTING) if rng.random() < 0.8 else -rng.choice(INTERESTING)
    else:
        new = old + rng.choice((-16, -8, -4, -2, -1, 1, 2, 4, 8, 16, 64))
    buf[at : at + width] = (new % (1 << (8 * width))).to_bytes(width, order)
    return buf


def _insert(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    at = _position(rng, buf, end=True)
    buf[at:at] = random_bytes(rng, rng.choice((1, 2, 4, 8, rng.randint(1, 64))))
    return buf


def _delete(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    if buf:
        at = _position(rng, buf)
        del buf[at : at + rng.choice((1, 2, 4, rng.randint(1, max(len(buf) // 4, 1))))]
    return buf


def _duplicate(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    if buf:
        at = _position(rng, buf)
        chunk = buf[at : at + rng.randint(1, 256)]
        to = _position(rng, buf, end=True)
        buf[to:to] = chunk
    return buf


def _overwrite_chunk(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    """Copy a chunk of this input or another seed over another place (moves tables around)."""
    source = bytes(buf) if not others or rng.random() < 0.5 else rng.choice(others)
    if buf and source:
        start = rng.randint(0, len(source) - 1)
        chunk = source[start : start + rng.randint(1, 64)]
        at = _position(rng, buf)
        buf[at : at + len(chunk)] = chunk
    return buf


def _truncate(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    return buf[: _position(rng, buf, end=True)]


def _splice(rng: Any, buf: bytearray, others: Sequence[bytes]) -> bytearray:
    if not others:
        return buf
    other = rng.choice(others)
    return buf[: _position(rng, buf, end=True)] + bytearray(
        other[rng.randint(0, len(other)) if other else 0 :]
    )


MUTATORS: tuple[Callable[[Any, bytearray, Sequence[bytes]], bytearray], ...] = (
    _flip_bit,
    _set_byte,
    _set_int,
    _set_int,
    _insert,
    _delete,
    _duplicate,
    _overwrite_chunk,
    _truncate,
    _splice,
)


def mutate_bytes(
    rng: Any, data: bytes, others: Sequence[bytes] = (), *, max_steps: int = 4
) -> bytes:
    """``data`` after 1 to ``max_steps`` random mutations (bit flips, interesting integers,
    inserted/deleted/duplicated ranges, a truncation, a splice with another seed)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, max_steps)):
        buf = rng.choice(MUTATORS)(rng, buf, others)
    return bytes(buf)


# --- random JSON ----------------------------------------------------------------------------

WEIRD_INTS = (0, 1, 2, 3, -1, 10, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32, 2**40, 2**63, 10**30)
WEIRD_STRINGS = ("", "a", "mlp", "lenet5", "10", "1x28x28", "\x00", "é", "\n", "x" * 5000)


def random_json(rng: Any, depth: int = 0) -> Any:
    """A random JSON value that leans to the values parsers get wrong: huge or negative ints,
    floats where ints belong, strings, empty and nested containers."""
    kind = rng.randint(0, 9 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind in (2, 3):
        return rng.choice(WEIRD_INTS) * rng.choice((1, 1, 1, -1))
    if kind == 4:
        return rng.choice((0.5, 1.0, -0.0, 1e308, 2.5, 1e-300, 28.0))
    if kind == 5:
        return rng.choice(WEIRD_STRINGS)
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ("name", "input_shape", "num_classes", "kwargs", "hidden", "source", "path", "seed")
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_json_text(rng: Any) -> str:
    """JSON text: usually a random value, sometimes malformed, deep or non-standard text."""
    roll = rng.random()
    if roll < 0.75:
        return json.dumps(random_json(rng))
    return rng.choice(
        (
            "{",
            '{"name": ',
            "NaN",
            "Infinity",
            "[" * 5000 + "]" * 5000,
            '{"a": ' * 3000 + "1" + "}" * 3000,
            "1" * 5000,
            "\x00",
            "",
        )
    )
