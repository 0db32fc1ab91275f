"""Firmware export for TFLite Micro: the files, the C that compiles, the numbers in the header.

The C source is compiled with ``gcc -c -Wall -Werror``, the header's C++ resolver helper with
``g++``, and a small C program linked against the source prints the model array back: it must be
the ``.tflite`` byte for byte, 16-byte aligned.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from slimkit.data import Dataset
from slimkit.errors import ConfigError, ExportError
from slimkit.export import McuExportResult, export
from slimkit.measure.mcu import probe_arena
from slimkit.runtime import load_runtime
from slimkit.runtime.tflite_graph import read_tflite_graph
from slimkit.train import save_checkpoint

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed")
pytest.importorskip("litert_torch", reason="litert-torch is not installed")

GCC = shutil.which("gcc")
GXX = shutil.which("g++")

DUMP_MODEL = """
#include <stdint.h>
#include <stdio.h>
#include "lenet5-int8.h"
int main(void) {
  if (((uintptr_t)lenet5_int8_model) % 16 != 0) return 2;
  if (lenet5_int8_model_len != LENET5_INT8_MODEL_BYTES) return 3;
  fwrite(lenet5_int8_model, 1, lenet5_int8_model_len, stdout);
  return 0;
}
"""

RESOLVER_STUB = """
#include "lenet5-int8.h"
struct Resolver {  // the subset of tflite::MicroMutableOpResolver this model needs
  int calls = 0;
#define METHOD(name) int name() { ++calls; return 0; }
  LENET5_INT8_FOR_EACH_OPERATOR(METHOD)
};
int registered() {
  Resolver resolver;
  return lenet5_int8_register_operators(resolver) == 0 ? resolver.calls : -1;
}
"""


@pytest.fixture(scope="module")
def firmware(trained_lenet: torch.nn.Module, digits: Dataset, tmp_path_factory) -> McuExportResult:
    folder = tmp_path_factory.mktemp("firmware")
    calibration = digits.train.x.numpy()[:256]
    result = export(
        trained_lenet,
        folder / "lenet5-int8.tflite",
        format="tflite-micro",
        calibration_data=calibration,
    )
    assert isinstance(result, McuExportResult)
    return result


def _compile(compiler: str | None, *args: str | Path) -> None:
    if compiler is None:
        pytest.skip("no C/C++ compiler on this machine")
    done = subprocess.run([compiler, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_writes_tflite_c_source_and_header(firmware: McuExportResult) -> None:
    assert firmware.path.is_file() and firmware.c_source and firmware.header
    assert firmware.c_source.name == "lenet5-int8.c" and firmware.header.name == "lenet5-int8.h"
    assert firmware.quantizer == "slimkit" and firmware.batch_size == 1
    assert sorted(p.name for p in firmware.path.parent.iterdir()) == [
        "lenet5-int8.c",
        "lenet5-int8.h",
        "lenet5-int8.tflite",
    ]
    json.dumps(firmware.to_dict())


def test_c_source_compiles_with_warnings_as_errors(
    firmware: McuExportResult, tmp_path: Path
) -> None:
    assert firmware.c_source is not None
    _compile(GCC, "-c", "-Wall", "-Werror", firmware.c_source, "-o", tmp_path / "model.o")
    _compile(
        GCC,
        "-c",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-pedantic",
        "-Werror",
        firmware.c_source,
        "-o",
        tmp_path / "model99.o",
    )


def test_c_array_is_the_model_byte_for_byte(firmware: McuExportResult, tmp_path: Path) -> None:
    assert firmware.c_source is not None
    main = tmp_path / "dump.c"
    main.write_text(DUMP_MODEL)
    program = tmp_path / "dump"
    _compile(
        GCC, "-Wall", "-Werror", "-I", firmware.path.parent, main, firmware.c_source, "-o", program
    )
    done = subprocess.run([str(program)], capture_output=True, timeout=60)
    assert done.returncode == 0  # 2: not 16-byte aligned; 3: length differs
    assert done.stdout == firmware.path.read_bytes()


def test_header_resolver_helper_registers_every_operator(
    firmware: McuExportResult, tmp_path: Path
) -> None:
    source = tmp_path / "resolver.cc"
    source.write_text(RESOLVER_STUB)
    _compile(
        GXX,
        "-c",
        "-Wall",
        "-Werror",
        "-I",
        firmware.path.parent,
        source,
        "-o",
        tmp_path / "resolver.o",
    )
    header = firmware.header.read_text() if firmware.header else ""
    operators = firmware.memory["operators"]
    assert f"#define LENET5_INT8_OPERATOR_COUNT {len(operators)}" in header
    assert "X(AddConv2D)" in header and "X(AddFullyConnected)" in header


def test_header_numbers_match_the_file(firmware: McuExportResult) -> None:
    header = firmware.header.read_text() if firmware.header else ""

    def value(name: str) -> str:
        found = re.search(rf"#define LENET5_INT8_{name} \(?(-?[\w.+-]+?)u?f?\)?$", header, re.M)
        assert found, name
        return found.group(1)

    assert int(value("ARENA_BYTES")) == firmware.arena_bytes == probe_arena(firmware.path)
    assert int(value("MODEL_BYTES")) == firmware.path.stat().st_size
    graph = read_tflite_graph(firmware.path)
    x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    assert float(value("INPUT_SCALE")) == pytest.approx(x.scales[0], rel=1e-7)
    assert int(value("INPUT_ZERO_POINT")) == x.zero_points[0]
    assert float(value("OUTPUT_SCALE")) == pytest.approx(y.scales[0], rel=1e-7)
    assert int(value("OUTPUT_ZERO_POINT")) == y.zero_points[0]
    assert int(value("INPUT_BYTES")) == 64 and int(value("OUTPUT_BYTES")) == 10
    assert firmware.flash_bytes == firmware.memory["flash_bytes"] > firmware.file_bytes


def test_fp32_without_calibration_and_int8_without_it(
    trained_lenet: torch.nn.Module, tmp_path: Path
) -> None:
    result = export(trained_lenet, tmp_path / "f.tflite", format="tflite-micro")
    assert isinstance(result, McuExportResult) and result.quantizer is None
    assert result.memory["int8"] is False
    header = result.header.read_text() if result.header else ""
    assert "#define F_INPUT_IS_INT8 0" in header and "F_INPUT_SCALE" not in header
    with pytest.raises(ConfigError, match="int8 needs calibration_data"):
        export(trained_lenet, tmp_path / "g.tflite", format="tflite-micro", precision="int8")


def test_unsupported_operator_stops_before_writing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 10)).eval()
    folder = tmp_path / "out"
    with pytest.raises(ExportError, match=r"layer 2 \(GELU\) uses operator GELU.*hint"):
        export(model, folder / "g.tflite", format="tflite-micro", input_shape=(1, 8, 8))
    assert not folder.exists() or list(folder.iterdir()) == []


def test_cli_export_for_tflite_micro(
    trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    from slimkit.cli import app

    checkpoint = save_checkpoint(
        trained_lenet, tmp_path / "m.safetensors", metadata={"data": digits.config.to_dict()}
    )
    done = CliRunner().invoke(
        app, ["export", str(checkpoint), "--runtime", "tflite-micro"], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "m.tflm.tflite.json").read_text())
    assert summary["parity"]["reference"] == "litert"
    assert summary["parity"]["argmax_agreement"] >= 0.999
    assert summary["export"]["arena_bytes"] > 0 and (tmp_path / "m.tflm.h").is_file()
    runner = load_runtime("tflite-micro", tmp_path / "m.tflm.tflite")
    assert runner.run(digits.test.x.numpy()[:3]).shape == (3, 10)
