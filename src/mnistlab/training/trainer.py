"""The one epoch loop: what training a model needs, built once, and one epoch of it.

:func:`~mnistlab.training.fit.fit` (a run folder, early stopping, checkpoints, one test score) and the lab's
experiments (no run folder, their own bookkeeping) both train through :class:`Trainer`, so every option of the
config (label smoothing, amp, channels_last, compile, CUDA graphs, several processes) means the same in both.

An epoch is: draw the seeded data order, take one optimiser step per mini-batch (:func:`train_one_epoch`),
add up the sums over processes, then score the validation split. The metrics record it returns is the line
written to metrics.jsonl.

Seams:

- **A per-split transform**: a member's width normalisation (``model.input_width``) is applied to the training
  split once, in :func:`build_trainer`, so that the distortions come after it.
- **A per-batch transform**: the distortions of each training batch on the device
  (:class:`mnistlab.data.augment.Distorter`) are applied in :meth:`Trainer.batches`, which yields every batch
  the steps see, and never to validation or test. Their random draws come from the distorter's generator,
  registered in :attr:`Trainer.generators` as ``augment``: the checkpoint saves and restores every generator
  there (as ``rng.<name>``; in a distributed run each rank's own too), so a resumed run draws the same
  distortions as an uninterrupted one.
- **Several complete runs** (a committee's members) are a loop *around* ``fit``, one run folder each
  (:mod:`mnistlab.training.committee`); several members trained at once as one grouped network reuse this
  Trainer per member for their batches, generators and checkpoints (:mod:`mnistlab.training.grouped`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor, TensorSplit, load_dataset, split_train_val
from mnistlab.data.augment import Distorter, build_distorter
from mnistlab.errors import ConfigError
from mnistlab.inference import score_committee
from mnistlab.models import Committee
from mnistlab.models.width import WidthNormalized, normalize_width_split
from mnistlab.training.distributed import SingleProcess
from mnistlab.training.graphs import GraphedStep
from mnistlab.training.loop import StepFn, train_one_epoch
from mnistlab.training.optim import build_optimizer, build_scheduler
from mnistlab.training.progress import Reporter

SMOKE_STEPS_ENV = "MNISTLAB_SMOKE_STEPS"
SMOKE_IMAGES = 1000  # images per split (train, validation, test) under a smoke test


@dataclass
class Splits:
    """Preprocessed tensors on the training device. ``val`` is None when val_size is 0."""

    train: TensorSplit
    val: TensorSplit | None
    test: TensorSplit
    preprocessor: Preprocessor

    def score_test(
        self, model: nn.Module, batch_size: int, amp: bool = False, dist: SingleProcess | None = None
    ) -> dict:
        """The one place a training run scores the test split: once per run, after training, never to choose
        anything (the tests count the calls; --no-score-test never calls it). {"loss": nats/image, "accuracy",
        "images"}; for a committee also each member's predictions (M, N), from the same forward passes."""
        test = self.test
        if isinstance(model, Committee):
            result = score_committee(model, test.images, test.labels, batch_size)
        else:
            dist = dist or SingleProcess(next(model.parameters()).device)
            result = dist.evaluate(model, test.images, test.labels, batch_size, amp)
        return result | {"images": len(test)}


def prepare_data(config: TrainConfig, device: torch.device, progress: bool = True) -> Splits:
    """Load the dataset, split validation off the training images, fit preprocessing on the rest.

    The preprocessing statistics come from the training split only; validation and test images are
    transformed with those same statistics, exactly as a new image will be at prediction time.
    """
    dc = config.data
    arrays = load_dataset(dc.dataset, dc.data_dir, download=dc.download, progress=progress)
    images = torch.from_numpy(arrays.train_images)  # (60000, 28, 28) uint8
    labels = torch.from_numpy(arrays.train_labels).long()
    if dc.val_size >= images.shape[0]:
        raise ConfigError(f"validation size {dc.val_size} leaves no training images (of {images.shape[0]})")
    split_seed = config.seed if dc.split_seed is None else dc.split_seed
    train_idx, val_idx = split_train_val(images.shape[0], dc.val_size, split_seed)
    if dc.train_subset is not None:
        train_idx = train_idx[: dc.train_subset]
    smoke = SMOKE_IMAGES if smoke_steps() else None  # a smoke test: every split cut short (None: all)
    train_idx, val_idx = train_idx[:smoke], val_idx[:smoke]
    pre = Preprocessor.fit(images[train_idx], mode=dc.normalize, stats=dc.norm_stats)

    def split(x: torch.Tensor, y: torch.Tensor) -> TensorSplit:
        return TensorSplit(pre(x), y).to(device)

    test_images, test_labels = arrays.test_images[:smoke], arrays.test_labels[:smoke]
    test = split(torch.from_numpy(test_images), torch.from_numpy(test_labels).long())
    val = split(images[val_idx], labels[val_idx]) if len(val_idx) else None
    return Splits(split(images[train_idx], labels[train_idx]), val, test, pre)


