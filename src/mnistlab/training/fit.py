"""The training run: data -> preprocessing -> model -> epochs with early stopping -> one test evaluation.

:func:`fit` is what ``mnistlab train`` and :func:`mnistlab.train` call. It writes the run folder as it goes:

    config.json        the resolved TrainConfig, written first
    metrics.jsonl      one JSON object per epoch, appended as each epoch ends
    model.safetensors  the best weights so far (by validation) + preprocessing statistics + config
    last.safetensors   resume state after each epoch; removed when the run completes
    summary.json       written last: its presence is what marks the run as complete
    error.txt          only when the run failed (e.g. diverged); the folder then has no summary.json
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor, TensorSplit, load_dataset, split_train_val
from mnistlab.data.augment import STATE_KEY as AUGMENT_STATE
from mnistlab.data.augment import Distorter, build_distorter
from mnistlab.errors import ConfigError, RunError, TrainingDiverged
from mnistlab.models import build_model, count_parameters
from mnistlab.training import distributed
from mnistlab.training.checkpoint import (
    atomic_save_tensors,
    atomic_write_text,
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    split_prefix,
    with_prefix,
)
from mnistlab.training.distributed import DistContext
from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.environment import describe_environment
from mnistlab.training.graphs import GraphedStep
from mnistlab.training.loop import train_one_epoch
from mnistlab.training.optim import build_optimizer, build_scheduler
from mnistlab.training.progress import Reporter
from mnistlab.training.run import MODEL_FILE, Run, model_metadata


@dataclass
class Splits:
    """Preprocessed tensors on the training device. ``val`` is None when val_size is 0."""

    train: TensorSplit
    val: TensorSplit | None
    test: TensorSplit
    preprocessor: Preprocessor


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
    pre = Preprocessor.fit(images[train_idx], mode=dc.normalize, stats=dc.norm_stats)

    def split(x: torch.Tensor, y: torch.Tensor) -> TensorSplit:
        return TensorSplit(pre(x), y).to(device)

    test = split(torch.from_numpy(arrays.test_images), torch.from_numpy(arrays.test_labels).long())
    val = split(images[val_idx], labels[val_idx]) if len(val_idx) else None
    return Splits(split(images[train_idx], labels[train_idx]), val, test, pre)


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model.name}"


EpochCallback = Callable[[dict], None]


def fit(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    reporter: Reporter | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> Run:
    """Train according to ``config``; return the finished :class:`Run` (best weights restored).

    Each callback receives every epoch's metrics record (the dict written to metrics.jsonl) as it ends,
    e.g. to write TensorBoard events or drive a live plot (in a distributed run, on rank 0 only).

    Under torchrun (WORLD_SIZE > 1 in the environment) this is one rank of a data-parallel run: see
    :mod:`mnistlab.training.distributed`. Every rank returns the same Run; only rank 0 writes the folder.
    """
    config.validate()
    ctx = distributed.setup(config.device)
    try:
        with distributed.clear_peer_failures(ctx):
            return _fit(config, ctx, resume, reporter, callbacks)
    finally:
        distributed.teardown(ctx)


def _fit(
    config: TrainConfig,
    ctx: DistContext,
    resume: str | Path | None,
    reporter: Reporter | None,
    callbacks: Sequence[EpochCallback],
) -> Run:
    reporter = reporter or Reporter(quiet=config.quiet, progress=config.progress)
    if not ctx.is_main:
        reporter = Reporter(quiet=True)  # ranks other than 0 print nothing
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = ctx.device
    per_step = distributed.local_batch_size(config.batch_size, ctx)  # images per step on this rank
    torch.manual_seed(config.seed)  # model initialisation and dropout (the same init on every rank)

    splits = distributed.main_first(
        ctx, lambda: prepare_data(config, device, progress=not config.quiet and ctx.is_main)
    )
    model = build_model(
        config.model.name, hidden=config.model.hidden, dropout=config.model.dropout, width=config.model.width
    ).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.rank > 0:
        torch.manual_seed(config.seed + 1_000_000 * ctx.rank)  # own dropout masks on each rank's own images
    step_model = distributed.wrap_model(model, ctx)  # DDP all-reduces gradients; the model itself alone
    if config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]

    steps_per_epoch = splits.train.num_batches(per_step, shard=ctx.shard)  # = ceil(N / global batch)
    optimizer = build_optimizer(model, config.optim)
    step_fn = None
    if config.cuda_graphs and device.type == "cuda" and not ctx.enabled and not config.compile:
        # DDP's gradient hooks and torch.compile's own graphs do not mix with a hand-captured graph.
        step_fn = GraphedStep(model, optimizer, label_smoothing=config.optim.label_smoothing, amp=config.amp)
    scheduler = build_scheduler(optimizer, config.optim, steps_per_epoch, config.epochs)
    order = torch.Generator().manual_seed(config.seed + 1)  # data order, separate from init and dropout
    # Distortions of the training batches: own generator on the device, own stream on each rank.
    distorter = build_distorter(
        config.augment, splits.preprocessor, device, augment_seed(config.seed, ctx.rank)
    )
    stopper = EarlyStopping(
        mode="min" if config.monitor == "val_loss" else "max",
        patience=config.patience,
        min_delta=config.min_delta,
    )

    run_dir = None if config.dry_run else distributed.on_main(ctx, lambda: _open_run_dir(config, resume))
    start_epoch = 1
    history: list[dict] = []
    if resume is not None and not config.dry_run:  # every rank reads the same files
        start_epoch, history = _restore(
            Path(resume), model, optimizer, scheduler, order, stopper, ctx.rank, distorter
        )
    elif run_dir is not None:
        atomic_write_text(run_dir / "config.json", config.to_json())
        (run_dir / "metrics.jsonl").write_text("")

    env = describe_environment(device) | {"world_size": ctx.world_size}
    parameters = count_parameters(model)
    reporter.line(
        f"mnistlab: {config.model.name} ({parameters:,} parameters) on {config.data.dataset}, "
        f"{len(splits.train):,} train / {len(splits.val) if splits.val else 0:,} val images, "
        f"device {device}, {env['threads']} threads"
        + (f" x {ctx.world_size} processes ({ctx.backend})" if ctx.enabled else "")
        + (f", run folder {run_dir}" if run_dir else " (dry run: nothing is written)")
    )

    max_steps = config.dry_run_batches if config.dry_run else config.max_steps
    last_epoch = config.epochs if not config.dry_run else 1
    for epoch in range(start_epoch, last_epoch + 1):
        batches = splits.train.batches(per_step, shuffle=True, generator=order, shard=ctx.shard)
        # training batches only (validation and test are never distorted), and not in the last clean epochs
        if distorter is not None and epoch <= config.epochs - config.augment.clean_epochs:
            batches = distorter.wrap(batches)
        total = min(steps_per_epoch, max_steps) if max_steps else steps_per_epoch
        t0 = time.perf_counter()
        with reporter.epoch_bar(f"epoch {epoch}/{last_epoch}", total) as on_step:
            train_stats = train_one_epoch(
                step_model,
                batches,
                optimizer,
                scheduler,
                label_smoothing=config.optim.label_smoothing,
                amp=config.amp,
                max_steps=max_steps,
                on_step=on_step,
                step_fn=step_fn,
            )
        train_stats = distributed.reduce_train_stats(train_stats, ctx)  # global loss and accuracy
        distributed.broadcast_buffers(model, ctx)  # every rank now holds rank 0's model
        seconds = time.perf_counter() - t0
        if not math.isfinite(train_stats["loss"]):
            _fail(
                run_dir,
                TrainingDiverged(
                    f"training diverged in epoch {epoch}: the loss became {train_stats['loss']}; "
                    f"try a smaller learning rate (e.g. --lr {config.optim.lr / 10:g})"
                ),
            )
        record = _epoch_record(epoch, train_stats, seconds, optimizer, model, splits, config, ctx)
        history.append(record)
        monitored = record.get(config.monitor)
        is_best = stopper.update(monitored, epoch, model) if monitored is not None else False
        reporter.line(_epoch_line(record, last_epoch, is_best))
        for callback in callbacks if ctx.is_main else ():  # like the run folder: rank 0 only
            callback(record)
        augment_state = distorter.state() if distorter is not None else {}
        rng_states = (
            augment_state | distributed.gather_rng_states(ctx, augment_state) if not config.dry_run else {}
        )
        if run_dir is not None:
            if is_best or monitored is None:
                _save_model(run_dir / MODEL_FILE, model, splits.preprocessor, config)
            with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            _save_resume_state(run_dir, model, optimizer, scheduler, order, stopper, epoch, rng_states)
        if distributed.decided_by_main(stopper.should_stop, ctx):
            reporter.line(f"early stopping: no {config.monitor} improvement for {config.patience} epochs")
            break

    stopper.restore_best(model)
    summary = {
        "model": config.model.name,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "parameters": parameters,
        "epochs_run": len(history),
        "best_epoch": stopper.best_epoch or len(history),
        "best_val_accuracy": max((h["val_accuracy"] for h in history if "val_accuracy" in h), default=None),
        "best_val_loss": min((h["val_loss"] for h in history if "val_loss" in h), default=None),
        # history holds every epoch trained, including those before a resume
        "train_seconds": round(sum(h["seconds"] for h in history), 3),
        "environment": env,
    }
    if not config.dry_run:
        # The test set is scored exactly once, after the best (validation-chosen) weights are restored.
        test = distributed.evaluate(
            model, splits.test.images, splits.test.labels, config.eval_batch_size, config.amp, ctx
        )
        summary.update(test_accuracy=test["accuracy"], test_loss=test["loss"], test_images=len(splits.test))
        reporter.line(
            f"test accuracy {100 * test['accuracy']:.2f} % (loss {test['loss']:.4f}) on {len(splits.test):,} "
            f"images, best epoch {summary['best_epoch']}, {summary['train_seconds']:.1f} s training"
        )
    if run_dir is not None:
        if stopper.best_state is None:
            _save_model(run_dir / MODEL_FILE, model, splits.preprocessor, config)
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        (run_dir / "last.safetensors").unlink(missing_ok=True)
    return Run(
        path=run_dir,
        config=config,
        model=model,
        preprocessor=splits.preprocessor,
        summary=summary,
        history=history,
        device=device,
    )


# ---- helpers -------------------------------------------------------------------------------------------
AUGMENT_SEED_OFFSET = 0xA060000  # far from seed + 1 (data order) and seed + 1e6 * rank (dropout per rank)


def augment_seed(seed: int, rank: int = 0) -> int:
    """The distortion generator's seed: its own stream per run seed and per rank."""
    return seed + AUGMENT_SEED_OFFSET + 1_000_000 * rank


