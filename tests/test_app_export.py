"""ONNX and TorchScript export with the preprocessing inside, checked against PyTorch."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from mnistlab.app import export as export_mod
from mnistlab.app.export import MAX_LOGIT_DIFF, ExportError, export_run
from mnistlab.data import load_dataset

ort = pytest.importorskip(
    "onnxruntime", reason="ONNX export needs the onnx extra: pip install 'mnistlab[onnx]'"
)


def test_onnx_parity_and_dynamic_batch(app_run, tmp_path):
    out = tmp_path / "model.onnx"
    old_umask = os.umask(0o022)
    try:
        report = export_run(app_run, "onnx", out)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # like every file of the run folder
    assert report.images == 1000 and report.argmax_agree == 1000
    assert report.max_abs_logit_diff <= MAX_LOGIT_DIFF
    # Independent check of the file itself, at batch sizes other than the export example's 2.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    images = load_dataset("mnist", progress=False).test_images[1000:1037]  # 37: an odd batch
    got = session.run(["logits"], {"pixels": images.astype(np.float32)})[0]
    expected = app_run.predict_logits(images)  # NumPy in, NumPy out
    assert got.shape == (37, 10)
    assert np.abs(got - expected).max() <= MAX_LOGIT_DIFF and (got.argmax(1) == expected.argmax(1)).all()
    one = session.run(["logits"], {"pixels": images[:1].astype(np.float32)})[0]
    assert np.abs(one - expected[:1]).max() <= MAX_LOGIT_DIFF


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # torch.jit.load: TorchScript is deprecated in torch
def test_torchscript_parity(app_run, tmp_path):
    out = tmp_path / "model.pt"
    report = export_run(app_run, "torchscript", out)
    assert report.argmax_agree == 1000 and report.max_abs_logit_diff <= MAX_LOGIT_DIFF
    loaded = torch.jit.load(str(out))
    images = load_dataset("mnist", progress=False).test_images[:5]
    with torch.no_grad():
        assert torch.allclose(
            loaded(torch.from_numpy(images).float()),
            app_run.predict_logits(torch.from_numpy(images)),
            atol=1e-5,
        )


def test_export_out_of_bounds_is_refused_and_not_written(app_run, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    monkeypatch.setattr(export_mod, "MAX_LOGIT_DIFF", -1.0)  # no export can pass: simulates a bad one
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_run(app_run, "onnx", out)
    assert out.read_bytes() == b"previous export"  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp files left
