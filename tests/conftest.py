"""Shared pytest fixtures. Data fixtures first; other subsystems may add theirs below."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from mnistlab.config import TrainConfig
from mnistlab.data.idx import write_idx
from mnistlab.data.registry import MNIST_FILES
from mnistlab.recipes import recipe

if TYPE_CHECKING:
    import torch

# ---- data: synthetic MNIST-format datasets -----------------------------------------------------------------


def write_synthetic_dataset(
    directory: Path, n_train: int = 60, n_test: int = 20, *, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the four MNIST file names with random 28x28 uint8 images and labels 0-9; return the arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = MNIST_FILES[split]
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, key in ((images_name, f"{split}_images"), (labels_name, f"{split}_labels")):
            write_idx(directory / (name if gz else name.removesuffix(".gz")), arrays[key])
    return arrays


@pytest.fixture
def synthetic_dataset() -> Callable[..., dict[str, np.ndarray]]:
    """``synthetic_dataset(dir, n_train=60, n_test=20, gz=True, seed=0)`` -> the arrays it wrote."""
    return write_synthetic_dataset


# ---- training: small real-MNIST configs that keep end-to-end tests within a 2-core budget -----------------


def tiny_mlp_config(out: Path) -> TrainConfig:
    """An MLP (64 hidden) on 2,000 real MNIST images for one epoch: seconds, but the whole pipeline."""
    cfg = recipe("mlp")
    cfg.model.hidden = (64,)
    cfg.data.train_subset = 2000
    cfg.data.val_size = 1000
    cfg.epochs = 1
    cfg.quiet = True
    cfg.out = str(out)
    return cfg


@pytest.fixture
def tiny_config(tmp_path) -> TrainConfig:
    return tiny_mlp_config(tmp_path / "run")


@pytest.fixture
def interrupted_in_epoch(monkeypatch) -> Callable[[int], contextlib.AbstractContextManager[None]]:
    """``with interrupted_in_epoch(2): mnistlab.train(cfg)``: Ctrl-C as epoch 2 starts; the block expects it."""
    from mnistlab.training import trainer as trainer_module

    @contextlib.contextmanager
    def interrupted(epoch: int) -> Iterator[None]:
        real, calls = trainer_module.train_one_epoch, {"n": 0}

        def crash(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == epoch:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(trainer_module, "train_one_epoch", crash)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(trainer_module, "train_one_epoch", real)

    return interrupted


# ---- app: one small trained run shared by the app tests (predict, serve, export) -----------------------------


@pytest.fixture(scope="session")
def app_run(tmp_path_factory):
    """An MLP (64 hidden) trained 1 epoch on 2,000 real MNIST images: a few seconds, ~85-90 % accurate."""
    from mnistlab.api import load_run, train

    cfg = tiny_mlp_config(tmp_path_factory.mktemp("app") / "run")
    train(cfg)
    return load_run(cfg.out)


def step_grouped_and_alone(network, together, members, alone, xs, ys) -> torch.Tensor:
    """One optimiser step of the grouped ``network`` (optimiser ``together``) on member n's batch xs[n] (B, 1,
    28, 28) with labels ys[n], and one of each member alone (its optimiser in ``alone``) on the same batch: the
    two ways the grouped tests compare. Returns the grouped logits (N, B, 10)."""
    import torch
    import torch.nn.functional as F

    logits = network(torch.cat(xs, dim=1))
    together.zero_grad()
    sum(F.cross_entropy(logits[n], ys[n]) for n in range(len(members))).backward()
    together.step()
    for member, opt, x, y in zip(members, alone, xs, ys, strict=True):
        opt.zero_grad()
        F.cross_entropy(member(x), y).backward()
        opt.step()
    return logits
