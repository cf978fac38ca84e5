"""The pretraining loop (:class:`Trainer`), split by concern: step, checkpointing, reporting, state."""

from xlm.train.loss import LossModule
from xlm.train.state import TrainState
from xlm.train.trainer import Trainer

__all__ = ["LossModule", "TrainState", "Trainer"]
