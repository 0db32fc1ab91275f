"""Shared by the command-line tests: a check that a help text leaves nothing blank, and what a
library's log line looks like on the terminal."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

# a library's logger or native log reaching the terminal: absl/glog lines (``W0000 00:00:...``),
# ExecuTorch's ``[file.cpp:71]``, Python warnings (``UserWarning:``), torch.onnx's torchvision
# notes, TensorFlow/oneDNN banners, LiteRT's delegate line
LIBRARY_LINE = re.compile(
    r"^[WIEF]\d{4} \d\d:\d\d|\.(?:cpp|cc|h):\d+\]|\b\w*Warning: |torchvision|oneDNN|"
    r"tensorflow|TF_ENABLE|absl::|^\s*warnings\.warn|XNNPACK delegate",
    flags=re.M,
)


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
