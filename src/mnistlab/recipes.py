"""Each model's default training recipe: a full :class:`TrainConfig` fixed in advance.

A recipe never looks at the test set: epochs and schedule are fixed, and the best epoch is chosen on the
validation split. `mnistlab train --model NAME` starts from ``recipe(NAME)`` and applies the user's flags
on top. Recipes were chosen on validation accuracy (seeded 5,000-image split); the test figures they reach
are in BENCHMARKS.md, with the command that measured them.
"""

from __future__ import annotations

from typing import Literal

from mnistlab.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, TrainConfig
from mnistlab.errors import ConfigError

Budget = Literal["default", "long"]


def _sgd(lr: float) -> OptimConfig:
    """SGD with Nesterov momentum 0.9, L2 5e-4 and a one-cycle schedule (warm-up over the first 25 %)."""
    return OptimConfig(
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        warmup=0.25,
    )


def _cnn() -> TrainConfig:
    # One epoch of the 16/32/64 FastCNN at batch 128 (430 steps), peak lr 0.1, channels_last (oneDNN's fast
    # layout for these convolutions). Chosen on validation accuracy (seeds 0-7, never the test set): 98.97 %
    # mean against 99.02 % at batch 64 / lr 0.05, a difference inside the seed-to-seed spread (0.1 pp), for
    # ~18 % less training time (fewer, larger steps use the cores better). Batch 128 at lr 0.07 or 0.15, and a
    # stride-2 first convolution instead of conv + max-pool, were no better on validation. Time and test
    # accuracy over 5 seeds: BENCHMARKS.md.
    return TrainConfig(
        model=ModelConfig(name="cnn"), optim=_sgd(0.1), epochs=1, batch_size=128, channels_last=True
    )


def _mlp() -> TrainConfig:
    # 784-256-128-10, Adam (fused kernel) at batch 256, peak lr 5e-3, 5 epochs, no dropout. Chosen on
    # validation: 98.17 % mean (seeds 0-2) against 98.41 % (seeds 0-1) for the earlier 512-256 net at lr 3e-3, for about
    # half the training time; 512-256 at batch 512 (98.14 %, 5 epochs) and 256-128 for 4 epochs (97.98 %)
    # were slower or worse. Over 5 epochs dropout costs more time (~20 % of a step) than it gains.
    return TrainConfig(
        model=ModelConfig(name="mlp", hidden=(256, 128), dropout=0.0),
        optim=OptimConfig(optimizer="adam", lr=5e-3, weight_decay=0.0, schedule="onecycle", warmup=0.25),
        epochs=5,
        batch_size=256,
    )


def _lenet5() -> TrainConfig:
    return TrainConfig(model=ModelConfig(name="lenet5"), optim=_sgd(0.05), epochs=4, batch_size=64)


def _lenet_wide() -> TrainConfig:
    # channels_last made the convolutions 25-35 % faster on this CPU (oneDNN), at equal accuracy.
    return TrainConfig(
        model=ModelConfig(name="lenet-wide"), optim=_sgd(0.05), epochs=3, batch_size=128, channels_last=True
    )


def _pytorch_example() -> TrainConfig:
    # The network of pytorch/examples; bench/ reproduces that example's own recipe (Adadelta, StepLR).
    return TrainConfig(model=ModelConfig(name="pytorch-example"), optim=_sgd(0.05), epochs=3, batch_size=128)


# ---- long budget: distortions, a schedule and regularisation, for committee members (issue 14) ------------
# Chosen on the validation split only; the search, with every command and figure, is docs/recipe-search.md.
# "Long" means about 12 minutes of one CPU core per run (a committee member), not the seconds of the defaults.


def _distorted() -> AugmentConfig:
    # Affine (rotation 10 deg, zoom 10 %, shear 10 deg, shift 2 px) and elastic (alpha 34 px, sigma 6 px) in one
    # sampling grid: the defaults of AugmentConfig.
    return AugmentConfig(kind="both")


def _deep_cnn_long() -> TrainConfig:
    # DeepCNN 16/32/64 (11 MFLOP/image), 15 epochs of one-cycle SGD at peak lr 0.1, batch 128, distortions
    # (both). Validation (seed 0's split): 99.52 %, against 99.46 % for 25 epochs, 99.50 % for width 1.5 at
    # 10 epochs (the same CPU time) and 99.46 % for lenet-wide at 15 epochs (s1-s4 in docs/recipe-search.md).
    # ~25 s/epoch on one idle core: ~7 minutes per member.
    return TrainConfig(
        model=ModelConfig(name="deep-cnn"),
        optim=_sgd(0.1),
        augment=_distorted(),
        epochs=15,
        batch_size=128,
        channels_last=True,
    )


def _lenet_wide_long() -> TrainConfig:
    # The lecture's wide LeNet with distortions (both), 20 epochs of one-cycle SGD at peak lr 0.05, batch 128,
    # dropout 0.25 in its two hidden layers: validation 99.56 %, against 99.46 % for 15 epochs without dropout
    # (s5, s2 in docs/recipe-search.md). ~32 s/epoch on one idle core: ~11 minutes.
    config = _lenet_wide()
    config.model.dropout = 0.25
    config.augment = _distorted()
    config.epochs = 20
    return config


_RECIPES = {
    "cnn": _cnn,
    "mlp": _mlp,
    "lenet5": _lenet5,
    "lenet-wide": _lenet_wide,
    "pytorch-example": _pytorch_example,
    # deep-cnn was built for the long budget; its default recipe is the long one.
    "deep-cnn": _deep_cnn_long,
}
_LONG_RECIPES = {"lenet-wide": _lenet_wide_long, "deep-cnn": _deep_cnn_long}
# The best member recipe found (accuracy per CPU minute): what a committee trains when no model is named.
COMMITTEE_MODEL = "deep-cnn"


def recipe(model: str = "cnn", budget: Budget = "default") -> TrainConfig:
    """A fresh copy of ``model``'s recipe for ``budget`` (callers may mutate it).

    ``"default"``: the short recipe each model has (seconds to minutes). ``"long"``: distortions, a schedule and
    regularisation for the best accuracy, ~10 minutes of one CPU core; only some models have one.
    """
    table = _RECIPES if budget == "default" else _LONG_RECIPES if budget == "long" else None
    if table is None:
        raise ConfigError(f"unknown recipe budget {budget!r}; choose default or long")
    try:
        return table[model]()
    except KeyError:
        if model in _RECIPES:
            raise ConfigError(
                f"model {model!r} has no {budget}-budget recipe; models with one: {', '.join(table)}"
            ) from None
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(_RECIPES)}") from None


__all__ = [
    "COMMITTEE_MODEL",
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "recipe",
]
