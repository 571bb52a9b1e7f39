"""Run folders: their files, the one way to create one, the model file format, and a finished run as a Run.

A run folder (written by :func:`mnistlab.training.fit.fit`)::

    config.json        the resolved TrainConfig, written first (rewritten when a resume changes a safe field)
    metrics.jsonl      one JSON object per epoch, appended as each epoch ends (rewritten on resume)
    steps.jsonl        one JSON object per epoch: every step's training loss, for per-step learning curves
    last.safetensors   resume state after each epoch; removed when the run completes
    model.safetensors  the best weights (by validation) + preprocessing statistics + config, written at the end
    summary.json       written last: its presence is what marks the run as complete
    error.txt          only when the run failed (diverged, disk full, ...); the folder then has no summary.json
    .lock              while a process trains in it (:func:`hold_run_folder`); a second one fails at once

A committee's folder (written by :func:`mnistlab.training.committee.train_committee`)::

    config.json        the committee's TrainConfig (members = N, combine, the members' recipe)
    members/K/         member K = 0..N-1: a complete run folder as above (seed + K, the shared split_seed)
    model.safetensors  every member's weights (model.members.K.*), the shared preprocessing and the config
    summary.json       written last: each member's and the committee's accuracies, the rule, shared errors

Its model file loads as a :class:`~mnistlab.models.Committee`, so a committee is a Run like any other.

Reading a run needs no training code: serving, export and reports stand on this module, not on
:mod:`mnistlab.training`. Nothing is ever unpickled, and every file is checked as untrusted input
(:mod:`mnistlab.runcheck`): a damaged or hostile folder gives a one-line RunError naming the file.

A folder is never stuck: one that stopped before its first checkpoint resumes from epoch 1, or is replaced
with ``overwrite``; the temporary files of an interrupted write are removed when it is next held.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistlab import __version__
from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.errors import ConfigError, MnistlabError, RunError, WriteError
from mnistlab.evaluation.metrics import classification_report
from mnistlab.fileio import (
    append_text,
    atomic_save_tensors,
    atomic_write,
    file_lock,
    is_temp_file,
    load_tensors,
    make_dirs,
    remove_stale_temps,
    split_prefix,
    with_prefix,
)
from mnistlab.inference import evaluate, member_log_probs, predict_logits, resolve_device
from mnistlab.models import Committee, model_from_config
from mnistlab.runcheck import check_record, check_weights, config_from_metadata, preprocessor_from

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
STEPS_FILE = "steps.jsonl"
CHECKPOINT_FILE = "last.safetensors"
MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
ERROR_FILE = "error.txt"
LOCK_FILE = ".lock"
MEMBERS_DIR = "members"  # a committee's member runs: members/0, members/1, ...
MODEL_FORMAT = "mnistlab.model/1"
Images = torch.Tensor | np.ndarray  # raw pixels 0-255: (N, 28, 28), (N, 1, 28, 28) or one (28, 28)


# ---- creating a folder -------------------------------------------------------------------------------------
def create_run_dir(
    out: str | Path | None, name: str, root: str | Path = "runs", *, overwrite: bool = False
) -> Path:
    """Create a new, empty folder for a run (or an experiment) and return it.

    ``out`` given: that folder; an existing empty folder is used (the lock and temporary files a killed run
    leaves do not count), a non-empty one is a ConfigError, unless ``overwrite`` and it holds an earlier
    mnistlab run (:func:`hold_run_folder` empties it, once it holds the lock). ``out`` None:
    ``root/<YYYYmmdd-HHMMSS>-<name>``, with ``-2``, ``-3``, ... appended when another process took that name
    in the same second. ``mkdir(exist_ok=False)`` is the claim: two processes never share a folder.
    """
    if out is not None:
        path = Path(out)
        make_dirs(path.parent)
        try:
            path.mkdir()
        except FileExistsError:
            _check_reusable(path, overwrite)
        except OSError as exc:
            raise WriteError(f"{path}: cannot create the folder: {exc.strerror or exc}") from None
        return path
    root = Path(root)
    make_dirs(root)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    for k in range(1, 1000):
        path = root / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"{root}: could not find a free folder name for {stamp}")


def _check_reusable(path: Path, overwrite: bool) -> None:
    """An existing ``--out`` may be used when empty, or replaced with ``overwrite`` when it holds a run."""
    if not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder; choose another --out")
    if not run_files(path):
        return
    if not overwrite:
        raise ConfigError(
            f"{path}: folder already exists and is not empty; choose another --out, continue its run with "
            f"--resume {path}, or replace it with --overwrite"
        )
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(f"{path}: --overwrite replaces only a run folder, and it has no {CONFIG_FILE}")
    read_config(path)  # a RunError unless its config.json is an mnistlab run's


def run_files(folder: Path) -> list[Path]:
    """What is in ``folder`` apart from a lock file and the temporary files of interrupted writes."""
    return [p for p in folder.iterdir() if p.name != LOCK_FILE and not is_temp_file(p.name)]


# ---- holding a folder while training in it -----------------------------------------------------------------
@contextlib.contextmanager
def hold_run_folder(folder: Path, *, empty_it: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for one training run (new or resumed), until the block ends.

    Its lock (``.lock``, an ``flock``) makes a second trainer or resumer of the folder fail at once; the
    temporary files of a crashed write are removed; ``empty_it`` (``--overwrite``) then removes everything
    else.
    """
    with file_lock(folder / LOCK_FILE, what=f"{folder}: this run folder"):
        remove_stale_temps(folder)
        if empty_it:
            _empty(folder)
        yield folder


