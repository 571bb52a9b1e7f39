"""Data-parallel training with torch.distributed and DistributedDataParallel, launched by torchrun.

One process ("rank") per device. torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment;
:func:`setup` reads them, picks the backend (nccl when the run's device is CUDA, gloo on CPU) and joins the
process group. Without those variables (or with WORLD_SIZE=1) everything here is a no-op and the
single-process path runs unchanged.

How a distributed run divides the work:

- **Data.** Every rank draws the *same* seeded permutation of the in-memory training split each epoch and takes
  every world-th element of it (``TensorSplit.batches(..., shard=(rank, world))``, like DistributedSampler).
  Step k on rank r therefore uses elements ``r, r + world, ...`` of the k-th global batch: the union over ranks
  of step k is exactly the k-th batch of a single process with the same global batch and seed. When the split
  size does not divide by the world size, the permutation is padded by repeating its first few (< world)
  elements, so those are seen twice per epoch and counted twice in the training metrics.
- **Batch size.** ``--batch-size`` is the global batch; each rank gets ``batch_size / world_size``. A global
  batch that does not divide by the world size is a ConfigError (rounding silently would change the recipe).
- **Gradients.** DistributedDataParallel all-reduces (averages) the gradients, so with equal per-rank batches
  each step applies the gradient of the global batch mean.
- **BatchNorm.** Each rank normalises with its own per-rank batch statistics (a global batch of 128 on 2 ranks
  normalises over 64 images), and DDP copies rank 0's running statistics to the others at every forward.
  SyncBatchNorm would use global statistics but PyTorch implements it for GPUs only, so it is not offered.
- **Metrics.** Training loss x count and correct counts are summed over ranks; validation and test images are
  split into disjoint contiguous shards (no padding), scored on each rank and summed. Every rank ends up with
  the same global figures.
- **Coordination.** Rank 0 decides early stopping and broadcasts it. Only rank 0 writes the run folder; errors
  it hits while opening the folder or loading data are broadcast, so every rank fails with the same message.
- **Failure.** The process group has a timeout (``MNISTLAB_DIST_TIMEOUT`` seconds, default 300) so a rank stuck
  in a collective gives up instead of hanging forever; when a worker dies, torchrun stops the others.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mnistlab import errors
from mnistlab.errors import ConfigError, MnistlabError, RunError
from mnistlab.training.environment import resolve_device
from mnistlab.training.loop import evaluate as evaluate_local
from mnistlab.training.loop import predict_logits

DEFAULT_TIMEOUT_S = 300.0  # a collective waiting this long means a peer is gone or stuck
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. ``world_size == 1`` means no process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None
    owns_group: bool = False  # True when setup() created the process group (and teardown() destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int] | None:
        """Argument for ``TensorSplit.batches(shard=...)``; None keeps the single-process path."""
        return (self.rank, self.world_size) if self.enabled else None


def env_ranks(environ: Mapping[str, str]) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) when they are absent."""
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local_rank


def timeout_from_env(environ: Mapping[str, str]) -> timedelta:
    text = environ.get("MNISTLAB_DIST_TIMEOUT", "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"MNISTLAB_DIST_TIMEOUT must be seconds, got {text!r}") from None
    return timedelta(seconds=seconds)


def setup(device_name: str, environ: Mapping[str, str] | None = None) -> DistContext:
    """Join the process group described by the environment (if any) and choose this rank's device.

    On CUDA each process uses GPU ``LOCAL_RANK`` (one process per GPU, as torchrun launches them), whatever
    index ``device_name`` carries. A process group created by the caller beforehand is used as it is.
    """
    environ = os.environ if environ is None else environ
    _, world, local_rank = env_ranks(environ)
    device = resolve_device(device_name)
    if world == 1:
        return DistContext(0, 1, 0, device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timeout_from_env(environ))
        owns = True
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend, owns)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(global_batch: int, ctx: DistContext) -> int:
    """Images per step on each rank; the global batch must divide evenly by the world size."""
    if global_batch % ctx.world_size:
        raise ConfigError(
            f"--batch-size {global_batch} is the global batch and must divide by the {ctx.world_size} "
            f"processes; try {max(1, global_batch // ctx.world_size) * ctx.world_size}"
        )
    return global_batch // ctx.world_size


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around ``model`` (it all-reduces gradients); the model itself when alone."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


