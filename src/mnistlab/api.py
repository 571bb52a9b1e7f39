"""The Python API: the same verbs as the CLI, for notebooks and scripts.

>>> import mnistlab
>>> run = mnistlab.train(mnistlab.recipe("cnn"))      # trains, writes runs/<stamp>-cnn/
>>> run.summary["test_accuracy"]
>>> run = mnistlab.load_run("runs/...")                # later, without retraining
>>> run.evaluate()["confusion_matrix"]
>>> run.predict(images_uint8_N_28_28).argmax(1)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mnistlab.config import TrainConfig
from mnistlab.errors import RunError
from mnistlab.recipes import recipe
from mnistlab.training.fit import EpochCallback, fit
from mnistlab.training.progress import Reporter
from mnistlab.training.run import Run, load_run


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    reporter: Reporter | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> Run:
    """Train ``config`` (default: the cnn recipe), or continue the interrupted run folder ``resume``."""
    if resume is not None:
        config_file = Path(resume) / "config.json"
        if not config_file.is_file():
            raise RunError(f"{resume}: not a run folder (no config.json)")
        config = TrainConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    return fit(config or recipe("cnn"), resume=resume, reporter=reporter, callbacks=callbacks)


__all__ = ["Run", "TrainConfig", "load_run", "recipe", "train"]
