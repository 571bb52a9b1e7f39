"""A finished (or loaded) training run: config, model, preprocessing, metrics, and the verbs on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistlab import __version__
from mnistlab.config import TrainConfig
from mnistlab.data import Preprocessor, load_dataset
from mnistlab.errors import MnistlabError, RunError
from mnistlab.evaluation.metrics import classification_report
from mnistlab.models import build_model
from mnistlab.training.checkpoint import load_tensors, split_prefix
from mnistlab.training.environment import resolve_device
from mnistlab.training.loop import evaluate, predict_logits

MODEL_FILE = "model.safetensors"


def model_metadata(config: TrainConfig, pre: Preprocessor) -> dict[str, str]:
    """The JSON metadata stored inside model.safetensors, so the file alone is enough to rebuild the model."""
    return {
        "format": "mnistlab.model/1",
        "mnistlab_version": __version__,
        "config": config.to_json(),
        "preprocessing": json.dumps(pre.metadata()),
    }


@dataclass
class Run:
    path: Path | None
    config: TrainConfig
    model: nn.Module
    preprocessor: Preprocessor
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    # ---- verbs ---------------------------------------------------------------------------------------
    def predict_logits(self, images: torch.Tensor | np.ndarray, batch_size: int = 2000) -> torch.Tensor:
        """Logits (N, 10) for raw images: (N, 28, 28) or (N, 1, 28, 28) pixels in 0-255 (uint8 or float).

        The run's own preprocessing (fitted on its training split) is applied first.
        """
        x = torch.as_tensor(images)
        if x.ndim == 2:
            x = x.unsqueeze(0)
        return predict_logits(self.model, self.preprocessor(x.to(self.device)), batch_size).cpu()

    def predict(self, images: torch.Tensor | np.ndarray, batch_size: int = 2000) -> torch.Tensor:
        """Class probabilities (N, 10), softmax of the logits; ``.argmax(1)`` gives the labels."""
        return torch.softmax(self.predict_logits(images, batch_size), dim=1)

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


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run from its folder (or from a bare model.safetensors). Never unpickles anything."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: run folder does not exist")
    model_file = path if path.is_file() else path / MODEL_FILE
    if path.is_dir() and not (path / "summary.json").is_file():
        hint = (
            "; it may still be running, or resume it with --resume"
            if (path / "last.safetensors").exists()
            else ""
        )
        raise RunError(f"{path}: incomplete run (no summary.json){hint}")
    tensors, meta = load_tensors(model_file)
    try:
        config = TrainConfig.from_dict(json.loads(meta["config"]))
        pre = Preprocessor.from_state(json.loads(meta["preprocessing"]), split_prefix(tensors, "preprocess."))
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise RunError(f"{model_file}: not an mnistlab model file (bad metadata: {exc})") from None
    dev = resolve_device(device)
    model = build_model(
        config.model.name, hidden=config.model.hidden, dropout=config.model.dropout, width=config.model.width
    )
    try:
        model.load_state_dict(split_prefix(tensors, "model."))
    except RuntimeError as exc:
        raise RunError(f"{model_file}: weights do not match model {config.model.name!r}: {exc}") from None
    model.to(dev).eval()
    summary, history = {}, []
    if path.is_dir():
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        metrics = path / "metrics.jsonl"
        if metrics.is_file():
            history = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
    return Run(
        path=path if path.is_dir() else None,
        config=config,
        model=model,
        preprocessor=pre,
        summary=summary,
        history=history,
        device=dev,
    )
