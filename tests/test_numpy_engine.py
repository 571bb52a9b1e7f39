"""`mnistlab train --engine numpy`: the NumPy engine (mnistlab.scratch) through fit(), into a normal run folder.

The folder's model is the torch mlp holding the engine's weights, so evaluate, predict, report and serve read
it unchanged; its trajectory is the engine's own (train_numpy, checked against torch in
test_scratch_trajectory.py); fit()'s early stopping, divergence check, --dry-run and --max-steps drive it; and
what the engine cannot do is refused in one line naming the flag. Real MNIST, a few thousand images.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import load_file
from threadpoolctl import threadpool_info, threadpool_limits

import mnistlab
from mnistlab.app.server import create_app
from mnistlab.cli.app import main
from mnistlab.cli.config_options import config_from_flags
from mnistlab.config import with_values
from mnistlab.data import load_dataset
from mnistlab.errors import ConfigError, TrainingDiverged
from mnistlab.recipes import recipe
from mnistlab.training.numpy_engine import as_arrays, check_config, train_numpy

pytestmark = pytest.mark.slow

FLAGS = [
    "--engine",
    "numpy",
    "--train-subset",
    "3000",
    "--val-size",
    "1000",
    "--epochs",
    "3",
    "--threads",
    "1",
]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`mnistlab ARGS` in this process (the script's own entry point): (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`mnistlab train --engine numpy ...` on 3,000 images: the loaded Run."""
    folder = tmp_path_factory.mktemp("numpy") / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *FLAGS, "--out", str(folder), "-q"])
    assert exit_info.value.code == 0
    return mnistlab.load_run(folder)


@pytest.fixture(scope="module")
def test_images():
    arrays = load_dataset("mnist", progress=False)
    return arrays.test_images, arrays.test_labels


def small_config(out, **values) -> mnistlab.TrainConfig:
    """The engine's recipe on 1,000 images with 32 hidden units and a constant lr: a fraction of a second."""
    cfg = recipe("mlp", engine="numpy")
    cfg.model.hidden = (32,)
    cfg.data.train_subset, cfg.data.val_size, cfg.batch_size = 1000, 500, 100
    cfg.optim.schedule, cfg.optim.lr = "constant", 0.1  # each epoch's steps do not depend on --epochs
    cfg.quiet, cfg.threads, cfg.out = True, 1, str(out) if out is not None else None
    return with_values(cfg, values)


# ---- the run folder ----------------------------------------------------------------------------------------
def test_engine_numpy_alone_trains_its_own_recipe_into_a_normal_run_folder(cli_run):
    expected = with_values(
        recipe("mlp", engine="numpy"),
        {"data.train_subset": 3000, "data.val_size": 1000, "epochs": 3, "threads": 1, "quiet": True},
    )
    expected.out = str(cli_run.path)
    assert cli_run.config == expected  # the engine's recipe (100-100, SGD), not the torch mlp's (Adam)
    assert json.loads((cli_run.path / "config.json").read_text())["engine"] == "numpy"
    # no last.safetensors: a numpy-engine run is not resumable
    files = {"config.json", "metrics.jsonl", "model.safetensors", "steps.jsonl", "summary.json"}
    assert {p.name for p in cli_run.path.iterdir()} == files
    summary = cli_run.summary
    assert summary["engine"] == "numpy" and summary["epochs_run"] == 3 and len(cli_run.history) == 3
    assert summary["environment"]["blas_threads"] == 1 and summary["environment"]["blas"]
    assert summary["parameters"] == 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert summary["test_accuracy"] > 0.85 and summary["test_images"] == 10_000


def test_the_folder_holds_the_engines_own_trajectory_and_weights(cli_run, test_images):
    """train_numpy (the engine's own loop) on the run's config: the same epochs, and the same classifier.

    Exactly the same: one BLAS thread on both sides (as the run's --threads 1), so the sums add up alike."""
    with threadpool_limits(1, user_api="blas"):
        engine = train_numpy(cli_run.config)
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert [drop(h) for h in engine.result.history] == [drop(h) for h in cli_run.history]
    assert engine.result.best_epoch == cli_run.summary["best_epoch"]
    images, labels = test_images
    x_test, _ = as_arrays(engine.splits.test)
    mine = engine.net.predict_logits(x_test)  # (10000, 10), NumPy float32
    theirs = cli_run.predict_logits(images)  # the folder's torch model, the run's preprocessing (NumPy out)
    assert np.abs(mine - theirs).max() < 1e-4
    assert (mine.argmax(1) == theirs.argmax(1)).mean() >= 0.9999  # a tie may round either way
    assert (theirs.argmax(1) == labels).mean() == cli_run.summary["test_accuracy"]  # scored once, on this


