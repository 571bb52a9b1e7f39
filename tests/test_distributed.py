"""Data-parallel training on 2 CPU processes (gloo): the same model on every rank, the same result as one
process with the same global batch, the same run folder, clear failures and resume.

Ranks are started as spawned processes with torchrun's environment variables (RANK, WORLD_SIZE, ...), or
through ``mnistlab train --nproc 2``, which runs torchrun itself. Each rank uses 1 thread.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mnistlab
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError, RunError
from mnistlab.recipes import recipe
from mnistlab.training import distributed
from mnistlab.training import trainer as trainer_module

WORLD = 2
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_config(out: Path, model: str = "mlp") -> TrainConfig:
    cfg = recipe(model)
    if model == "mlp":
        cfg.model.hidden = (64,)
    cfg.data.train_subset = 2000
    cfg.data.val_size = 1000
    cfg.epochs = 1
    cfg.threads = 1
    cfg.quiet = False  # rank 0 prints; the test checks that rank 1 does not
    cfg.progress = False
    cfg.out = str(out)
    return cfg


# ---- one rank, in a spawned process ----------------------------------------------------------------------
def _rank_main(rank: int, port: int, config: dict, resume: str | None, results: str, fault: str) -> None:
    """Run mnistlab.train as rank ``rank``; write its weights, history and any error under ``results``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MNISTLAB_DIST_TIMEOUT="60",
    )
    out = Path(results)
    real = trainer_module.train_one_epoch
    calls = {"n": 0}

    def faulty(*args, **kwargs):
        calls["n"] += 1
        if fault == "crash-rank1-epoch2" and rank == 1 and calls["n"] == 2:
            raise RuntimeError("simulated crash of rank 1")
        return real(*args, **kwargs)

    trainer_module.train_one_epoch = faulty
    with (out / f"stdout{rank}.txt").open("w") as stdout, contextlib.redirect_stdout(stdout):
        try:
            cfg = TrainConfig.from_dict(config) if config else None
            run = mnistlab.train(cfg, resume=resume)
        except BaseException as exc:  # recorded for the parent; KeyboardInterrupt included
            (out / f"error{rank}.txt").write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return
    state = {k: v.contiguous() for k, v in run.model.state_dict().items()}
    save_file(state, str(out / f"model{rank}.safetensors"))
    (out / f"history{rank}.json").write_text(json.dumps([run.history, run.summary]))


