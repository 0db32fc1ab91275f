"""Shared by the command-line tests: a check that a help text leaves nothing blank."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest


def _assert_no_empty_placeholder(help_text: str) -> None:
    """Help text with nothing where a value should be: ``"Runtime ."``, ``"()"``, ``"[]"`` (rich
    reads ``[default: ...]`` in a help string as a markup tag and drops it)."""
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", help_text).split())
    empty = re.findall(r"\S+ [.,;:](?= |$)|\(\s*\)|\[\s*\]", flat)
    assert not empty, f"empty placeholder(s) {empty} in: {flat}"


@pytest.fixture
def assert_help_complete() -> Callable[[str], None]:
    """``assert_help_complete(done.stdout)`` fails on an empty placeholder in a help text."""
    return _assert_no_empty_placeholder
