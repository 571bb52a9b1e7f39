"""TensorBoard event files from the epoch callbacks of :func:`mnistlab.train` (optional dependency)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mnistlab.errors import ConfigError

INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'mnistlab[tensorboard]'"


def check_tensorboard() -> None:
    """Raise a one-line ConfigError saying how to install tensorboard when it is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(INSTALL_HINT)


class TensorBoardLogger:
    """Epoch callback: writes every numeric field of the metrics record as a scalar, step = epoch.

    Tags group by split: ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``; other fields
    (lr, seconds, steps) go under ``other/``. Call :meth:`close` (or use as a context manager) at the end.
    """

    def __init__(self, log_dir: str | Path) -> None:
        check_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = None  # created at the first epoch: fit() wants an empty run folder to start in

    def __call__(self, record: dict) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key == "epoch" or not isinstance(value, (int, float)):
                continue
            split, _, metric = key.partition("_")
            tag = f"{metric}/{split}" if split in ("train", "val") and metric else f"other/{key}"
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