def run_ranks(
    tmp: Path, config: TrainConfig | None, resume: Path | None = None, fault: str = "", timeout: float = 120
) -> Path:
    """Start WORLD spawned ranks and wait; return the folder with their results."""
    results = tmp / f"results-{fault or 'ok'}-{'resume' if resume else 'fresh'}"
    results.mkdir()
    spawn = multiprocessing.get_context("spawn")
    port = free_port()
    config_dict = config.to_dict() if config else {}
    procs = [
        spawn.Process(
            target=_rank_main,
            args=(r, port, config_dict, str(resume) if resume else None, str(results), fault),
        )
        for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    return results


def rank_state(results: Path, rank: int) -> dict[str, torch.Tensor]:
    error = results / f"error{rank}.txt"
    assert not error.exists(), error.read_text()
    return load_file(str(results / f"model{rank}.safetensors"))


def rank_history(results: Path, rank: int) -> tuple[list[dict], dict]:
    history, summary = json.loads((results / f"history{rank}.json").read_text())
    timings = ("seconds", "train_seconds")  # wall-clock, measured on each rank
    strip = [{k: v for k, v in h.items() if k not in timings} for h in history]
    return strip, {k: v for k, v in summary.items() if k not in (*timings, "config_history")}


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> tuple[Path, TrainConfig]:
    """The cnn (BatchNorm) with dropout on 2 ranks for 2 epochs: the reference for several tests."""
    tmp = tmp_path_factory.mktemp("dist")
    cfg = small_config(tmp / "run", model="cnn")
    cfg.model.dropout = 0.1  # each rank draws its own masks; the resume test checks they come back
    cfg.model.width = 0.25  # channels (6, 8, 16): BatchNorm is exercised, the test stays fast
    cfg.augment.kind = (
        "both"  # each rank distorts with its own generator; the resume test checks they come back
    )
    cfg.data.train_subset, cfg.data.val_size = 1000, 500
    cfg.epochs = 2
    return run_ranks(tmp, cfg), cfg


# ---- tests -------------------------------------------------------------------------------------------------
def test_ranks_hold_bit_identical_models_and_only_rank0_writes(two_epoch_run):
    results, cfg = two_epoch_run
    first, second = rank_state(results, 0), rank_state(results, 1)
    assert first.keys() == second.keys() and any("running_mean" in k for k in first)
    for name in first:  # parameters and BatchNorm buffers
        assert torch.equal(first[name], second[name]), name
    assert rank_history(results, 0) == rank_history(results, 1)  # the same global metrics everywhere
    assert "2 processes (gloo)" in (results / "stdout0.txt").read_text()
    assert (results / "stdout1.txt").read_text() == "", "ranks other than 0 must print nothing"
    folder = Path(cfg.out)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "steps.jsonl",
        "summary.json",
    ]
    saved = load_file(str(folder / "model.safetensors"))
    for name, tensor in first.items():
        assert torch.equal(saved["model." + name], tensor), name  # best epoch restored on every rank


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    """``torchrun ... -m mnistlab train`` with 2 processes against one process: same folder, same numbers.

    The union of the ranks' step-k batches is the single process's k-th batch (one global permutation),
    and DDP averages the two half-batch mean gradients, so only float summation order differs: after one
    epoch of Adam (16 steps) the parameters agree to 1e-5 (measured: 4e-8).
    """
    single = small_config(tmp_path / "single")
    single.model.dropout = 0.0
    single.quiet, single.progress = True, True  # as the CLI resolves them
    one = mnistlab.train(single)

    out = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    args = ["--model", "mlp", "--hidden", "64", "--dropout", "0", "--train-subset", "2000"]
    args += ["--val-size", "1000", "--epochs", "1", "--threads", "1", "--out", str(out), "-q"]
    proc = subprocess.run(
        distributed.launch_command(2, ["train", *args]),
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the same files, config, metric keys and summary keys
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one.path.iterdir())
    config_one = json.loads((one.path / "config.json").read_text())
    config_two = json.loads((out / "config.json").read_text())
    assert config_one | {"out": None} == config_two | {"out": None}
    metrics_one = [json.loads(x) for x in (one.path / "metrics.jsonl").read_text().splitlines()]
    metrics_two = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m.keys() for m in metrics_one] == [m.keys() for m in metrics_two]
    summary_one = json.loads((one.path / "summary.json").read_text())
    summary_two = json.loads((out / "summary.json").read_text())
    assert summary_one.keys() == summary_two.keys()
    assert summary_one["environment"].keys() == summary_two["environment"].keys()
    assert summary_two["environment"]["world_size"] == 2 and summary_one["environment"]["world_size"] == 1

    # the same training, to float round-off
    a, b = load_file(str(one.path / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0)
    for m1, m2 in zip(metrics_one, metrics_two, strict=True):
        assert m1["steps"] == m2["steps"] and m1["lr"] == m2["lr"]
        assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-5)
        assert m2["val_loss"] == pytest.approx(m1["val_loss"], abs=1e-5)
        assert abs(m2["train_accuracy"] - m1["train_accuracy"]) <= 1 / 2000  # at most one argmax flip
        assert abs(m2["val_accuracy"] - m1["val_accuracy"]) <= 1 / 1000
    assert abs(summary_two["test_accuracy"] - summary_one["test_accuracy"]) <= 2 / 10_000


