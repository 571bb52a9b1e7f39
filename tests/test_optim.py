"""Loss and update rules against PyTorch as the reference."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.config import OptimConfig
from mnistlab.training import build_optimizer, lr_multiplier, train_one_epoch


def test_cross_entropy_is_log_softmax_plus_nll():
    torch.manual_seed(0)
    logits, labels = torch.randn(64, 10, dtype=torch.float64), torch.randint(0, 10, (64,))
    expected = F.nll_loss(F.log_softmax(logits, dim=1), labels)
    assert abs(F.cross_entropy(logits, labels).item() - expected.item()) < 1e-6
    assert (
        abs(
            nn.CrossEntropyLoss()(logits, labels).item()
            - nn.NLLLoss()(nn.LogSoftmax(1)(logits), labels).item()
        )
        < 1e-6
    )


@pytest.mark.parametrize("nesterov", [False, True])
def test_two_sgd_steps_with_momentum_match_hand_computation(nesterov):
    """train_one_epoch + build_optimizer do exactly: g = mean grad + wd*p; v = mu*v + g; p -= lr*(g + mu*v | v)."""
    torch.manual_seed(0)
    model = nn.Linear(784, 10).double()
    x = torch.randn(2, 8, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 8))
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    lr, mu, wd = 0.1, 0.9, 1e-3
    cfg = OptimConfig(optimizer="sgd", lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    flat = nn.Sequential(nn.Flatten(), model)
    train_one_epoch(flat, [(x[0], y[0]), (x[1], y[1])], build_optimizer(flat, cfg))

    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    for step in range(2):
        wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
        loss = F.cross_entropy(x[step].flatten(1) @ wr.T + br, y[step])  # mean over the batch
        gw, gb = torch.autograd.grad(loss, (wr, br))
        gw, gb = gw + wd * w, gb + wd * b
        vw, vb = mu * vw + gw, mu * vb + gb
        w = w - lr * ((gw + mu * vw) if nesterov else vw)
        b = b - lr * ((gb + mu * vb) if nesterov else vb)
    torch.testing.assert_close(model.weight.detach(), w, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), b, rtol=0, atol=1e-12)


def test_adam_is_torch_adam():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.01


def test_onecycle_rises_to_peak_then_falls_to_final():
    cfg = OptimConfig(schedule="onecycle", warmup=0.25, final_lr_fraction=0.0)
    f = lr_multiplier(cfg, steps_per_epoch=100, total_steps=400)
    assert f(0) == pytest.approx(1 / 10)
    assert f(100) == pytest.approx(1.0)
    assert f(50) < f(99) < f(100)
    assert f(399) == pytest.approx(1 / 300, abs=1e-9) and f(400) == 0.0


def torch_lrs(make_scheduler, steps: int, per: int = 1) -> list[float]:
    """The lr a torch scheduler gives each of ``steps`` steps, stepping it every ``per`` steps (peak lr 1)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if (step + 1) % per == 0 and step + 1 < steps:
            scheduler.step()
    return lrs


def test_step_schedule_is_torchs_steplr_stepped_per_epoch():
    f = lr_multiplier(
        OptimConfig(schedule="step", step_size=2, gamma=0.5), steps_per_epoch=10, total_steps=100
    )
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 100, per=10)
    assert [f(s) for s in range(100)] == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_is_torchs_cosine_annealing():
    final, total = 0.1, 101
    f = lr_multiplier(OptimConfig(schedule="cosine", final_lr_fraction=final), 10, total)
    cosine = lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total - 1, eta_min=final)  # noqa: E731
    assert [f(s) for s in range(total)] == pytest.approx(torch_lrs(cosine, total), rel=1e-9, abs=1e-12)
    assert f(200) == pytest.approx(final)  # past the end it stays at the floor


def test_onecycle_is_torchs_onecycle_one_step_later():
    """torch's OneCycleLR (linear annealing, start at peak/10) peaks at step warm - 1 and ends at `final` on the
    last step; ours peaks at step warm and is one step behind through the decay (see optim._onecycle)."""
    total, final = 400, 0.001
    f = lr_multiplier(OptimConfig(schedule="onecycle", warmup=0.25, final_lr_fraction=final), 100, total)
    one_cycle = lambda o: torch.optim.lr_scheduler.OneCycleLR(  # noqa: E731
        o,
        max_lr=1.0,
        total_steps=total,
        pct_start=0.25,
        anneal_strategy="linear",
        div_factor=10,
        final_div_factor=1 / (10 * final),
        cycle_momentum=False,
    )
    reference = torch_lrs(one_cycle, total)
    ours = [f(s) for s in range(total)]
    assert ours[0] == reference[0] == pytest.approx(0.1)
    for step in range(1, 100):  # warm-up: between torch's value at this step and the one before
        low, high = sorted((reference[step - 1], reference[step]))
        assert low - 1e-12 <= ours[step] <= high + 1e-12, step
    assert ours[100:] == pytest.approx(reference[99:-1], rel=1e-9)  # decay: exactly one step behind


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cpu_optimisers_use_the_fused_kernels(name):
    """The fused implementation is the fast path on CPU; a fallback to per-tensor ops would cost ~20 %."""
    opt = build_optimizer(nn.Linear(3, 2), OptimConfig(optimizer=name, lr=1e-3))
    assert opt.defaults["fused"] is True


def test_resumed_fused_sgd_on_channels_last_continues_exactly():
    """Checkpointed momentum buffers come back contiguous; the fused kernel needs the parameter's layout."""
    from mnistlab.training.checkpoint import optimizer_tensors, restore_optimizer

    torch.manual_seed(0)
    # Two input channels, so that the NHWC and NCHW orders of the conv weight differ.
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    model = model.to(memory_format=torch.channels_last)
    x = [torch.randn(8, 2, 28, 28).contiguous(memory_format=torch.channels_last) for _ in range(6)]
    y = torch.randint(0, 10, (6, 8))
    cfg = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    optimizer = build_optimizer(model, cfg)
    train_one_epoch(model, zip(x[:3], y[:3], strict=True), optimizer)
    tensors, meta = optimizer_tensors(optimizer)
    resumed = copy.deepcopy(model)
    resumed_optimizer = build_optimizer(resumed, cfg)
    # What a safetensors round trip returns: contiguous copies.
    contiguous = {k: v.contiguous().clone() for k, v in tensors.items()}
    restore_optimizer(resumed_optimizer, contiguous, json.loads(json.dumps(meta)))
    train_one_epoch(model, zip(x[3:], y[3:], strict=True), optimizer)
    train_one_epoch(resumed, zip(x[3:], y[3:], strict=True), resumed_optimizer)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_epoch_sums_are_the_summed_cross_entropy_of_every_image():
    """With lr 0 the weights never move, so the epoch's sums must equal one pass of plain cross-entropy:
    batches of 8 and 5 images weigh by their size, and the mean is taken once, over all 13."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()
    x, y = torch.randn(13, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (13,))
    sums = train_one_epoch(
        model, [(x[:8], y[:8]), (x[8:], y[8:])], torch.optim.SGD(model.parameters(), lr=0.0)
    )
    with torch.no_grad():
        logits = model(x)
    assert (sums.steps, sums.count) == (2, 13)
    assert sums.loss_sum == pytest.approx(F.cross_entropy(logits, y, reduction="sum").item(), rel=1e-12)
    assert sums.correct == int((logits.argmax(1) == y).sum())
    assert sums.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-12)
    assert sums.accuracy == sums.correct / 13
