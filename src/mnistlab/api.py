"""The Python API: the same verbs as the CLI, for notebooks and scripts.

>>> import mnistlab
>>> run = mnistlab.train(mnistlab.recipe("cnn"))      # trains, writes runs/<stamp>-cnn/
>>> run.summary["test_accuracy"]
>>> run = mnistlab.load_run("runs/...")                # later, without retraining
>>> run.evaluate()["confusion_matrix"]
>>> run.predict(images_uint8_N_28_28).argmax(1)
>>> committee = mnistlab.train(mnistlab.recipe("committee"))  # 5 members in RUN/members/K, combined
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.recipes import recipe
from mnistlab.runs import Run, load_run, read_config
from mnistlab.training.committee import train_committee
from mnistlab.training.fit import EpochCallback, fit
from mnistlab.training.progress import Reporter


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> Run:
    """Train ``config`` (default: the cnn recipe), or continue the interrupted run folder ``resume``.

    ``config.engine = "numpy"`` trains with the NumPy engine (:mod:`mnistlab.scratch`) into a normal run
    folder; its own recipe is ``recipe("mlp", engine="numpy")``.

    On resume ``config`` defaults to the run's own. A config given with ``resume`` must match the run's,
    except for the fields that may change on resume (e.g. more epochs); any other difference is a
    ConfigError naming the fields, never silently ignored. ``overwrite``: replace the earlier run (or
    committee) in ``config.out`` (by default a non-empty folder is refused).

    ``config.members = N`` (N >= 2) trains a committee: N complete runs in RUN/members/K combined into one
    model (:mod:`mnistlab.training.committee`); its Run's model is a :class:`mnistlab.models.Committee`.
    """
    if config is None:
        config = read_config(resume) if resume is not None else recipe()
    if config.members > 1 or (resume is not None and read_config(resume).members > 1):
        if callbacks:
            raise ConfigError("epoch callbacks belong to one run; a committee's members are separate runs")
        return train_committee(config, resume=resume, overwrite=overwrite, reporter=reporter)
    return fit(config, resume=resume, overwrite=overwrite, reporter=reporter, callbacks=callbacks)


__all__ = ["Run", "TrainConfig", "load_run", "recipe", "train"]
