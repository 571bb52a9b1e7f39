"""Several committee members trained at once, as one grouped network (:mod:`mnistlab.models.grouped`).

Each member keeps everything of its own :class:`~mnistlab.training.trainer.Trainer` except the step: its model
(initialised from its own seed), data order, distortions, optimiser state, schedule position, early-stopping
state and run folder. One step takes every member's next batch, stacks them along the channels, runs the
grouped network once and backpropagates the sum of the members' batch-mean losses; one elementwise optimiser
over the grouped parameters then updates every member exactly as its own optimiser would. After each epoch the
grouped weights and optimiser state are copied back into the members' own objects, so validation, checkpoints
(``last.safetensors``, the same format as :func:`~mnistlab.training.fit.fit`'s), resume and the final test
score are fit's own steps, member by member.

What differs from training the members one after another: float rounding (grouped kernels add in another
order), and dropout masks, which come from one shared stream. Early stopping is not offered (the members would
stop at different epochs).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mnistlab.config import TrainConfig, differences
from mnistlab.errors import ConfigError
from mnistlab.fileio import load_tensors
from mnistlab.inference import autocast_for
from mnistlab.models import model_from_config
from mnistlab.models.grouped import GroupedNetwork, join_tensors, split_tensor
from mnistlab.runs import CHECKPOINT_FILE, Run, steps_record
from mnistlab.training.checkpoint import TrainState
from mnistlab.training.distributed import SingleProcess

# fit's own steps: a grouped member's folder, checkpoint and summary are exactly those of a run of fit.
from mnistlab.training.fit import (
    Place,
    _check_finite,
    _checkpoint,
    _epoch_line,
    _finish,
    _legend,
    _open_folder,
    _restore,
    _resume_changes,
    fit,
)
from mnistlab.training.loop import EpochSums
from mnistlab.training.optim import build_optimizer
from mnistlab.training.progress import Reporter, StepCallback
from mnistlab.training.trainer import Splits, Trainer, build_trainer, prepare_data

# Fields in which the members of one group may differ: each member's own seed and folder.
PER_MEMBER = {"seed", "out", "model.input_width"}  # an input variant is the grouped network's, per member


@dataclass
class GroupMember:
    trainer: Trainer
    state: TrainState
    folder: Path | None


@dataclass
class Group:
    """The grouped network, its optimiser and schedule, and the members it trains."""

    network: GroupedNetwork
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    members: list[GroupMember]

    @property
    def trainers(self) -> list[Trainer]:
        return [m.trainer for m in self.members]


def fit_group(
    configs: Sequence[TrainConfig],
    resumes: Sequence[Path | None],
    device: torch.device,
    reporter: Reporter | None = None,
) -> list[Run]:
    """Train the runs ``configs`` (one architecture and recipe, their own seeds and folders) at once on
    ``device``; ``resumes``: each run's folder to continue, or None. Returns their Runs, as fit would."""
    configs = [copy.deepcopy(c).validate() for c in configs]
    _check_groupable(configs)
    reporter = reporter or Reporter(quiet=configs[0].quiet, progress=configs[0].progress)
    dist = SingleProcess(device)
    if len({_epochs_done(r) for r in resumes}) > 1:  # interrupted at different epochs: one at a time
        return [
            fit(c, resume=r, reporter=reporter, process=dist) for c, r in zip(configs, resumes, strict=True)
        ]
    with contextlib.ExitStack() as held:  # each member's folder held (locked) as fit holds a run's
        places = [Place(r, False, held) for r in resumes]
        changes = [_resume_changes(c, p, dist) for c, p in zip(configs, places, strict=True)]
        splits = prepare_data(configs[0], device, progress=not configs[0].quiet)  # one split: split_seed
        members = [_member(c, p, ch, splits, dist) for c, p, ch in zip(configs, places, changes, strict=True)]
        group = _build_group(members, configs[0])
        reporter.line(f"training {len(members)} members at once as one grouped network on {device}")
        reporter.line(_legend(configs[0], splits))
        for epoch in range(members[0].state.next_epoch, members[0].trainer.last_epoch + 1):
            _grouped_epoch(group, epoch, reporter)
        return [_finish(m.trainer, splits, m.state, m.folder, reporter) for m in members]


