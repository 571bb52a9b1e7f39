"""The export formats, declared once and free of torch, so that `mnistlab export --help` stays fast."""

from __future__ import annotations

from typing import Literal

ExportFormat = Literal["onnx", "torchscript"]
