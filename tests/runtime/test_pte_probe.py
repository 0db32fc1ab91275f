"""The probe process that tries a ``.pte`` file before the runner loads it
(``slimkit.runtime.pte_probe``): once per file content and process, not for files slimkit
exported itself, not again in ``measure_isolated``'s children; its logging never reaches the
terminal. (A file that crashes it: ``test_runtime_guards.py``.)"""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from slimkit.errors import RuntimeLoadError
from slimkit.export import export
from slimkit.measure.latency import LatencyConfig, _isolated_child, _verify_file_here
from slimkit.models import create_model
from slimkit.runtime import load_runtime, pte_probe

pytest.importorskip("executorch", reason="executorch is not installed")

SHAPE = (1, 8, 8)
QUICK = LatencyConfig(warmup=0, min_repeats=3, max_repeats=3, min_time_s=0.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=SHAPE, hidden=[16]).eval()
    folder = tmp_path_factory.mktemp("pte")
    return model, export(model, folder / "m.pte", format="pte", batch_size=2).path


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Nothing verified yet in this process; the files sent to the probe, in order."""
    monkeypatch.setattr(pte_probe, "_verified", set())
    asked: list[Path] = []
    ask = pte_probe._ProbeProcess.ask

    def counted(self: Any, path: Path, timeout_s: float) -> dict[str, Any]:
        asked.append(path)
        return ask(self, path, timeout_s)

    monkeypatch.setattr(pte_probe._ProbeProcess, "ask", counted)
    return asked


def test_a_valid_file_is_probed_once_and_loads(
    exported: tuple[torch.nn.Module, Path], probes: list[Path], tmp_path: Path
) -> None:
    model, path = exported
    copy = tmp_path / "copy.pte"  # the same bytes under another name: verified with it
    shutil.copyfile(path, copy)
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()
    for file, threads in ((path, 1), (path, 2), (copy, 1)):
        runner = load_runtime("executorch", file, threads=threads)
        np.testing.assert_allclose(runner.run(x), expected, rtol=1e-4, atol=1e-4)
    assert probes == [path.absolute()]


def test_the_probe_prints_nothing(
    exported: tuple[torch.nn.Module, Path], probes: list[Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """A new probe process imports ExecuTorch, whose native code logs to stderr (``cpuinfo``
    lines); the log goes to a temporary file, not to this process's terminal."""
    _, path = exported
    load_runtime("executorch", path)  # this process's own imports (and their logging) first
    pte_probe.close_probe()
    pte_probe._verified.clear()
    capfd.readouterr()
    load_runtime("executorch", path)
    assert len(probes) == 2
    err = capfd.readouterr().err
    assert "cpuinfo" not in err and "torchao" not in err


def test_files_slimkit_exported_are_not_probed(probes: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("mlp", input_shape=SHAPE, hidden=[8]).eval()
    path = export(model, tmp_path / "fresh.pte", format="pte").path
    load_runtime("executorch", path)
    assert probes == []


def test_a_hang_is_stopped_and_the_probe_goes_on(
    exported: tuple[torch.nn.Module, Path], probes: list[Path]
) -> None:
    """A file that does not answer within the timeout (here 0 s) is refused, and the probe
    process still serves the next file."""
    _, path = exported
    with pytest.raises(RuntimeLoadError, match=r"did not load and run on zeros within 0 s") as info:
        pte_probe.verify_pte(path, timeout_s=0.0)
    assert str(path) in str(info.value) and len(str(info.value).splitlines()) == 1
    assert not pte_probe.is_verified(pte_probe.file_digest(path))
    pte_probe.verify_pte(path)
    assert pte_probe.is_verified(pte_probe.file_digest(path))
    assert len(probes) == 2


def test_a_probe_that_died_is_started_again(
    exported: tuple[torch.nn.Module, Path], probes: list[Path], tmp_path: Path
) -> None:
    _, path = exported
    pte_probe.start_probe()
    probe = pte_probe._probe
    assert probe is not None
    probe.process.kill()  # the process this test started
    probe.process.wait()
    load_runtime("executorch", path)
    assert pte_probe._probe is not probe and len(probes) == 1


def test_measure_isolated_children_trust_the_parents_probe(
    exported: tuple[torch.nn.Module, Path], probes: list[Path]
) -> None:
    """The parent verifies the file before it starts a child, and passes what it verified:
    the child (run here in-process, as ``measure_isolated`` runs it in a spawned process) loads
    the file without a probe of its own."""
    _, path = exported
    verified = _verify_file_here("executorch", path)
    assert pte_probe.file_digest(path) in verified and len(probes) == 1
    pte_probe._verified.clear()  # what a fresh child process knows
    receiver, sender = multiprocessing.Pipe(duplex=False)
    x = np.zeros((2, *SHAPE), np.float32)
    _isolated_child(sender, "executorch", str(path), [x], 1, QUICK, 1, False, None, verified)
    status, payload = receiver.recv()
    assert status == "ok", payload
    assert len(probes) == 1