def _epochs_done(resume: Path | None) -> int:
    return int(load_tensors(resume / CHECKPOINT_FILE)[1]["epoch"]) if resume is not None else 0


def _check_groupable(configs: Sequence[TrainConfig]) -> None:
    for config in configs[1:]:
        other = set(differences(configs[0], config)) - PER_MEMBER
        if other:
            raise ConfigError(
                f"members trained at once must share their recipe; these differ: {sorted(other)}"
            )
    c = configs[0]
    if c.patience is not None:
        raise ConfigError(
            "--members-at-once: early stopping (--patience) would stop members at different epochs"
        )
    if c.dry_run or c.compile:
        raise ConfigError("--members-at-once does not combine with --dry-run or --compile")


def _member(
    config: TrainConfig, place: Place, changes: dict, splits: Splits, dist: SingleProcess
) -> GroupMember:
    """fit's build, folder and restore for one member, on the group's shared data."""
    torch.manual_seed(config.seed)  # the member's initial weights, as fit draws them
    model = model_from_config(config.model).to(dist.device)
    trainer = build_trainer(config, model, splits.train, splits.val, dist, splits.preprocessor)
    folder = _open_folder(config, place)
    return GroupMember(trainer, _restore(trainer, place.resume, changes), folder)


def _build_group(members: list[GroupMember], config: TrainConfig) -> Group:
    """The grouped network from the members' (initial or restored) weights; its optimiser and schedule from
    theirs, so a resumed group continues exactly where its members stopped."""
    network = GroupedNetwork([m.trainer.model for m in members])
    if config.channels_last:  # as the members alone would train (recipes.py: oneDNN's fast layout on CPU)
        network = network.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(network, config.optim)
    # the members' own schedule (the same for all: one recipe), so the group's lr is theirs at every step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, members[0].trainer.scheduler.lr_lambdas[0])
    group = Group(network, optimizer, scheduler, members)
    _optimizer_from_members(group)
    return group


def _grouped_epoch(group: Group, epoch: int, reporter: Reporter) -> None:
    """One epoch of the group, then each member's validation, record and checkpoint, as fit does them."""
    first = group.members[0].trainer
    t0 = time.perf_counter()
    with reporter.epoch_bar(f"epoch {epoch}/{first.last_epoch}", first.steps_per_epoch) as on_step:
        sums = train_group_epoch(group, epoch, first.steps_per_epoch, on_step)
    seconds = time.perf_counter() - t0
    group.network.store_members([t.model for t in group.trainers])
    _optimizer_to_members(group)
    for index, (member, epoch_sums) in enumerate(zip(group.members, sums, strict=True)):
        trainer, state = member.trainer, member.state
        record = {
            "epoch": epoch,
            "train_loss": epoch_sums.loss,
            "train_accuracy": epoch_sums.accuracy,
            "steps": epoch_sums.steps,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "lr_peak": epoch_sums.lr_peak,  # the largest lr a step of this epoch used (the group's, shared)
            "seconds": round(seconds / len(group.members), 4),  # this member's share of the grouped epoch
            "members_at_once": len(group.members),
        } | trainer.validate()
        _check_finite(record, trainer.config)
        state.steps.append(steps_record(epoch, epoch_sums.step_losses))
        is_best = state.observe(record, trainer.config.monitor, trainer.model)
        reporter.line(
            f"member {index + 1}/{len(group.members)}  " + _epoch_line(record, first.last_epoch, is_best)
        )
        _checkpoint(trainer, state, member.folder)


