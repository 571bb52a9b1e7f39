"""The fit loop end to end on small real-MNIST slices: run folder, determinism, resume, divergence."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import mnistlab
from mnistlab.errors import ConfigError, RunError, TrainingDiverged


def test_run_folder_has_everything(tiny_config):
    run = mnistlab.train(tiny_config)
    folder = run.path
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "summary.json",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["name"] == "mlp" and config["data"]["train_subset"] == 2000
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1
    assert {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(
        metrics[0]
    )
    summary = json.loads((folder / "summary.json").read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "best_val_accuracy",
        "best_epoch",
        "epochs_run",
        "train_seconds",
        "model",
        "dataset",
        "seed",
        "parameters",
    ):
        assert key in summary, key
    assert 0.5 < summary["test_accuracy"] <= 1.0
    assert summary["parameters"] == sum(p.numel() for p in run.model.parameters())
    env = summary["environment"]
    assert env["torch"] == torch.__version__ and env["mnistlab"] == mnistlab.__version__
    assert {"python", "device", "threads", "git_commit"} <= set(env)


def test_load_run_reproduces_predictions_and_test_accuracy(tiny_config):
    run = mnistlab.train(tiny_config)
    loaded = mnistlab.load_run(run.path)
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict(images), run.predict(images))
    assert loaded.predict(images).sum(1).sub(1).abs().max() < 1e-5
    result = loaded.evaluate()
    assert result["accuracy"] == pytest.approx(run.summary["test_accuracy"], abs=1e-9)
    assert sum(map(sum, result["confusion_matrix"])) == 10_000
    assert loaded.config == run.config


def test_saved_weights_are_the_best_validation_epoch(tiny_config):
    tiny_config.epochs = 3
    tiny_config.optim.lr = 0.5  # a high constant lr makes validation noisy, so the best epoch varies
    tiny_config.optim.schedule = "constant"
    run = mnistlab.train(tiny_config)
    val = [h["val_accuracy"] for h in run.history]
    assert run.summary["best_epoch"] == val.index(max(val)) + 1
    assert run.summary["best_val_accuracy"] == max(val)
    saved = load_file(str(run.path / "model.safetensors"))
    for name, tensor in run.model.state_dict().items():
        torch.testing.assert_close(saved["model." + name], tensor)


def test_same_seed_same_metrics(tiny_config, tmp_path):
    first = mnistlab.train(tiny_config)
    tiny_config.out = str(tmp_path / "second")
    second = mnistlab.train(tiny_config)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in second.history]
    assert first.summary["test_accuracy"] == second.summary["test_accuracy"]


def test_resume_continues_an_interrupted_run(tiny_config, tmp_path, interrupted_in_epoch):
    tiny_config.epochs = 2
    reference = mnistlab.train(tiny_config)

    tiny_config.out = str(tmp_path / "interrupted")
    with interrupted_in_epoch(2):
        mnistlab.train(tiny_config)
    folder = tmp_path / "interrupted"
    assert not (folder / "summary.json").exists(), "an interrupted run must not look complete"
    with pytest.raises(RunError, match="incomplete run"):
        mnistlab.load_run(folder)

    resumed = mnistlab.train(resume=folder)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert not (folder / "last.safetensors").exists()


def test_divergence_stops_with_a_clear_message_and_no_summary(tiny_config):
    tiny_config.optim.optimizer = "sgd"  # Adam's step is bounded by lr; SGD's grows with the gradient
    tiny_config.optim.lr = 1e6
    tiny_config.optim.schedule = "constant"
    with pytest.raises(TrainingDiverged, match="smaller learning rate"):
        mnistlab.train(tiny_config)
    from pathlib import Path

    folder = Path(tiny_config.out)
    assert (folder / "error.txt").exists() and not (folder / "summary.json").exists()
    assert not (folder / "model.safetensors").exists(), "no checkpoint of diverged weights"


def test_dry_run_writes_nothing(tiny_config):
    from pathlib import Path

    tiny_config.dry_run = True
    run = mnistlab.train(tiny_config)
    assert run.path is None and not Path(tiny_config.out).exists()
    assert run.history[0]["steps"] == tiny_config.dry_run_batches


def test_existing_run_folder_is_not_overwritten(tiny_config):
    from pathlib import Path

    out = Path(tiny_config.out)
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already exists"):
        mnistlab.train(tiny_config)
    assert (out / "keep.txt").read_text() == "precious"


def test_preprocessing_is_fitted_on_the_training_split_only(tiny_config):
    from mnistlab.data import load_dataset, split_train_val

    tiny_config.data.norm_stats = "global"
    tiny_config.dry_run = True
    run = mnistlab.train(tiny_config)
    images = torch.from_numpy(load_dataset("mnist").train_images)
    train_idx, _ = split_train_val(60000, tiny_config.data.val_size, tiny_config.seed)
    train = images[train_idx[: tiny_config.data.train_subset]].double()
    assert run.preprocessor.mean.item() == pytest.approx(train.mean().item(), rel=1e-5)
    assert run.preprocessor.mean.item() != pytest.approx(images.double().mean().item(), rel=1e-5)
