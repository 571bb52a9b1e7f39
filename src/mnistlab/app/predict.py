"""Predict digits in image files with a trained run: normalise each image, batch them, report top-k."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnistlab.app.imageprep import prepare
from mnistlab.errors import MnistlabError
from mnistlab.fileio import atomic_path, make_dirs
from mnistlab.runs import Run


@dataclass
class FilePrediction:
    """The outcome for one input file: either a prediction or a one-line error."""

    source: str
    probabilities: list[float] = field(default_factory=list)  # 10 floats summing to 1, empty on error
    input_28x28: np.ndarray | None = None  # uint8 (28, 28): what the model saw
    error: str | None = None  # what is wrong with the file, without its path (that is `source`)

    @property
    def label(self) -> int | None:
        return int(np.argmax(self.probabilities)) if self.probabilities else None

    def top_k(self, k: int) -> list[tuple[int, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(i), float(self.probabilities[i])) for i in order]

    def to_json(self, k: int) -> dict:
        if self.error is not None:
            return {"file": self.source, "error": self.error}
        return {
            "file": self.source,
            "label": self.label,
            "top_k": [{"label": c, "probability": p} for c, p in self.top_k(k)],
            "probabilities": self.probabilities,
        }


def predict_digits(run: Run, digits: np.ndarray) -> np.ndarray:
    """Probabilities float64 (N, 10) for uint8 (N, 28, 28) MNIST-style digits (run preprocessing applied)."""
    with torch.inference_mode():
        return run.predict(torch.from_numpy(np.ascontiguousarray(digits))).double().numpy()


def predict_digits_with_members(run: Run, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_digits`, and for a committee each member's probabilities float64 (M, N, 10) (None
    otherwise), from one forward pass of every member."""
    with torch.inference_mode():
        probs, members = run.predict_with_members(torch.from_numpy(np.ascontiguousarray(digits)))
    return probs.double().numpy(), None if members is None else members.double().numpy()


def predict_files(run: Run, paths: list[str | Path], raw: bool = False) -> list[FilePrediction]:
    """One FilePrediction per path, in order; a bad file gets its error and never stops the others."""
    results = [FilePrediction(source=str(p)) for p in paths]
    ok: list[FilePrediction] = []
    for result in results:
        try:
            result.input_28x28 = prepare(result.source, raw=raw)
            ok.append(result)
        except MnistlabError as exc:
            # The message starts with the path (prepare's label); FilePrediction keeps the path in `source`.
            result.error = str(exc).removeprefix(f"{result.source}: ")
    if ok:
        probs = predict_digits(run, np.stack([r.input_28x28 for r in ok]))
        for result, p in zip(ok, probs, strict=True):
            result.probabilities = [float(v) for v in p]
    return results


def save_input(digit: np.ndarray, folder: Path, index: int, source: str) -> Path:
    """Write the 28x28 the model saw as PNG; the name comes from the input's stem, never its path.

    Atomic, like every file mnistlab writes; a full disk is a WriteError naming the file.
    """
    make_dirs(folder)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem)[:60] or "image"
    path = folder / f"{index:04d}-{stem}.png"
    with atomic_path(path) as tmp:
        Image.fromarray(digit, mode="L").save(tmp, format="PNG")
    return path