def _open_run_dir(config: TrainConfig, resume: str | Path | None) -> Path:
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last.safetensors").is_file():
            done = (run_dir / "summary.json").is_file()
            raise RunError(
                f"{run_dir}: nothing to resume ("
                + ("the run already completed)" if done else "no last.safetensors checkpoint)")
            )
        return run_dir
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder already exists and is not empty; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _fail(run_dir: Path | None, error: Exception) -> None:
    """Record the failure beside the (incomplete) run and raise; no checkpoint of the bad weights is written."""
    if run_dir is not None:
        atomic_write_text(run_dir / "error.txt", f"{type(error).__name__}: {error}\n")
    raise error


def _epoch_record(
    epoch: int,
    train_stats: dict,
    seconds: float,
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    ctx: DistContext,
) -> dict:
    record = {
        "epoch": epoch,
        "train_loss": train_stats["loss"],
        "train_accuracy": train_stats["accuracy"],
        "steps": train_stats["steps"],
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 4),
    }
    if splits.val is not None:
        images, labels = splits.val.images, splits.val.labels
        if config.dry_run:  # a few batches only: the point is to exercise the code path
            images, labels = images[: config.eval_batch_size], labels[: config.eval_batch_size]
        val = distributed.evaluate(model, images, labels, config.eval_batch_size, config.amp, ctx)
        record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    return record


