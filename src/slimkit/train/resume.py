"""Resumable training: the loop's whole state after an epoch, in one file, read without pickle.

The file holds the weights, the optimizer's state, the epoch and step reached, every random
generator the loop draws from (shuffling, dropout, augmentation), the best weights so far and
the history, so that a run killed after epoch *k* and started again ends with the same weights as
one that was never killed. It is written with ``torch.save`` to a temporary file that replaces the
old one (a kill leaves the previous epoch's file, never a torn one) and read back with
``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from typing import Any

import torch

from slimkit.errors import CheckpointError
from slimkit.io import write_atomic

logger = logging.getLogger(__name__)

FORMAT = "slimkit.train-state/1"


def _config_text(run: Any) -> str:
    return json.dumps(run.config.to_dict(), sort_keys=True, default=str)


def save_resume_state(path: str | os.PathLike[str], run: Any) -> None:
    """Write ``run``'s state (a ``slimkit.train.loop._Run``) to ``path`` atomically."""
    augmenter = run.augmenter
    body = {
        "format": FORMAT,
        "config": _config_text(run),
        "model": run.model.state_dict(),
        "optimizer": run.state.optimizer.state_dict(),
        "step": run.state.step,
        "history": [asdict(h) for h in run.state.history],
        "best_weights": run.best_weights,
        "best_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "epochs_without_gain": run.epochs_without_gain,
        "stopped_early": run.stopped_early,
        "shuffle_rng": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "augment_rng": augmenter.generator.get_state() if augmenter is not None else None,
        "augment_np_rng": (
            json.dumps(augmenter.rng.bit_generator.state) if augmenter is not None else None
        ),
    }
    write_atomic(path, lambda tmp: torch.save(body, tmp))


def load_resume_state(path: str | os.PathLike[str], run: Any) -> None:
    """Restore ``run`` from ``path``; a file of another config or format is refused."""
    from slimkit.train.loop import EpochStats

    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: unpickling is refused, not run
        raise CheckpointError(
            f"cannot resume training from {path}: {str(error).splitlines()[0][:200]}; delete "
            "the file to train from the start"
        ) from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a slimkit training state; delete it to start over")
    if body.get("config") != _config_text(run):
        raise CheckpointError(
            f"{path} holds the state of a training with another configuration; delete it to "
            "train with this one from the start"
        )
    run.model.load_state_dict(body["model"])
    run.state.optimizer.load_state_dict(body["optimizer"])
    run.state.step = int(body["step"])
    run.state.history[:] = [EpochStats(**h) for h in body["history"]]
    run.best_weights = body["best_weights"]
    run.best_accuracy = float(body["best_accuracy"])
    run.best_epoch = int(body["best_epoch"])
    run.epochs_without_gain = int(body["epochs_without_gain"])
    run.stopped_early = bool(body["stopped_early"])
    run.generator.set_state(body["shuffle_rng"])
    torch.set_rng_state(body["torch_rng"])
    if run.augmenter is not None and body.get("augment_rng") is not None:
        run.augmenter.generator.set_state(body["augment_rng"])
        run.augmenter.rng.bit_generator.state = json.loads(body["augment_np_rng"])
    logger.info("resumed training from %s after epoch %d", path, len(run.state.history))
