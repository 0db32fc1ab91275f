"""Training resumes after a kill from its per-epoch state and ends where an unbroken run ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimkit.data import Dataset
from slimkit.errors import CheckpointError
from slimkit.models import create_model
from slimkit.train import Callback, TrainConfig, TrainState, train

CONFIG = TrainConfig(epochs=4, lr=3e-3, seed=3, augment={"shift": 1, "mixup_alpha": 0.2})


class Killed(Exception):
    pass


class KillAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise Killed


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", input_shape=(1, 8, 8), hidden=(32,), dropout=0.2)


def test_a_killed_training_resumes_to_the_same_weights(digits: Dataset, tmp_path: Path) -> None:
    whole = train(_model(), digits, CONFIG)
    state = tmp_path / "train.pt"
    model = _model()
    with pytest.raises(Killed):
        train(model, digits, CONFIG, callbacks=[KillAtEpoch(2)], resume_file=state)
    assert state.is_file()
    resumed = train(_model(), digits, CONFIG, resume_file=state)
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert [h.val_accuracy for h in resumed.history] == [h.val_accuracy for h in whole.history]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_a_state_of_another_config_is_refused(digits: Dataset, tmp_path: Path) -> None:
    state = tmp_path / "train.pt"
    with pytest.raises(Killed):
        train(_model(), digits, CONFIG, callbacks=[KillAtEpoch(1)], resume_file=state)
    other = TrainConfig(epochs=4, lr=1e-3, seed=3)
    with pytest.raises(CheckpointError, match="another configuration"):
        train(_model(), digits, other, resume_file=state)


def test_a_torn_state_file_is_one_clear_error(digits: Dataset, tmp_path: Path) -> None:
    state = tmp_path / "train.pt"
    state.write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(CheckpointError, match="delete the file"):
        train(_model(), digits, CONFIG, resume_file=state)
