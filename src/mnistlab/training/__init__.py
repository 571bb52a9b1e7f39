"""Training: optimisers, schedules, the epoch loop, early stopping, checkpoints and the run folder."""

from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.loop import evaluate, predict_logits, train_one_epoch
from mnistlab.training.optim import build_optimizer, build_scheduler, lr_multiplier
from mnistlab.training.run import Run, load_run

__all__ = [
    "EarlyStopping",
    "Run",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "load_run",
    "lr_multiplier",
    "predict_logits",
    "train_one_epoch",
]
