"""A run folder is untrusted input: the checks its files pass before anything is built from them.

A model file (``model.safetensors``) says in its metadata which model to build and how wide, so a hostile or
damaged file could make a loader allocate terabytes, or run a model whose integer weights give confident
nonsense. :func:`mnistlab.runs.read_model_file` therefore checks, before allocating any real tensor:

1. the config: each field of its declared type (:meth:`TrainConfig.from_dict`), then in range (``validate``),
   and a dataset mnistlab knows;
2. the weights: a committee's member count against the file's names (:func:`check_member_count`), then
   the model the config describes is built on torch's ``meta`` device (shapes and dtypes, no
   memory), and its state dict must match the file's ``model.*`` tensors name for name, shape for shape and
   dtype for dtype. A config asking for another width fails on the first shape, in milliseconds. Only then
   is the real model built, the size of the tensors already read: memory stays a small multiple of the
   file's size;
3. the preprocessing statistics: float32, finite, std > 0, the shape their ``stats`` mode needs.

Dtypes: mnistlab writes float32 weights (and int64 BatchNorm batch counters); any other dtype is refused,
naming the dtype found. Integer and bool tensors are not trained weights. float16, bfloat16 and float64 are
refused too rather than converted: mnistlab never writes them, so such a file was made or edited by something
else, and a float32 copy would not compute what its author measured. Convert it to float32 explicitly if you
trust it. The per-epoch records of metrics.jsonl are checked here as well (:func:`check_record`).

Every failure is a :class:`~mnistlab.errors.RunError` naming the file and the problem on one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor
from mnistlab.data.registry import get_dataset_spec
from mnistlab.errors import MnistlabError, RunError

WEIGHT_DTYPES = "float32"  # what mnistlab writes, for the messages
METRIC_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def config_from_metadata(path: Path, metadata: Mapping[str, str]) -> TrainConfig:
    """The model file's config, typed and validated; a RunError naming the file otherwise."""
    try:
        raw = json.loads(metadata["config"])
        config = TrainConfig.from_dict(raw).validate()
        get_dataset_spec(config.data.dataset)  # its images' shape sizes the preprocessing statistics
        return config
    except KeyError:
        raise RunError(f"{path}: not an mnistlab model file (no config in its metadata)") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RunError(f"{path}: the config in its metadata is not JSON ({exc})") from None
    except (TypeError, MnistlabError) as exc:
        raise RunError(f"{path}: bad config in its metadata: {exc}") from None


def check_weights(
    path: Path,
    config: TrainConfig,
    weights: Mapping[str, torch.Tensor],
    build: Callable[[TrainConfig], nn.Module],
) -> None:
    """The file's weights must be exactly the state dict of the model ``build(config)`` makes (a run's model,
    or a committee of them: :func:`mnistlab.runs.model_for`)."""
    described = f"{config.model.name} {_model_knobs(config)}"
    check_member_count(path, config, weights)  # before building: 1000 members on "meta" take seconds
    check_state(path, expected_state(path, config, build), weights, described)


def check_member_count(path: Path, config: TrainConfig, weights: Mapping[str, torch.Tensor]) -> None:
    """The file must hold as many models as its config says: a committee's weights are ``members.K.*``
    (K = 0..members-1), a single model's are not. Checked on the names alone, so the meta build that follows
    costs time in proportion to the file's own tensors."""
    held = len({name.split(".")[1] for name in weights if name.startswith("members.")}) or 1
    if held != config.members:
        wanted = f"a committee of {config.members} members" if config.members > 1 else "one model"
        found = f"a committee of {held} members" if held > 1 else "1 model"
        raise RunError(f"{path}: its config describes {wanted}; the file holds {found}")