@dataclass
class EpochResult:
    record: dict  # epoch, train_loss, train_accuracy, steps, lr, seconds [, val_loss, val_accuracy]
    step_losses: list[float]  # per optimiser step, batch-mean nats; this process's own


@dataclass
class Trainer:
    """Model, optimiser, schedule, data order and process layout of one training run."""

    config: TrainConfig
    model: nn.Module  # the bare model: evaluated, checkpointed and returned
    step_model: nn.Module  # what the steps call: the model, or DDP / torch.compile around it
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train: TensorSplit
    val: TensorSplit | None
    dist: SingleProcess
    step_fn: StepFn | None = None  # a CUDA-graph replay of the step, or None for the eager step
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # checkpointed as rng.<name>
    distorter: Distorter | None = None  # distorts the training batches (config.augment), or None

    @property
    def last_epoch(self) -> int:
        return 1 if self.config.dry_run else self.config.epochs

    @property
    def steps_per_epoch(self) -> int:
        """ceil(N / global batch) for a whole epoch; fewer with max_steps or a dry run."""
        full = self.train.num_batches(
            self.dist.local_batch_size(self.config.batch_size), shard=self.dist.shard
        )
        limit = step_cap(self.config.dry_run_batches if self.config.dry_run else self.config.max_steps)
        return min(full, limit) if limit else full

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Epoch ``epoch``'s mini-batches (x (B, 1, 28, 28), y (B,)) on the device, in the seeded data order."""
        per_step = self.dist.local_batch_size(self.config.batch_size)  # images per step on this process
        order = self.generators["order"]
        batches = self.train.batches(per_step, shuffle=True, generator=order, shard=self.dist.shard)
        # training batches only (validation and test are never distorted), and not in the last clean epochs
        clean = epoch > self.config.epochs - self.config.augment.clean_epochs
        return self.distorter.wrap(batches) if self.distorter is not None and not clean else batches

    def generator_states(self) -> dict[str, torch.Tensor]:
        """``{"rng.<name>": state}`` of every generator, as the checkpoint stores them (CPU uint8 tensors)."""
        return {f"rng.{name}": g.get_state() for name, g in self.generators.items()}

    def epoch(self, number: int, reporter: Reporter | None = None) -> EpochResult:
        """Train one epoch, then score validation; the record holds global (all-process) figures."""
        reporter = reporter or Reporter(quiet=True)
        t0 = time.perf_counter()
        with reporter.epoch_bar(f"epoch {number}/{self.last_epoch}", self.steps_per_epoch) as on_step:
            if on_step is not None and self.dist.world_size > 1:  # the progress shows all processes' images
                on_step = _scaled_images(on_step, self.dist.world_size)
            sums = train_one_epoch(
                self.step_model,
                self.batches(number),
                self.optimizer,
                self.scheduler,
                label_smoothing=self.config.optim.label_smoothing,
                amp=self.config.amp,
                max_steps=self.steps_per_epoch,
                on_step=on_step,
                step_fn=self.step_fn,
            )
        sums = self.dist.reduce(sums)  # global sums; the means below are taken once, from them
        self.dist.broadcast_buffers(self.model)  # every process now holds rank 0's model
        record = {
            "epoch": number,
            "train_loss": sums.loss,
            "train_accuracy": sums.accuracy,
            "steps": sums.steps,
            "lr": self.optimizer.param_groups[0]["lr"],  # where the schedule stands: the next step's lr
            "lr_peak": sums.lr_peak,  # the largest lr a step of this epoch used
            "seconds": round(time.perf_counter() - t0, 4),
        }
        return EpochResult(record | self.validate(), sums.step_losses)

    def validate(self) -> dict:
        """{"val_loss": nats/image, "val_accuracy": fraction}, or {} without a validation split."""
        if self.val is None:
            return {}
        images, labels = self.val.images, self.val.labels
        if self.config.dry_run:  # a few batches only: the point is to exercise the code path
            images, labels = images[: self.config.eval_batch_size], labels[: self.config.eval_batch_size]
        val = self.dist.evaluate(self.model, images, labels, self.config.eval_batch_size, self.config.amp)
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}


