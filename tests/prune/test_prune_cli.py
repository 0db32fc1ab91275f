"""``slimkit prune`` on a real checkpoint: a .sparse file, its summary, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import slimkit.cli.prune  # noqa: F401  (registers the command until cli/__init__ imports it)
from slimkit.cli import app
from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques.prune import load_sparse
from slimkit.train import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture
def checkpoint(small_mlp: nn.Module, digits: Dataset, tmp_path: Path) -> Path:
    return save_checkpoint(
        small_mlp, tmp_path / "mlp.safetensors", metadata={"data": digits.config.to_dict()}
    )


def test_prune_and_cluster_writes_a_sparse_file_and_summary(
    checkpoint: Path, digits: Dataset
) -> None:
    out = checkpoint.with_name("out.sparse")
    args = ["prune", str(checkpoint), "--sparsity", "0.8", "--epochs", "2", "--lr", "0.05"]
    args += ["--gradual", "3", "--frequency", "5", "--cluster-bits", "4", "--out", str(out)]
    result = runner.invoke(app, args, catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "huffman" in result.output and "× vs fp32" in result.output
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert [t["technique"] for t in summary["techniques"]] == [
        "magnitude_pruning",
        "weight_clustering",
    ]
    assert summary["techniques"][0]["schedule"]["n_updates"] == 3
    assert summary["file_bytes"] == out.stat().st_size
    # the file adds its metadata (data, techniques) to the header of the accounted Huffman stage
    assert summary["stages"]["stages"]["huffman"]["payload_bytes"] == summary["payload_bytes"]
    assert summary["accuracy"] >= summary["accuracy_dense"] - 0.05
    loaded = load_sparse(out)
    assert loaded.metadata["techniques"] == summary["techniques"]
    weight = loaded.model.layers[1].weight
    assert len(torch.unique(weight[weight != 0])) == 16


def test_bad_options_are_config_errors(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\); got 1.5"):
        runner.invoke(app, ["prune", str(checkpoint), "--sparsity", "1.5"], catch_exceptions=False)
    with pytest.raises(ConfigError, match="scope pattern 'conv' matches no"):
        runner.invoke(app, ["prune", str(checkpoint), "--scope", "conv"], catch_exceptions=False)
