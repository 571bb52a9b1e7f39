"""Export a run to ONNX (or TorchScript) with its preprocessing inside, verified against PyTorch.

The exported graph's input is ``pixels``: float32 (N, 28, 28), grey levels 0-255, white ink on black, i.e. an
MNIST-style digit (see :mod:`mnistlab.app.imageprep`); N is dynamic. The output is ``logits``: float32 (N, 10).
Softmax is left to the caller, as in the PyTorch models.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from mnistlab.app.formats import ExportFormat
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.errors import MnistlabError
from mnistlab.fileio import atomic_path, make_dirs
from mnistlab.runs import Run

VERIFY_IMAGES = 1000  # test images compared between PyTorch and the exported model
MAX_LOGIT_DIFF = 1e-4  # |logit_torch - logit_export|, logits are unitless
OPSET = 18
Exporter = Literal["legacy", "dynamo"]  # torch's TorchScript-based ONNX exporter, or its dynamo one


ONNX_EXTRA = "onnx"  # pyproject.toml's extra with onnx, onnxruntime and onnxscript


class ExportError(MnistlabError):
    """The export failed or the exported model disagrees with PyTorch."""


def check_onnx_installed(exporter: str = "legacy") -> None:
    """A one-line ExportError naming the install command when ONNX export's packages are missing."""
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"--format onnx needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: pip install 'mnistlab[{ONNX_EXTRA}]' (or --format torchscript, which needs nothing more)"
        )


class WithPreprocessing(nn.Module):
    """pixels float32 (N, 28, 28) 0-255 -> the run's preprocessing -> model -> logits (N, 10)."""

    def __init__(self, model: nn.Module, pre: Preprocessor) -> None:
        super().__init__()
        self.model = model
        # The same operations as Preprocessor.__call__ (subtract, then divide), so parity is exact; buffers
        # are () for global statistics or (28, 28) per pixel, in pixel units.
        centred = pre.mode in ("center", "standardize")
        self.register_buffer("mean", pre.mean.float() if centred else torch.tensor(0.0))
        self.register_buffer("std", pre.std.float() if pre.mode == "standardize" else torch.tensor(1.0))
        self.register_buffer("divisor", torch.tensor(255.0 if pre.mode == "scale" else 1.0))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.unsqueeze(1)  # (N, 1, 28, 28)
        x = (x - self.mean) / self.std / self.divisor
        return self.model(x)


@dataclass
class ExportReport:
    path: Path
    format: str
    images: int
    max_abs_logit_diff: float
    argmax_agree: int


def export_run(
    run: Run, fmt: str, out: Path, data_dir: str | Path | None = None, exporter: str = "legacy"
) -> ExportReport:
    """Export, verify on VERIFY_IMAGES test images, then move into place; raise ExportError if out of bounds."""
    if fmt not in get_args(ExportFormat):
        raise ExportError(f"unknown export format {fmt!r}; choose {' or '.join(get_args(ExportFormat))}")
    if exporter not in get_args(Exporter):
        raise ExportError(f"unknown ONNX exporter {exporter!r}; choose {' or '.join(get_args(Exporter))}")
    if fmt == "onnx":
        check_onnx_installed(exporter)
    wrapped = WithPreprocessing(run.model, run.preprocessor).cpu().eval()
    arrays = load_dataset(
        run.config.data.dataset, data_dir or run.config.data.data_dir, download=False, progress=False
    )
    pixels = torch.from_numpy(arrays.test_images[:VERIFY_IMAGES]).float()  # (1000, 28, 28)
    with torch.inference_mode():
        reference = run.predict_logits(arrays.test_images[:VERIFY_IMAGES]).astype(np.float64)
    make_dirs(out.parent)
    # replaces `out` only if the checks below pass; a full disk: a WriteError naming `out`, nothing written
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _write_onnx(wrapped, pixels[:2], tmp, exporter)
            exported = _run_onnx(tmp, pixels.numpy())
        else:
            _write_torchscript(wrapped, pixels[:2], tmp)
            exported = _run_torchscript(tmp, pixels)
        diff = float(np.abs(exported - reference).max())
        agree = int((exported.argmax(1) == reference.argmax(1)).sum())
        report = ExportReport(out, fmt, len(pixels), diff, agree)
        if not diff <= MAX_LOGIT_DIFF or agree != len(pixels):
            raise ExportError(
                f"{out}: exported model disagrees with PyTorch on {len(pixels)} test images: max |Δlogit| "
                f"{diff:.2e} (limit {MAX_LOGIT_DIFF:.0e}), argmax agreement {agree}/{len(pixels)}; not written"
            )
    return report


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, exporter: str) -> None:
    """Write a single-file ONNX model with a dynamic batch axis; ``exporter`` is "legacy" or "dynamo".

    The legacy (TorchScript-based) exporter is the default because it takes about 1 s here against about
    30 s for the dynamo exporter on 2 busy cores, for the same graph and the same parity; torch marks it
    deprecated, so when it is gone (or fails) the dynamo exporter is used instead.
    """
    import onnx

    model = None
    if exporter == "legacy":
        try:
            model = _legacy_onnx(module, example)
        except Exception:  # removed or broken in this torch: fall through to the dynamo exporter
            model = None
    if model is None:
        model = _dynamo_onnx(module, example)
    model.doc_string = (
        "mnistlab: input pixels float32 (N, 28, 28) 0-255 white-on-black; output logits (N, 10)"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))


def _legacy_onnx(module: nn.Module, example: torch.Tensor):
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": handled by the fallback
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _dynamo_onnx(module: nn.Module, example: torch.Tensor):
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notices: irrelevant here
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
                opset_version=OPSET,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; any of them means no model
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from None
    finally:
        quiet.setLevel(level)
    return program.model_proto


def _run_onnx(path: Path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixels": pixels.astype(np.float32)})[0].astype(np.float64)


def _write_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    # torch marks TorchScript deprecated (in favour of torch.export); it still works and loads in C++.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, example)
        buffer = io.BytesIO()  # written by Python below: a full disk is an OSError, not a RuntimeError
        torch.jit.save(traced, buffer)
    path.write_bytes(buffer.getvalue())


def _run_torchscript(path: Path, pixels: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(pixels).double().numpy()
