"""A run folder is untrusted input: every damaged or hostile folder of issue 12 (defects 1, 2 and 4) gets a
one-line error naming the file and the problem from every loader, with no traceback and bounded memory.

The folders are built by hand (tests/run_folders.py) from an untrained model, so the corpus costs milliseconds.
A valid folder passes every loader first: the errors below come from the damage, not from the fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import write_synthetic_dataset
from mnistlab.app.server import create_app
from mnistlab.cli.app import main
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError, RunError
from mnistlab.runs import load_run
from run_folders import HOSTILE, edit_model_file, finished_run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(root, data dir, a digit image); the synthetic dataset is cached in the test's own cache folder."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    write_synthetic_dataset(data, n_train=60, n_test=20)
    image = root / "digit.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255  # a "1"
    Image.fromarray(pixels).save(image)
    return root, data, image


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    # the synthetic "mnist" must not replace the real one in the user's decoded-array cache
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path / "cache"))


def commands(folder, root, image) -> dict[str, list[str]]:
    return {
        "evaluate": ["evaluate", str(folder)],
        "predict": ["predict", str(folder), str(image)],
        "export": ["export", str(folder), "--out", str(root / f"{folder.name}.onnx")],
        "report": ["report", str(folder), "--out", str(root / f"{folder.name}-report")],
        "serve": ["serve", str(folder), "--port", "0"],  # binds first, then loads: fails before serving
    }


def run_cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "report"])
def test_a_valid_folder_passes_every_loader(corpus, command, capsys):
    root, data, image = corpus
    folder = finished_run(root / f"valid-{command}", data)
    code, _, err = run_cli(commands(folder, root, image)[command], capsys)
    assert code == 0, err
    app = create_app(load_run(folder))  # and the server's own load
    with TestClient(app) as client:
        assert client.get("/api/model").json()["name"] == "mlp"


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_folder_gets_one_line_from_every_loader(corpus, case, capsys):
    root, data, image = corpus
    folder = finished_run(root / case.name.replace(" ", "_").replace("'", ""), data, case.model)
    case.edit(folder)
    for command, args in commands(folder, root, image).items():
        code, out, err = run_cli(args, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1, (command, err)
        assert lines[0].startswith(f"mnistlab: error: {folder / case.file}: "), (command, lines[0])
        assert re.search(case.words, lines[0]), (command, lines[0])
        assert "Traceback" not in err and out == "", command
    with pytest.raises(RunError, match=case.words):
        load_run(folder)
    with pytest.raises(RunError):  # the serve workers' own load (app factory)
        create_app(load_run(folder))


def test_float16_is_refused_naming_the_dtype_found(corpus):
    """The decision for half precision: refused (mnistlab writes float32), saying which dtype was found."""
    root, data, _ = corpus
    for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.uint8):
        folder = finished_run(root / f"dtype-{dtype}", data)
        edit_model_file(
            folder, tensors=lambda s, d=dtype: s.update({"model.net.1.bias": s["model.net.1.bias"].to(d)})
        )
        name = str(dtype).removeprefix("torch.")
        with pytest.raises(
            RunError, match=rf"model\.net\.1\.bias is {name}, but mnistlab model weights are float32"
        ):
            load_run(folder)


def test_a_checkpoint_is_checked_too(tmp_path, corpus, interrupted_in_epoch):
    """Resuming reads last.safetensors: int weights there are refused, not silently converted."""
    import mnistlab
    from run_folders import synthetic_config

    config = synthetic_config(tmp_path / "run", corpus[1], epochs=2)
    with interrupted_in_epoch(2):
        mnistlab.train(config)
    folder = tmp_path / "run"
    edit_model_file(
        folder,
        tensors=lambda s: s.update({"model.net.1.weight": s["model.net.1.weight"].long()}),
        name="last.safetensors",
    )
    with pytest.raises(RunError, match=r"last.safetensors: model.net.1.weight is int64"):
        mnistlab.train(resume=folder)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"model": {"width": "wide"}}, "model.width must be a finite number, got 'wide'"),
        ({"model": {"width": float("nan")}}, "model.width must be a finite number"),
        ({"model": {"hidden": [1e9]}}, r"model.hidden must be a list of integers, got \[1000000000.0\]"),
        ({"model": {"hidden": [True]}}, "model.hidden must be a list of integers"),
        ({"epochs": 2.0}, "epochs must be an integer, got 2.0"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"model": {"name": 3}}, "model.name must be a string, got 3"),
        ({"data": {"download": "yes"}}, "data.download must be true or false"),
        ({"optim": {"lr": None}}, "optim.lr must be given"),
        ({"member_models": [1, 2]}, r"member_models must be a list of strings, got \[1, 2\]"),
        ({"model": {"hidden": ["64"]}}, "model.hidden must be a list of integers"),
    ],
)
def test_config_values_must_have_their_declared_types(raw, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig.from_dict(raw)


def test_config_ranges_keep_the_described_model_countable():
    for model, words in (
        ({"width": 101.0}, r"width must be in \(0, 100\]"),
        ({"hidden": [16] * 101}, "hidden must be 1 to 100 layers"),
        ({"hidden": [10**7 + 1]}, "of 1 to 10,000,000 units"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ):
        with pytest.raises(ConfigError, match=words):
            TrainConfig.from_dict({"model": model}).validate()
    assert TrainConfig.from_dict({"model": {"width": 100, "hidden": [10**7]}}).validate()


MEASURE = """
import json, resource, sys, time
import mnistlab.runs
from mnistlab.errors import RunError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, peak so far: torch and mnistlab imported
t0 = time.perf_counter()
try:
    mnistlab.runs.load_run(sys.argv[1])
    message = None
