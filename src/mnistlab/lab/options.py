"""The options every lab experiment takes (what `mnistlab lab NAME` passes on). Imports nothing heavy, so the
CLI can build its flags without loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LrScaling = Literal["none", "linear"]


@dataclass
class LabOptions:
    quick: bool = False
    out: Path | None = None  # experiment folder; None = lab/<timestamp>-<name>
    seed: int = 0
    lr_scaling: LrScaling = "none"  # batch-size experiment: linear scaling of lr with batch (full mode: both)
    threads: int | None = None