def check_state(
    path: Path, expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], described: str
) -> None:
    """``weights`` (from ``path``) must match ``expected`` (a model's state dict, e.g. on ``meta``) name for
    name, shape for shape, dtype for dtype; ``described`` names that model in the message."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        raise RunError(
            f"{path}: its weights are not those of its config's model ({described}): "
            f"missing {_names(missing)}, unexpected {_names(unexpected)}"
        )
    for name, meta in expected.items():
        tensor = weights[name]
        if tuple(tensor.shape) != tuple(meta.shape):
            raise RunError(
                f"{path}: model.{name} has shape {tuple(tensor.shape)}, but its config ({described}) needs "
                f"{tuple(meta.shape)}: the config describes {_count(expected.values()):,} parameters, the "
                f"file holds {_count(weights.values()):,}"
            )
        if tensor.dtype != meta.dtype:
            raise RunError(
                f"{path}: model.{name} is {_dtype(tensor.dtype)}, but mnistlab model weights are "
                f"{_dtype(meta.dtype)}; refusing it rather than converting it"
            )


def expected_state(
    path: Path, config: TrainConfig, build: Callable[[TrainConfig], nn.Module]
) -> dict[str, torch.Tensor]:
    """The state dict of the model ``build(config)`` makes, as meta tensors: shapes and dtypes, no memory."""
    try:
        with torch.device("meta"):
            return dict(build(config).state_dict())
    except (MnistlabError, RuntimeError, ValueError, OverflowError) as exc:
        raise RunError(f"{path}: its config describes a model that cannot be built: {exc}") from None


def preprocessor_from(
    path: Path, config: TrainConfig, metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]
) -> Preprocessor:
    """The stored preprocessing, after checking its statistics (a std of 0 would turn every input into NaN)."""
    try:
        described = json.loads(metadata["preprocessing"])
        pre = Preprocessor.from_state(described, dict(tensors))
    except KeyError:
        raise RunError(f"{path}: not an mnistlab model file (no preprocessing in its metadata)") from None
    except (json.JSONDecodeError, RecursionError, TypeError, MnistlabError) as exc:
        raise RunError(f"{path}: bad preprocessing in its metadata: {exc}") from None
    shape = () if pre.stats == "global" else get_dataset_spec(config.data.dataset).image_shape
    for name in ("mean", "std"):
        _check_statistic(path, name, tensors[name], shape)
    if not (tensors["std"] > 0).all():
        low = float(tensors["std"].min())
        raise RunError(f"{path}: preprocessing std must be > 0 everywhere (found {low:g})")
    return pre


def _check_statistic(path: Path, name: str, value: torch.Tensor, shape: tuple[int, ...]) -> None:
    if value.dtype != torch.float32:
        raise RunError(f"{path}: preprocessing {name} is {_dtype(value.dtype)}; expected float32")
    if tuple(value.shape) != tuple(shape):
        raise RunError(
            f"{path}: preprocessing {name} has shape {tuple(value.shape)}; its stats mode needs {tuple(shape)}"
        )
    if not torch.isfinite(value).all():
        raise RunError(f"{path}: preprocessing {name} must be finite (found {_first_nonfinite(value)})")


def check_record(path: Path, where: str, record: Any) -> dict:
    """One epoch's metrics record (``where``: e.g. "line 3" of metrics.jsonl): an object with a positive
    integer epoch and numeric metrics, as the report's curves and the summary read them."""
    if not isinstance(record, dict):
        raise RunError(f"{path}: {where} is not an epoch record (a JSON {_json_type(record)})")
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise RunError(f"{path}: {where} has no valid epoch number (epoch: {epoch!r})")
    for key in METRIC_KEYS:
        value = record.get(key)
        if key in record and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise RunError(f"{path}: {where}: {key} must be a number, got {value!r}")
    return record


# ---- helpers -----------------------------------------------------------------------------------------------
def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _count(tensors: Any) -> int:
    return sum(math.prod(t.shape) for t in tensors)


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(f"model.{n}" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _model_knobs(config: TrainConfig) -> str:
    m = config.model
    members = f", {config.members} members" if config.members > 1 else ""
    if config.members > 1 and config.member_models:
        members += f" of {','.join(config.member_models[:5])} in turn"
    variant = f", input width {m.input_width} px" if m.input_width else ""
    if config.members > 1 and config.member_input_widths:
        variant = f", input widths {','.join(map(str, config.member_input_widths[:5]))} in turn"
    return f"width {m.width:g}" + (f", hidden {list(m.hidden)}" if m.hidden else "") + variant + members


def _first_nonfinite(value: torch.Tensor) -> str:
    return f"{float(value[~torch.isfinite(value)].flatten()[0])}"