except RunError as exc:
    message = str(exc)
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "extra_mb": (after - before) / 1024, "peak_mb": after / 1024, "error": message}))
"""


def update_config(raw: dict, changes: dict) -> None:
    """Set ``changes`` in a config's JSON dict, a section's fields within that section."""
    for key, value in changes.items():
        if isinstance(value, dict):
            raw[key].update(value)
        else:
            raw[key] = value


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"model": {"width": 1e6}}, r"width must be in"),
        ({"model": {"width": 100.0}}, "has shape"),
        ({"members": 1000}, "describes a committee of 1000 members; the file holds 1 model"),
    ],
    ids=["width 1e6", "width 100", "1000 members"],
)
def test_a_huge_width_fails_fast_in_little_memory(corpus, changes, words):
    """Issue 12's bound: under a second and under 200 MB. Measured in a fresh process: the peak RSS the load
    adds on top of the imports (torch alone is ~220 MB), and its time. Width 100 is the largest the range
    allows: its model (6,400-channel convolutions, 230 M parameters) is built on the meta device only. 1000
    members (the most allowed) of a one-model file are refused before any member is built (building 1000 on
    the meta device took 6 s)."""
    root, data, _ = corpus
    folder = finished_run(root / f"huge-{len(list(root.iterdir()))}", data, "cnn")
    edit_model_file(folder, lambda raw: update_config(raw, changes))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["seconds"] < 1.0, result
    assert result["extra_mb"] < 200, result
    assert result["error"] is not None and re.search(words, result["error"])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b'{"model": {"width": "wide"}}', "model.width must be a finite number, got 'wide'"),
        (b'{"model": {"name": "mlp", "hidden": [1e9]}}', "model.hidden must be a list of integers"),
        (b"\xff\xfe{}", "not a readable mnistlab config"),
        (b"[1, 2]", "expected an object, got list"),
    ],
)
def test_a_hostile_config_json_is_one_line_on_resume(tmp_path, capsys, text, words):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_bytes(text)
    code, _, err = run_cli(["train", "--resume", str(folder)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"mnistlab: error: {folder / 'config.json'}: ") and re.search(words, lines[0])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # nothing written, no error.txt


@pytest.mark.parametrize("stage", ["no checkpoint yet", "a checkpoint"])
def test_a_config_json_asking_for_more_memory_than_the_machine_has_is_one_line_on_resume(
    tmp_path, corpus, capsys, interrupted_in_epoch, stage
):
    """hidden [10**7, 10**7] is in range (a model may be that wide) but has 10**14 weights (400 TB): resuming
    such a config.json gave a DefaultCPUAllocator traceback. It must fail before anything is allocated,
    naming config.json, and leave the folder as it was."""
    import mnistlab
    from run_folders import synthetic_config

    folder = tmp_path / "run"
    with interrupted_in_epoch(1 if stage == "no checkpoint yet" else 2):
        mnistlab.train(synthetic_config(folder, corpus[1]))
    raw = json.loads((folder / "config.json").read_text())
    raw["model"]["hidden"] = [10**7, 10**7]
    (folder / "config.json").write_text(json.dumps(raw))
    before = sorted(p.name for p in folder.iterdir())
    code, _, err = run_cli(["train", "--resume", str(folder)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"mnistlab: error: {folder / 'config.json'}: "), lines[0]
    # by hand: 784*10**7 + 10**7 (layer 1) + 10**14 + 10**7 (layer 2) + 10**8 + 10 (output)
    assert re.search(r"100,007,960,000,010 parameters .* more than this machine's", lines[0]), lines[0]
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_new_run_too_large_for_the_machine_is_one_line(tmp_path, corpus, capsys):
    """The same bound for a model asked for on the command line: a ConfigError, not a traceback."""
    args = ["train", "--model", "mlp", "--hidden", "10000000,10000000", "--out", str(tmp_path / "big")]
    args += ["--data-dir", str(corpus[1]), "--no-download", "--val-size", "10", "-q", "--no-progress"]
    code, _, err = run_cli(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert re.search(r"mnistlab: error: model mlp .* parameters .* more than this machine's", lines[0])


def test_a_config_json_that_does_not_fit_the_checkpoint_fails_before_anything_is_built(
    tmp_path, corpus, capsys, interrupted_in_epoch, monkeypatch
):
    """A resumed config.json asking for a wider model than its checkpoint holds (hidden 100,000: 78 M
    weights, 314 MB, for a 50 KB checkpoint) is refused from the checkpoint's header, before the data is read
    or the model allocated (a cnn of width 100 made it 1.9 GB for a 370 KB checkpoint)."""
    import mnistlab
    from mnistlab.training import fit
    from run_folders import synthetic_config

    folder = tmp_path / "run"
    with interrupted_in_epoch(2):
        mnistlab.train(synthetic_config(folder, corpus[1]))
    raw = json.loads((folder / "config.json").read_text())
    raw["model"]["hidden"] = [100_000]
    (folder / "config.json").write_text(json.dumps(raw))

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the checkpoint was checked")

    monkeypatch.setattr(fit, "prepare_data", no_data)
    code, _, err = run_cli(["train", "--resume", str(folder)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(
        f"mnistlab: error: {folder / 'last.safetensors'}: model.net.1.weight has shape "
        "(16, 784), but its config (mlp width 1, hidden [100000]) needs (100000, 784)"
    ), lines[0]
