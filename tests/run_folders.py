"""Run folders built by hand, without training: a valid finished run, and hostile variants of it.

``finished_run(folder, data_dir)`` writes what :func:`mnistlab.train` leaves behind (config.json, metrics.jsonl,
model.safetensors, summary.json) for a freshly initialised model, in milliseconds. ``HOSTILE`` lists the
damaged or malicious variants of issue 12 (defects 1, 2 and 4): each edits such a folder in place and says
which file the error must name and which words must describe the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor
from mnistlab.models import model_from_config
from mnistlab.runs import MODEL_FILE, save_model_file, write_config, write_metrics, write_summary


def finished_run(folder: Path, data_dir: Path, model: str = "mlp") -> Path:
    """A complete run folder of an untrained ``model`` (mlp: one hidden layer of 16) for ``data_dir``."""
    config = TrainConfig()
    config.model.name = model
    config.model.hidden = (16,) if model == "mlp" else None
    config.data.data_dir, config.data.download = str(data_dir), False
    config.data.val_size, config.epochs, config.out = 10, 2, str(folder)
    torch.manual_seed(0)
    net = model_from_config(config.model)
    pre = Preprocessor("standardize", "global", torch.tensor(33.0), torch.tensor(78.0))
    folder.mkdir(parents=True)
    write_config(folder, config)
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_accuracy": 0.1 * e,
            "val_loss": 2.1 / e,
            "val_accuracy": 0.1,
        }
        for e in (1, 2)
    ]
    write_metrics(folder, history)
    save_model_file(folder / MODEL_FILE, net, pre, config)
    write_summary(folder, {"model": model, "test_accuracy": 0.1, "epochs_run": 2, "best_epoch": 1})
    return folder


# ---- editing a model file ------------------------------------------------------------------------------------
def edit_model_file(
    folder: Path,
    config: Callable[[dict], None] | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
    name: str = MODEL_FILE,
) -> None:
    """Rewrite model.safetensors (or ``name``) with its config (a JSON dict) and/or its tensors changed."""
    path = folder / name
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    state = load_file(str(path))
    if config is not None:
        raw = json.loads(meta["config"])
        config(raw)
        meta["config"] = json.dumps(raw)
    if tensors is not None:
        tensors(state)
    save_file(state, str(path), metadata=meta)


def _set_model(**fields) -> Callable[[dict], None]:
    return lambda raw: raw["model"].update(fields)


def _weights_as(dtype: torch.dtype) -> Callable[[dict[str, torch.Tensor]], None]:
    def convert(state: dict[str, torch.Tensor]) -> None:
        for name in [n for n in state if n.startswith("model.")]:
            state[name] = (state[name] * 10).to(dtype)

    return convert


def _preprocess(name: str, value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda state: state.__setitem__(f"preprocess.{name}", torch.tensor(value))


@dataclass(frozen=True)
class Hostile:
    """One damaged run folder: ``model`` is the model it starts from; ``edit`` breaks it."""

    name: str
    model: str
    edit: Callable[[Path], None]
    file: str  # the file the one-line error must name
    words: str  # a regex the error must contain: the problem, in words


HOSTILE = [
    # The widths are beyond any model mnistlab builds: refused by range before anything is built.
    Hostile(
        "width 150",
        "cnn",
        lambda f: edit_model_file(f, _set_model(width=150)),
        MODEL_FILE,
        r"width must be in",
    ),
    Hostile(
        "width 1e6",
        "cnn",
        lambda f: edit_model_file(f, _set_model(width=1e6)),
        MODEL_FILE,
        r"width must be in",
    ),
    # A width in range that does not fit the file: refused on the first shape, before anything is allocated.
    Hostile(
        "width 2",
        "cnn",
        lambda f: edit_model_file(f, _set_model(width=2.0)),
        MODEL_FILE,
        r"has shape \(16, 1, 3, 3\), but its config \(cnn width 2\) needs \(32, 1, 3, 3\)",
    ),
    Hostile(
        "width 'wide'",
        "cnn",
        lambda f: edit_model_file(f, _set_model(width="wide")),
        MODEL_FILE,
        "model.width must be a finite number",
    ),
    Hostile(
        "hidden [1e9]",
        "mlp",
        lambda f: edit_model_file(f, _set_model(hidden=[1e9])),
        MODEL_FILE,
        "model.hidden must be a list of integers",
    ),
    Hostile(
        "hidden [10**9]",
        "mlp",
        lambda f: edit_model_file(f, _set_model(hidden=[10**9])),
        MODEL_FILE,
        "hidden must be 1 to 100 layers of 1 to 10,000,000 units",
    ),
    Hostile(
        "hidden [4096, 4096]",
        "mlp",
        lambda f: edit_model_file(f, _set_model(hidden=[4096, 4096])),
        MODEL_FILE,
        r"unexpected none|missing model\.net\.5\.weight",
    ),
    Hostile(
        "int64 weights",
        "mlp",
        lambda f: edit_model_file(f, tensors=_weights_as(torch.int64)),
        MODEL_FILE,
        "int64.*float32",
    ),
    Hostile(
        "bool weights",
        "mlp",
        lambda f: edit_model_file(f, tensors=_weights_as(torch.bool)),
        MODEL_FILE,
        "bool.*float32",
    ),
    Hostile(
        "float16 weights",
        "mlp",
        lambda f: edit_model_file(f, tensors=_weights_as(torch.float16)),
        MODEL_FILE,
        "float16.*float32",
    ),
    Hostile(
        "std 0", "mlp", lambda f: edit_model_file(f, tensors=_preprocess("std", 0.0)), MODEL_FILE, "std.*> 0"
    ),
    Hostile(
        "NaN mean",
        "mlp",
        lambda f: edit_model_file(f, tensors=_preprocess("mean", float("nan"))),
        MODEL_FILE,
        "mean.*finite",
    ),
    Hostile(
        "summary.json not UTF-8",
        "mlp",
        lambda f: (f / "summary.json").write_bytes(b'{"model": "\xff\xfe"}'),
        "summary.json",
        "UTF-8",
    ),
    Hostile(
        "summary.json a list",
        "mlp",
        lambda f: (f / "summary.json").write_text("[1, 2]"),
        "summary.json",
        "JSON object",
    ),
    Hostile(
        "garbage metrics.jsonl",
        "mlp",
        lambda f: (f / "metrics.jsonl").write_text('{"epoch": 1}\n\x00garbage{{\n{"epoch": 2}\n'),
        "metrics.jsonl",
        "line 2",
    ),
]
HOSTILE.append(
    Hostile(
        "unknown dataset",
        "mlp",
        lambda f: edit_model_file(f, lambda raw: raw["data"].update(dataset="../etc")),
        MODEL_FILE,
        "unknown dataset '../etc'",
    )
)
HOSTILE.append(
    Hostile(
        "metrics.jsonl records that are not objects",
        "mlp",
        lambda f: (f / "metrics.jsonl").write_text('{"epoch": 1}\n[1, 2]\n{"epoch": 2}\n'),
        "metrics.jsonl",
        "line 2",
    )
)


# ---- small training runs on synthetic data ---------------------------------------------------------------------
def synthetic_config(out: Path, data_dir: Path, **changes) -> TrainConfig:
    """An MLP (16 hidden) on 150 synthetic training images, 5 steps per epoch, 3 epochs, 1 thread: ~0.1 s."""
    config = TrainConfig()
    config.model.name, config.model.hidden = "mlp", (16,)
    config.data.data_dir, config.data.download, config.data.val_size = str(data_dir), False, 50
    config.batch_size, config.epochs, config.threads = 32, 3, 1
    config.quiet, config.progress, config.out = True, False, str(out)
    for name, value in changes.items():
        setattr(config, name, value)
    return config


SYNTHETIC_TRAIN, SYNTHETIC_TEST = 200, 20  # images of the synthetic dataset the configs above train on