def train_group_epoch(
    group: Group, epoch: int, steps: int, on_step: StepCallback | None = None
) -> list[EpochSums]:
    """Epoch ``epoch`` in grouped steps; each member's own sums (loss, correct answers, images, step losses)."""
    trainers, network = group.trainers, group.network
    network.train()
    device = next(network.parameters()).device
    count = len(trainers)
    loss_sums = torch.zeros(count, device=device, dtype=torch.float64)
    correct = torch.zeros(count, device=device, dtype=torch.int64)
    step_losses: list[torch.Tensor] = []
    seen, lr_peak = 0, 0.0
    for step, batches in enumerate(zip(*(t.batches(epoch) for t in trainers), strict=True)):
        if step >= steps:
            break
        lr_peak = max(lr_peak, group.optimizer.param_groups[0]["lr"])  # the lr this step uses
        x = torch.cat([xb for xb, _ in batches], dim=1)  # (B, N, 28, 28): member n's images in channel n
        y = torch.stack([yb for _, yb in batches])  # (N, B)
        losses, logits = grouped_step(group, x, y, trainers[0].config)
        group.scheduler.step()
        step_losses.append(losses)
        loss_sums += losses.double() * y.shape[1]
        correct += (logits.argmax(dim=2) == y).sum(dim=1)
        seen += y.shape[1]
        if on_step is not None:  # the progress counts every member's images; its loss is the members' mean
            on_step(step + 1, seen * count, step_losses)
    per_step = torch.stack(step_losses).cpu() if step_losses else torch.zeros(0, count)  # (steps, N)
    loss_sums, correct = loss_sums.cpu(), correct.cpu()  # one host sync per epoch
    return [
        EpochSums(
            loss_sums[n].item(), int(correct[n]), seen, len(step_losses), per_step[:, n].tolist(), lr_peak
        )
        for n in range(count)
    ]


def grouped_step(
    group: Group, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, each member's batch-mean cross-entropy, backward of their sum, one optimiser step.

    Returns the members' losses (N,) and logits (N, B, 10), detached.
    """
    with autocast_for(x.device, config.amp):
        logits = group.network(x)  # (N, B, 10)
    logits = logits.float()
    count, batch = y.shape
    per_image = F.cross_entropy(
        logits.reshape(count * batch, -1),
        y.reshape(-1),
        label_smoothing=config.optim.label_smoothing,
        reduction="none",
    )
    losses = per_image.view(count, batch).mean(dim=1)  # (N,): each member's batch mean
    group.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # member n's parameters get exactly the gradient of its own batch mean
    group.optimizer.step()
    return losses.detach(), logits.detach()


# ---- optimiser state between the grouped network and the members -------------------------------------------
def _optimizer_to_members(group: Group) -> None:
    """Each member's optimiser gets its slice of the grouped state (momentum, Adam's moments, step), its lr
    and its schedule position: what its checkpoint saves."""
    models = [t.model for t in group.trainers]
    for grouped, tensors, join in group.network.tensor_pairs(models):
        state = group.optimizer.state.get(grouped) if isinstance(grouped, torch.nn.Parameter) else None
        for key, value in (state or {}).items():
            whole = isinstance(value, torch.Tensor) and value.shape == grouped.shape
            pieces = split_tensor(value, join, len(models)) if whole else [value] * len(models)
            for trainer, param, piece in zip(group.trainers, tensors, pieces, strict=True):
                trainer.optimizer.state[param][key] = _laid_out_like(param, piece) if whole else _copy(piece)
    hyper = {k: v for k, v in group.optimizer.param_groups[0].items() if k != "params"}
    for trainer in group.trainers:
        trainer.optimizer.param_groups[0].update(hyper)
        trainer.scheduler.load_state_dict(group.scheduler.state_dict())


def _optimizer_from_members(group: Group) -> None:
    """The inverse, when a group starts: the members' (restored or fresh) optimiser state joined."""
    models = [t.model for t in group.trainers]
    for grouped, tensors, join in group.network.tensor_pairs(models):
        if not isinstance(grouped, torch.nn.Parameter):
            continue
        states = [t.optimizer.state.get(p, {}) for t, p in zip(group.trainers, tensors, strict=True)]
        for key in states[0]:
            values = [s[key] for s in states]
            whole = isinstance(values[0], torch.Tensor) and values[0].shape == tensors[0].shape
            joined = join_tensors(values, join) if whole else values[0]
            group.optimizer.state[grouped][key] = _laid_out_like(grouped, joined) if whole else _copy(joined)
    first = group.trainers[0]
    group.optimizer.param_groups[0].update(
        {k: v for k, v in first.optimizer.param_groups[0].items() if k != "params"}
    )
    group.scheduler.load_state_dict(first.scheduler.state_dict())


def _laid_out_like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A copy of ``value`` in ``param``'s memory layout: the fused optimisers walk parameter and buffers as
    flat arrays, so a channels_last parameter needs channels_last buffers (see checkpoint.restore_optimizer)."""
    return torch.empty_like(param, dtype=value.dtype).copy_(value)


def _copy(value: object) -> object:
    return value.clone() if isinstance(value, torch.Tensor) else value
