"""User-facing errors.

Anything raised as a :class:`MnistlabError` is a problem with the user's input or environment (a corrupt
file, an unknown model name, no network). The CLI prints such errors on one line and exits non-zero, with no
traceback unless ``--debug`` is given. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class MnistlabError(Exception):
    """Base class for errors the user can fix; the message must say what is wrong and where."""


class DataError(MnistlabError):
    """A dataset file is missing, corrupt or inconsistent, or cannot be downloaded."""


class ConfigError(MnistlabError):
    """A configuration value is invalid (unknown model, batch size <= 0, ...)."""


class TrainingDiverged(MnistlabError):
    """The loss became NaN or infinite during training."""


class RunError(MnistlabError):
    """A run folder is missing, incomplete or unreadable."""


class WriteError(MnistlabError):
    """A file could not be written (disk full, file too large, no permission); the message names the path."""
