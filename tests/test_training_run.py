"""The fit loop end to end on small real-MNIST slices: run folder, determinism, resume, divergence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mnistlab
import mnistlab.config
from conftest import tiny_mlp_config
from mnistlab.errors import ConfigError, RunError, TrainingDiverged


def test_run_folder_has_everything(tiny_config):
    run = mnistlab.train(tiny_config)
    folder = run.path
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "steps.jsonl",
        "summary.json",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["name"] == "mlp" and config["data"]["train_subset"] == 2000
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1
    assert {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(
        metrics[0]
    )
    # onecycle warms up over 25 % of one epoch's 8 steps, so its 3rd step runs at the peak lr
    assert metrics[0]["lr_peak"] == pytest.approx(tiny_config.optim.lr) and metrics[0]["lr"] < 1e-4
    # steps.jsonl: one loss per step (2,000 images in batches of 256: 7 x 256 + 208); weighted by the batch
    # sizes they give the epoch's mean training loss
    (steps,) = [json.loads(x) for x in (folder / "steps.jsonl").read_text().splitlines()]
    sizes = [256] * 7 + [208]
    assert steps["epoch"] == 1 and len(steps["loss"]) == len(sizes) == metrics[0]["steps"]
    mean = sum(loss * n for loss, n in zip(steps["loss"], sizes, strict=True)) / 2000
    assert mean == pytest.approx(metrics[0]["train_loss"], rel=1e-4)
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


def test_threads_are_restored_and_the_run_keeps_its_own_config(tiny_config):
    before = torch.get_num_threads()
    tiny_config.threads = 1 if before > 1 else 2
    tiny_config.dry_run = True
    run = mnistlab.train(tiny_config)
    assert torch.get_num_threads() == before, "fit must put torch's thread count back"
    assert run.summary["environment"]["threads"] == tiny_config.threads  # it did train with them
    tiny_config.optim.lr = 123.0  # the caller reuses their config ...
    assert run.config.optim.lr != 123.0  # ... and the run's record does not change


def test_run_files_are_readable_by_others_under_the_usual_umask(tiny_config):
    old = os.umask(0o022)
    try:
        run = mnistlab.train(tiny_config)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.path.iterdir()}
    assert modes == dict.fromkeys(
        ("config.json", "metrics.jsonl", "model.safetensors", "steps.jsonl", "summary.json"), 0o644
    )
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o755


# ---- early stopping and model selection, end to end --------------------------------------------------------
def exploding_lr_config(out: Path, epochs: int, patience: int | None) -> mnistlab.TrainConfig:
    """Adam whose lr grows 10x per epoch (1e-3, 1e-2, 0.1, 1, ...): validation accuracy peaks at epoch 2
    (~80 %, then ~69 %, then ~15 % on this slice), by margins no float round-off can flip."""
    cfg = tiny_mlp_config(out)
    cfg.model.hidden, cfg.model.dropout = (32,), 0.0
    cfg.data.train_subset, cfg.data.val_size, cfg.batch_size = 1000, 500, 100
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay = "adam", 1e-3, 0.0
    cfg.optim.schedule, cfg.optim.step_size, cfg.optim.gamma = "step", 1, 10.0  # the lr of an epoch never
    cfg.epochs, cfg.patience = epochs, patience  # depends on the number of epochs planned
    return cfg


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(tmp_path):
    run = mnistlab.train(exploding_lr_config(tmp_path / "stopped", epochs=8, patience=2))
    val = [h["val_accuracy"] for h in run.history]
    best = run.summary["best_epoch"]
    assert best == 2 and val.index(max(val)) + 1 == best, val
    assert run.summary["epochs_run"] == len(run.history) == best + 2  # stopped after 2 epochs without gain
    assert run.summary["best_val_accuracy"] == val[best - 1]
    assert run.summary["best_val_loss"] == run.history[best - 1]["val_loss"]
    # The saved and returned weights are epoch 2's: the same as a run that trained exactly 2 epochs.
    reference = mnistlab.train(exploding_lr_config(tmp_path / "two", epochs=2, patience=None))
    assert reference.history[-1]["val_accuracy"] == val[best - 1]
    saved = load_file(str(run.path / "model.safetensors"))
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(saved["model." + name], tensor), name
        assert torch.equal(run.model.state_dict()[name], tensor), name


def test_monitor_val_loss_selects_by_loss_and_reports_that_epochs_values(tiny_config, monkeypatch):
    """Validation is scripted so that the best loss (epoch 1) and the best accuracy (epoch 3) differ; the
    training, selection, restoring and saving around it are the real ones."""
    from mnistlab.training import trainer as trainer_module

    scripted = iter([(0.30, 0.80), (0.40, 0.85), (0.50, 0.90), (0.60, 0.70)])  # (val_loss, val_accuracy)
    monkeypatch.setattr(
        trainer_module.Trainer,
        "validate",
        lambda self: dict(zip(("val_loss", "val_accuracy"), next(scripted), strict=True)),
    )
    tiny_config.epochs, tiny_config.patience, tiny_config.monitor = 6, 2, "val_loss"
    tiny_config.optim.schedule = "constant"
    run = mnistlab.train(tiny_config)
    assert run.summary["best_epoch"] == 1 and run.summary["epochs_run"] == 3
    assert (run.summary["best_val_loss"], run.summary["best_val_accuracy"]) == (0.30, 0.80)  # epoch 1's pair
    tiny_config.out, tiny_config.epochs, tiny_config.patience = str(Path(tiny_config.out) / "ref"), 1, None
    monkeypatch.undo()
    reference = mnistlab.train(tiny_config)  # one epoch, same seed, constant lr: epoch 1's weights
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], tensor), name


def test_without_a_validation_split_the_last_epoch_is_kept(tiny_config):
    tiny_config.data.val_size, tiny_config.epochs = 0, 2
    run = mnistlab.train(tiny_config)
    assert all("val_loss" not in h and "val_accuracy" not in h for h in run.history)
    assert (run.summary["best_epoch"], run.summary["epochs_run"]) == (2, 2)
    assert run.summary["best_val_accuracy"] is None and run.summary["best_val_loss"] is None
    assert run.summary["test_accuracy"] > 0.5
    saved = load_file(str(run.path / "model.safetensors"))
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(saved["model." + name], tensor), name
    tiny_config.patience, tiny_config.out = 1, str(Path(tiny_config.out).with_name("p"))
    with pytest.raises(ConfigError, match="early stopping needs a validation split"):
        mnistlab.train(tiny_config)


# ---- resume --------------------------------------------------------------------------------------------------
def interrupted_run(config, tmp_path: Path, interrupted_in_epoch, name: str = "interrupted") -> Path:
    config.out = str(tmp_path / name)
    with interrupted_in_epoch(2):
        mnistlab.train(config)
    return tmp_path / name


def test_resume_rewrites_metrics_to_the_checkpoints_epochs(tiny_config, tmp_path, interrupted_in_epoch):
    """A crash between the checkpoint and the metrics line, or in the middle of a line, leaves metrics.jsonl
    with a repeated or torn line; resuming must not carry either over."""
    tiny_config.epochs = 2
    reference = mnistlab.train(tiny_config)
    folder = interrupted_run(tiny_config, tmp_path, interrupted_in_epoch)
    metrics = folder / "metrics.jsonl"
    first = metrics.read_text()
    metrics.write_text(first + first + '{"epoch": 2, "train_lo')  # epoch 1 twice, then a torn epoch 2
    resumed = mnistlab.train(resume=folder)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in lines] == strip
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip


def test_resume_cuts_the_steps_log_back_to_the_checkpoint(tiny_config, tmp_path, interrupted_in_epoch):
    """steps.jsonl is written before the checkpoint, so a crash can leave it an epoch ahead of it (or torn):
    a resume keeps only the checkpoint's epochs, and the finished log equals an uninterrupted run's."""
    tiny_config.epochs = 2
    reference = mnistlab.train(tiny_config)
    folder = interrupted_run(tiny_config, tmp_path, interrupted_in_epoch)
    steps = folder / "steps.jsonl"
    (first,) = steps.read_text().splitlines()
    ahead = json.dumps(json.loads(first) | {"epoch": 2, "loss": [9.0] * 8})  # an epoch the checkpoint lacks
    steps.write_text(f"{first}\n{ahead}\n" + '{"epoch": 3, "lo')
    mnistlab.train(resume=folder)
    assert steps.read_text() == (reference.path / "steps.jsonl").read_text()
    assert [len(line["loss"]) for line in map(json.loads, steps.read_text().splitlines())] == [8, 8]


def test_resume_refuses_a_changed_config_naming_the_flags(
    tiny_config, tmp_path, interrupted_in_epoch, capsys
):
    tiny_config.epochs = 2
    folder = interrupted_run(tiny_config, tmp_path, interrupted_in_epoch)
    changed = mnistlab.config.with_values(tiny_config, {"optim.lr": 0.5, "seed": 3})
    with pytest.raises(ConfigError, match=r"--lr \(0.005 -> 0.5\), --seed \(0 -> 3\)"):
        mnistlab.train(changed, resume=folder)
    from mnistlab.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(folder), "--batch-size", "64", "--epochs", "3"])
    assert exit_.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (
        len(err) == 1 and "--batch-size (256 -> 64)" in err[0] and "--epochs" not in err[0].split("only")[0]
    )
    assert not (folder / "summary.json").exists()  # nothing ran


def test_resume_may_extend_a_run_and_records_it(tiny_config, tmp_path, interrupted_in_epoch):
    tiny_config.epochs = 2
    folder = interrupted_run(tiny_config, tmp_path, interrupted_in_epoch)
    from mnistlab.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(folder), "--epochs", "3", "-q"])
    assert exit_.value.code == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["epochs_run"] == 3
    ((change,),) = [summary["config_history"]]
    assert (change["after_epoch"], change["changed"]) == (1, {"epochs": [2, 3]})
    assert json.loads((folder / "config.json").read_text())["epochs"] == 3
    assert mnistlab.load_run(folder).config.epochs == 3


def test_resume_keeps_the_best_weights_seen_before_the_interruption(tmp_path, interrupted_in_epoch):
    """Best epoch 2, interrupted in epoch 3: the resumed run must still end with epoch 2's weights."""
    reference = mnistlab.train(exploding_lr_config(tmp_path / "reference", epochs=3, patience=None))
    assert reference.summary["best_epoch"] == 2
    config = exploding_lr_config(tmp_path / "interrupted", epochs=3, patience=None)
    with interrupted_in_epoch(3):
        mnistlab.train(config)
    resumed = mnistlab.train(resume=tmp_path / "interrupted")
    assert resumed.summary["best_epoch"] == 2
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_a_moved_run_folder_resumes_from_its_new_place(tiny_config, tmp_path, interrupted_in_epoch):
    tiny_config.epochs = 2
    folder = interrupted_run(tiny_config, tmp_path, interrupted_in_epoch)
    moved = folder.rename(tmp_path / "moved")
    elsewhere = mnistlab.config.with_values(tiny_config, {"out": str(tmp_path / "x")})
    with pytest.raises(ConfigError, match="is not the folder being resumed"):
        mnistlab.train(elsewhere, resume=moved)
    run = mnistlab.train(resume=moved)  # its config.json still records the old folder as its out
    assert run.path == moved and (moved / "summary.json").is_file()