def smoke_steps() -> int | None:
    """``MNISTLAB_SMOKE_STEPS``: a cap on the steps of every epoch of every training loop, for smoke tests.

    With it, every training, validation and test split holds at most :data:`SMOKE_IMAGES` images and the lab
    experiments shrink their settings (:func:`mnistlab.lab.common.smoke_settings`), so that every command
    that trains (train, lab, --seeds, --report) runs its whole code path in seconds, e.g. to check that the
    README's commands work after an install (tests/test_readme_commands.py). The numbers it gives mean
    nothing; a run made with it says so in its banner and its summary (``environment.smoke_steps``).
    """
    value = os.environ.get(SMOKE_STEPS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{SMOKE_STEPS_ENV} must be a whole number of steps >= 1, got {value!r}")
    return int(value)


def step_cap(max_steps: int | None) -> int | None:
    """The steps an epoch may take: ``max_steps`` and the smoke-test cap, whichever is smaller (None: all)."""
    caps = [n for n in (max_steps, smoke_steps()) if n]
    return min(caps) if caps else None


def _scaled_images(on_step: Callable[..., None], world_size: int) -> Callable[..., None]:
    """An on_step callback that reports ``world_size`` times this process's images (each takes a share)."""
    return lambda done, images, losses: on_step(done, images * world_size, losses)


def build_trainer(
    config: TrainConfig,
    model: nn.Module,
    train: TensorSplit,
    val: TensorSplit | None,
    dist: SingleProcess | None = None,
    preprocessor: Preprocessor | None = None,
) -> Trainer:
    """Optimiser, per-step schedule over ``config.epochs``, step function, data order and distortions.

    ``model`` must already be on its device (and in its memory format). ``dist`` defaults to one process.
    ``preprocessor``: the statistics ``train`` was preprocessed with; distortions need them (they move
    pixels, and bring in background pixels at the border).
    """
    dist = dist or SingleProcess(next(model.parameters()).device)
    train = _width_normalized(train, model.width if isinstance(model, WidthNormalized) else None)
    step_model = dist.wrap(model)  # DDP all-reduces gradients; the model itself when alone
    if config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    optimizer = build_optimizer(model, config.optim)
    step_fn = None
    if config.cuda_graphs and dist.device.type == "cuda" and not dist.enabled and not config.compile:
        # DDP's gradient hooks and torch.compile's own graphs do not mix with a hand-captured graph.
        step_fn = GraphedStep(model, optimizer, label_smoothing=config.optim.label_smoothing, amp=config.amp)
    steps_per_epoch = train.num_batches(dist.local_batch_size(config.batch_size), shard=dist.shard)
    scheduler = build_scheduler(optimizer, config.optim, steps_per_epoch, config.epochs)
    generators = {"order": torch.Generator().manual_seed(config.seed + 1)}  # apart from init and dropout
    distorter = _distorter(config, preprocessor, dist)
    if distorter is not None:
        generators["augment"] = distorter.generator
    return Trainer(
        config, model, step_model, optimizer, scheduler, train, val, dist, step_fn, generators, distorter
    )


def _width_normalized(train: TensorSplit, width: int | None) -> TensorSplit:
    """The training split with every digit at the model's ink width (None: as written), computed once here so
    that the distortions come after it (Ciresan's order); the model skips its own normalisation in training
    mode (:mod:`mnistlab.models.width`). Validation and test stay as they are: the model normalises them."""
    if width is None:
        return train
    return TensorSplit(normalize_width_split(train.images, float(width)), train.labels)


AUGMENT_SEED_OFFSET = 0xA060000  # far from seed + 1 (data order) and seed + 1e6 * rank (dropout per rank)


def augment_seed(seed: int, rank: int = 0) -> int:
    """The distortion generator's seed: its own stream per run seed and per rank."""
    return seed + AUGMENT_SEED_OFFSET + 1_000_000 * rank


def _distorter(
    config: TrainConfig, preprocessor: Preprocessor | None, dist: SingleProcess
) -> Distorter | None:
    if config.augment.kind == "none":
        return None
    if preprocessor is None:
        raise ConfigError("--augment needs the preprocessing statistics of the training split")
    seed = augment_seed(config.seed, dist.rank)
    return build_distorter(config.augment, preprocessor, dist.device, seed)