def _epoch_line(record: dict, epochs: int, is_best: bool) -> str:
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_accuracy']:.2f} %",
    ]
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f} acc {100 * record['val_accuracy']:.2f} %")
    parts += [f"lr {record['lr']:.4g}", f"{record['seconds']:.1f} s"]
    return "  ".join(parts) + ("  *" if is_best else "")


def _save_model(path: Path, model: nn.Module, pre: Preprocessor, config: TrainConfig) -> None:
    tensors = with_prefix(model.state_dict(), "model.") | with_prefix(pre.state_dict(), "preprocess.")
    atomic_save_tensors(path, tensors, model_metadata(config, pre))


def _save_resume_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    order: torch.Generator,
    stopper: EarlyStopping,
    epoch: int,
    rng_states: dict[str, torch.Tensor],
) -> None:
    """``rng_states``: the distortion generator's state (when distorting) and the other ranks' RNG states
    in a distributed run.

    Dropout draws from the generator of the device it runs on, so a CUDA run also saves that device's
    generator (``rng.cuda``); without it a resumed run would draw other dropout masks than an uninterrupted one.
    """
    optim_tensors, optim_meta = optimizer_tensors(optimizer)
    device = next(model.parameters()).device
    cuda_rng = {"rng.cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    tensors = (
        with_prefix(model.state_dict(), "model.")
        | optim_tensors
        | {"rng.order": order.get_state(), "rng.torch": torch.get_rng_state()}
        | cuda_rng
        | rng_states
    )
    meta = {
        "epoch": epoch,
        "optimizer": optim_meta,
        "scheduler": scheduler.state_dict(),
        "early_stopping": stopper.state(),
    }
    atomic_save_tensors(run_dir / "last.safetensors", tensors, meta)


