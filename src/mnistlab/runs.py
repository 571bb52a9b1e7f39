"""Run folders: their files, the one way to create one, the model file format, and a finished run as a Run.

A run folder (written by :func:`mnistlab.training.fit.fit`)::

    config.json        the resolved TrainConfig, written first (rewritten when a resume changes a safe field)
    metrics.jsonl      one JSON object per epoch, appended as each epoch ends (rewritten on resume)
    steps.jsonl        one JSON object per epoch: every step's training loss, for per-step learning curves
    last.safetensors   resume state after each epoch; removed when the run completes
    model.safetensors  the best weights (by validation) + preprocessing statistics + config, written at the end
    summary.json       written last: its presence is what marks the run as complete
    error.txt          only when the run failed (e.g. diverged); the folder then has no summary.json

Reading a run needs no training code: serving, export and reports stand on this module, not on
:mod:`mnistlab.training`. Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistlab import __version__
from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.errors import ConfigError, MnistlabError, RunError
from mnistlab.evaluation.metrics import classification_report
from mnistlab.fileio import atomic_save_tensors, atomic_write, load_tensors, split_prefix, with_prefix
from mnistlab.inference import evaluate, predict_logits, resolve_device
from mnistlab.models import model_from_config

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
STEPS_FILE = "steps.jsonl"
CHECKPOINT_FILE = "last.safetensors"
MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
ERROR_FILE = "error.txt"
MODEL_FORMAT = "mnistlab.model/1"
Images = torch.Tensor | np.ndarray  # raw pixels 0-255: (N, 28, 28), (N, 1, 28, 28) or one (28, 28)


# ---- creating a folder -------------------------------------------------------------------------------------
def create_run_dir(out: str | Path | None, name: str, root: str | Path = "runs") -> Path:
    """Create a new, empty folder for a run (or an experiment) and return it.

    ``out`` given: that folder; an existing empty folder is used, a non-empty one is a ConfigError. ``out``
    None: ``root/<YYYYmmdd-HHMMSS>-<name>``, with ``-2``, ``-3``, ... appended when another process took that
    name in the same second. ``mkdir(exist_ok=False)`` is the claim: two processes never share a folder.
    """
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir() or any(path.iterdir()):
                raise ConfigError(
                    f"{path}: folder already exists and is not empty; choose another --out"
                ) from None
        return path
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    for k in range(1, 1000):
        path = root / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"{root}: could not find a free folder name for {stamp}")


# ---- the text files ----------------------------------------------------------------------------------------
def read_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig a run folder was trained with; a one-line RunError when it is missing or unreadable."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, ConfigError) as exc:
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
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunError(f"{path}: line {number} is not JSON") from None
    return records


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one epoch's record. A torn line is harmless: resume rewrites the file from the checkpoint."""
    with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """Replace metrics.jsonl with exactly ``history``, atomically."""
    atomic_write(run_dir / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in history))


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
    atomic_write(run_dir / STEPS_FILE, "".join(json.dumps(record) + "\n" for record in epochs))


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: not a readable run summary ({exc})") from None


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
    """(config, model in eval mode on ``device``, preprocessor) from a model.safetensors file."""
    tensors, meta = load_tensors(path)
    try:
        config = TrainConfig.from_dict(json.loads(meta["config"]))
        pre = Preprocessor.from_state(json.loads(meta["preprocessing"]), split_prefix(tensors, "preprocess."))
    except (KeyError, json.JSONDecodeError, TypeError, MnistlabError) as exc:
        raise RunError(f"{path}: not an mnistlab model file (bad metadata: {exc})") from None
    model = model_from_config(config.model)
    try:
        model.load_state_dict(split_prefix(tensors, "model."))
    except RuntimeError as exc:
        raise RunError(f"{path}: weights do not match model {config.model.name!r}: {exc}") from None
    return config, model.to(device).eval(), pre


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
    """Why ``path`` is not a run folder at all (a lab experiment's, the --seeds parent, no config.json), or None
    when it is one (complete or not)."""
    seeds = sorted(p.name for p in path.glob("seed-*") if (p / CONFIG_FILE).is_file())
    if seeds:
        return (
            f"{path}: not a run folder: it holds the runs of `mnistlab train --seeds` ({', '.join(seeds)}); "
            f"use one of them, e.g. {path / seeds[0]}"
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
        resumable = (path / CHECKPOINT_FILE).exists()
        hint = "; it may still be running, or resume it with --resume" if resumable else ""
        raise RunError(f"{path}: incomplete run (no {SUMMARY_FILE}){hint}")
    dev = resolve_device(device)
    config, model, pre = read_model_file(path / MODEL_FILE if path.is_dir() else path, dev)
    folder = path if path.is_dir() else None
    summary = read_summary(folder) if folder else {}
    history = read_metrics(folder) if folder else []
    return Run(folder, config, model, pre, summary, history, dev)
