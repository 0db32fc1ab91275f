"""User code named in a recipe (``function: "module:function"``): found only where it may be.

Naming a function in a recipe runs it, so slimkit runs only what the user evidently wrote for
this purpose: a plain Python function (a ``def``), defined in a ``.py`` file that lies under the
recipe's folder or the current directory, or in a package the user allows by name
(``--allow-module PKG`` on the command line, ``allow_modules=("PKG",)`` in Python). Anything else
— the standard library (``os:system``), builtins, slimkit's own dependencies, a class, a
function imported into the file from elsewhere — is refused with one line, before the module is
imported.

Example:
    >>> fn = resolve_function("examples.user_model:build", roots=["."])  # doctest: +SKIP
    >>> fn.__name__  # doctest: +SKIP
    'build'
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import re
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from slimkit.errors import ConfigError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(rf"^({_NAME}(?:\.{_NAME})*):({_NAME})$")


def split_spec(spec: Any, where: str = "function") -> tuple[str, str]:
    """``"pkg.mod:build"`` → ``("pkg.mod", "build")``; anything else is a ConfigError."""
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(
            f"{where}: expected 'module:function' (a Python module path and a function name, "
            f"e.g. 'my_models:build'); got {spec!r}"
        )
    return match.group(1), match.group(2)


def _allowed_by_name(module_name: str, allow_modules: Iterable[str]) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in allow_modules)


def _root_holding(top: str, roots: Iterable[Path]) -> Path | None:
    """The first root whose folder holds the top-level module or package ``top`` (no import)."""
    for root in roots:
        spec = importlib.machinery.PathFinder.find_spec(top, [str(root)])
        if spec is not None and spec.origin not in (None, "namespace"):
            return root
        if spec is not None and spec.submodule_search_locations:  # a namespace package folder
            return root
    return None


def _import_from(module_name: str, root: Path | None, where: str) -> Any:
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))  # as `python -m` would: the user's own modules import
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(
            f"{where}: cannot import module {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    if root is not None:
        file = getattr(module, "__file__", None)
        resolved = Path(file).resolve() if file else None
        if resolved is None or not resolved.is_relative_to(root):
            raise ConfigError(
                f"{where}: module {module_name!r} was imported from {file}, not from {root} "
                "(another module of that name comes first on the path); rename your module"
            )
        if any(resolved.is_relative_to(p) for p in _installed_paths()):
            raise ConfigError(
                f"{where}: module {module_name!r} is installed Python code ({file}), not a file "
                f"of yours; pass --allow-module {module_name.split('.')[0]} if you mean it"
            )
    return module


def _installed_paths() -> list[Path]:
    """Where the standard library and installed packages live."""
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")]


def resolve_function(
    spec: str,
    *,
    roots: Iterable[str | Path] = (),
    allow_modules: Iterable[str] = (),
    where: str = "function",
) -> Callable[..., Any]:
    """The plain function ``spec`` names, if it lies in an allowed place (else ConfigError).

    Args:
        spec: ``"module.path:function"``.
        roots: folders whose ``.py`` files may be used (the recipe's folder, the current
            directory).
        allow_modules: package names the user allowed explicitly (importable from anywhere).
        where: the recipe key, for error messages.
    """
    module_name, function_name = split_spec(spec, where)
    allow_modules = tuple(allow_modules)
    resolved_roots = list(dict.fromkeys(Path(r).resolve() for r in roots))
    root = None
    if not _allowed_by_name(module_name, allow_modules):
        root = _root_holding(module_name.split(".")[0], resolved_roots)
        if root is None:
            places = ", ".join(str(r) for r in resolved_roots) or "(none)"
            raise ConfigError(
                f"{where}: {spec!r} is not a function of yours: module {module_name!r} is not a "
                f".py file under {places}; slimkit runs only functions defined in your own files "
                f"(or pass --allow-module {module_name.split('.')[0]} to allow an installed "
                "package)"
            )
    module = _import_from(module_name, root, where)
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(f"{where}: module {module_name!r} has no function {function_name!r}")
    if not inspect.isfunction(function) or function.__module__ != module.__name__:
        raise ConfigError(
            f"{where}: {spec!r} is a {type(function).__name__} defined in "
            f"{getattr(function, '__module__', '?')}, not a function defined in {module_name}; "
            "name a plain Python function (def) written in that file"
        )
    return function


def check_arguments(function: Callable[..., Any], args: Mapping[str, Any], where: str) -> None:
    """Refuse argument names ``function`` does not take (unless it takes ``**kwargs``)."""
    params = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [str(k) for k in args if k not in known]
    if unknown:
        raise ConfigError(
            f"{where}: {function.__name__}() takes no argument(s) {', '.join(unknown)}; its "
            f"arguments are: {', '.join(known) or '(none)'}"
        )
