"""The resume checkpoint, ``last.safetensors``: what it holds, saving and restoring it, and what a resume may change.

It holds, as tensors: the model (``model.*``), the optimiser's buffers (``optim.*``), the best weights so far
(``best.*``), the named generators (``rng.order``, the data order; ``rng.augment``, the distortions) and the
global RNG states (``rng.torch``, ``rng.cuda``, and each other rank's as ``rng.torch.rank<r>``,
``rng.augment.rank<r>``, ...); as JSON metadata: the epoch, optimiser
hyper-parameters, scheduler position, early-stopping counters, the epoch history (every metrics record so
far) and the config history. The checkpoint alone is the resume state: on resume, metrics.jsonl is rewritten
to exactly its history, so a torn or repeated line from an interrupted run cannot survive. Nothing is
unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mnistlab.config import TrainConfig, config_fields, differences
from mnistlab.errors import ConfigError, RunError
from mnistlab.fileio import atomic_save_tensors, header_tensors, load_tensors, split_prefix, with_prefix
from mnistlab.models import model_from_config
from mnistlab.runcheck import check_record, check_state, check_weights
from mnistlab.runs import CHECKPOINT_FILE, MODEL_FILE, SUMMARY_FILE, read_metrics
from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.trainer import Trainer


@dataclass
class TrainState:
    """Where training stands: the epochs done, early stopping, and the config's changes across resumes."""

    stopper: EarlyStopping
    history: list[dict] = field(default_factory=list)  # one metrics record per epoch trained
    config_history: list[dict] = field(default_factory=list)  # one entry per resume: time, epoch, changes
    steps: list[dict] = field(
        default_factory=list
    )  # steps.jsonl: each epoch's per-step losses (not checkpointed)

    @property
    def next_epoch(self) -> int:
        return len(self.history) + 1

    def epochs_left(self, last_epoch: int) -> range:
        """The epochs still to train; none once early stopping has stopped the run (a resume of a run that
        stopped early and was interrupted before its summary must not train another epoch)."""
        return range(last_epoch + 1 if self.stopper.should_stop else self.next_epoch, last_epoch + 1)

    def observe(self, record: dict, monitor: str, model: torch.nn.Module) -> bool:
        """Add one epoch's record; True when its monitored value is the best so far (weights snapshotted)."""
        self.history.append(record)
        value = record.get(monitor)
        return self.stopper.update(value, record["epoch"], model) if value is not None else False


