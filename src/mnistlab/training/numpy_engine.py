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
from mnistlab.training.fit import Splits, prepare_data
from mnistlab.training.optim import lr_multiplier


def check_config(config: TrainConfig) -> None:
    """The engine trains the lecture's MLP with SGD on the CPU: say clearly what else a config asks for."""
    problems = [
        (config.model.name != "mlp", f"model {config.model.name!r} (only mlp)"),
        (config.optim.optimizer != "sgd", f"optimizer {config.optim.optimizer!r} (only sgd)"),
        (bool(config.model.dropout), f"dropout {config.model.dropout} (set it to 0)"),
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
        max_steps=config.max_steps,
        monitor=config.monitor,
    )
    return NumpyRun(net, result, splits)


def to_torch_model(net: MLP) -> nn.Module:
    """The torch MLP (no dropout) holding ``net``'s weights: for predict/serve/report and the run folder."""
    model = build_model("mlp", hidden=net.hidden, dropout=0.0)
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in to_state_dict(net).items()})
    return model