@contextlib.contextmanager
def recording_errors(folder: Path, write_hint: str = "") -> Iterator[Path]:
    """Record a failure of the block in ``folder``/error.txt, where the disk lets it; remove it on success.

    Not for Ctrl-C (the run is just interrupted, and resumable) nor a ConfigError (a bad request, not a
    failed run). ``write_hint`` is added to a WriteError's message (e.g. how to resume once there is space).
    """
    try:
        yield folder
    except ConfigError:
        raise
    except Exception as exc:
        resumable = isinstance(exc, WriteError) and (folder / CONFIG_FILE).is_file()
        error = WriteError(f"{exc}; {write_hint}") if write_hint and resumable else exc
        with contextlib.suppress(OSError, MnistlabError):  # a full disk may refuse this too
            write_error(folder, error)
        if error is exc:
            raise
        raise error from exc
    (folder / ERROR_FILE).unlink(missing_ok=True)


def _empty(folder: Path) -> None:
    """Remove everything but the lock (``--overwrite``, once the folder is held)."""
    for entry in run_files(folder):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# ---- the text files ----------------------------------------------------------------------------------------
def read_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run folder was trained with; a one-line RunError when it is missing or unreadable."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (
        OSError,
        ValueError,
        RecursionError,
        TypeError,
        ConfigError,
    ) as exc:  # ValueError: not UTF-8, not JSON
        raise RunError(f"{path}: not a readable mnistlab config ({exc})") from None


def write_config(run_dir: Path, config: TrainConfig) -> None:
    atomic_write(run_dir / CONFIG_FILE, config.to_json())


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of metrics.jsonl ([] when absent).

    A last line that is not JSON was torn by an interrupted write and is dropped; a bad line before it means
    the file was damaged, a RunError naming the line.
    """
    return _read_jsonl(Path(run_dir) / METRICS_FILE)


def _read_jsonl(path: Path) -> list[dict]:
    """One JSON object per line; a torn last line is dropped, a bad line before it is a RunError."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not readable ({exc})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines):
                break
            raise RunError(f"{path}: line {number} is not JSON") from None
        records.append(check_record(path, f"line {number}", record))
    return records


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one epoch's record. A torn line is harmless: resume rewrites the file from the checkpoint."""
    append_text(run_dir / METRICS_FILE, json.dumps(record) + "\n")


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """Replace metrics.jsonl with exactly ``history``, atomically."""
    _write_jsonl(run_dir / METRICS_FILE, history)


def steps_record(epoch: int, step_losses: list[float]) -> dict:
    """One line of steps.jsonl: ``{"epoch": 1, "loss": [...]}``, each step's batch-mean training loss in
    nats/image (before its update, in order; in a data-parallel run, rank 0's own batches), 5 digits."""
    return {"epoch": epoch, "loss": [float(f"{loss:.5g}") for loss in step_losses]}


def read_steps(run_dir: str | Path) -> list[dict]:
    """The per-epoch step losses of steps.jsonl ([] when absent; a torn last line is dropped)."""
    return _read_jsonl(Path(run_dir) / STEPS_FILE)


