"""Skip the conformance cases of a registered runtime whose optional package is not installed.

CI installs every extra (``.ci/run``), so there all of them run; a developer without, say,
``slimkit[litert]`` sees those cases skipped with the install command instead of failures.
"""

from __future__ import annotations

import pytest

from slimkit.runtime import runtime_info


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("runtime") if callspec is not None else None
        if not isinstance(name, str):
            continue
        runner = runtime_info(name).runner
        if not runner.available():
            item.add_marker(
                pytest.mark.skip(reason=f"{name} is not installed ({runner.install_hint})")
            )
