"""ExecuTorch (the successor of PyTorch Mobile): ``.pte`` programs on its C++ runtime from Python.

Runs through ``executorch.runtime.Runtime`` (the portable pybindings, which include the XNNPACK
backend). ExecuTorch keeps one process-wide thread pool: the runner resizes it to its thread count
when loaded and again before a run if another runner changed it, and then loads its method again
(XNNPACK keeps the pool a method was loaded with, and a resize frees it). For clean timings of
several thread counts measure each in its own process (``slimkit.measure.measure_isolated``).

``.pte`` files from :func:`slimkit.export.executorch.export_executorch` have a fixed batch size
(memory is planned for it); other batch sizes run in several calls.

A file is checked before this process loads it: its flatbuffers from Python
(:mod:`slimkit.runtime.pte_check`), then, once per process and file content, a load and one run
on zeros in a probe process (:mod:`slimkit.runtime.pte_probe`): XNNPACK trusts a program's
operator parameters and memory plan, and a corrupt one can crash the process that runs it.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, MissingDependencyError, RuntimeLoadError
from slimkit.logs import native_output_captured
from slimkit.runtime.base import (
    Runner,
    check_identifier,
    first_line,
    register_runtime,
    run_in_fixed_batches,
)
from slimkit.runtime.delegation import DelegationReport, count_names
from slimkit.runtime.pte_check import check_program
from slimkit.runtime.pte_probe import file_digest, is_verified, start_probe, verify_pte

logger = logging.getLogger(__name__)

PTE_IDENTIFIER = b"ET12"
INSTALL_HINT = 'pip install "slimkit[executorch]"'
METHOD = "forward"


def import_executorch_runtime() -> Any:
    """``executorch.runtime``, or MissingDependencyError with the pip hint."""
    try:
        import executorch.runtime as runtime
    except ImportError as error:
        raise MissingDependencyError(
            f"ExecuTorch is not installed; install it with: {INSTALL_HINT}"
        ) from error
    return runtime


def _threadpool() -> Any:
    from executorch.extension.pybindings import portable_lib

    return portable_lib


# How many times this process resized ExecuTorch's thread pool. XNNPACK keeps the pool a method
# was loaded with, and a resize destroys that pool: a method loaded before the last resize must
# be loaded again before it runs (running it would use the freed pool and can abort the process).
_pool_resets = 0


@register_runtime
class ExecuTorchRunner(Runner):
    """Runs a ``.pte`` program's ``forward`` method in the ExecuTorch runtime."""

    name = "executorch"
    format = "pte"
    package = "executorch"
    module = "executorch"
    install_hint = INSTALL_HINT

    def _load(self) -> None:
        self.check_file(self.path)
        self._set_threads()
        try:
            self._load_method()
        except Exception as error:  # the pybindings raise RuntimeError with an error code
            raise RuntimeLoadError(
                f"executorch: cannot load {self.path} as an ExecuTorch program "
                f"({first_line(error)}); is the file complete and really .pte?"
            ) from error
        if self.method is None:
            raise RuntimeLoadError(f"executorch: {self.path} has no {METHOD!r} method")
        meta = self.method.metadata
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise RuntimeLoadError(
                f"executorch: {self.path} has {meta.num_inputs()} inputs and "
                f"{meta.num_outputs()} outputs; slimkit runs single-input, single-output models"
            )
        sizes = tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
        self._batch_size, self._input_shape = sizes[0], sizes[1:]

    @classmethod
    def check_file(cls, path: Path) -> None:
        """Refuse, in one line, a file that is not a program or that crashes ExecuTorch.

        The checks :meth:`_load` makes before it loads ``path`` in this process: the identifier,
        the program's flatbuffers (:func:`~slimkit.runtime.pte_check.check_program`), then a
        load and one run on zeros in the probe process (once per process and file content,
        :func:`~slimkit.runtime.pte_probe.verify_pte`).

        Raises:
            MissingDependencyError: ExecuTorch is not installed.
            RuntimeLoadError: the file is not a readable program, or it crashed, aborted or
                hung the probe.
        """
        if not cls.available():
            import_executorch_runtime()  # the install hint first
        check_identifier(path, cls.name, PTE_IDENTIFIER, "pte", "a .pte program")
        digest = file_digest(path)
        if not is_verified(digest):
            start_probe()  # it imports ExecuTorch (about 5 s) while this process does the same
        import_executorch_runtime()
        check_program(path)
        verify_pte(path, digest=digest)

    def _set_threads(self) -> None:
        """Size the process-wide pool to this runner's threads; reload the method if the pool
        was replaced since it was loaded (by this runner or another one)."""
        global _pool_resets
        pool = _threadpool()
        if pool._threadpool_get_thread_count() != self.threads:
            with native_output_captured(self.name):  # "Resetting threadpool to N threads."
                pool._unsafe_reset_threadpool(self.threads)
            _pool_resets += 1
        if getattr(self, "method", None) is not None and self._loaded_after != _pool_resets:
            with native_output_captured(self.name):
                self._load_method()

    def _load_method(self) -> None:
        # a fresh Program: a Program caches its methods, and the cached one holds the old pool
        program = import_executorch_runtime().Runtime.get().load_program(self.path)
        self.method = program.load_method(METHOD)
        self._loaded_after = _pool_resets

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape

    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    def _execute(self, x: np.ndarray) -> np.ndarray:
        import torch

        (logits,) = self.method.execute([torch.from_numpy(x)])
        return np.asarray(logits.numpy(), dtype=np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        self._set_threads()
        try:
            return run_in_fixed_batches(self._execute, x, self._batch_size)
        except Exception as error:
            raise ConfigError(
                f"executorch: running {self.path.name} on input {x.shape} {x.dtype} failed: "
                f"{first_line(error)}"
            ) from error

    def delegation(self) -> DelegationReport:
        """Operators in XNNPACK partitions and kernels left outside, read from the program.

        The program's execution plan lists kernel calls (outside any delegate) and delegate calls;
        each XNNPACK payload is an XNNGraph flatbuffer whose nodes name the operators inside.
        """
        return read_pte_delegation(self.path)

    @classmethod
    def version(cls) -> str:
        import_executorch_runtime()
        from importlib.metadata import version

        return str(version("executorch"))


def read_pte_delegation(path: Path) -> DelegationReport:
    """The :class:`DelegationReport` of a ``.pte`` file (kernel calls vs XNNPACK partitions)."""
    import_executorch_runtime()
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes()).program
    plan = program.execution_plan[0]
    outside: list[str] = []
    delegated: list[str] = []
    notes: list[str] = []
    partitions = 0
    backends: set[str] = set()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            kind = type(args).__name__
            if kind == "KernelCall":
                operator = plan.operators[args.op_index]
                outside.append(
                    operator.name + (f".{operator.overload}" if operator.overload else "")
                )
            elif kind == "DelegateCall":
                partitions += 1
                delegate = plan.delegates[args.delegate_index]
                backends.add(delegate.id)
                nodes = (
                    _xnnpack_nodes(program, delegate) if delegate.id == "XnnpackBackend" else None
                )
                if nodes is None:
                    notes.append(f"operators inside a {delegate.id} partition are not listed")
                else:
                    delegated.extend(nodes)
    backend = "XNNPACK" if backends <= {"XnnpackBackend"} else ", ".join(sorted(backends))
    return DelegationReport(
        backend=backend,
        delegated=count_names(delegated) if not notes else None,
        outside=count_names(outside),
        partitions=partitions,
        notes=tuple(notes),
    )


