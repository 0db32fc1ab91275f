"""Training: the loop, its configuration, callbacks and checkpoints."""

from slimkit.train.augment import AugmentConfig, Augmenter
from slimkit.train.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from slimkit.train.config import TrainConfig
from slimkit.train.loop import (
    Callback,
    EpochProgress,
    EpochStats,
    TrainResult,
    TrainState,
    cross_entropy_loss,
    evaluate,
    iterate_batch_indices,
    iterate_batches,
    resolve_device,
    train,
)

__all__ = [
    "AugmentConfig",
    "Augmenter",
    "Callback",
    "Checkpoint",
    "EpochProgress",
    "EpochStats",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "cross_entropy_loss",
    "evaluate",
    "iterate_batch_indices",
    "iterate_batches",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "resolve_device",
    "save_checkpoint",
    "train",
]
