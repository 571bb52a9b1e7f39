"""`lab gradient-noise`: the full-batch gradient, the mini-batch errors and the 1/sqrt(B) rule, then the run."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.lab import LabOptions, gradient_noise, run_experiment
from mnistlab.models import MLP as TorchMLP
from mnistlab.scratch import MLP, to_state_dict


def small_problem(n=60, features=20, seed=0):
    rng = np.random.default_rng(seed)
    net = MLP(hidden=(8,), in_features=features, seed=seed, dtype=np.float64)
    return net, rng.standard_normal((n, features)), rng.integers(0, 10, n)


def test_full_gradient_is_torchs_gradient_of_the_mean_loss_over_all_images():
    net, x, y = small_problem(n=50)
    full = gradient_noise.full_gradient(net, x, y, chunk=16)  # chunks of 16, 16, 16 and 2 images
    model = TorchMLP(hidden=(8,), dropout=0.0, in_features=20).double()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(net).items()})
    F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    expected = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    assert np.abs(full - expected).max() <= 1e-12


def test_per_image_variance_is_the_mean_squared_distance_of_single_image_gradients():
    net, x, y = small_problem(n=12)
    full = gradient_noise.full_gradient(net, x, y)
    singles = [gradient_noise.flat_gradient(net, x[i : i + 1], y[i : i + 1]) for i in range(12)]
    np.testing.assert_allclose(np.mean(singles, axis=0), full, atol=1e-14)  # G is the mean of the g_i
    expected = np.mean([np.sum((g - full) ** 2) for g in singles])
    assert abs(gradient_noise.per_image_variance(net, x, y, full) - expected) <= 1e-12 * expected


def test_batch_errors_follow_the_one_over_sqrt_b_rule_and_vanish_at_the_full_batch():
    net, x, y = small_problem(n=200)
    result = gradient_noise.measure(net, x, y, [1, 4, 16, 64, 200], repeats=300, seed=1)
    rows = {row["batch_size"]: row for row in result["rows"]}
    for b in (1, 4, 16, 64):  # the RMS over 300 random batches matches the rule within sampling noise
        assert abs(rows[b]["rms_relative_error"] / rows[b]["rule_relative_error"] - 1) < 0.15, b
    assert rows[1]["rms_relative_error"] > 3 * rows[16]["rms_relative_error"]  # 1/sqrt(16) = 1/4, not flat
    assert rows[200]["relative_error"][2] < 1e-12 and rows[200]["rule_relative_error"] == 0.0  # g_N is G
    assert abs(rows[200]["cosine"][1] - 1) < 1e-12
    assert rows[1]["cosine"][1] < rows[16]["cosine"][1] < rows[64]["cosine"][1]


def test_experiment_writes_figure_report_and_numbers(tmp_path, monkeypatch):
    real = gradient_noise.settings
    tiny = {"hidden": [16], "train_subset": 300, "batch_sizes": [1, 16, 300], "repeats": 3, "train_epochs": 1}
    monkeypatch.setattr(gradient_noise, "settings", lambda quick: real(quick) | tiny)
    out = tmp_path / "gn"
    run_experiment("gradient-noise", LabOptions(quick=True, out=out))
    for name in (
        "gradient_noise.png",
        "results.csv",
        "results.json",
        "report.html",
        "report.md",
        "config.json",
    ):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"at initialisation", "after training"}
    assert results["after training"]["val_accuracy"] > results["at initialisation"]["val_accuracy"]
    assert [row["batch_size"] for row in results["after training"]["rows"]] == [1, 16, 300]