def test_predict_answers_numpy_with_numpy_and_torch_with_torch(app_run):
    """A read-only array (np.frombuffer) is fine too, without torch's non-writable warning."""
    import warnings

    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    read_only = np.frombuffer(images.tobytes(), dtype=np.uint8).reshape(5, 28, 28)
    assert not read_only.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probabilities = app_run.predict(read_only)
        logits = app_run.predict_logits(read_only)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (5, 10)
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
    as_torch = app_run.predict(torch.from_numpy(images))
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_array_equal(probabilities, as_torch.numpy())
    assert isinstance(app_run.predict(images[0]), np.ndarray)  # one (28, 28) image


def test_smoke_steps_cap_every_epoch_and_say_so(tiny_config, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_SMOKE_STEPS", "3")
    tiny_config.quiet, tiny_config.epochs = False, 2
    run = mnistlab.train(tiny_config)
    assert [h["steps"] for h in run.history] == [3, 3]
    assert run.summary["environment"]["smoke_steps"] == 3 and run.summary["test_images"] == 1000
    assert "SMOKE TEST: 3 steps per epoch at most (MNISTLAB_SMOKE_STEPS)" in capsys.readouterr().out
    monkeypatch.setenv("MNISTLAB_SMOKE_STEPS", "three")
    with pytest.raises(ConfigError, match="MNISTLAB_SMOKE_STEPS must be a whole number"):
        mnistlab.train(tiny_config)
