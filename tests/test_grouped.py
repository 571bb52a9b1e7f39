"""Several members trained at once as one grouped network: the same members as training them one after
another (float64 to 1e-10 step by step; through the whole training run to float32 rounding), each member a
complete run folder, and an interrupted group resuming to the same members."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import mnistlab
from conftest import step_grouped_and_alone, tiny_mlp_config
from mnistlab.config import OptimConfig, TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.models import build_model
from mnistlab.models.grouped import GroupedNetwork, split_tensor
from mnistlab.recipes import recipe
from mnistlab.runs import read_steps
from mnistlab.training import grouped as grouped_module
from mnistlab.training.fit import fit
from mnistlab.training.grouped import fit_group
from mnistlab.training.optim import build_optimizer
from mnistlab.training.progress import Reporter

MODELS = {  # small widths: the grouping is the same at any width
    "mlp": dict(hidden=(32, 16), dropout=0.0),
    "lenet5": dict(),
    "lenet-wide": dict(width=0.25),
    "cnn": dict(width=0.25),
    "deep-cnn": dict(width=0.25),
}


def members_of(name: str, count: int, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [build_model(name, **MODELS[name]).double() for _ in range(count)]


def max_difference(network: GroupedNetwork, members: list[nn.Module]) -> float:
    """Largest |grouped - member| over every parameter and buffer (float ones)."""
    return max(
        (piece - tensor).abs().max().item()
        for grouped, tensors, join in network.tensor_pairs(members)
        if grouped.is_floating_point()
        for piece, tensor in zip(split_tensor(grouped, join, len(tensors)), tensors, strict=True)
    )


@pytest.mark.parametrize(
    ("name", "optimizer"), [(name, "sgd") for name in MODELS] + [("mlp", "adam"), ("cnn", "adam")]
)
def test_grouped_steps_are_the_members_own_steps_in_float64(name, optimizer):
    """Three steps, each member on its own batches: SGD with Nesterov momentum and weight decay, or Adam."""
    count = 3
    members = members_of(name, count)
    network = GroupedNetwork(members)
    assert max_difference(network, members) == 0.0
    config = OptimConfig(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, weight_decay=5e-4)
    alone = [build_optimizer(m, config) for m in members]
    together = build_optimizer(network, config)
    data = torch.Generator().manual_seed(1)
    for _ in range(3):
        xs = [torch.randn(8, 1, 28, 28, generator=data, dtype=torch.float64) for _ in range(count)]
        ys = [torch.randint(0, 10, (8,), generator=data) for _ in range(count)]
        logits = step_grouped_and_alone(network, together, members, alone, xs, ys)
        assert logits.shape == (count, 8, 10)
    assert max_difference(network, members) < 1e-10  # weights and BatchNorm running statistics


def test_pytorch_example_groups_too_in_eval_mode():
    """Its dropout is fixed at 0.25, so only the forward without dropout can match exactly."""
    torch.manual_seed(0)
    members = [build_model("pytorch-example") for _ in range(2)]
    network = GroupedNetwork(members).eval()
    x = torch.randn(4, 2, 28, 28)
    with torch.no_grad():
        out = network(x)
        for n, member in enumerate(members):
            torch.testing.assert_close(out[n], member.eval()(x[:, n : n + 1]), atol=1e-5, rtol=1e-5)


def test_layers_without_a_grouped_form_or_forward_order_are_refused():
    tanh = [nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Tanh()) for _ in range(2)]
    with pytest.raises(ConfigError, match="no grouped form of Tanh"):
        GroupedNetwork(tanh)

    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(784, 10)
            self.flat = nn.Flatten()

        def forward(self, x):
            return self.head(self.flat(x))

    with pytest.raises(ConfigError, match="not its layers in order"):
        GroupedNetwork([Backwards(), Backwards()])


# ---- through the training run ----------------------------------------------------------------------------
def member_configs(folder: Path, count: int = 3) -> list[TrainConfig]:
    configs = []
    for k in range(count):
        cfg = tiny_mlp_config(folder / f"member-{k}")
        cfg.seed, cfg.data.split_seed, cfg.epochs, cfg.threads = k, 0, 2, 1
        cfg.augment.kind = "both"
        configs.append(cfg)
    return configs


def test_fit_group_trains_the_members_that_fit_trains_one_after_another(tmp_path):
    alone = [fit(c) for c in member_configs(tmp_path / "alone")]
    console, ticks = io.StringIO(), itertools.count(step=5.0)  # a clock 5 s further at every look
    reporter = Reporter(interactive=False, stream=console, clock=lambda: next(ticks))
    together = fit_group(member_configs(tmp_path / "together"), [None] * 3, torch.device("cpu"), reporter)
    printed = console.getvalue()
    assert "* = best epoch so far" in printed  # the legend, as fit prints it
    assert re.search(r"epoch 1/2  step \d+/\d+  running loss \d\.\d{4}  [\d,]+ images/s  ETA", printed)
    timing = {"seconds", "members_at_once"}
    for a, b in zip(alone, together, strict=True):
        for name, tensor in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)
        assert {p.name for p in a.path.iterdir()} == {p.name for p in b.path.iterdir()}
        for ha, hb in zip(a.history, b.history, strict=True):
            assert hb["members_at_once"] == 3
            assert {k: v for k, v in hb.items() if k not in timing} == pytest.approx(
                {k: v for k, v in ha.items() if k not in timing}, rel=1e-5
            )
        assert b.summary["test_accuracy"] == pytest.approx(a.summary["test_accuracy"], abs=2e-4)
        steps_a, steps_b = read_steps(a.path), read_steps(b.path)  # the report's per-step curves
        assert [s["epoch"] for s in steps_b] == [1, 2]
        for sa, sb in zip(steps_a, steps_b, strict=True):
            assert sb["loss"] == pytest.approx(sa["loss"], rel=1e-4)


def test_a_grouped_committee_interrupted_resumes_to_the_same_members(tmp_path, monkeypatch):
    def committee(out: Path) -> TrainConfig:
        """The cnn (BatchNorm, channels_last: the grouped network and its momentum in that layout)."""
        cfg = tiny_mlp_config(out)
        cfg.model = recipe("cnn").model
        cfg.model.width, cfg.channels_last = 0.25, True
        cfg.members, cfg.members_at_once, cfg.epochs, cfg.threads = 3, 3, 2, 1
        cfg.augment.kind = "both"
        return cfg

    reference = mnistlab.train(committee(tmp_path / "reference"))
    summaries = [json.loads((reference.path / f"members/{k}/summary.json").read_text()) for k in range(3)]
    assert all(len(s["environment"]) and s["epochs_run"] == 2 for s in summaries)

    real, calls = grouped_module.train_group_epoch, {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    cfg = committee(tmp_path / "interrupted")
    monkeypatch.setattr(grouped_module, "train_group_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        mnistlab.train(cfg)
    monkeypatch.setattr(grouped_module, "train_group_epoch", real)
    assert all((Path(cfg.out) / f"members/{k}/last.safetensors").is_file() for k in range(3))
    resumed = mnistlab.train(resume=cfg.out)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]


def test_members_at_once_refuses_early_stopping(tmp_path):
    configs = member_configs(tmp_path)
    for c in configs:
        c.patience = 2
    with pytest.raises(ConfigError, match="early stopping"):
        fit_group(configs, [None] * 3, torch.device("cpu"))
    configs = member_configs(tmp_path)
    configs[1].optim.lr = 0.5
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        fit_group(configs, [None] * 3, torch.device("cpu"))
