"""Train the mlp with the NumPy engine (:mod:`mnistlab.scratch`) on exactly what the torch path would use.

Given a :class:`TrainConfig`, :func:`train_numpy` takes from the torch path everything that is not the
network's arithmetic: the data split and preprocessing (:func:`prepare_data`), the initial weights
(``build_model`` after ``torch.manual_seed(config.seed)``, as :func:`mnistlab.training.fit.fit` does), each
epoch's batch order (``torch.randperm`` from a generator seeded with ``config.seed + 1``, as
:meth:`TensorSplit.batches` draws it) and the per-step learning rate (:func:`lr_multiplier`). So a NumPy run
and ``mnistlab train`` with the same config follow the same trajectory, up to float rounding; the tests check
the per-step losses. Writing a run folder from the result (``to_torch_model``) is left to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.models import build_model
from mnistlab.scratch import MLP, SGD, FitResult, fit, load_state_dict, to_state_dict
from mnistlab.training.optim import lr_multiplier
from mnistlab.training.trainer import Splits, prepare_data, step_cap


def check_config(config: TrainConfig) -> None:
    """The engine trains the lecture's MLP with SGD on the CPU: say clearly what else a config asks for."""
    problems = [
        (config.model.name != "mlp", f"model {config.model.name!r} (only mlp)"),
        (config.optim.optimizer != "sgd", f"optimizer {config.optim.optimizer!r} (only sgd)"),
        # None would mean the torch mlp's default dropout (0.2): the run folder must say what was trained
        (config.model.dropout != 0.0, f"dropout {config.model.dropout} (set it to 0)"),
        (config.optim.label_smoothing > 0, "label smoothing"),
        (config.amp or config.compile, "--amp / --compile"),
    ]
    bad = [what for failed, what in problems if failed]
    if bad:
        raise ConfigError(f"the numpy engine does not support: {'; '.join(bad)}")


def initial_mlp(config: TrainConfig, dtype: type = np.float32) -> MLP:
    """The NumPy MLP holding the very weights ``mnistlab train`` would start from with this config."""
    torch.manual_seed(config.seed)  # as fit() does before building the model
    model = build_model("mlp", hidden=config.model.hidden, dropout=0.0, width=config.model.width)
    hidden = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    net = MLP(hidden=hidden, dtype=dtype)
    load_state_dict(net, {k: v.numpy() for k, v in model.state_dict().items()})
    return net


def torch_orders(n: int, seed: int) -> Iterator[np.ndarray]:
    """Each epoch's permutation of 0..n-1, drawn as fit() draws it: one randperm per epoch from seed + 1."""
    generator = torch.Generator().manual_seed(seed + 1)
    while True:
        yield torch.randperm(n, generator=generator).numpy()


def as_arrays(split, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed TensorSplit as (x (N, 784), labels (N,) int64) NumPy arrays on the CPU."""
    x = split.images.detach().cpu().reshape(len(split), -1).numpy().astype(dtype, copy=False)
    return x, split.labels.cpu().numpy()


@dataclass
class NumpyRun:
    net: MLP
    result: FitResult
    splits: Splits  # the torch path's preprocessed data (and its Preprocessor, for the run folder)


def train_numpy(config: TrainConfig, splits: Splits | None = None, dtype: type = np.float32) -> NumpyRun:
    """Train ``config``'s mlp with the NumPy engine; the best epoch (validation) is restored. No test scoring."""
    check_config(config.validate())
    splits = splits or prepare_data(config, torch.device("cpu"), progress=False)
    train = as_arrays(splits.train, dtype)
    val = as_arrays(splits.val, dtype) if splits.val is not None else None
    net = initial_mlp(config, dtype)
    o = config.optim
    sgd = SGD(
        net.parameters(),
        momentum=o.momentum,
        nesterov=o.nesterov and o.momentum > 0,
        weight_decay=o.weight_decay,
    )
    steps_per_epoch = splits.train.num_batches(config.batch_size)
    multiplier = lr_multiplier(o, steps_per_epoch, steps_per_epoch * config.epochs)
    result = fit(
        net,
        sgd,
        train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=lambda step: o.lr * multiplier(step),
        val=val,
        orders=torch_orders(len(train[0]), config.seed),
        max_steps=step_cap(config.max_steps),
        monitor=config.monitor,
    )
    return NumpyRun(net, result, splits)


def to_torch_model(net: MLP) -> nn.Module:
    """The torch MLP (no dropout) holding ``net``'s weights: for predict/serve/report and the run folder."""
    model = build_model("mlp", hidden=net.hidden, dropout=0.0)
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in to_state_dict(net).items()})
    return model


def numpy_recipe() -> TrainConfig:
    """The NumPy engine's default recipe: 784-100-100-10, SGD + Nesterov 0.9, one-cycle to lr 0.1, batch 128, 8 epochs.

    Chosen on validation accuracy only (seeded 5,000-image split, seeds 0-1, ``bench/scratch_recipe.py``,
    raw results in ``bench/results/scratch-recipe-{1,2}.json``). Round 1: (100, 100) reached 98.20 % against
    98.28 % for (256, 128) at the same lr 0.1, a difference inside the seed spread, for 2.6x fewer FLOPs per
    image; it is also the size of the scikit-learn competitor, so the bench compares like with like. Round 2
    on (100, 100): 10 epochs 98.24 % (25 % more time), 6 epochs 98.02 %, lr 0.2 97.85 %, batch 256 98.09 %,
    weight decay 5e-4 98.18 %, batch 64 at lr 0.05 98.24 % (twice the steps). Time and test accuracy:
    ``bench/run.py`` and BENCHMARKS.md.
    """
    cfg = TrainConfig()
    cfg.model.name, cfg.model.hidden, cfg.model.dropout = "mlp", (100, 100), 0.0
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov = "sgd", 0.1, 0.9, True
    cfg.optim.weight_decay, cfg.optim.schedule, cfg.optim.warmup = 0.0, "onecycle", 0.25
    cfg.epochs, cfg.batch_size = 8, 128  # 430 steps of 128 images per epoch on 55,000
    return cfg
