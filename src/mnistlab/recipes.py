"""Each model's default training recipe: a full :class:`TrainConfig` fixed in advance.

A recipe never looks at the test set: epochs and schedule are fixed, and the best epoch is chosen on the
validation split. `mnistlab train --model NAME` starts from ``recipe(NAME)`` and applies the user's flags
on top. The figures each recipe reaches are in BENCHMARKS.md, with the command that measured them.
"""

from __future__ import annotations

from mnistlab.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from mnistlab.errors import ConfigError


def _cnn() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(name="cnn"),
        optim=OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          schedule="onecycle", warmup=0.2, label_smoothing=0.0),
        epochs=2,
        batch_size=128,
    )


def _mlp() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(name="mlp"),
        optim=OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          schedule="onecycle", warmup=0.2),
        epochs=10,
        batch_size=128,
    )


def _lenet5() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(name="lenet5"),
        optim=OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          schedule="onecycle", warmup=0.2),
        epochs=8,
        batch_size=128,
    )


def _lenet_wide() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(name="lenet-wide"),
        optim=OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          schedule="onecycle", warmup=0.2),
        epochs=6,
        batch_size=128,
    )


def _pytorch_example() -> TrainConfig:
    # The network of pytorch/examples; bench/ reproduces that example's own recipe (Adadelta, StepLR).
    cfg = _lenet_wide()
    cfg.model = ModelConfig(name="pytorch-example")
    return cfg


_RECIPES = {
    "cnn": _cnn,
    "mlp": _mlp,
    "lenet5": _lenet5,
    "lenet-wide": _lenet_wide,
    "pytorch-example": _pytorch_example,
}


def recipe(model: str = "cnn") -> TrainConfig:
    """A fresh copy of the default recipe for ``model`` (callers may mutate it)."""
    try:
        return _RECIPES[model]()
    except KeyError:
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(_RECIPES)}") from None


__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "recipe"]