def test_a_dead_rank_stops_the_others_and_the_run_resumes_to_the_same_result(two_epoch_run, tmp_path):
    """Rank 1 dies at the start of epoch 2: rank 0 must not hang but fail with a clear message, and
    ``--resume`` on 2 ranks must then finish with exactly the uninterrupted run's weights and metrics."""
    reference, cfg = two_epoch_run
    cfg.out = str(tmp_path / "run")
    crashed = run_ranks(tmp_path, cfg, fault="crash-rank1-epoch2", timeout=90)
    assert "simulated crash of rank 1" in (crashed / "error1.txt").read_text()
    error0 = (crashed / "error0.txt").read_text()
    assert error0.startswith("RunError: rank 0/2: lost the other processes"), error0[:500]
    folder = Path(cfg.out)
    assert (folder / "last.safetensors").exists() and not (folder / "summary.json").exists()
    state = load_file(str(folder / "last.safetensors"))
    assert (
        "rng.torch.rank1" in state and "rng.augment.rank1" in state
    )  # rank 1's dropout and distortion streams
    assert not torch.equal(state["rng.augment"], state["rng.augment.rank1"])

    resumed = run_ranks(tmp_path, None, resume=folder)
    for rank in range(WORLD):
        assert rank_history(resumed, rank) == rank_history(reference, rank)
        _, summary = json.loads((resumed / f"history{rank}.json").read_text())
        assert [(c["after_epoch"], c["changed"]) for c in summary["config_history"]] == [(1, {})]
        expected = rank_state(reference, rank)
        for name, tensor in rank_state(resumed, rank).items():
            assert torch.equal(tensor, expected[name]), name
    assert not (folder / "last.safetensors").exists()


def test_global_batch_must_divide_by_the_number_of_processes():
    ctx = distributed.DataParallel(torch.device("cpu"), rank=0, world_size=3)
    assert ctx.local_batch_size(129) == 43
    with pytest.raises(ConfigError, match="global batch and must divide by the 3 processes"):
        ctx.local_batch_size(128)


def test_without_torchrun_variables_nothing_is_distributed():
    ctx = distributed.setup("cpu", environ={})
    assert type(ctx) is distributed.SingleProcess
    assert (ctx.rank, ctx.world_size, ctx.shard, ctx.backend) == (0, 1, None, None)
    assert ctx.local_batch_size(128) == 128


def test_launch_command_is_what_torchrun_parses_as_n_processes_of_mnistlab():
    """Read the command line back with torchrun's own argument parser, not by comparing strings."""
    from torch.distributed.run import get_args_parser

    cmd = distributed.launch_command(4, ["train", "--epochs", "1"], python="python")
    assert cmd[:3] == ["python", "-m", "torch.distributed.run"]
    args = get_args_parser().parse_args(cmd[3:])
    assert args.standalone and args.nproc_per_node == "4"
    assert args.module and args.training_script == "mnistlab"
    assert args.training_script_args == ["train", "--epochs", "1"]


@pytest.mark.parametrize(
    ("error", "relabelled"),
    [
        (RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"), True),
        (RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms for recv"), True),
        (RuntimeError("gloo: unsupported reduction operation"), False),
        (RuntimeError("NCCL error: invalid argument"), False),
        (RuntimeError("expected a timeout value >= 0"), False),
    ],
)
def test_only_a_lost_peer_is_reported_as_one(error, relabelled):
    ctx = distributed.DataParallel(torch.device("cpu"), rank=1, world_size=2)
    with pytest.raises((RunError, RuntimeError)) as caught, ctx.peer_failures():
        raise error
    assert isinstance(caught.value, RunError) == relabelled
    if relabelled:
        assert str(caught.value).startswith("rank 1/2: lost the other processes")


def test_nproc_relaunches_the_same_command_line_under_torchrun(monkeypatch):
    from mnistlab.cli import main, train_cmd

    launched: list[tuple[int, list[str]]] = []
    configs: list[TrainConfig] = []
    monkeypatch.setattr(distributed, "launch", lambda n, args: launched.append((n, args)) or 0)
    monkeypatch.setattr(train_cmd, "train", lambda config=None, resume=None, **_: configs.append(config))

    def cli(*args: str) -> int:
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        return exit_.value.code

    flags = ["--model", "mlp", "--hidden", "64", "--no-download", "-q", "--optimizer", "adam"]
    flags += ["--batch-size", "100", "--no-amp", "--schedule", "cosine", "--out", "x"]
    assert cli("train", "--nproc", "2", *flags) == 0
    ((nproc, args),) = launched
    assert nproc == 2 and args[0] == "train" and "--nproc" not in args
    assert cli(*args) == 0 and cli("train", *flags) == 0  # what each rank runs, and the original
    assert configs[0] == configs[1]
    assert cli("train", "--nproc", "2", *flags[:-4], "--batch-size", "101") == 1
    assert len(launched) == 1  # checked once, before any process starts