def write_steps(run_dir: Path, epochs: list[dict]) -> None:
    """Replace steps.jsonl with ``epochs`` (records of :func:`steps_record`), atomically: a small file, rewritten
    whole at each epoch's end so that it is never half-written."""
    _write_jsonl(run_dir / STEPS_FILE, epochs)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    """Replace ``path`` with one JSON object per line, atomically (what :func:`_read_jsonl` reads back)."""
    atomic_write(path, "".join(json.dumps(record) + "\n" for record in records))


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RunError(
            f"{path}: not a readable run summary (not UTF-8: {exc.reason} at byte {exc.start})"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise RunError(f"{path}: not a readable run summary ({exc})") from None
    if not isinstance(summary, dict):
        raise RunError(
            f"{path}: not a readable run summary (a JSON {'array' if isinstance(summary, list) else type(summary).__name__}, not a JSON object)"
        )
    return summary


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))


def write_error(run_dir: Path, error: Exception) -> None:
    atomic_write(run_dir / ERROR_FILE, f"{type(error).__name__}: {error}\n")


# ---- the model file ----------------------------------------------------------------------------------------
def model_metadata(config: TrainConfig, pre: Preprocessor) -> dict[str, str]:
    """The JSON metadata stored inside model.safetensors, so the file alone is enough to rebuild the model."""
    return {
        "format": MODEL_FORMAT,
        "mnistlab_version": __version__,
        "config": config.to_json(),
        "preprocessing": json.dumps(pre.metadata()),
    }


def save_model_file(path: Path, model: nn.Module, pre: Preprocessor, config: TrainConfig) -> None:
    """Weights under ``model.*``, preprocessing statistics under ``preprocess.*``, config in the metadata."""
    tensors = with_prefix(model.state_dict(), "model.") | with_prefix(pre.state_dict(), "preprocess.")
    atomic_save_tensors(path, tensors, model_metadata(config, pre))


def read_model_file(path: Path, device: torch.device) -> tuple[TrainConfig, nn.Module, Preprocessor]:
    """(config, model in eval mode on ``device``, preprocessor) from a model.safetensors file.

    The file is untrusted: its config, weights and statistics are checked (:mod:`mnistlab.runcheck`) before
    the model is built, so memory stays a small multiple of the file's size whatever its metadata says.
    """
    tensors, meta = load_tensors(path)  # the file's own bytes: bounded by its size
    config = config_from_metadata(path, meta)
    weights = split_prefix(tensors, "model.")
    check_weights(path, config, weights, model_for)  # names, shapes, dtypes, against its model on "meta"
    pre = preprocessor_from(path, config, meta, split_prefix(tensors, "preprocess."))
    model = model_for(config)  # now known to be the size of the file's tensors
    model.load_state_dict(weights)
    return config, model.to(device).eval(), pre


def model_for(config: TrainConfig) -> nn.Module:
    """A fresh model of a run's config: the registry's model, or a committee of ``config.members`` of them."""
    if config.members > 1:
        models = [config.member_model(k) for k in range(config.members)]  # one model, or several in turn
        return Committee([model_from_config(m) for m in models], config.combine)
    return model_from_config(config.model)


