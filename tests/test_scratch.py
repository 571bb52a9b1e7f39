"""The NumPy engine (mnistlab.scratch) against PyTorch: losses, gradients, updates, preprocessing, weights.

The engine is only worth teaching from if it computes exactly what torch computes; every test here runs the
same computation both ways. The same-trajectory training test is in test_scratch_trajectory.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config import OptimConfig
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.models import MLP as TorchMLP
from mnistlab.scratch import (
    MLP,
    SGD,
    Standardizer,
    batch_indices,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    evaluate,
    fit,
    load_state_dict,
    log_softmax,
    softmax_cross_entropy,
    to_state_dict,
)
from mnistlab.training import build_optimizer


def torch_twin(net: MLP, dtype=torch.float64) -> nn.Module:
    """mnistlab's torch MLP with the engine's weights (through the state_dict converter)."""
    model = TorchMLP(hidden=net.hidden, dropout=0.0).to(dtype)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(net).items()})
    return model


def random_batch(batch=32, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 784)).astype(dtype), rng.integers(0, 10, batch)


# ---- losses -------------------------------------------------------------------------------------------------
def test_softmax_cross_entropy_and_its_gradient_equal_torch():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((16, 10)) * 5, rng.integers(0, 10, 16)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    z = torch.from_numpy(logits).requires_grad_()
    expected = F.cross_entropy(z, torch.from_numpy(labels))
    expected.backward()
    assert abs(loss - expected.item()) <= 1e-12
    np.testing.assert_allclose(dlogits, z.grad.numpy(), rtol=0, atol=1e-15)


def test_log_softmax_survives_logits_that_overflow_exp():
    """Without the log-sum-exp shift, exp(1000) is inf and the loss is nan; with it, torch's value."""
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]], dtype=np.float32)
    expected = F.log_softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(log_softmax(logits), expected, rtol=1e-6)
    loss, _ = softmax_cross_entropy(logits, np.array([2, 1]))
    assert (
        np.isfinite(loss)
        and abs(loss - F.cross_entropy(torch.from_numpy(logits), torch.tensor([2, 1]))) < 1e-3
    )


def test_binary_cross_entropy_equals_torch_from_probabilities_and_from_logits():
    z = np.array([-30.0, -2.0, -0.1, 0.0, 0.7, 3.0, 40.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    zt, yt = torch.from_numpy(z).requires_grad_(), torch.from_numpy(y)
    expected = F.binary_cross_entropy_with_logits(zt, yt)
    expected.backward()
    loss, dz = binary_cross_entropy_with_logits(z, y)
    assert abs(loss - expected.item()) <= 1e-12
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=0, atol=1e-15)
    p = np.array([0.9, 0.6, 0.5, 0.1, 0.1, 0.9, 1.0, 0.0])  # includes the clamped log(0) cases
    yp = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    torch_bce = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(yp)).item()
    assert abs(binary_cross_entropy(p, yp) - torch_bce) <= 1e-12


# ---- gradients ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(64, 32), (48,)])
def test_float64_gradients_equal_torch_autograd(hidden):
    net = MLP(hidden=hidden, seed=3, dtype=np.float64)
    x, y = random_batch(seed=4)
    loss, _ = net.loss_and_gradients(x, y)
    model = torch_twin(net)
    expected = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    expected.backward()
    assert abs(loss - expected.item()) <= 1e-12
    torch_grads = [p.grad.numpy() for p in model.parameters()]  # net.1.weight, net.1.bias, net.3.weight, ...
    assert len(torch_grads) == len(net.gradients())
    for mine, theirs in zip(net.gradients(), torch_grads, strict=True):
        assert mine.shape == theirs.shape
        assert np.abs(mine - theirs).max() <= 1e-10


def test_gradients_agree_with_central_finite_differences():
    """dL/dw ~ (L(w + h) - L(w - h)) / 2h on a handful of weights of every layer (float64, h = 1e-6)."""
    net = MLP(hidden=(20, 12), seed=5, dtype=np.float64)
    x, y = random_batch(batch=8, seed=6)
    net.loss_and_gradients(x, y)
    grads = [g.copy() for g in net.gradients()]
    rng, h = np.random.default_rng(7), 1e-6
    for param, grad in zip(net.parameters(), grads, strict=True):
        for flat in rng.choice(param.size, size=5, replace=False):
            i = np.unravel_index(flat, param.shape)
            old = param[i]
            param[i] = old + h
            up = softmax_cross_entropy(net.forward(x), y)[0]
            param[i] = old - h
            down = softmax_cross_entropy(net.forward(x), y)[0]
            param[i] = old
            assert abs((up - down) / (2 * h) - grad[i]) <= 1e-7 + 1e-5 * abs(grad[i])


