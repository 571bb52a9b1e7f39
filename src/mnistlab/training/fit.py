"""The training run: data -> preprocessing -> model -> epochs with early stopping -> one test evaluation.

:func:`fit` is what ``mnistlab train`` and :func:`mnistlab.train` call. :func:`_fit` reads as the story:
build, restore, then for each epoch step + validate + checkpoint, then finish. The run folder's files are
described in :mod:`mnistlab.runs`; the epoch itself is :class:`~mnistlab.training.trainer.Trainer`'s, or with
``config.engine == "numpy"`` the NumPy engine's (:class:`~mnistlab.training.numpy_engine.NumpyTrainer`, the
same interface): the story is the same for both.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError, RunError, TrainingDiverged
from mnistlab.models import check_fits_in_memory, count_parameters, model_from_config
from mnistlab.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    Run,
    append_metrics,
    create_run_dir,
    hold_run_folder,
    read_config,
    read_steps,
    recording_errors,
    save_model_file,
    steps_record,
    write_config,
    write_metrics,
    write_steps,
    write_summary,
)
from mnistlab.testhooks import crash_point
from mnistlab.training import distributed
from mnistlab.training.checkpoint import (
    TrainState,
    check_checkpoint_fits,
    check_resumable,
    config_change,
    restore_checkpoint,
    resume_changes,
    save_checkpoint,
)
from mnistlab.training.distributed import SingleProcess
from mnistlab.training.early_stopping import EarlyStopping
from mnistlab.training.environment import describe_environment
from mnistlab.training.numpy_engine import (
    NumpyTrainer,
    blas_environment,
    blas_threads,
    build_numpy_trainer,
    check_config,
)
from mnistlab.training.progress import Reporter
from mnistlab.training.trainer import (
    SMOKE_STEPS_ENV,
    Splits,
    Trainer,
    build_trainer,
    prepare_data,
    smoke_steps,
)

EpochCallback = Callable[[dict], None]
AnyTrainer = Trainer | NumpyTrainer  # the torch Trainer, or the NumPy engine behind the same epoch interface


def fit(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    callbacks: Sequence[EpochCallback] = (),
    process: SingleProcess | None = None,
) -> Run:
    """Train according to ``config``; return the finished :class:`Run` (best weights restored).

    ``resume``: continue the interrupted run in that folder. ``config`` must then be the run's own config,
    except for fields declared ``resume_safe`` (e.g. more ``epochs``), which are recorded in the summary's
    ``config_history``; any other difference is a ConfigError naming it. ``overwrite``: ``config.out`` may
    hold an earlier run, which is replaced. The run folder is held (locked) while the run lasts
    (:func:`mnistlab.runs.hold_run_folder`).

    Each callback receives every epoch's metrics record (the dict written to metrics.jsonl) as it ends,
    e.g. to write TensorBoard events or drive a live plot (in a distributed run, on rank 0 only).

    Under torchrun (WORLD_SIZE > 1 in the environment) this is one rank of a data-parallel run: see
    :mod:`mnistlab.training.distributed`. Every rank returns the same Run; only rank 0 writes the folder.
    torch's thread count is set from ``config.threads`` for the run and restored afterwards (and NumPy's
    BLAS threads, for ``config.engine == "numpy"``, the NumPy engine: it trains on the CPU, in one process).
    ``process``: train alone in this process, on its device, whatever the environment says (a committee's
    member, trained whole by one torchrun process). A committee (``config.members`` > 1) is trained by
    :func:`mnistlab.training.committee.train_committee`, whose members are runs of this function.
    """
    config = copy.deepcopy(config).validate()  # the run's own copy: the caller may reuse theirs
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces one: choose one")
    if config.members > 1:
        raise ConfigError("fit trains one run; train a committee (members > 1) with mnistlab.train")
    if config.engine == "numpy":
        check_config(config)  # before anything is read or written
    with torch_threads(config.threads), blas_threads(config):
        dist = process or distributed.setup("cpu" if config.engine == "numpy" else config.device)
        try:
            # `held`: the run folder (its lock, error.txt on failure), from when it is opened to the end
            with dist.peer_failures(), contextlib.ExitStack() as held:
                place = Place(Path(resume) if resume is not None else None, overwrite, held)
                return _fit(config, dist, place, reporter, callbacks)
        finally:
            dist.teardown()


@dataclass
class Place:
    """Where the run writes: a resumed folder, or a new one (``overwrite``: replacing an earlier run)."""

    resume: Path | None
    overwrite: bool
    held: contextlib.ExitStack  # holds the run folder until the run ends


def _fit(
    config: TrainConfig,
    dist: SingleProcess,
    place: Place,
    reporter: Reporter | None,
    callbacks: Sequence[EpochCallback],
) -> Run:
    """The story: build, restore, then for each epoch step + validate + checkpoint, then finish."""
    reporter = _reporter(config, dist, reporter)
    changes = _resume_changes(config, place, dist)
    splits, trainer = _build(config, dist)
    folder = dist.on_main(lambda: _open_folder(config, place))  # None: a dry run, or not rank 0
    state = _restore(trainer, place.resume, changes)
    reporter.line(_banner(config, trainer, splits, folder))
    reporter.line(_legend(config, splits))
    for epoch in state.epochs_left(trainer.last_epoch):
        result = trainer.epoch(epoch, reporter)
        record = result.record
        _check_finite(record, config)
        state.steps.append(steps_record(epoch, result.step_losses))
        is_best = state.observe(record, config.monitor, trainer.model)
        reporter.line(_epoch_line(record, trainer.last_epoch, is_best))
        for callback in callbacks if dist.is_main else ():  # like the run folder: rank 0 only
            callback(record)
        _checkpoint(trainer, state, folder)
        if dist.decided_by_main(state.stopper.should_stop):
            reporter.line(f"early stopping: no {config.monitor} improvement for {config.patience} epochs")
            break
    return _finish(trainer, splits, state, folder, reporter)


# ---- the steps ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads inside the block (None: leave torch's setting); restore it after."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _reporter(config: TrainConfig, dist: SingleProcess, given: Reporter | None) -> Reporter:
    if not dist.is_main:
        return Reporter(quiet=True)  # ranks other than 0 print nothing
    return given or Reporter(quiet=config.quiet, progress=config.progress)


def _resume_changes(config: TrainConfig, place: Place, dist: SingleProcess) -> dict:
    """What a resume changes in the run's config ({} for a new run); fails fast, before any data is read.

    The folder is held first (rank 0), so a second resumer fails at once. The resumed run keeps its recorded
    ``out`` (the folder may have been given by another path since).
    """
    resume = place.resume
    if resume is None:
        return {}
    if config.engine == "numpy":  # why: NumpyTrainer's docstring
        raise ConfigError(f"{resume}: runs of the numpy engine cannot be resumed; train it again")
    check_resumable(resume)
    if dist.is_main and resume.is_dir():
        place.held.enter_context(hold_run_folder(resume))
    stored = read_config(resume)
    changes = resume_changes(stored, config, resume)
    _check_model_fits(resume, config)
    config.out = stored.out
    return changes


def _check_model_fits(resume: Path, config: TrainConfig) -> None:
    """The resumed config.json's model must fit in memory and its checkpoint (checked on the meta device,
    before any data is read or the folder touched); a RunError naming the file otherwise."""
    m = config.model
    try:
        check_fits_in_memory(m.name, hidden=m.hidden, dropout=m.dropout, width=m.width)
    except ConfigError as exc:
        raise RunError(f"{resume / CONFIG_FILE}: {exc}") from None
    check_checkpoint_fits(resume, config)


def _build(config: TrainConfig, dist: SingleProcess) -> tuple[Splits, AnyTrainer]:
    """Data on the device, then the model and everything that trains it."""
    progress = not config.quiet and dist.is_main
    if config.engine == "numpy":  # the lecture's MLP by hand, behind the same epoch interface
        return build_numpy_trainer(config, dist, progress)
    torch.manual_seed(config.seed)  # model initialisation and dropout (the same init on every rank)
    splits = dist.main_first(lambda: prepare_data(config, dist.device, progress=progress))
    model = model_from_config(config.model).to(dist.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dist.seed_rank(config.seed)
    return splits, build_trainer(config, model, splits.train, splits.val, dist, splits.preprocessor)


def _open_folder(config: TrainConfig, place: Place) -> Path | None:
    """The run folder: the resumed one, a new one (its path recorded as ``config.out``), or None (dry run)."""
    if config.dry_run:
        return None
    if place.resume is not None:
        return place.held.enter_context(recording_errors(place.resume, _write_hint(config, place.resume)))
    folder = create_run_dir(config.out, config.model.name, overwrite=place.overwrite)
    place.held.enter_context(hold_run_folder(folder, empty_it=place.overwrite))
    place.held.enter_context(recording_errors(folder, _write_hint(config, folder)))
    config.out = str(folder)
    write_config(folder, config)
    write_metrics(folder, [])
    write_steps(folder, [])
    crash_point("run-folder-ready")
    return folder


def _write_hint(config: TrainConfig, folder: Path) -> str:
    """What to do after a full disk: resume (the numpy engine cannot: its run starts again)."""
    if config.engine == "numpy":
        return f"once it can be written, train again with --overwrite --out {folder}"
    return f"once it can be written, continue the run with --resume {folder}"


def _restore(trainer: AnyTrainer, resume: Path | None, changes: dict) -> TrainState:
    """Early stopping and the history; on resume, everything else too, from the checkpoint."""
    c = trainer.config
    mode = "min" if c.monitor == "val_loss" else "max"
    state = TrainState(EarlyStopping(mode=mode, patience=c.patience, min_delta=c.min_delta))
    if resume is None:
        return state
    restore_checkpoint(resume, trainer, state)  # every rank reads the same files
    state.config_history.append(config_change(changes, len(state.history)))
    state.steps = [s for s in read_steps(resume) if s["epoch"] <= len(state.history)]
    if trainer.dist.is_main:  # the folder says exactly what the checkpoint holds, and the config it now runs
        write_metrics(resume, state.history)
        write_steps(resume, state.steps)
        write_config(resume, c)
    return state


def _check_finite(record: dict, config: TrainConfig) -> None:
    """Stop a diverged run with a clear message (error.txt beside it); no checkpoint of the bad weights."""
    if math.isfinite(record["train_loss"]):
        return
    raise TrainingDiverged(
        f"training diverged in epoch {record['epoch']}: the loss became {record['train_loss']}; "
        f"try a smaller learning rate (e.g. --lr {config.optim.lr / 10:g})"
    )


def _checkpoint(trainer: AnyTrainer, state: TrainState, folder: Path | None) -> None:
    """steps.jsonl, last.safetensors, then the metrics line: a crash between any two loses nothing on resume
    (the steps may run one epoch ahead of the checkpoint; a resume cuts them back to it)."""
    if trainer.config.dry_run:
        return
    if folder is not None:
        write_steps(folder, state.steps)
    if not isinstance(trainer, NumpyTrainer):  # a numpy-engine run is not resumable: no checkpoint
        # a collective: every rank takes part; each rank's own streams (dropout, distortions) come to rank 0
        rng_states = trainer.dist.gather_rng_states(trainer.generator_states())
        if folder is not None:
            save_checkpoint(folder, trainer, state, rng_states)
    crash_point("checkpoint-saved")  # test-only: between the checkpoint and the metrics line
    if folder is not None:
        append_metrics(folder, state.history[-1])


def _finish(
    trainer: AnyTrainer, splits: Splits, state: TrainState, folder: Path | None, reporter: Reporter
) -> Run:
    """Best weights back, the test set scored once (unless withheld), then model file and summary (which marks
    the run done)."""
    config, model, dist = trainer.config, trainer.model, trainer.dist
    state.stopper.restore_best(model)
    model.eval()  # the run's model is returned for inference (scoring test did this; it may be withheld)
    environment = describe_environment(dist.device) | {"world_size": dist.world_size}
    if config.engine == "numpy":
        environment |= blas_environment()
    if smoke_steps():
        environment["smoke_steps"] = smoke_steps()  # a smoke test's run: its figures mean nothing
    summary = summarise(config, count_parameters(model), state, environment)
    if not config.score_test:  # --no-score-test: withheld, and said so (None), not left out
        summary.update(test_accuracy=None, test_loss=None, test_images=None)
    elif not config.dry_run:
        test = splits.score_test(model, config.eval_batch_size, config.amp, dist)
        summary.update(test_accuracy=test["accuracy"], test_loss=test["loss"], test_images=test["images"])
        reporter.line(
            f"test accuracy {100 * test['accuracy']:.2f} % (loss {test['loss']:.4f}) on {len(splits.test):,} "
            f"images, best epoch {summary['best_epoch']}, {summary['train_seconds']:.1f} s training"
        )
    if folder is not None:
        save_model_file(folder / MODEL_FILE, model, splits.preprocessor, config)
        write_summary(folder, summary)
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return Run(folder, config, model, splits.preprocessor, summary, state.history, dist.device)


def summarise(config: TrainConfig, parameters: int, state: TrainState, environment: dict) -> dict:
    """The summary before the test score. Its best_val_* are those of best_epoch, the epoch whose weights
    are kept (by ``monitor``); without validation the kept weights are the last epoch's."""
    history = state.history
    best_epoch = state.stopper.best_epoch or len(history)
    best = history[best_epoch - 1] if history else {}
    return {
        "model": config.model.name,
        "engine": config.engine,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "parameters": parameters,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_val_accuracy": best.get("val_accuracy"),
        "best_val_loss": best.get("val_loss"),
        # history holds every epoch trained, including those before a resume
        "train_seconds": round(sum(h["seconds"] for h in history), 3),
        "environment": environment,
        "config_history": state.config_history,
    }


