"""mnistlab: build, train, study and use neural networks on MNIST-format data."""

__version__ = "0.1.0"

from mnistlab.api import Run, TrainConfig, load_run, recipe, train

__all__ = ["Run", "TrainConfig", "__version__", "load_run", "recipe", "train"]