# ---- the update rule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay"),
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 5e-4), (0.5, False, 1e-2)],
)
def test_sgd_steps_equal_the_projects_torch_optimizer(momentum, nesterov, weight_decay):
    """Five steps with a different lr each, against build_optimizer's torch.optim.SGD (fused, as in training)."""
    net = MLP(hidden=(16,), seed=8, dtype=np.float64)
    model = torch_twin(net)
    cfg = OptimConfig(
        optimizer="sgd", lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    optimizer = build_optimizer(model, cfg)
    sgd = SGD(net.parameters(), momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for step, lr in enumerate([0.1, 0.05, 0.2, 0.01, 0.1]):
        x, y = random_batch(batch=16, seed=10 + step)
        net.loss_and_gradients(x, y)
        sgd.step(net.gradients(), lr)
        optimizer.param_groups[0]["lr"] = lr
        optimizer.zero_grad()
        F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
    for mine, theirs in zip(net.parameters(), model.parameters(), strict=True):
        assert np.abs(mine - theirs.detach().numpy()).max() <= 1e-12


# ---- preprocessing and batches ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_train_images() -> np.ndarray:
    return load_dataset("mnist", progress=False).train_images[:3000]


@pytest.mark.parametrize("stats", ["global", "per-pixel"])
def test_standardizer_equals_the_torch_preprocessor(mnist_train_images, stats):
    fit_on, apply_to = mnist_train_images[:2000], mnist_train_images[2000:]
    theirs = Preprocessor.fit(fit_on, mode="standardize", stats=stats)
    mine = Standardizer.fit(fit_on, per_pixel=stats == "per-pixel")
    np.testing.assert_array_equal(mine.mean, theirs.mean.numpy().reshape(mine.mean.shape))
    np.testing.assert_array_equal(mine.std, theirs.std.numpy().reshape(mine.std.shape))
    if stats == "per-pixel":
        assert mine.std.min() == 1.0  # the always-blank border pixels are clamped, not divided by 0
    np.testing.assert_array_equal(mine(apply_to), theirs(apply_to).numpy().reshape(len(apply_to), -1))


def test_batch_indices_are_contiguous_slices_and_keep_the_last_small_batch():
    order = np.array([4, 0, 3, 1, 2])
    assert [b.tolist() for b in batch_indices(order, 2)] == [[4, 0], [3, 1], [2]]


# ---- weights under torch's names ----------------------------------------------------------------------------
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_converted_weights_give_the_torch_mlp_the_same_outputs(dropout):
    net = MLP(hidden=(32, 16), seed=9)  # float32, as trained
    model = TorchMLP(hidden=(32, 16), dropout=dropout).eval()
    model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in to_state_dict(net, dropout=dropout > 0).items()}
    )
    x, _ = random_batch(batch=64, seed=11, dtype=np.float32)
    expected = model(torch.from_numpy(x).reshape(-1, 1, 28, 28)).detach().numpy()
    np.testing.assert_allclose(net.predict_logits(x), expected, rtol=1e-5, atol=1e-5)
    back = MLP(hidden=(32, 16), seed=123)  # other weights, then torch's state dict loaded into it
    load_state_dict(back, {k: v.numpy() for k, v in model.state_dict().items()}, dropout=dropout > 0)
    np.testing.assert_array_equal(back.predict_logits(x), net.predict_logits(x))


def test_load_state_dict_names_the_mismatch():
    net = MLP(hidden=(32,))
    with pytest.raises(ValueError, match="do not match"):
        load_state_dict(net, {k: v.numpy() for k, v in TorchMLP(hidden=(32, 16)).state_dict().items()})


# ---- training -----------------------------------------------------------------------------------------------
def test_fit_learns_and_restores_the_best_validation_epoch():
    """Epochs with a learning rate that blows up after epoch 2: validation falls, so epoch 2's weights return."""
    rng = np.random.default_rng(12)
    centres = rng.standard_normal((10, 784)) * 2
    y = rng.integers(0, 10, 600)
    x = (centres[y] + rng.standard_normal((600, 784))).astype(np.float32)
    train, val = (x[:500], y[:500]), (x[500:], y[500:])
    net = MLP(hidden=(32,), seed=13)
    result = fit(
        net,
        SGD(net.parameters(), momentum=0.9),
        train,
        epochs=4,
        batch_size=50,
        lr=lambda s: 0.01 if s < 20 else 5.0,
        val=val,
    )
    accuracies = [h["val_accuracy"] for h in result.history]
    assert (
        accuracies[1] > 0.9 and result.best_epoch == int(np.argmax(accuracies)) + 1 and result.best_epoch != 4
    )
    assert evaluate(net, *val)["accuracy"] == max(accuracies)  # the net holds the best epoch's weights
    assert len(result.step_losses) == sum(h["steps"] for h in result.history) == 4 * 10


def test_numpy_engine_refuses_what_it_cannot_train_in_one_line():
    from mnistlab.errors import ConfigError
    from mnistlab.recipes import recipe
    from mnistlab.training.numpy_engine import check_config, numpy_recipe

    check_config(numpy_recipe())  # its own recipe passes
    cfg = recipe("mlp")  # Adam
    cfg.model.dropout = None  # would mean the torch mlp's default dropout, 0.2
    with pytest.raises(ConfigError, match=r"--optimizer adam \(only sgd\); --dropout unset \(only 0\)"):
        check_config(cfg)
