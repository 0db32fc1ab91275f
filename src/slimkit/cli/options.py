"""Helpers shared by the commands: parsing ``key=value`` arguments, shapes, and finding data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimkit.errors import ConfigError

if TYPE_CHECKING:  # at run time imported where used: --help must not wait for torch
    from slimkit.data import DataConfig, Dataset
    from slimkit.progress import ProgressEvent


def check_inputs_exist(*paths: Path | None, what: str = "model file", folder: bool = False) -> None:
    """Refuse a missing input file (or folder, with ``folder``) before anything else runs or
    loads: one line, exit 1, instead of an error about what the missing file would have held."""
    for path in paths:
        if path is None:
            continue
        if not path.exists():
            raise ConfigError(f"{what} {path} does not exist; check the path")
        if path.is_dir() and not folder:
            raise ConfigError(f"{what} {path} is a folder; give a file")


def parse_key_values(items: list[str] | None, what: str = "--model-arg") -> dict[str, Any]:
    """``["hidden=[300,100]", "dropout=0.5"]`` → ``{"hidden": [300, 100], "dropout": 0.5}``.

    Values are read as JSON (numbers, lists, true/false) and fall back to plain strings; nothing is
    evaluated as code.
    """
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} takes KEY=VALUE; got {item!r}")
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value
    return result


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1x28x28"`` → ``(1, 28, 28)``."""
    try:
        parts = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise ConfigError(f"--input-shape must look like CxHxW, e.g. 1x28x28; got {text!r}")
    return parts[0], parts[1], parts[2]


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (empty if unreadable; the runtime reports that)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return {}
    return {p.key: p.value for p in model.metadata_props}


def data_config_of(path: Path) -> DataConfig | None:
    """The data a slimkit checkpoint or ONNX file was trained on, if it recorded it."""
    from slimkit.data import DataConfig
    from slimkit.train import read_checkpoint_metadata

    data: Any = None
    if path.suffix == ".safetensors":
        _, extra = read_checkpoint_metadata(path)
        data = extra.get("data")
    elif path.suffix == ".onnx":
        raw = onnx_metadata(path).get("slimkit.data")
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            raise ConfigError(
                f"{path} records corrupt slimkit.data metadata {(raw or '')[:60]!r}; pass --data"
            ) from None
    if not isinstance(data, dict) or data.get("source") == "python":
        return None  # nothing recorded, or a set built in Python: --data names the data
    try:
        return DataConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path} records an invalid data spec ({error}); pass --data") from None


def resolve_data(spec: str | None, *candidates: Path | None, seed: int | None = None) -> DataConfig:
    """``--data`` if given, else the data recorded in the first candidate file that has it."""
    from slimkit.data import parse_data_spec

    if spec:
        return parse_data_spec(spec, seed=seed or 0)
    for path in candidates:
        if path is not None and path.is_file():
            config = data_config_of(path)
            if config is not None:
                return config
    raise ConfigError(
        "no data set given and none recorded in the model file; pass --data "
        "(e.g. --data digits or --data mnist:PATH)"
    )


def threads_option(note: str = "") -> Any:
    """The ``--threads`` option of every command that computes: one definition for all of them.

    The command passes the value to :func:`slimkit.threads.use_threads` (or a library verb's
    ``threads=``), which sizes every thread pool slimkit starts from it.
    """
    import typer

    from slimkit.threads import available_cpus

    return typer.Option(
        None,
        "--threads",
        min=1,
        show_default=False,
        help=f"CPU threads to compute with (default: every CPU this process may use, "
        f"{available_cpus()} here; never more){note}.",
    )


def load_data(config: DataConfig) -> Dataset:
    """Load ``config``'s data set under a status line that counts a folder's checked files."""
    from slimkit.cli.app import console
    from slimkit.data import load_dataset

    spec = config.to_spec()
    with console.status(f"loading {spec}") as status:

        def show(event: ProgressEvent) -> None:
            status.update(f"loading {spec}: {event.info} {event.done:,}/{event.total or 0:,}")

        return load_dataset(config, progress=show)
