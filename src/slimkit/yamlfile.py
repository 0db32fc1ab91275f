"""YAML files a user gives slimkit (recipes, search files): safe, bounded, and located.

- PyYAML's safe loader: plain data only, no Python objects are built and no code runs;
- anchors and aliases are refused: a few hundred bytes of nested aliases expand to gigabytes
  (the "billion laughs"), and a recipe never needs them; files over :data:`MAX_BYTES` and nesting
  deeper than :data:`MAX_DEPTH` are refused too, and so is a key given twice in one mapping;
- the text must be UTF-8;
- every mapping key and list item is mapped to its line, so that an error names the line of the
  bad value (:class:`Where`), not the line of the first key that happens to share its name.

Example:
    >>> doc = parse_yaml("name: x\\ncandidates:\\n  - {name: a}\\n", file="r.yaml")
    >>> str(Where(doc.file, doc.lines) / "candidates" / 0 / "name")
    'r.yaml (line 3): candidates[0].name'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from slimkit.errors import ConfigError

MAX_BYTES = 1_000_000
MAX_DEPTH = 64

Key = str | int
KeyPath = tuple[Key, ...]


def format_path(path: KeyPath) -> str:
    """``("candidates", 1, "techniques")`` → ``candidates[1].techniques``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


@dataclass(frozen=True)
class Where:
    """A place in a user's file: the file's name, its line map, and the key path inside it.

    ``where / "candidates" / 0`` goes one level down; ``str(where)`` is
    ``FILE (line N): candidates[0]``, the prefix of every error about that value.
    """

    file: str = "recipe"
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    path: KeyPath = ()

    def __truediv__(self, key: Key) -> Where:
        return replace(self, path=(*self.path, key))

    def line(self) -> int | None:
        """The line of this value, or of the nearest enclosing one that has a line."""
        for end in range(len(self.path), 0, -1):
            line = self.lines.get(_normal(self.path[:end]))
            if line is not None:
                return line
        return None

    def __str__(self) -> str:
        line = self.line()
        place = f"{self.file} (line {line})" if line is not None else self.file
        dotted = format_path(self.path)
        return f"{place}: {dotted}" if dotted else place


def as_where(where: str | Where) -> Where:
    """A :class:`Where` for a plain name (``"space"``) or the Where itself."""
    return where if isinstance(where, Where) else Where(str(where))


def _normal(path: KeyPath) -> KeyPath:
    return tuple(k if isinstance(k, int) else str(k) for k in path)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document: its data, the line of every key path, and the file's name."""

    data: Any
    lines: Mapping[KeyPath, int]
    file: str

    def where(self) -> Where:
        """The root :class:`Where` of this document."""
        return Where(self.file, self.lines)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing anchors, aliases and deep nesting before anything is built."""

    def __init__(self, stream: str, file: str) -> None:
        super().__init__(stream)
        self._file = file
        self._depth = 0

    def _refuse(self, event: Any, what: str) -> None:
        line = event.start_mark.line + 1
        raise ConfigError(f"{self._file} (line {line}): {what}; write the value out in full")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._refuse(event, f"YAML aliases (*{event.anchor}) are not accepted")
        if getattr(event, "anchor", None) is not None:
            self._refuse(event, f"YAML anchors (&{event.anchor}) are not accepted")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse(event, f"values are nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _locate(node: Any, path: KeyPath, lines: dict[KeyPath, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                where = format_path((*path, key))
                raise ConfigError(f"{file} (line {line}): {where} is given twice; keep one")
            seen.add(key)
            lines[(*path, key)] = line
            _locate(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _locate(item, (*path, index), lines, file)


def parse_yaml(text: str, *, file: str = "<text>") -> YamlDocument:
    """Parse one YAML document from ``text`` (see the module docstring for what is refused)."""
    try:
        loader = _Loader(text, file)
    except yaml.YAMLError as error:  # the reader refuses control characters at once
        raise ConfigError(f"{file} is not valid YAML: {_problem(error)}") from None
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if node is not None:
            _locate(node, (), lines, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{file} is not valid YAML{where}: {_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"{file}: values are nested too deeply") from None
    finally:
        loader.dispose()
    return YamlDocument(data, lines, file)


def _problem(error: BaseException) -> str:
    problem = getattr(error, "problem", None) or str(error).strip()
    lines = str(problem).splitlines()
    return lines[0] if lines else type(error).__name__


def read_yaml_file(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file: one :class:`~slimkit.errors.ConfigError` line if it is bad.

    Example:
        >>> doc = read_yaml_file("recipes/digits.yaml")  # doctest: +SKIP
        >>> doc.data["name"]  # doctest: +SKIP
        'digits'
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file} does not exist (or is not a file)")
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"{file} is {size:,} bytes; a recipe or search file may be {MAX_BYTES:,} bytes "
                "at most"
            )
        raw = file.read_bytes()[: MAX_BYTES + 1]
    except OSError as error:
        raise ConfigError(f"cannot read {file}: {error.strerror or error}") from None
    if len(raw) > MAX_BYTES:  # grew since stat (or a special file)
        raise ConfigError(f"{file} is over {MAX_BYTES:,} bytes; that is too large for a recipe")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{file} (line {line}) is not UTF-8 text: byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}; save the file as UTF-8"
        ) from None
    return parse_yaml(text, file=str(file))
