"""Native stderr around a call: kept off the terminal, logged at DEBUG, kept with an error."""

from __future__ import annotations

import logging
import os

import pytest

from slimkit.logs import DEBUG_ENV, OwnRecordsOnly, native_output_captured


def test_what_native_code_writes_is_captured(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    # no terminal handler left on the root logger by an earlier in-process command: this test
    # is about the raw native line, which must not reach file descriptor 2
    kept = [h for h in logging.root.handlers if type(h).__module__.startswith("_pytest")]
    monkeypatch.setattr(logging.root, "handlers", kept)
    line = "[threadpool.cpp:66] Resetting threadpool to 1 threads."
    with caplog.at_level(logging.DEBUG), native_output_captured("runtime") as native:
        os.write(2, f"{line}\n".encode())
    assert native.captured and native.text == f"{line}\n"
    assert capfd.readouterr().err == ""
    # a record for the program's own logging (slimkit --debug lets the text through instead)
    assert [r.getMessage() for r in caplog.records if r.name == "slimkit.native"] == [
        f"runtime wrote to stderr:\n{line}"
    ]
    os.write(2, b"after\n")  # the descriptor is back
    assert capfd.readouterr().err == "after\n"


def test_an_error_keeps_the_native_text(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(RuntimeError) as caught, native_output_captured("litert"):
        os.write(2, b"ERROR: tensor 3 has no data\n")
        raise RuntimeError("failed to allocate tensors")
    notes = getattr(caught.value, "__notes__", None)
    if notes is not None:  # Python 3.11+
        assert notes == ["litert wrote to stderr:\nERROR: tensor 3 has no data"]
    assert capfd.readouterr().err == ""


def test_debug_lets_native_output_through(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with native_output_captured("runtime") as native:
        os.write(2, b"native line\n")
    assert not native.captured
    assert capfd.readouterr().err == "native line\n"


def test_other_libraries_records_pass_only_with_debug() -> None:
    def record(name: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, "text", None, None)

    quiet, debug = OwnRecordsOnly(debug=False), OwnRecordsOnly(debug=True)
    assert quiet.filter(record("slimkit.search")) and quiet.filter(record("slimkit"))
    assert not quiet.filter(record("torch.onnx")) and not quiet.filter(record("py.warnings"))
    assert not quiet.filter(record("slimkitten"))
    assert debug.filter(record("torch.onnx"))
