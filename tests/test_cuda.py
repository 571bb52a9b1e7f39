"""The GPU path, checked against the CPU as the reference. Every test here skips without a CUDA device.

CI has no GPU; these run when one is lent (see BENCHMARKS.md, GPU section, for the command and the date).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import mnistlab
from mnistlab.config import OptimConfig
from mnistlab.data import TensorSplit
from mnistlab.models import build_model
from mnistlab.training.graphs import GraphedStep
from mnistlab.training.loop import train_one_epoch
from mnistlab.training.optim import build_optimizer, build_scheduler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SGD = OptimConfig(
    optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle"
)


def _synthetic_split(n: int, device: str, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 28, 28, generator=g)  # (n, 1, 28, 28) float32, "preprocessed"
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorSplit(images, labels).to(device)


def _sync_warnings(steps: int, amp: bool, graphs: bool) -> list[str]:
    """The synchronising CUDA calls that torch reports during one epoch of ``steps`` batches of 256.

    Batches of 256 come from gathers of 2,048 images, so 16 steps span two gathers and 4 steps one. With
    ``graphs`` the warm-up epoch also captures the CUDA graph, so the counted epoch is replays only.
    """
    torch.manual_seed(0)
    model = build_model("cnn").cuda().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, SGD)
    scheduler = build_scheduler(optimizer, SGD, 2 * steps, 1)
    step_fn = GraphedStep(model, optimizer, amp=amp) if graphs else None
    split = _synthetic_split(256 * steps, "cuda")
    order = torch.Generator().manual_seed(1)

    def epoch() -> None:
        batches = split.batches(256, shuffle=True, generator=order)
        train_one_epoch(model, batches, optimizer, scheduler, amp=amp, step_fn=step_fn)

    epoch()
    torch.cuda.synchronize()  # warm-up above: lazy CUDA/cuDNN initialisation may sync once, and is not counted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert step_fn is None or step_fn.captured
    return [str(w.message) for w in caught if "called a synchronizing" in str(w.message)]


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphs"])
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_the_epoch_loop_syncs_with_the_host_only_at_epoch_start_and_end(amp, graphs):
    few, many = _sync_warnings(4, amp, graphs), _sync_warnings(16, amp, graphs)
    # Four times the steps and not one sync more: nothing inside a step or a gather waits for the GPU. What
    # remains is the copy of the epoch's permutation to the device at its start and, at its end, the reads
    # of loss, accuracy and the per-step losses.
    assert len(few) == len(many), many
    assert len(many) <= 4, many


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_graph_replayed_steps_train_like_eager_steps(amp):
    """Two epochs of 5 full batches and one smaller one: warm-up, capture, replays, the eager odd batch."""
    torch.manual_seed(0)
    eager_model = build_model("cnn").cuda().to(memory_format=torch.channels_last)
    graph_model = build_model("cnn").cuda().to(memory_format=torch.channels_last)
    graph_model.load_state_dict(eager_model.state_dict())
    split = _synthetic_split(5 * 64 + 24, "cuda")
    histories = []
    for model, graphs in ((eager_model, False), (graph_model, True)):
        optimizer = build_optimizer(model, SGD)
        scheduler = build_scheduler(optimizer, SGD, 6, 2)
        step_fn = GraphedStep(model, optimizer, amp=amp) if graphs else None
        order = torch.Generator().manual_seed(1)
        history = []
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            for _ in range(2):
                batches = split.batches(64, shuffle=True, generator=order)
                sums = train_one_epoch(model, batches, optimizer, scheduler, amp=amp, step_fn=step_fn)
                history += sums.step_losses
        histories.append(history)
        assert step_fn is None or step_fn.captured
    assert len(histories[0]) == len(histories[1]) == 12
    assert histories[1] == pytest.approx(histories[0], rel=1e-4, abs=1e-5)
    graph_state = graph_model.state_dict()
    for name, reference in eager_model.state_dict().items():
        torch.testing.assert_close(graph_state[name], reference, rtol=1e-4, atol=1e-5, msg=name)


def test_cuda_training_steps_match_the_cpu_reference():
    """Three fused-SGD steps of the cnn on the GPU (fp32, no TF32) against the same steps on the CPU."""
    torch.manual_seed(0)
    cpu_model = build_model("cnn")
    gpu_model = build_model("cnn")
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model = gpu_model.cuda().to(memory_format=torch.channels_last)
    split = _synthetic_split(96, "cpu")
    for model in (cpu_model, gpu_model):
        device = next(model.parameters()).device
        optimizer = build_optimizer(model, SGD)
        scheduler = build_scheduler(optimizer, SGD, 3, 1)
        batches = ((x.to(device), y.to(device)) for x, y in split.batches(32, shuffle=False))
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            train_one_epoch(model, batches, optimizer, scheduler)
    assert build_optimizer(gpu_model, SGD).defaults["fused"], "the GPU path should use the fused kernel"
    gpu_state = gpu_model.state_dict()
    for name, reference in cpu_model.state_dict().items():
        torch.testing.assert_close(gpu_state[name].cpu(), reference, rtol=1e-4, atol=1e-5, msg=name)


def test_a_cuda_run_trains_saves_loads_on_cpu_and_resumes_exactly(tmp_path, interrupted_in_epoch):
    """Real MNIST subset on the GPU, mlp with dropout (so the CUDA generator must be saved for resume)."""
    cfg = mnistlab.recipe("mlp")
    cfg.model.hidden, cfg.model.dropout = (64,), 0.3
    cfg.data.train_subset, cfg.data.val_size = 2000, 1000
    cfg.epochs, cfg.quiet, cfg.device = 2, True, "cuda"
    cfg.out = str(tmp_path / "reference")
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        reference = mnistlab.train(cfg)
        assert reference.summary["environment"]["gpu"] == torch.cuda.get_device_name(0)

        cfg.out = str(tmp_path / "interrupted")
        with interrupted_in_epoch(2):
            mnistlab.train(cfg)
        resumed = mnistlab.train(resume=tmp_path / "interrupted")
    for a, b in zip(reference.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5), (a, b)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5), (a, b)

    # The checkpoint of a GPU run loads on the CPU and predicts what the GPU model predicted.
    loaded = mnistlab.load_run(reference.path, device="cpu")
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8).numpy()
    torch.testing.assert_close(
        torch.as_tensor(loaded.predict(images)),
        torch.as_tensor(reference.predict(images)).cpu(),
        atol=1e-5,
        rtol=0,
    )


def test_grouped_members_on_cuda_match_the_cpu_in_float64():
    """The grouped network of 3 cnn members: three SGD steps on CUDA equal the members' own steps (float64)."""
    from conftest import step_grouped_and_alone
    from mnistlab.models.grouped import GroupedNetwork, split_tensor

    torch.manual_seed(0)
    members = [build_model("cnn", width=0.5).double().cuda() for _ in range(3)]
    network = GroupedNetwork(members)
    alone, together = [build_optimizer(m, SGD) for m in members], build_optimizer(network, SGD)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        xs = [torch.randn(32, 1, 28, 28, generator=g, dtype=torch.float64).cuda() for _ in range(3)]
        ys = [torch.randint(0, 10, (32,), generator=g).cuda() for _ in range(3)]
        step_grouped_and_alone(network, together, members, alone, xs, ys)
    for grouped, tensors, join in network.tensor_pairs(members):
        if grouped.is_floating_point():
            for piece, tensor in zip(split_tensor(grouped, join, 3), tensors, strict=True):
                torch.testing.assert_close(piece, tensor, atol=1e-9, rtol=1e-9)


def test_a_committee_trains_at_once_on_cuda(tmp_path):
    """--members 2 on CUDA (members at once by default there): a complete committee folder, members on the GPU."""
    cfg = mnistlab.recipe("cnn")
    cfg.device, cfg.members, cfg.quiet, cfg.out = "cuda", 2, True, str(tmp_path / "committee")
    cfg.data.train_subset, cfg.data.val_size, cfg.augment.kind = 2000, 1000, "both"
    run = mnistlab.train(cfg)
    assert run.summary["members"] == 2 and 0.3 < run.summary["test_accuracy"] <= 1
    history = mnistlab.load_run(tmp_path / "committee" / "members" / "0").history
    assert history[0]["members_at_once"] == 2
