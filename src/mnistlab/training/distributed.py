"""Data-parallel training with torch.distributed and DistributedDataParallel, launched by torchrun.

One process ("rank") per device. torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment;
:func:`setup` reads them, picks the backend (nccl when the run's device is CUDA, gloo on CPU), joins the
process group and returns a :class:`DataParallel`. Without those variables (or with WORLD_SIZE=1) it returns a
:class:`SingleProcess`, whose methods are the plain single-process steps: the fit loop calls the same small
interface either way and reads without any distributed detail.

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
- **Metrics.** The epoch loop returns sums (loss x images, correct answers, images), which are summed over
  ranks before the means are taken once; validation and test images are split into disjoint contiguous shards
  (no padding), scored on each rank and summed the same way. Every rank ends up with the same global figures.
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
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mnistlab import errors
from mnistlab.errors import ConfigError, MnistlabError, RunError
from mnistlab.inference import evaluate as evaluate_local
from mnistlab.inference import resolve_device, score_sums
from mnistlab.training.loop import EpochSums

DEFAULT_TIMEOUT_S = 300.0  # a collective waiting this long means a peer is gone or stuck
T = TypeVar("T")


@dataclass(frozen=True)
class SingleProcess:
    """One process and no process group: every method here is the plain single-process step.

    The fit loop talks to this interface only; :class:`DataParallel` overrides each method with its
    collective, so the single-process path reads without any distributed detail.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

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

    def local_batch_size(self, global_batch: int) -> int:
        """Images per step on each rank; the global batch must divide evenly by the world size."""
        if global_batch % self.world_size:
            raise ConfigError(
                f"--batch-size {global_batch} is the global batch and must divide by the {self.world_size} "
                f"processes; try {max(1, global_batch // self.world_size) * self.world_size}"
            )
        return global_batch // self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training steps call: the model itself (DataParallel: DDP around it)."""
        return model

    def seed_rank(self, seed: int) -> None:
        """Give ranks other than 0 their own dropout stream (alone: nothing to do)."""

    def reduce(self, sums: EpochSums) -> EpochSums:
        """This rank's epoch sums -> the global ones (alone: they already are)."""
        return sums

    def evaluate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, amp: bool
    ) -> dict:
        """Mean loss (nats/image) and accuracy over the whole split: :func:`mnistlab.inference.evaluate`."""
        return evaluate_local(model, images, labels, batch_size, amp)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Make every rank hold rank 0's BatchNorm statistics (alone: nothing to do)."""

    def decided_by_main(self, flag: bool) -> bool:
        """Rank 0's value of ``flag`` (e.g. "stop early now") on every rank."""
        return flag

    def gather_rng_states(self, extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The other ranks' RNG states (dropout, and ``extra``'s, e.g. ``rng.augment``) for the checkpoint
        ({} alone)."""
        return {}

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only (e.g. create the run folder); None on the other ranks."""
        return fn()

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the other ranks (e.g. a download that the others then read)."""
        return fn()

    @contextlib.contextmanager
    def peer_failures(self) -> Iterator[None]:
        """Turn a collective that failed because a peer died into a one-line RunError (alone: none)."""
        yield

    def teardown(self) -> None:
        """Leave the process group, if this process created it."""


@dataclass(frozen=True)
class DataParallel(SingleProcess):
    """One rank of a torchrun job: the same interface, backed by collectives."""

    owns_group: bool = False  # True when setup() created the process group (and teardown() destroys it)

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model``: it all-reduces (averages) the gradients."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def seed_rank(self, seed: int) -> None:
        if self.rank > 0:  # own dropout masks on each rank's own images; the init above is rank 0's
            torch.manual_seed(seed + 1_000_000 * self.rank)

    def reduce(self, sums: EpochSums) -> EpochSums:
        """Sum loss, correct answers and images over ranks; ``step_losses`` stay this rank's own."""
        totals = torch.tensor(
            [sums.loss_sum, sums.correct, sums.count], dtype=torch.float64, device=self.device
        )
        dist.all_reduce(totals)
        loss_sum, correct, count = totals.tolist()  # exact: counts stay far below 2**53
        return replace(sums, loss_sum=loss_sum, correct=int(correct), count=int(count))

    def evaluate(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, amp: bool
    ) -> dict:
        """Each rank scores one contiguous shard; the sums are added, then divided once.

        The shards are disjoint and cover the split exactly (no padding), so accuracy is exact and the loss
        differs from a single process's only by summation order.
        """
        n = images.shape[0]
        start, stop = n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size
        loss_sum, correct, _ = score_sums(model, images[start:stop], labels[start:stop], batch_size, amp)
        totals = torch.stack([loss_sum.double(), correct.double()]).to(self.device)
        dist.all_reduce(totals)
        loss_sum, correct = totals.tolist()
        return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1)}

    def broadcast_buffers(self, model: nn.Module) -> None:
        """DDP broadcasts buffers before each training forward, but each rank's last forward then updates its
        own copy; after this every rank holds exactly the model that rank 0 saves and evaluates."""
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def decided_by_main(self, flag: bool) -> bool:
        value = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def gather_rng_states(self, extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``{"rng.torch.rank{r}": cpu_state}`` for r >= 1 (and ``rng.cuda.rank{r}`` on CUDA), on rank 0.

        ``extra``: more of this rank's states by name, e.g. the distortion generator's ``rng.augment``, which
        come back as ``rng.augment.rank{r}``. Rank 0's own states are saved under the plain names by the
        single-process code; these extra tensors give every rank of a resumed run its own streams back.
        Empty on ranks other than 0.
        """
        states = {"rng.torch": torch.get_rng_state()} | (extra or {})  # uint8 (5056,) for the CPU generator
        if self.device.type == "cuda":
            states["rng.cuda"] = torch.cuda.get_rng_state(self.device)  # uint8 (16,): Philox seed + offset
        out: dict[str, torch.Tensor] = {}
        for name, state in states.items():
            buffer = state.to(self.device)
            gathered = [torch.empty_like(buffer) for _ in range(self.world_size)]
            dist.all_gather(gathered, buffer)
            out |= {f"{name}.rank{r}": gathered[r].cpu() for r in range(1, self.world_size)}
        return out if self.is_main else {}

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """A MnistlabError raised by ``fn`` on rank 0 (a folder that exists, a missing checkpoint) is
        broadcast, so every rank raises the same error instead of waiting for rank 0 in the next collective."""
        result, failure = None, None
        if self.is_main:
            try:
                result = fn()
            except MnistlabError as exc:
                failure = exc
        _share_failure(failure, self)
        return result

    def main_first(self, fn: Callable[[], T]) -> T:
        if self.is_main:
            failure = None
            try:
                return fn()
            except MnistlabError as exc:
                failure = exc
                raise
            finally:
                _share_failure(failure, self)
        _share_failure(None, self)
        return fn()

    @contextlib.contextmanager
    def peer_failures(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:
            if not is_peer_failure(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(
                f"rank {self.rank}/{self.world_size}: lost the other processes ({first}); "
                "another rank probably failed: see its error above"
            ) from exc

    def teardown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


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


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 of a torchrun job, or alone: the one that creates and writes folders."""
    return env_ranks(os.environ if environ is None else environ)[0] == 0


def timeout_from_env(environ: Mapping[str, str]) -> timedelta:
    text = environ.get("MNISTLAB_DIST_TIMEOUT", "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"MNISTLAB_DIST_TIMEOUT must be seconds, got {text!r}") from None
    return timedelta(seconds=seconds)


def setup(device_name: str, environ: Mapping[str, str] | None = None) -> SingleProcess:
    """Join the process group described by the environment (if any) and choose this rank's device.

    Without torchrun's variables (or with WORLD_SIZE=1) this is a :class:`SingleProcess`. On CUDA each rank
    uses GPU ``LOCAL_RANK`` (one process per GPU, as torchrun launches them), whatever index ``device_name``
    carries. A process group created by the caller beforehand is used as it is.
    """
    environ = os.environ if environ is None else environ
    _, world, local_rank = env_ranks(environ)
    device = resolve_device(device_name)
    if world == 1:
        return SingleProcess(device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timeout_from_env(environ))
        owns = True
    return DataParallel(device, dist.get_rank(), dist.get_world_size(), local_rank, backend, owns)


# ---- a committee's processes: whole members each, no gradients exchanged ------------------------------------
# While they train, a committee's processes exchange nothing; at the barrier after the members a process waits
# for the slowest one, which can take hours. A process that dies closes its connections (gloo then fails the
# others' barrier) and torchrun stops the others, so the long wait bounds nothing that could hang.
COMMITTEE_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class MemberProcesses:
    """The processes of a committee (torchrun, or one alone): member k is trained whole by process k % world,
    on that process's device; rank 0 opens the folder and combines the members after :meth:`barrier`."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def members(self, count: int) -> list[int]:
        """This process's members of ``count``: k with k % world_size == rank."""
        return list(range(self.rank, count, self.world_size))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and return its result (e.g. the folder's path: a str) on every rank; a
        MnistlabError raised there is raised on every rank (by class name and message; nothing from files)."""
        if self.world_size == 1:
            return fn()
        message: list = [None]
        failure = None
        if self.is_main:
            try:
                message = [("ok", fn())]
            except MnistlabError as exc:
                failure, message = exc, [("error", type(exc).__name__, str(exc))]
        dist.broadcast_object_list(message, src=0)
        if failure is not None:
            raise failure
        if message[0][0] == "error":
            raise getattr(errors, message[0][1], MnistlabError)(message[0][2])
        return message[0][1]

    def teardown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_members(device_name: str, environ: Mapping[str, str] | None = None) -> MemberProcesses:
    """The committee's processes described by the environment: alone, or one rank of a torchrun job.

    On CUDA each process uses GPU ``LOCAL_RANK``. The process group is gloo even on GPUs: it carries only a
    folder name and a barrier, never a tensor of the members.
    """
    environ = os.environ if environ is None else environ
    _, world, local_rank = env_ranks(environ)
    device = resolve_device(device_name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world == 1:
        return MemberProcesses(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("gloo", timeout=COMMITTEE_TIMEOUT)
    return MemberProcesses(device, dist.get_rank(), dist.get_world_size(), owns)


def _share_failure(failure: MnistlabError | None, ctx: DataParallel) -> None:
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


# What a collective says when its peer died or stopped answering: gloo's "Connection closed by peer" / "reset
# by peer" / "Timed out waiting ... for recv", NCCL's watchdog "... before timing out". DDP's all-reduce fails inside autograd's
# backward, which re-raises a plain RuntimeError, so the exception type alone does not tell; but a backend
# error that merely mentions "gloo" or "nccl" (a bad argument, an unsupported op) is not a lost peer.
_PEER_FAILURE_MARKERS = (
    "closed by peer",
    "reset by peer",
    "connection refused",
    "broken pipe",
    "timed out",
    "before timing out",
)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` from a collective means another rank died or stopped answering."""
    text = str(exc).lower()
    lost_types = tuple(
        getattr(dist, name) for name in ("DistNetworkError", "DistStoreError") if hasattr(dist, name)
    )
    return isinstance(exc, lost_types) or any(marker in text for marker in _PEER_FAILURE_MARKERS)


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
