"""Training: optimisers, schedules, the epoch loop, early stopping, checkpoints and the fit story.

Reading a finished run lives in :mod:`mnistlab.runs`, running a model in :mod:`mnistlab.inference`.
"""

from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.loop import EpochSums, train_one_epoch
from mnistlab.training.optim import build_optimizer, build_scheduler, lr_multiplier
from mnistlab.training.trainer import Trainer, build_trainer, prepare_data

__all__ = [
    "EarlyStopping",
    "EpochSums",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "build_trainer",
    "lr_multiplier",
    "prepare_data",
    "train_one_epoch",
]
