"""One small interface for every runtime, and a registry of them.

A :class:`Runner` loads one model file, runs float32 batches of shape ``(N, C, H, W)`` and returns
``(N, classes)`` float32 logits as NumPy arrays, with a fixed number of CPU threads. PyTorch eager
and ONNX Runtime implement it here; LiteRT, ExecuTorch and TFLite Micro implement the same class in
their own files and register with one line.

Example:
    >>> runner = load_runtime("onnxruntime", "model.onnx", threads=1)  # doctest: +SKIP
    >>> logits = runner.run(batch)  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from slimkit.data.split import Split
from slimkit.errors import ConfigError, RuntimeLoadError
from slimkit.logs import native_output_captured
from slimkit.runtime.delegation import DelegationReport


class Runner(abc.ABC):
    """A model file loaded into one runtime.

    Subclasses set ``name``, ``format`` (the export format they load) and ``package`` (the pip
    package that provides them), and implement :meth:`_load`, :meth:`run` and :meth:`version`.
    Optional packages also set ``module`` (the import name, so :meth:`available` can tell without
    importing it) and ``install_hint`` (the pip command in the :class:`MissingDependencyError`).
    Runtimes whose files have a fixed batch size report it in :attr:`batch_size`; runtimes with a
    delegate report what it runs in :meth:`delegation`.
    """

    name: ClassVar[str]
    format: ClassVar[str]
    package: ClassVar[str] = ""
    module: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an int >= 1; got {threads!r}")
        self.path = Path(path)
        self.threads = threads
        if not self.path.is_file():
            raise RuntimeLoadError(f"{self.name}: model file {self.path} does not exist")
        with native_output_captured(self.name):  # runtimes' C++ logging stays off the terminal
            self._load()

    @abc.abstractmethod
    def _load(self) -> None:
        """Load ``self.path`` with ``self.threads`` threads; RuntimeLoadError if unreadable."""

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch: float32 ``(N, C, H, W)`` → float32 ``(N, classes)`` logits."""

    @classmethod
    @abc.abstractmethod
    def version(cls) -> str:
        """The runtime package's version string."""

    @classmethod
    def available(cls) -> bool:
        """True when the runtime's package can be imported (checked without importing it)."""
        if not cls.module:
            return True
        try:
            return importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):  # a parent package is missing
            return False

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """One sample's shape if the file says it, else None."""
        return None

    @property
    def model_spec(self) -> dict[str, Any] | None:
        """The slimkit model spec the file records (``ModelSpec.to_dict()``), or None."""
        return None

    @property
    def batch_size(self) -> int | None:
        """The batch size the file was exported for, or None if it takes any batch.

        A runner with a fixed batch still runs any ``N``: in ``ceil(N / batch_size)`` calls, the
        last one padded (see :func:`run_in_fixed_batches`). Time it at its own batch size.
        """
        return None

    def delegation(self) -> DelegationReport | None:
        """Which operators the runtime's delegate (e.g. XNNPACK) runs; None if it has none."""
        return None

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` as contiguous float32, or raise a clear error for a wrong shape or dtype."""
        if not isinstance(x, np.ndarray):
            raise ConfigError(f"{self.name}: input must be a NumPy array; got {type(x).__name__}")
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.floating):
                raise ConfigError(
                    f"{self.name}: input must be float32; got dtype {x.dtype} for {self.path.name}"
                )
            x = x.astype(np.float32)
        expected = self.input_shape
        if expected is not None and tuple(x.shape[1:]) != tuple(expected):
            raise ConfigError(
                f"{self.name}: {self.path.name} expects input of shape (N, "
                f"{', '.join(map(str, expected))}); got {tuple(x.shape)}"
            )
        return np.ascontiguousarray(x)


def run_in_fixed_batches(
    run_fixed: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int
) -> np.ndarray:
    """Run ``x`` (any ``N``) through a function that takes exactly ``batch_size`` samples.

    The last chunk is padded with zeros and its padding rows dropped from the result.

    Example:
        >>> double = lambda a: a[:, :1] * 2  # a "model" that only takes batches of 4
        >>> run_in_fixed_batches(double, np.ones((5, 1), np.float32), 4).shape
        (5, 1)
    """
    if len(x) == batch_size:
        return run_fixed(x)
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        rows = len(chunk)
        if rows < batch_size:  # pad the last chunk: (rows, ...) → (batch_size, ...)
            pad = np.zeros((batch_size - rows, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outputs.append(run_fixed(np.ascontiguousarray(chunk))[:rows])
    return np.concatenate(outputs, axis=0)


def check_identifier(path: Path, runtime: str, identifier: bytes, fmt: str, what: str) -> None:
    """Refuse a file whose flatbuffer identifier (bytes 4-8) is not ``identifier``, in one line
    naming the file, what was found and how to make the right one."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if head[4:8] != identifier:
        raise RuntimeLoadError(
            f"{runtime}: {path} is not {what} (identifier {head[4:8]!r}, expected "
            f"{identifier!r}); export it with format='{fmt}'"
        )


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), cut to ``limit`` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


@dataclass(frozen=True)
class RuntimeInfo:
    """A registered runtime: name, the format it loads, its package, and its runner class."""

    name: str
    format: str
    package: str
    runner: type[Runner]


_RUNTIMES: dict[str, RuntimeInfo] = {}


def register_runtime(cls: type[Runner]) -> type[Runner]:
    """Class decorator that registers a :class:`Runner` subclass under ``cls.name``."""
    _RUNTIMES[cls.name] = RuntimeInfo(cls.name, cls.format, cls.package, cls)
    return cls


def list_runtimes() -> list[str]:
    """Names of the registered runtimes."""
    return sorted(_RUNTIMES)


def runtime_info(name: str) -> RuntimeInfo:
    """The registry entry for ``name``; unknown names raise :class:`ConfigError`."""
    try:
        return _RUNTIMES[name]
    except KeyError:
        raise ConfigError(
            f"unknown runtime {name!r}; choose one of: {', '.join(list_runtimes())}"
        ) from None


def load_runtime(name: str, path: str | os.PathLike[str], *, threads: int = 1) -> Runner:
    """Load ``path`` into the runtime ``name`` with ``threads`` CPU threads."""
    return runtime_info(name).runner(path, threads=threads)


def predict_batches(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray | Split, batch_size: int = 256
) -> np.ndarray:
    """Run ``x`` (an array, or a split read batch by batch) through ``run``; stack the logits."""
    if isinstance(x, Split):
        outputs = [run(batch.numpy()) for batch, _ in x.batches(batch_size)]
    else:
        outputs = [run(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    return np.concatenate(outputs, axis=0)
