"""Ciresan's width normalisation (mnistlab.models.width): against hand-built digits, through a committee whose
members see different widths (its run folders, loading, the mean of its members, the report, the ONNX export),
and in the grouped network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mnistlab
from conftest import step_grouped_and_alone, tiny_mlp_config
from mnistlab.config import ModelConfig, TrainConfig
from mnistlab.data import load_dataset
from mnistlab.errors import ConfigError
from mnistlab.models import model_from_config
from mnistlab.models.grouped import GroupedNetwork
from mnistlab.models.width import WidthNormalized, ink_columns, normalize_width, normalize_width_split
from mnistlab.runs import read_config


def bar(left: int, right: int, value: float = 1.0) -> torch.Tensor:
    """A (1, 1, 28, 28) image: rows 4-23 of columns left..right at ``value``, 0 elsewhere."""
    x = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    x[..., 4:24, left : right + 1] = value
    return x


# ---- the transform, by hand -------------------------------------------------------------------------------
def test_a_bar_4_pixels_wide_is_stretched_to_8_about_the_centre_column():
    # columns 10..13 (centre 11.5) x2 about the output's centre 13.5: the bar covers 9.5..17.5 in pixel
    # centres' units, i.e. columns 10..17 inside, and each row keeps twice its ink (area x 2, height x 1)
    out = normalize_width(bar(10, 13), 8.0)
    columns = out[0, 0, 10]  # one inked row
    assert torch.allclose(columns[11:17], torch.ones(6, dtype=torch.float64))
    assert columns[:9].abs().max() < 1e-12 and columns[19:].abs().max() < 1e-12
    assert columns.sum().item() == pytest.approx(8.0, abs=1e-9)
    assert torch.equal(out[0, 0, :4], torch.zeros(4, 28, dtype=torch.float64))  # rows are untouched
    left, right = ink_columns(out)
    assert (left.item(), right.item()) == (9.0, 18.0)  # the half-covered fringes 9 and 18 count as ink


def test_squeezing_averages_across_each_output_column_instead_of_skipping_columns():
    # stripes 1,0,0 over 21 columns squeezed 3x to 7: every output column covers one stripe and two gaps, so
    # each is ~1/3; sampling one point per column would land on stripes or on gaps
    x = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    x[..., 4:24, 3:24:3] = 1.0
    x[..., 4:24, 23] = 1.0  # the ink ends at column 23: 21 columns wide (3..23)
    row = normalize_width(x, 7.0)[0, 0, 10]
    inside = row[11:16]  # the output's 7 ink columns are 10..16; the fringes are partial
    torch.testing.assert_close(inside, torch.full_like(inside, 1 / 3), atol=0.03, rtol=0)


def test_the_pixel_transform_does_not_change_where_the_ink_goes():
    digit = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:8]).double()[:, None]
    plain = normalize_width(digit, 14.0)
    standardised = normalize_width((digit - 33.3) / 78.6, 14.0)  # one affine map, background negative
    torch.testing.assert_close(standardised, (plain - 33.3) / 78.6)
    left, right = ink_columns(plain)
    assert ((right - left + 1 - 14).abs() <= 2).all()  # within the resampling's fringe


def test_an_image_without_ink_spans_the_whole_width_and_is_unchanged():
    blank = torch.full((2, 1, 28, 28), -0.42)
    left, right = ink_columns(blank)
    assert left.tolist() == [0.0, 0.0] and right.tolist() == [27.0, 27.0]  # not a 1-pixel or empty box
    assert torch.equal(normalize_width(blank, 10.0), blank)


def test_half_precision_input_is_resampled_in_float32():
    digits = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:8]).float()[:, None]
    half = normalize_width(digits.bfloat16(), 12.0)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), normalize_width(digits, 12.0), atol=2.0, rtol=0.01)


def test_a_split_is_normalised_as_its_images_are_one_by_one(monkeypatch):
    import mnistlab.models.width as width

    monkeypatch.setattr(width, "SPLIT_CHUNK", 3)  # 8 images in chunks of 3, 3 and 2
    digits = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:8]).float()[:, None]
    alone = torch.cat([normalize_width(digits[k : k + 1], 12.0) for k in range(8)])
    torch.testing.assert_close(normalize_width_split(digits, 12.0), alone)


# ---- Ciresan's order in training: the width first, then the distortions -----------------------------------
def test_the_model_normalises_in_eval_mode_and_passes_training_batches_through():
    model = WidthNormalized(torch.nn.Identity(), 8)
    assert torch.equal(model.eval()(bar(10, 13)), normalize_width(bar(10, 13), 8.0))
    assert torch.equal(model.train()(bar(10, 13)), bar(10, 13))  # the trainer normalised it already


def _trainer(width: int | None, images: torch.Tensor, labels: torch.Tensor):
    from mnistlab.data import Preprocessor, TensorSplit
    from mnistlab.training.trainer import build_trainer

    cfg = TrainConfig()
    cfg.model.name, cfg.batch_size, cfg.seed = "cnn", 16, 3
    cfg.augment.kind = "both"
    pre = Preprocessor.fit(load_dataset("mnist", progress=False).train_images[:64])
    split = TensorSplit(images, labels)
    # the width comes from the model itself (config.model.input_width is None here), so that a model and its
    # training data cannot disagree
    model = model_from_config(ModelConfig(name="cnn", input_width=width))
    return build_trainer(cfg, model, split, split, preprocessor=pre)


def test_the_trainer_distorts_training_digits_after_normalising_their_width():
    """Ciresan's order: a width member's distorted batch is the distortion of the normalised digits (the
    same seed draws the same order and distortions), and validation is left for the model to normalise."""
    arrays = load_dataset("mnist", progress=False)
    digits = (torch.from_numpy(arrays.train_images[:64]).float()[:, None] - 33.3) / 78.6
    labels = torch.from_numpy(arrays.train_labels[:64]).long()
    member = _trainer(12, digits, labels)
    reference = _trainer(None, normalize_width_split(digits, 12.0), labels)
    for (x, y), (x_ref, y_ref) in zip(member.batches(1), reference.batches(1), strict=True):
        assert torch.equal(y, y_ref)
        torch.testing.assert_close(x, x_ref)
    assert member.val is not None and torch.equal(member.val.images, digits)


# ---- config and model -------------------------------------------------------------------------------------
def test_input_width_wraps_the_model_and_is_checked():
    model = model_from_config(ModelConfig(name="cnn", input_width=12))
    assert isinstance(model, WidthNormalized) and model.width == 12
    assert all(k.startswith("net.") for k in model.state_dict())
    cfg = TrainConfig()
    for bad in (0, 6, 29):  # under 7 px the box filter of 4 samples per column would skip ink
        cfg.model.input_width = bad
        with pytest.raises(ConfigError, match="input width must be 7 to 28 pixels"):
            cfg.validate()
    cfg.members, cfg.model.input_width, cfg.member_input_widths = 2, 14, (0, 12)
    with pytest.raises(ConfigError, match="do not combine"):
        cfg.validate()
    cfg.members, cfg.model.input_width, cfg.member_input_widths = 1, None, None
    cfg = TrainConfig(member_input_widths=(0, 12))
    with pytest.raises(ConfigError, match="needs a committee"):
        cfg.validate()
    cfg.members = 2
    cfg.data.norm_stats = "per-pixel"
    with pytest.raises(ConfigError, match="--norm-stats global"):
        cfg.validate()
    cfg.data.normalize = "scale"  # x / 255: one map for all pixels, whatever statistics were fitted
    cfg.validate()
    cfg.data.normalize, cfg.data.norm_stats = "standardize", "global"
    assert [cfg.validate().member_model(k).input_width for k in range(3)] == [None, 12, None]


def test_the_numpy_engine_refuses_input_widths_it_would_not_train_with():
    from mnistlab.recipes import recipe
    from mnistlab.training.numpy_engine import check_config

    cfg = recipe("mlp", engine="numpy")
    cfg.model.input_width = 14
    with pytest.raises(ConfigError, match="--input-width 14"):
        check_config(cfg)
    cfg.model.input_width, cfg.members, cfg.member_input_widths = None, 3, (0, 12)
    with pytest.raises(ConfigError, match="--member-input-widths"):
        check_config(cfg)


# ---- a committee of input variants ------------------------------------------------------------------------
WIDTHS = (0, 10, 16)


def widths_config(out: Path) -> TrainConfig:
    """Three tiny MLPs (64 hidden), as written and at widths 10 and 16 px, 2,000 images, 4 steps each."""
    cfg = tiny_mlp_config(out)
    cfg.members, cfg.member_input_widths, cfg.threads, cfg.max_steps = 3, WIDTHS, 1, 4
    return cfg


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    return mnistlab.train(widths_config(tmp_path_factory.mktemp("widths") / "run"))


def test_each_member_is_a_run_of_its_own_width_and_the_committee_their_mean(variants):
    configs = [read_config(variants.path / "members" / str(k)) for k in range(3)]
    assert [c.model.input_width for c in configs] == [None, 10, 16]
    assert {c.member_input_widths for c in configs} == {None}
    assert variants.summary["member_input_widths"] == list(WIDTHS)
    assert [r["input_width"] for r in variants.summary["member_runs"]] == [None, 10, 16]
    loaded = mnistlab.load_run(variants.path)
    assert [type(m).__name__ for m in loaded.model.members] == ["MLP", "WidthNormalized", "WidthNormalized"]
    images = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:50])
    members = [mnistlab.load_run(variants.path / "members" / str(k)) for k in range(3)]
    # the members' own models normalise: their answers differ from the plain network's on the same weights
    with torch.no_grad():
        plain = F.softmax(members[1].model.net(members[1].preprocessor(images)), dim=1)
    assert not torch.allclose(plain, members[1].predict(images), atol=1e-3)
    expected = torch.stack([m.predict(images) for m in members]).mean(0)
    torch.testing.assert_close(loaded.predict(images), expected, atol=1e-6, rtol=1e-5)
    assert loaded.evaluate()["accuracy"] == variants.summary["test_accuracy"]


def test_the_report_names_each_members_width(variants, tmp_path):
    from mnistlab.evaluation.report import run_report

    text = run_report(variants.path, out=tmp_path / "report").read_text()
    assert "member 0 (seed 0, as written)" in text and "member 2 (seed 2, width 16 px)" in text


def test_the_onnx_export_normalises_each_member_in_the_graph(variants, tmp_path):
    from mnistlab.app.export import MAX_LOGIT_DIFF, VERIFY_IMAGES, export_run

    report = export_run(mnistlab.load_run(variants.path), "onnx", tmp_path / "widths.onnx")
    assert report.images == VERIFY_IMAGES and report.argmax_agree == VERIFY_IMAGES
    assert report.max_abs_logit_diff <= MAX_LOGIT_DIFF


def test_grouped_members_of_other_widths_step_as_they_would_alone():
    """Two SGD steps of three cnn members (as written, 10 px, 18 px) on real digits, grouped and alone."""
    from mnistlab.config import OptimConfig
    from mnistlab.training.optim import build_optimizer

    torch.manual_seed(0)
    widths = (None, 10, 18)
    members = [model_from_config(ModelConfig(name="cnn", input_width=w)).double() for w in widths]
    network = GroupedNetwork(members)
    config = OptimConfig(lr=0.05)
    alone, together = [build_optimizer(m, config) for m in members], build_optimizer(network, config)
    arrays = load_dataset("mnist", progress=False)
    digits = torch.from_numpy(arrays.train_images[:48]).double()[:, None] / 255
    labels = torch.from_numpy(arrays.train_labels[:48]).long()
    for step in range(2):
        first = [24 * step + 8 * n for n in range(3)]  # each member its own 8 digits per step
        xs, ys = [digits[k : k + 8] for k in first], [labels[k : k + 8] for k in first]
        step_grouped_and_alone(network, together, members, alone, xs, ys)
    # in eval mode each channel is normalised at its member's width (in training the trainer did it)
    network.eval()
    grouped = network(torch.cat(xs, dim=1))
    for n, (member, x) in enumerate(zip(members, xs, strict=True)):
        torch.testing.assert_close(grouped[n], member.eval()(x), atol=1e-10, rtol=1e-10)
    copies = [model_from_config(ModelConfig(name="cnn", input_width=w)).double() for w in widths]
    network.store_members(copies)
    for member, copy in zip(members, copies, strict=True):
        for (name, a), b in zip(member.state_dict().items(), copy.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10, msg=name)


def test_a_single_run_report_and_a_lying_file_name_the_input_width():
    from mnistlab.evaluation.report import _describe_model
    from mnistlab.runcheck import _model_knobs

    summary = {"epochs_run": 3, "best_epoch": 2}
    assert "on digits re-scaled to 14 px wide" in _describe_model("cnn", summary, 14)
    assert "re-scaled" not in _describe_model("cnn", summary)
    cfg = TrainConfig()
    cfg.model.input_width = 12
    assert "input width 12 px" in _model_knobs(cfg)
    cfg.model.input_width, cfg.members, cfg.member_input_widths = None, 3, (0, 10)
    assert "input widths 0,10 in turn" in _model_knobs(cfg)


def test_the_validation_scripts_score_a_committee_beside_ordinary_runs(variants, capsys):
    """bench/committee_mixes_val.py with runs as B, and committee_swap_val.py: a member swapped for its own run
    folder (an ordinary run on the committee's split) changes nothing."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    import committee_mixes_val
    import committee_swap_val

    members = [str(variants.path / "members" / str(k)) for k in range(3)]
    committee_mixes_val.main([str(variants.path), *members, "--size", "2"])
    mixes = capsys.readouterr().out
    assert "B alone: errors" in mixes and "0 of A + 2 of B (3 subsets)" in mixes
    committee_swap_val.main([str(variants.path), f"1={members[1]}", "--size", "2"])
    lines = capsys.readouterr().out.splitlines()
    before, after = (line.split(":", 1)[1].strip() for line in lines[-2:])
    assert before == after and "3 subsets" in before
