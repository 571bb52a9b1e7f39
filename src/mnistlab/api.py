"""The Python API: the same verbs as the CLI, for notebooks and scripts.

>>> import mnistlab
>>> run = mnistlab.train(mnistlab.recipe("cnn"))      # trains, writes runs/<stamp>-cnn/
>>> run.summary["test_accuracy"]
>>> run = mnistlab.load_run("runs/...")                # later, without retraining
>>> run.evaluate()["confusion_matrix"]
>>> run.predict(images_uint8_N_28_28).argmax(1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mnistlab.config import TrainConfig
from mnistlab.recipes import recipe
from mnistlab.runs import Run, load_run, read_config
from mnistlab.training.fit import EpochCallback, fit
from mnistlab.training.progress import Reporter


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    reporter: Reporter | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> Run:
    """Train ``config`` (default: the cnn recipe), or continue the interrupted run folder ``resume``.

    ``config.engine = "numpy"`` trains with the NumPy engine (:mod:`mnistlab.scratch`) into a normal run
    folder; its own recipe is ``recipe("mlp", engine="numpy")``.

    On resume ``config`` defaults to the run's own. A config given with ``resume`` must match the run's,
    except for the fields that may change on resume (e.g. more epochs); any other difference is a
    ConfigError naming the fields, never silently ignored.
    """
    if config is None:
        config = read_config(resume) if resume is not None else recipe()
    return fit(config, resume=resume, reporter=reporter, callbacks=callbacks)


__all__ = ["Run", "TrainConfig", "load_run", "recipe", "train"]