def save_checkpoint(
    run_dir: Path, trainer: Trainer, state: TrainState, rng_states: dict[str, torch.Tensor]
) -> None:
    """Write last.safetensors. ``rng_states``: the other ranks' RNG states in a distributed run ({} alone).

    Dropout draws from the generator of the device it runs on, so a CUDA run also saves that device's
    generator (``rng.cuda``); without it a resumed run would draw other dropout masks than an uninterrupted one.
    """
    optim_tensors, optim_meta = optimizer_tensors(trainer.optimizer)
    device = next(trainer.model.parameters()).device
    cuda_rng = {"rng.cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    best = with_prefix(state.stopper.best_state, "best.") if state.stopper.best_state is not None else {}
    tensors = (
        with_prefix(trainer.model.state_dict(), "model.")
        | optim_tensors
        | best
        | trainer.generator_states()
        | {"rng.torch": torch.get_rng_state()}
        | cuda_rng
        | rng_states
    )
    meta = {
        "epoch": len(state.history),
        "optimizer": optim_meta,
        "scheduler": trainer.scheduler.state_dict(),
        "early_stopping": state.stopper.state(),
        "history": state.history,
        "config_history": state.config_history,
    }
    atomic_save_tensors(run_dir / CHECKPOINT_FILE, tensors, meta)


def restore_checkpoint(run_dir: Path, trainer: Trainer, state: TrainState) -> None:
    """Load last.safetensors into ``trainer`` and ``state``: the run continues exactly where it stopped.

    A folder without one stopped before its first checkpoint: nothing is loaded, the run starts again from
    epoch 1 (as its own seed makes it, so it ends as an uninterrupted run would). A checkpoint that does not
    fit the run's model, or whose metadata is damaged, is a RunError naming it.
    """
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return
    tensors, meta = load_tensors(path)
    model = split_prefix(tensors, "model.")
    check_state(path, trainer.model.state_dict(), model, f"{trainer.config.model.name} of {run_dir}")
    try:
        _restore(path, trainer, state, tensors, meta)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:  # damaged metadata or tensors
        raise RunError(f"{path}: not a readable mnistlab checkpoint ({type(exc).__name__}: {exc})") from None


def _restore(
    path: Path, trainer: Trainer, state: TrainState, tensors: dict[str, torch.Tensor], meta: dict[str, str]
) -> None:
    run_dir = path.parent
    epoch = int(meta["epoch"])
    if trainer.config.epochs < epoch:
        raise ConfigError(
            f"--epochs {trainer.config.epochs}: the run in {run_dir} already trained {epoch} epochs"
        )
    trainer.model.load_state_dict(split_prefix(tensors, "model."))
    restore_optimizer(trainer.optimizer, tensors, json.loads(meta["optimizer"]))
    trainer.scheduler.load_state_dict(json.loads(meta["scheduler"]))
    _restore_rng(tensors, trainer)
    es = json.loads(meta["early_stopping"])
    state.stopper.best_value, state.stopper.best_epoch, state.stopper.bad_epochs = (
        es["best_value"],
        es["best_epoch"],
        es["bad_epochs"],
    )
    state.stopper.best_state = split_prefix(tensors, "best.") or _best_from_model_file(run_dir)
    # Checkpoints written before the history moved into them: metrics.jsonl, cut to the checkpoint's epochs.
    history = json.loads(meta["history"]) if "history" in meta else read_metrics(run_dir)[:epoch]
    state.history = [check_record(path, f"history record {n}", r) for n, r in enumerate(history, 1)]
    state.config_history = json.loads(meta.get("config_history", "[]"))


def resume_changes(stored: TrainConfig, requested: TrainConfig, run_dir: Path) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields ``requested`` changes; a ConfigError naming any that may not change.

    Fields declared ``resume_safe`` (more epochs, speed, output) may change; any other change would make a
    different run from the one the checkpoint belongs to. ``out`` may be unset, the recorded one (the folder
    may have moved since), or ``run_dir`` itself.
    """
    moved_elsewhere = requested.out not in (None, stored.out)
    if moved_elsewhere and Path(requested.out).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"--out {requested.out} is not the folder being resumed ({run_dir})")
    changed = {k: v for k, v in differences(stored, requested).items() if k != "out"}
    specs = {s.path: s for s in config_fields(type(stored))}
    conflicts = [
        f"{specs[k].flag} ({old} -> {new})" for k, (old, new) in changed.items() if not specs[k].resume_safe
    ]
    if conflicts:
        safe = ", ".join(s.flag for s in specs.values() if s.resume_safe)
        raise ConfigError(
            f"cannot resume {run_dir} with a different {', '.join(conflicts)}: that would be another run; "
            f"a resume may change only {safe}"
        )
    return {k: [old, new] for k, (old, new) in changed.items()}


def config_change(changes: dict[str, list[Any]], after_epoch: int) -> dict:
    """One config-history entry: when the run was resumed, after which epoch, and what changed."""
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "after_epoch": after_epoch,
        "changed": changes,
    }


def check_checkpoint_fits(run_dir: Path, config: TrainConfig) -> None:
    """Before a resume reads its data or builds its model: the checkpoint's model tensors, from its header
    alone, must be those of the model ``config`` describes (built on ``meta``). A config.json edited to ask
    for a far wider model then fails in milliseconds, instead of after allocating that model (a cnn of
    width 100: 1.9 GB for a 370 KB checkpoint). No checkpoint yet: nothing to check."""
    path = run_dir / CHECKPOINT_FILE
    if path.is_file():
        weights = split_prefix(header_tensors(path), "model.")
        check_weights(path, config, weights, lambda c: model_from_config(c.model))


def check_resumable(run_dir: Path) -> None:
    """Any run folder that is not complete can be resumed (one without a checkpoint from epoch 1)."""
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunError(f"{run_dir}: nothing to resume (the run already completed)")


def _restore_rng(tensors: dict[str, torch.Tensor], trainer: Trainer) -> None:
    """Each rank's own streams: dropout, distortions, and the data order (the same on every rank). A run
    resumed with more ranks than it was saved with reuses rank 0's."""
    rank = trainer.dist.rank
    for name, generator in trainer.generators.items():
        generator.set_state(tensors.get(f"rng.{name}.rank{rank}", tensors[f"rng.{name}"]))
    torch.set_rng_state(tensors.get(f"rng.torch.rank{rank}", tensors["rng.torch"]))
    device = next(trainer.model.parameters()).device
    if device.type == "cuda" and "rng.cuda" in tensors:  # absent when the run was saved on the CPU
        torch.cuda.set_rng_state(tensors.get(f"rng.cuda.rank{rank}", tensors["rng.cuda"]), device)


def _best_from_model_file(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """Checkpoints without ``best.*`` kept the best weights in model.safetensors."""
    if not (run_dir / MODEL_FILE).is_file():
        return None
    return split_prefix(load_tensors(run_dir / MODEL_FILE)[0], "model.")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimiser state_dict into tensors (buffers) and JSON (hyper-parameters, scalars)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, buffers in state["state"].items():
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # safetensors stores contiguous tensors, so a channels_last parameter's momentum buffer comes back in
    # NCHW order. The per-tensor optimisers do not care, but the fused kernels walk parameter, gradient and
    # buffers as one flat array each and would pair the wrong elements: give every buffer its parameter's
    # memory layout again.
    for group in optimizer.param_groups:
        for param in group["params"]:
            buffers = optimizer.state.get(param, {})
            for name, value in buffers.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == param.shape
                    and value.stride() != param.stride()
                ):
                    buffers[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
