"""The baselines mnistlab is compared with, reproduced in our own code so that they run in the same process.

- :func:`pytorch_example`: the recipe of pytorch/examples ``mnist/main.py`` (its net, Adadelta lr 1.0, StepLR
  gamma 0.7 per epoch, batch 64, mean 0.1307 / std 0.3081, a shuffled ``DataLoader``). Like the original it
  scores the test set after every epoch; that is how its time-to-99 % is defined. Evaluation time is *not*
  counted as training time.
- :func:`sklearn_mlp`: scikit-learn's ``MLPClassifier(hidden_layer_sizes=(100, 100), solver="adam")`` with its
  defaults otherwise (max_iter 200, batch 200, tol 1e-4 over 10 iterations, no early stopping), on pixels / 255
  as in scikit-learn's own MNIST examples.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mnistlab.models import build_model, flops_per_image


@dataclass
class Arrays:
    """Raw MNIST pixels (uint8) and labels, possibly subset for the smoke suite."""

    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray  # (M, 28, 28) uint8
    test_labels: np.ndarray  # (M,) uint8


def _example_tensors(images: np.ndarray) -> torch.Tensor:
    """(N, 1, 28, 28) float32, the example's transforms: ToTensor (/255) then Normalize((0.1307,), (0.3081,))."""
    x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    return x.sub_(0.1307).div_(0.3081)


@torch.no_grad()
def _test_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()  # the example's test_batch_size is 1000
    correct = sum(
        (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
        for i in range(0, len(y), batch_size)
    )
    return correct / len(y)


def pytorch_example(
    data: Arrays,
    *,
    max_epochs: int,
    max_steps: int | None = None,
    target: float = 0.99,
    seed: int = 1,
    between_epochs: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> dict:
    """Train until the test accuracy after an epoch is >= ``target`` or ``max_epochs`` have run.

    Returns per-epoch (train seconds, test accuracy), the cumulative training seconds at the first epoch that
    reached the target (None if none did) and training throughput in images/s. ``between_epochs(epoch)`` runs
    after each epoch, outside the timed part: the harness interleaves other contenders there, so that a slow
    phase of a shared machine hits all of them alike.

    On ``device="cuda"`` it does what the example does there: model and test set on the GPU, each batch copied
    from (pinned) host memory with ``.to(device)``; its per-10-batch ``loss.item()`` logging is left out, so
    this version, if anything, runs faster than the original.
    """
    torch.manual_seed(seed)  # the example's default --seed 1
    x_train, y_train = _example_tensors(data.train_images), torch.from_numpy(data.train_labels).long()
    x_test, y_test = _example_tensors(data.test_images), torch.from_numpy(data.test_labels).long()
    x_test, y_test = x_test.to(device), y_test.to(device)
    loader = DataLoader(
        TensorDataset(x_train, y_train), batch_size=64, shuffle=True, pin_memory=device.startswith("cuda")
    )
    model = build_model("pytorch-example").to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    epochs, train_seconds, images, time_to_target = [], 0.0, 0, None
    for epoch in range(1, max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            if max_steps is not None and step >= max_steps:
                break
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            # The example returns log_softmax and calls nll_loss; cross_entropy on logits is the same loss.
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            images += y.shape[0]
        scheduler.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()  # the epoch's time is the GPU's, not the launch queue's
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        accuracy = _test_accuracy(model, x_test, y_test)  # not timed
        epochs.append({"epoch": epoch, "seconds": round(seconds, 3), "test_accuracy": accuracy})
        if accuracy >= target:
            time_to_target = round(train_seconds, 3)
        if between_epochs is not None:
            between_epochs(epoch)
        if time_to_target is not None:
            break
    return {
        "name": "pytorch/examples mnist recipe",
        "train_images": len(y_train),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 3),
        "time_to_99": time_to_target,
        "final_test_accuracy": epochs[-1]["test_accuracy"],
        "images_per_second": images / train_seconds if train_seconds else None,
        "flops_per_train_image": 3 * flops_per_image(model),
        "model": model,
    }


SKLEARN_HIDDEN = (100, 100)


def sklearn_mlp(
    data: Arrays, *, max_iter: int = 200, seed: int = 0, hidden: tuple[int, ...] = SKLEARN_HIDDEN
) -> dict:
    """Fit time and test accuracy of MLPClassifier(hidden, adam) on pixels / 255 (float32)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train = data.train_images.reshape(len(data.train_images), -1).astype(np.float32) / 255.0
    x_test = data.test_images.reshape(len(data.test_images), -1).astype(np.float32) / 255.0
    clf = MLPClassifier(hidden_layer_sizes=hidden, solver="adam", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the smoke suite stops after a few iterations
        t0 = time.perf_counter()
        clf.fit(x_train, data.train_labels)
        fit_seconds = time.perf_counter() - t0
    accuracy = float((clf.predict(x_test) == data.test_labels).mean())
    return {
        "name": f"scikit-learn MLPClassifier{tuple(hidden)} adam",
        "hidden": list(hidden),
        "train_images": len(x_train),
        "fit_seconds": round(fit_seconds, 3),
        "iterations": int(clf.n_iter_),
        "test_accuracy": accuracy,
        "classifier": clf,
    }