def _banner(config: TrainConfig, trainer: AnyTrainer, splits: Splits, folder: Path | None) -> str:
    dist = trainer.dist
    if config.engine == "numpy":
        threads = f"numpy engine, BLAS threads {blas_environment()['blas_threads']}"
    else:
        threads = f"{torch.get_num_threads()} threads"
    return (
        f"mnistlab: {config.model.name} ({count_parameters(trainer.model):,} parameters) on "
        f"{config.data.dataset}, {len(splits.train):,} train / {len(splits.val) if splits.val else 0:,} val "
        f"images, device {dist.device}, {threads}"
        + (f" x {dist.world_size} processes ({dist.backend})" if dist.enabled else "")
        + (f", run folder {folder}" if folder else " (dry run: nothing is written)")
        + (
            f"; SMOKE TEST: {smoke_steps()} steps per epoch at most ({SMOKE_STEPS_ENV})"
            if smoke_steps()
            else ""
        )
    )


def _legend(config: TrainConfig, splits: Splits) -> str:
    """What the epoch lines show, said once: they stay short, and the `*` is never a mystery."""
    best = (
        f"; * = best epoch so far by {config.monitor} (its weights are kept)"
        if splits.val is not None
        else ""
    )
    return (
        "each epoch: train and val loss (nats/image) and accuracy, the peak learning rate of its steps, "
        f"seconds{best}"
    )


def _epoch_line(record: dict, epochs: int, is_best: bool) -> str:
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_accuracy']:.2f} %",
    ]
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f} acc {100 * record['val_accuracy']:.2f} %")
    parts += [f"peak lr {record.get('lr_peak', record['lr']):.2e}", f"{record['seconds']:.1f} s"]
    return "  ".join(parts) + ("  *" if is_best else "")
