"""Compatibility import: the training loop lives in :mod:`xlm.train` (``from xlm.trainer import Trainer``)."""

from xlm.train import LossModule, Trainer, TrainState

__all__ = ["LossModule", "TrainState", "Trainer"]