def _xnnpack_nodes(program: Any, delegate: Any) -> list[str] | None:
    """Node type names of one XNNPACK payload (``XNNConv2d`` → ``Conv2d``), or None."""
    if delegate.processed.location.name != "INLINE":
        return None
    data = program.backend_delegate_data[delegate.processed.index].data
    if data[4:8] != b"XH00":  # XNNHeader: magic, header size, flatbuffer offset and size
        return None
    offset, size = struct.unpack("<II", data[10:18])
    try:
        from executorch.exir._serialize._flatbuffer import _get_flatc_path

        schema = (
            importlib.resources.files("executorch.backends.xnnpack.serialization")
            .joinpath("schema.fbs")
            .read_bytes()
        )
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            (root / "schema.fbs").write_bytes(schema)
            (root / "graph.bin").write_bytes(data[offset : offset + size])
            subprocess.run(
                [
                    _get_flatc_path(),
                    *("--json", "--raw-binary", "-o", folder),
                    *(str(root / "schema.fbs"), "--", str(root / "graph.bin")),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            text = (root / "graph.json").read_text()
    except Exception as error:  # flatc missing or the schema changed: say so, do not fail
        logger.debug("executorch: cannot list XNNPACK nodes: %s", first_line(error))
        return None
    names = re.findall(r'xnode_union_type:\s*"?(\w+)"?', text)
    return [name.removeprefix("XNN") for name in names]