def _restore(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    order: torch.Generator,
    stopper: EarlyStopping,
    rank: int = 0,
    distorter: Distorter | None = None,
) -> tuple[int, list[dict]]:
    tensors, meta = load_tensors(run_dir / "last.safetensors")
    model.load_state_dict(split_prefix(tensors, "model."))
    restore_optimizer(optimizer, tensors, json.loads(meta["optimizer"]))
    scheduler.load_state_dict(json.loads(meta["scheduler"]))
    order.set_state(tensors["rng.order"])  # the global data order: the same on every rank
    # Each rank's own dropout stream; a run resumed with more ranks than it was saved with reuses rank 0's.
    torch.set_rng_state(tensors.get(f"rng.torch.rank{rank}", tensors["rng.torch"]))
    if distorter is not None:  # each rank's own distortion stream, saved like the dropout streams
        distorter.restore(tensors.get(f"{AUGMENT_STATE}.rank{rank}", tensors[AUGMENT_STATE]))
    device = next(model.parameters()).device
    if device.type == "cuda" and "rng.cuda" in tensors:  # absent when the run was saved on the CPU
        torch.cuda.set_rng_state(tensors.get(f"rng.cuda.rank{rank}", tensors["rng.cuda"]), device)
    es = json.loads(meta["early_stopping"])
    stopper.best_value, stopper.best_epoch, stopper.bad_epochs = (
        es["best_value"],
        es["best_epoch"],
        es["bad_epochs"],
    )
    if (run_dir / MODEL_FILE).is_file():
        best, _ = load_tensors(run_dir / MODEL_FILE)
        stopper.best_state = split_prefix(best, "model.")
    epoch = int(meta["epoch"])
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    history = [json.loads(line) for line in lines if line.strip()][:epoch]
    return epoch + 1, history