# ---- collectives used by the fit loop ----------------------------------------------------------------------
def reduce_train_stats(stats: dict, ctx: DistContext) -> dict:
    """Turn one rank's epoch stats into global ones: sum loss x images, correct and images over ranks.

    ``loss`` and ``accuracy`` come back as means over all images seen by all ranks; ``step_losses`` stay
    this rank's own.
    """
    if not ctx.enabled:
        return stats
    images = stats["images"]
    totals = torch.tensor(
        [stats["loss"] * images, round(stats["accuracy"] * images), images],
        dtype=torch.float64,
        device=ctx.device,
    )  # (loss sum, correct, images)
    dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    return stats | {
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images": int(seen),
    }


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    amp: bool,
    ctx: DistContext,
) -> dict:
    """Mean loss and accuracy over the whole split, each rank scoring one contiguous shard of it.

    Alone, this is :func:`mnistlab.training.loop.evaluate`. The shards are disjoint and cover the split
    exactly (no padding), so accuracy is exact and the loss differs only by summation order.
    """
    if not ctx.enabled:
        return evaluate_local(model, images, labels, batch_size, amp)
    n = images.shape[0]
    start, stop = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    logits = predict_logits(model, images[start:stop], batch_size, amp)  # (n_r, 10)
    mine = labels[start:stop].to(logits.device)
    totals = torch.stack(
        [
            F.cross_entropy(logits, mine, reduction="sum").double(),
            (logits.argmax(dim=1) == mine).sum().double(),
        ]
    ).to(ctx.device)
    dist.all_reduce(totals)
    loss_sum, correct = totals.tolist()
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1)}


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them before each training forward, but each rank's last forward then updates its own copy;
    after this call every rank holds exactly the model that rank 0 saves and evaluates.
    """
    if not ctx.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def decided_by_main(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's value of ``flag``, on every rank (e.g. "stop early now")."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=ctx.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def gather_rng_states(
    ctx: DistContext, extra: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Every rank's dropout RNG states, as ``{"rng.torch.rank{r}": cpu_state}`` for r >= 1, on rank 0.

    On CUDA each rank's device generator comes too, as ``rng.cuda.rank{r}``, and so does each of ``extra``
    (e.g. the distortion generator's ``rng.augment``: ``rng.augment.rank{r}``). Rank 0's own states are saved
    as ``rng.torch`` / ``rng.cuda`` by the single-process code; these extra tensors let a resumed distributed
    run give every rank back its own streams. Empty when alone and on ranks other than 0.
    """
    if not ctx.enabled:
        return {}
    states = {"rng.torch": torch.get_rng_state()} | (extra or {})  # uint8 (5056,) for the CPU generator
    if ctx.device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(ctx.device)  # uint8 (16,): Philox seed + offset
    out: dict[str, torch.Tensor] = {}
    for name, state in states.items():
        buffer = state.to(ctx.device)
        gathered = [torch.empty_like(buffer) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, buffer)
        out |= {f"{name}.rank{r}": gathered[r].cpu() for r in range(1, ctx.world_size)}
    return out if ctx.is_main else {}


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only and return its result there (None elsewhere).

    A MnistlabError raised by ``fn`` (a folder that exists, a missing checkpoint) is broadcast, so every rank
    raises the same error instead of waiting for rank 0 in the next collective.
    """
    if not ctx.enabled:
        return fn()
    result, failure = None, None
    if ctx.is_main:
        try:
            result = fn()
        except MnistlabError as exc:
            failure = exc
    _share_failure(failure, ctx)
    return result


def main_first(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (e.g. a dataset download that others then read)."""
    if not ctx.enabled:
        return fn()
    if ctx.is_main:
        failure = None
        try:
            return fn()
        except MnistlabError as exc:
            failure = exc
            raise
        finally:
            _share_failure(failure, ctx)
    _share_failure(None, ctx)
    return fn()


def _share_failure(failure: MnistlabError | None, ctx: DistContext) -> None:
    """Broadcast rank 0's error (class name and message; nothing is unpickled from files) and raise it."""
    message = [None if failure is None else (type(failure).__name__, str(failure))]
    dist.broadcast_object_list(message, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    if message[0] is None:
        return
    if ctx.is_main:
        return  # rank 0 re-raises its own exception (with its traceback)
    name, text = message[0]
    error_type = getattr(errors, name, MnistlabError)
    raise error_type(text)


# Words in the errors of collectives whose peer died or stopped answering. DDP's all-reduce fails inside
# autograd's backward, which re-raises a plain RuntimeError, so the exception type alone does not tell.
_PEER_FAILURE_MARKERS = ("closed by peer", "reset by peer", "timed out", "timeout", "gloo", "nccl")


@contextlib.contextmanager
def clear_peer_failures(ctx: DistContext) -> Iterator[None]:
    """Turn a collective that failed because a peer died or timed out into a one-line RunError."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).lower()
        peer = isinstance(exc, dist.DistError) or any(m in text for m in _PEER_FAILURE_MARKERS)
        if not ctx.enabled or not peer:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"rank {ctx.rank}/{ctx.world_size}: lost the other processes ({first}); "
            "another rank probably failed: see its error above"
        ) from exc


# ---- launching ------------------------------------------------------------------------------------------------
def launch_command(nproc: int, args: list[str], python: str | None = None) -> list[str]:
    """The torchrun command line that runs ``mnistlab <args>`` in ``nproc`` local processes."""
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on localhost, on a free port
        f"--nproc-per-node={nproc}",
        "-m",
        "mnistlab",
        *args,
    ]


def launch(nproc: int, args: list[str]) -> int:
    """Run ``mnistlab <args>`` under torchrun with ``nproc`` processes on this machine; its exit code."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if env_ranks(os.environ)[1] > 1:
        raise ConfigError("--nproc launches torchrun itself; under torchrun, leave --nproc out")
    env = dict(os.environ)
    # torchrun would set 1 thread per process (and print a banner saying so); share the cores out instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(launch_command(nproc, args), check=False, env=env).returncode