# ---- a finished run ----------------------------------------------------------------------------------------
@dataclass
class Run:
    """A trained model with its preprocessing, config (a private copy), summary and per-epoch history."""

    path: Path | None
    config: TrainConfig
    model: nn.Module
    preprocessor: Preprocessor
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        # A private copy: the caller's later edits to their config must not rewrite this run's record.
        self.config = copy.deepcopy(self.config)

    def predict_logits(self, images: Images, batch_size: int = 2000) -> Images:
        """Logits (N, 10) for raw images: (N, 28, 28) or (N, 1, 28, 28) pixels in 0-255 (uint8 or float).

        The run's own preprocessing (fitted on its training split) is applied first. A NumPy array gives a
        NumPy array (float32), anything else a torch tensor on the CPU.
        """
        x = _as_tensor(images)
        if x.ndim == 2:
            x = x.unsqueeze(0)
        logits = predict_logits(self.model, self.preprocessor(x.to(self.device)), batch_size).cpu()
        return logits.numpy() if isinstance(images, np.ndarray) else logits

    def predict(self, images: Images, batch_size: int = 2000) -> Images:
        """Class probabilities (N, 10), softmax of the logits; ``.argmax(1)`` gives the labels. NumPy in,
        NumPy out; otherwise a torch tensor."""
        probabilities = torch.softmax(torch.as_tensor(self.predict_logits(images, batch_size)), dim=1)
        return probabilities.numpy() if isinstance(images, np.ndarray) else probabilities

    def predict_with_members(self, images: Images, batch_size: int = 2000) -> tuple[Images, Images | None]:
        """(probabilities (N, 10), each member's probabilities (M, N, 10) or None when not a committee), from
        one forward pass of every member. NumPy in, NumPy out; otherwise torch tensors on the CPU."""
        if not isinstance(self.model, Committee):
            return self.predict(images, batch_size), None
        x = _as_tensor(images)
        x = x.unsqueeze(0) if x.ndim == 2 else x
        members = member_log_probs(self.model, self.preprocessor(x.to(self.device)), batch_size)
        combined, votes = torch.softmax(self.model.combine(members), dim=1).cpu(), members.exp().cpu()
        if isinstance(images, np.ndarray):
            return combined.numpy(), votes.numpy()
        return combined, votes

    def evaluate(self, split: str = "test", data_dir: str | Path | None = None) -> dict:
        """Loss, accuracy, confusion matrix and per-class scores on the dataset's test split."""
        if split != "test":
            raise MnistlabError(f"evaluate supports split 'test' only, got {split!r}")
        arrays = load_dataset(
            self.config.data.dataset,
            data_dir or self.config.data.data_dir,
            download=self.config.data.download,
            progress=False,
        )
        images = self.preprocessor(torch.from_numpy(arrays.test_images).to(self.device))
        labels = torch.from_numpy(arrays.test_labels).long().to(self.device)
        result = evaluate(self.model, images, labels, self.config.eval_batch_size)
        report = classification_report(result["predictions"], labels.cpu(), num_classes=10)
        return {
            "loss": result["loss"],
            "accuracy": result["accuracy"],
            "images": int(labels.shape[0]),
        } | report


def _as_tensor(images: Images) -> torch.Tensor:
    """Images as a tensor without a copy where possible; a read-only array (``np.frombuffer``) is copied, since
    torch cannot share it (and would warn)."""
    if isinstance(images, np.ndarray):
        array = np.ascontiguousarray(images)
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    return torch.as_tensor(images)


def not_a_run_folder(path: Path) -> str | None:
    """Why ``path`` is not a run folder at all (a lab experiment's, the --seeds parent, a committee's members/
    folder, no config.json), or None when it is one (complete or not)."""
    seeds = sorted(p.name for p in path.glob("seed-*") if (p / CONFIG_FILE).is_file())
    if seeds:
        return (
            f"{path}: not a run folder: it holds the runs of `mnistlab train --seeds` ({', '.join(seeds)}); "
            f"use one of them, e.g. {path / seeds[0]}"
        )
    if path.name == MEMBERS_DIR and (path.parent / CONFIG_FILE).is_file():
        return (
            f"{path}: not a run folder: it holds a committee's members; use the committee, {path.parent}, "
            f"or one member, e.g. {path / '0'}"
        )
    config = path / CONFIG_FILE
    if not config.is_file():
        return f"{path}: not a run folder (no {CONFIG_FILE})"
    try:
        experiment = json.loads(config.read_text(encoding="utf-8")).get("experiment")
    except (OSError, ValueError, AttributeError):
        return None  # read_config names the problem later
    if experiment:
        return (
            f"{path}: not a run folder: it is the output of `mnistlab lab {experiment}`; "
            f"open {path / 'report.html'}"
        )
    return None


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run from its folder (or from a bare model.safetensors). Never unpickles anything."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: run folder does not exist")
    if path.is_dir() and (reason := not_a_run_folder(path)):
        raise RunError(reason)
    if path.is_dir() and not (path / SUMMARY_FILE).is_file():
        resumable = (path / CHECKPOINT_FILE).exists() or (path / MEMBERS_DIR).is_dir()
        hint = "; it may still be running, or resume it with --resume" if resumable else ""
        raise RunError(f"{path}: incomplete run (no {SUMMARY_FILE}){hint}")
    dev = resolve_device(device)
    config, model, pre = read_model_file(path / MODEL_FILE if path.is_dir() else path, dev)
    folder = path if path.is_dir() else None
    summary = read_summary(folder) if folder else {}
    history = read_metrics(folder) if folder else []
    return Run(folder, config, model, pre, summary, history, dev)