def test_evaluate_predict_report_and_serve_read_it(cli_run, test_images, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", str(cli_run.path), "--json")
    assert code == 0 and json.loads(out)["accuracy"] == cli_run.summary["test_accuracy"]

    images, _ = test_images
    Image.fromarray(images[0]).save(tmp_path / "digit.png")
    code, out, err = run_cli(capsys, "predict", str(cli_run.path), str(tmp_path / "digit.png"), "--json")
    assert code == 0, err
    assert json.loads(out)["label"] == int(cli_run.predict(images[:1]).argmax(1)[0])

    code, out, err = run_cli(capsys, "report", str(cli_run.path), "--out", str(tmp_path / "report"))
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["test_accuracy"] == pytest.approx(cli_run.summary["test_accuracy"], abs=1e-4)

    with TestClient(create_app(cli_run)) as client:
        assert client.get("/api/model").json()["name"] == "mlp"
        buf = io.BytesIO()
        Image.fromarray(255 - images[1]).save(buf, format="PNG")  # dark ink on white, as a user draws
        body = client.post("/api/predict", files={"file": ("d.png", buf.getvalue(), "image/png")}).json()
        seen = np.array(body["input_28x28"], dtype=np.uint8)[None]
        assert body["label"] == int(cli_run.predict(seen).argmax(1)[0])


# ---- fit()'s controls, on the engine -----------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(tmp_path):
    """val_loss on 500 images, 1,000 training images: it falls for 4 epochs (to 0.43), then rises (0.51)."""
    run = mnistlab.train(small_config(tmp_path / "stopped", epochs=30, patience=2, monitor="val_loss"))
    losses = [h["val_loss"] for h in run.history]
    best = run.summary["best_epoch"]
    assert 1 < best == losses.index(min(losses)) + 1 and run.summary["epochs_run"] == best + 2 < 30
    # the saved weights are the best epoch's: those of a run that trained exactly that many epochs
    reference = mnistlab.train(small_config(tmp_path / "reference", epochs=best))
    assert reference.history[-1]["val_loss"] == losses[best - 1]
    saved = load_file(str(run.path / "model.safetensors"))
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(saved["model." + name], tensor), name


def test_divergence_stops_with_a_clear_message_and_no_summary(tmp_path):
    config = small_config(tmp_path / "run", epochs=3, **{"optim.lr": 1e4})
    with warnings.catch_warnings(), pytest.raises(TrainingDiverged, match="diverged in epoch 1"):
        warnings.simplefilter("error", RuntimeWarning)  # inf and NaN are expected: no overflow warnings
        mnistlab.train(config)
    assert "TrainingDiverged" in (tmp_path / "run" / "error.txt").read_text()
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_dry_run_writes_nothing_and_max_steps_caps_each_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder would appear under ./runs
    dry = mnistlab.train(small_config(None, dry_run=True, dry_run_batches=2, epochs=5, eval_batch_size=7))
    assert dry.path is None and not (tmp_path / "runs").exists()
    assert [h["steps"] for h in dry.history] == [2] and "test_accuracy" not in dry.summary
    correct = dry.history[0]["val_accuracy"] * 7
    assert abs(correct - round(correct)) < 1e-9  # scored on 7 validation images (not 500), as torch does
    capped = mnistlab.train(small_config(tmp_path / "capped", epochs=2, max_steps=3))
    assert [h["steps"] for h in capped.history] == [3, 3]
    # the same steps as the engine's own loop with the same cap
    with threadpool_limits(1, user_api="blas"):  # as the run's threads=1: the same sums, bit for bit
        engine = train_numpy(small_config(None, epochs=2, max_steps=3))
    assert [h["train_loss"] for h in engine.result.history] == [h["train_loss"] for h in capped.history]


def test_threads_limit_numpys_blas_during_the_run_and_are_restored(tmp_path):
    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with threadpool_limits(3, user_api="blas"):  # not 1: a missing limit would show
        run = mnistlab.train(small_config(tmp_path / "run", epochs=1, threads=1))
        assert run.summary["environment"]["blas_threads"] == 1  # read while the run's limit held
        assert set(blas_threads()) == {3}  # restored after the run


def test_device_auto_trains_on_the_cpu_even_beside_a_gpu(tmp_path, monkeypatch):
    """--device auto (every recipe's) picks CUDA when present; the engine runs on the CPU, and says so."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    run = mnistlab.train(small_config(tmp_path / "run", epochs=1))
    assert run.config.device == "auto" and run.device.type == "cpu"
    assert run.summary["environment"]["device"] == "cpu"


# ---- what the engine refuses -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "cnn"], "--model cnn (only mlp)"),
        (["--optimizer", "adam"], "--optimizer adam (only sgd)"),
        (["--dropout", "0.2"], "--dropout 0.2 (only 0)"),
        (["--label-smoothing", "0.1"], "--label-smoothing 0.1"),
        (["--device", "cuda"], "--device cuda"),
        (["--amp"], "--amp"),
        (["--compile"], "--compile"),
        (["--channels-last"], "--channels-last"),
        (["--nproc", "2"], "--nproc 2: --engine numpy trains in one process"),
    ],
)
def test_what_the_engine_cannot_do_is_one_line_naming_the_flag(capsys, tmp_path, args, needle):
    code, _, err = run_cli(capsys, "train", "--engine", "numpy", *args, "--out", str(tmp_path / "run"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "run").exists()


def test_the_python_api_refuses_alike_and_under_torchrun(monkeypatch):
    config = recipe("mlp")  # the torch mlp recipe: Adam
    config.engine = "numpy"
    with pytest.raises(ConfigError, match=r"--optimizer adam \(only sgd\).*engine='numpy'"):
        mnistlab.train(config)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match=r"--nproc / torchrun \(2 processes"):
        check_config(recipe("mlp", engine="numpy"))


def test_a_numpy_run_is_not_resumed(cli_run, capsys, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(cli_run.path, folder)
    (folder / "summary.json").unlink()  # as if interrupted
    code, _, err = run_cli(capsys, "train", "--resume", str(folder))
    assert code == 1 and "runs of the numpy engine cannot be resumed" in err


def test_engine_flag_picks_the_recipe():
    assert config_from_flags({"engine": "numpy"}) == recipe("mlp", engine="numpy")
    assert config_from_flags({"engine": "numpy"}).optim.optimizer == "sgd"
    assert config_from_flags({"model.name": "mlp"}).optim.optimizer == "adam"  # torch: unchanged
    cnn = recipe("cnn", engine="numpy")  # no numpy recipe: the torch one, which the engine's check refuses
    assert cnn.engine == "numpy" and cnn.model.name == "cnn"
