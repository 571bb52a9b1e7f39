"""Distortions of training batches: geometry against a hand-written bilinear warp, the elastic field against
scipy and its analytic covariance, background padding, seeding, resume, and never at evaluation."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import mnistlab
from mnistlab.config import AugmentConfig, TrainConfig
from mnistlab.data import Preprocessor
from mnistlab.data.augment import (
    STATE_KEY,
    Distorter,
    affine_theta,
    build_distorter,
    gaussian_matrix,
    simard_field,
)
from mnistlab.errors import ConfigError
from mnistlab.inference import evaluate
from mnistlab.recipes import committee_recipe
from mnistlab.training.fit import prepare_data

ZERO = AugmentConfig(rotate=0, scale=0, shear=0, translate=0, elastic_alpha=0)


def blob_image(x: float, y: float, width: float = 1.5, n: int = 1) -> torch.Tensor:
    """(n, 1, 28, 28) pixels 0-255: a Gaussian blob centred (x, y) pixels from the image centre (y down)."""
    grid = torch.arange(28, dtype=torch.float64) - 13.5
    image = 255 * torch.exp(-((grid[None, :] - x) ** 2 + (grid[:, None] - y) ** 2) / (2 * width**2))
    return image.float().expand(n, 1, 28, 28).clone()


def digit_like(n: int = 4, seed: int = 0) -> torch.Tensor:
    """(n, 28, 28) uint8 with a blank border like MNIST, so that per-pixel statistics clamp the border std."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 4:24, 6:22] = rng.integers(0, 256, size=(n, 20, 16))
    return torch.from_numpy(images)


def reference_warp(image: np.ndarray, inverse) -> np.ndarray:
    """Hand-written bilinear warp: out(u) = image(inverse(u)), zero outside; pixels from the image centre."""
    height, width = image.shape
    cy, cx = (height - 1) / 2, (width - 1) / 2
    out = np.zeros_like(image, dtype=np.float64)
    for row in range(height):
        for col in range(width):
            sx, sy = inverse(col - cx, row - cy)
            fx, fy = sx + cx, sy + cy
            x0, y0 = math.floor(fx), math.floor(fy)
            for yy, wy in ((y0, 1 - (fy - y0)), (y0 + 1, fy - y0)):
                for xx, wx in ((x0, 1 - (fx - x0)), (x0 + 1, fx - x0)):
                    if 0 <= yy < height and 0 <= xx < width:
                        out[row, col] += wy * wx * image[yy, xx]
    return out


def warp(pixels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Distort pixel-unit images with a given theta through the Distorter's own sampling path."""
    distorter = Distorter(AugmentConfig(kind="affine"), Preprocessor("raw"), "cpu", seed=0)
    distorter._random_theta = lambda batch, size: theta  # the geometry under test, not a random draw
    return distorter(pixels)


def theta_for(angle=0.0, zoom=1.0, shear=0.0, shift=(0.0, 0.0)) -> torch.Tensor:
    return affine_theta(
        torch.tensor([float(angle)]),
        torch.tensor([float(zoom)]),
        torch.tensor([float(shear)]),
        torch.tensor([shift], dtype=torch.float32),
        (28, 28),
    )


# ---- geometry --------------------------------------------------------------------------------------------
def test_rotating_90_degrees_is_rot90_counter_clockwise():
    image = digit_like(1).float()[:, None]
    torch.testing.assert_close(
        warp(image, theta_for(angle=90)), torch.rot90(image, 1, dims=(2, 3)), atol=1e-3, rtol=0
    )


@pytest.mark.parametrize(
    ("params", "inverse"),
    [
        # each inverse map written by hand: output point (x, y) -> input point, pixels from the centre
        (
            dict(angle=30),
            lambda x, y: (
                x * math.cos(math.pi / 6) - y * math.sin(math.pi / 6),
                x * math.sin(math.pi / 6) + y * math.cos(math.pi / 6),
            ),
        ),
        (dict(zoom=1.25), lambda x, y: (x / 1.25, y / 1.25)),
        (dict(shear=20), lambda x, y: (x - math.tan(math.radians(20)) * y, y)),
        (dict(shift=(2.5, -1.0)), lambda x, y: (x - 2.5, y + 1.0)),
    ],
    ids=["rotate-30", "zoom-1.25", "shear-20", "shift"],
)
def test_each_affine_part_matches_a_hand_written_warp(params, inverse):
    image = digit_like(1, seed=3)[0].float()
    expected = reference_warp(image.numpy(), inverse)
    got = warp(image[None, None], theta_for(**params))[0, 0]
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-3)


def test_a_rotated_blob_lands_where_the_rotation_sends_its_centre():
    # centre (6, -3) turned 30 degrees counter-clockwise on screen (y down): (x cos + y sin, -x sin + y cos)
    out = warp(blob_image(6.0, -3.0), theta_for(angle=30))[0, 0].double()
    grid = torch.arange(28, dtype=torch.float64) - 13.5
    cx, cy = (out.sum(0) * grid).sum() / out.sum(), (out.sum(1) * grid).sum() / out.sum()
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    assert cx.item() == pytest.approx(6 * c - 3 * s, abs=0.01)
    assert cy.item() == pytest.approx(-6 * s - 3 * c, abs=0.01)


@pytest.mark.parametrize("size", [(28, 28), (20, 32)])
def test_the_grid_matches_affine_grid(size):
    torch.manual_seed(0)
    theta = affine_theta(
        torch.randn(5) * 10, 1 + torch.rand(5) / 5, torch.randn(5) * 5, torch.randn(5, 2), size
    )
    distorter = Distorter(AugmentConfig(kind="affine"), Preprocessor("raw"), "cpu", seed=0)
    distorter._random_theta = lambda batch, size: theta
    expected = torch.nn.functional.affine_grid(theta, [5, 1, *size], align_corners=False)
    torch.testing.assert_close(distorter.sampling_grid(5, size), expected, atol=1e-6, rtol=0)


def test_rotation_and_shear_of_a_non_square_image_match_a_hand_written_warp():
    """The pixel -> normalised factors differ per axis when H != W; the rotation must stay a rotation."""
    image = torch.rand(20, 32, generator=torch.Generator().manual_seed(0)) * 255
    c, s, t = math.cos(math.radians(25)), math.sin(math.radians(25)), math.tan(math.radians(10))
    theta = affine_theta(
        torch.tensor([25.0]), torch.ones(1), torch.tensor([10.0]), torch.zeros(1, 2), (20, 32)
    )
    # inverse of rotate(25) @ shear(10): shear^-1 (x - t y, y) after rotate^-1 (x c - y s, x s + y c)
    expected = reference_warp(
        image.numpy(), lambda x, y: ((x * c - y * s) - t * (x * s + y * c), x * s + y * c)
    )
    np.testing.assert_allclose(warp(image[None, None], theta)[0, 0].numpy(), expected, atol=2e-3)


def test_a_shift_moves_a_non_square_image_by_whole_pixels():
    """The pixel -> normalised factors differ per axis when H != W: a 2 px shift must still be 2 px."""
    image = torch.rand(1, 1, 20, 32) * 255
    theta = affine_theta(torch.zeros(1), torch.ones(1), torch.zeros(1), torch.tensor([[2.0, 3.0]]), (20, 32))
    out = warp(image, theta)
    torch.testing.assert_close(out[..., 3:, 2:], image[..., :-3, :-2], atol=1e-3, rtol=1e-5)


# ---- elastic ----------------------------------------------------------------------------------------------
def test_simard_field_is_scipys_gaussian_filter_with_zero_boundary():
    ndimage = pytest.importorskip("scipy.ndimage")
    noise = torch.rand(3, 28, 28, dtype=torch.float64) * 2 - 1
    for sigma in (2.0, 6.0):
        expected = np.stack([ndimage.gaussian_filter(n, sigma, mode="constant") for n in noise.numpy()])
        np.testing.assert_allclose(simard_field(noise, sigma).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("sigma", [4.0, 6.0])
def test_elastic_field_has_simards_covariance(sigma):
    """Cov(f_p, f_q) of Simard's field is (1/3) (G G^T)[py, qy] (G G^T)[px, qx] for uniform [-1, 1] noise."""
    alpha = 30.0
    config = dataclasses.replace(ZERO, kind="elastic", elastic_alpha=alpha, elastic_sigma=sigma)
    distorter = Distorter(config, Preprocessor("raw"), "cpu", seed=0)
    constants = distorter._constants_for((28, 28))
    fields = torch.cat(
        [distorter._random_field(1000, constants) for _ in range(8)]
    ).double()  # (8000, 2, 28, 28)
    fields = fields / (alpha * 2 / 28)  # normalised units -> pixels per unit alpha
    gram = gaussian_matrix(28, sigma) @ gaussian_matrix(28, sigma).T
    pixels = [(14, 14), (14, 20), (3, 14), (0, 0), (20, 7)]  # (row, col): centre, off-centre, border, corner
    for axis in (0, 1):
        values = fields[:, axis].reshape(len(fields), -1)
        for p in pixels:
            for q in pixels:
                expected = gram[p[0], q[0]] * gram[p[1], q[1]] / 3
                got = (values[:, p[0] * 28 + p[1]] * values[:, q[0] * 28 + q[1]]).mean()
                scale = (gram[p[0], p[0]] * gram[p[1], p[1]] * gram[q[0], q[0]] * gram[q[1], q[1]]).sqrt() / 3
                assert abs(got - expected) < 0.05 * scale, (axis, p, q)
    # x and y displacements are independent, and the field has mean 0
    assert abs((fields[:, 0] * fields[:, 1]).mean()) < 0.05 * fields.var()
    assert abs(fields.mean()) < 0.05 * fields.std()


def test_zero_magnitudes_leave_images_unchanged():
    pre = Preprocessor.fit(digit_like(50), stats="per-pixel")
    x = pre(digit_like(8, seed=1))
    for kind in ("affine", "elastic", "both"):
        out = Distorter(dataclasses.replace(ZERO, kind=kind), pre, "cpu", seed=0)(x)
        torch.testing.assert_close(out, x, atol=1e-4, rtol=1e-5)


# ---- padding, preprocessing, shapes -----------------------------------------------------------------------
@pytest.mark.parametrize("stats", ["global", "per-pixel"])
@pytest.mark.parametrize("mode", ["standardize", "center", "scale", "raw"])
def test_padding_is_background_in_every_preprocessing(mode, stats):
    """A shift brings in pixel value 0, whatever 0 becomes after preprocessing; the shifted image is exact.

    The image has ink up to its edges, so padding by repeating the border would show as well."""
    pre = Preprocessor.fit(digit_like(50), mode=mode, stats=stats)
    pixels = torch.randint(0, 256, (2, 28, 28), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    config = dataclasses.replace(ZERO, kind="affine")
    distorter = Distorter(config, pre, "cpu", seed=0)
    distorter._random_theta = lambda batch, size: theta_for(shift=(3.0, -2.0)).expand(batch, 2, 3)
    expected_pixels = torch.zeros(2, 28, 28)
    expected_pixels[:, : 28 - 2, 3:] = pixels[:, 2:, : 28 - 3].float()  # right 3, up 2, background elsewhere
    torch.testing.assert_close(distorter(pre(pixels)), pre(expected_pixels), atol=1e-3, rtol=1e-4)


def test_shape_dtype_device_and_a_short_last_batch():
    pre = Preprocessor.fit(digit_like(20))
    distorter = Distorter(AugmentConfig(kind="both"), pre, "cpu", seed=0)
    for batch in (128, 7):
        x = pre(digit_like(batch))
        out = distorter(x)
        assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
        assert not torch.equal(out, x)
    assert distorter.generator.device == x.device
    assert build_distorter(AugmentConfig(kind="none"), pre, "cpu", 0) is None


# ---- randomness: seeding and resume ------------------------------------------------------------------------
def test_same_seed_same_draws_other_seed_other_draws():
    pre = Preprocessor.fit(digit_like(20))
    x = pre(digit_like(16))
    one, two, other = (Distorter(AugmentConfig(kind="both"), pre, "cpu", seed) for seed in (7, 7, 8))
    for _ in range(3):
        a, b, c = one(x), two(x), other(x)
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_restored_state_continues_the_same_draws():
    pre = Preprocessor.fit(digit_like(20))
    x = pre(digit_like(16))
    first = Distorter(AugmentConfig(kind="both"), pre, "cpu", seed=3)
    first(x), first(x)
    state = first.state()[STATE_KEY]
    expected = first(x)
    second = Distorter(AugmentConfig(kind="both"), pre, "cpu", seed=99)
    second.restore(state)
    assert torch.equal(second(x), expected)


def test_an_interrupted_distorted_run_resumes_bit_identically(tiny_config, tmp_path, interrupted_in_epoch):
    tiny_config.epochs = 2
    tiny_config.augment.kind = "both"
    reference = mnistlab.train(tiny_config)

    tiny_config.out = str(tmp_path / "interrupted")
    with interrupted_in_epoch(2):
        mnistlab.train(tiny_config)
    resumed = mnistlab.train(resume=tmp_path / "interrupted")
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in reference.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


# ---- training: train batches only ---------------------------------------------------------------------------
def test_only_training_batches_are_distorted(tiny_config, monkeypatch):
    seen: list[int] = []
    real = Distorter.__call__

    def spy(self, x):
        seen.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(Distorter, "__call__", spy)
    tiny_config.augment.kind = "both"
    run = mnistlab.train(tiny_config)
    assert sum(seen) == tiny_config.data.train_subset  # every training image once (1 epoch), nothing else
    assert len(seen) == run.history[0]["steps"]
    # Validation and test were scored on undistorted images: scoring them again gives the same figures.
    splits = prepare_data(tiny_config, torch.device("cpu"), progress=False)
    val = evaluate(run.model, splits.val.images, splits.val.labels)
    assert val["accuracy"] == run.history[-1]["val_accuracy"]
    assert run.evaluate()["accuracy"] == run.summary["test_accuracy"]
    assert len(seen) == run.history[0]["steps"]  # and the scoring above distorted nothing


def test_the_last_clean_epochs_are_not_distorted(tiny_config, monkeypatch):
    calls: list[int] = []
    real = Distorter.__call__
    monkeypatch.setattr(Distorter, "__call__", lambda self, x: calls.append(x.shape[0]) or real(self, x))
    tiny_config.epochs, tiny_config.augment.kind, tiny_config.augment.clean_epochs = 3, "affine", 2
    mnistlab.train(tiny_config)
    assert sum(calls) == tiny_config.data.train_subset  # the first of 3 epochs only


def test_cli_flags_set_the_augment_section(monkeypatch):
    from mnistlab.cli import main, train_cmd

    configs: list[TrainConfig] = []
    monkeypatch.setattr(train_cmd, "train", lambda config=None, resume=None, **_: configs.append(config))
    args = ["train", "--augment", "both", "--rotate", "5", "--elastic-sigma", "4", "--clean-epochs", "1"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    (config,) = configs
    assert (config.augment.kind, config.augment.rotate, config.augment.elastic_sigma) == ("both", 5.0, 4.0)
    assert config.augment.clean_epochs == 1 and config.augment.scale == AugmentConfig().scale


def test_default_is_none_and_config_round_trips():
    config = TrainConfig()
    assert config.augment.kind == "none"
    config.augment = AugmentConfig(kind="elastic", elastic_alpha=30, elastic_sigma=5)
    assert TrainConfig.from_dict(config.to_dict()).augment == config.augment
    old = config.to_dict()
    del old["augment"]  # a config.json written before distortions existed
    assert TrainConfig.from_dict(old).augment.kind == "none"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("kind", "warp", "augment must be"),
        ("rotate", -1, "rotate"),
        ("scale", 1.0, "scale"),
        ("elastic_sigma", 0, "sigma"),
    ],
)
def test_bad_magnitudes_are_config_errors(field, value, needle):
    config = TrainConfig()
    setattr(config.augment, field, value)
    with pytest.raises(ConfigError, match=needle):
        config.validate()


def test_the_lab_figure_shows_16_draws_of_each_kind(tmp_path):
    from mnistlab.lab import LabOptions, run_experiment
    from mnistlab.lab.augment import DRAWS, distortion_draws

    run_experiment("augment", LabOptions(out=tmp_path / "lab"))
    png = tmp_path / "lab" / "distortions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "lab" / "report.html").is_file()
    widths = tmp_path / "lab" / "widths.png"  # the input variants beside the distortions
    assert widths.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and widths.stat().st_size > 10_000
    assert "as written and at each width" in (tmp_path / "lab" / "report.html").read_text()
    # The figure shows what the committee's members train on, and says so in numbers.
    shown = committee_recipe().augment
    settings = json.loads((tmp_path / "lab" / "config.json").read_text())["augment"]
    assert settings == dataclasses.asdict(shown)
    assert (
        f"rotate ±{shown.rotate:g}°, zoom ±{100 * shown.scale:g} %"
        in (tmp_path / "lab" / "report.html").read_text()
    )
    image = digit_like(1)[0]
    draws = distortion_draws(image, AugmentConfig(), "both")
    assert draws.shape == (DRAWS, 28, 28) and len({d.sum().item() for d in draws}) == DRAWS  # all different


def test_split_seed_fixes_the_validation_split_across_run_seeds(tiny_config):
    """Committee members: one validation split (split_seed) whatever their own seed."""
    tiny_config.data.split_seed = 7
    first = prepare_data(tiny_config, torch.device("cpu"), progress=False)
    tiny_config.seed = 3
    second = prepare_data(tiny_config, torch.device("cpu"), progress=False)
    assert torch.equal(first.val.images, second.val.images)
    tiny_config.data.split_seed = None  # the run's seed, as before
    third = prepare_data(tiny_config, torch.device("cpu"), progress=False)
    assert not torch.equal(first.val.images, third.val.images)


def test_the_numpy_engine_refuses_distortions():
    """It has no distortion step: --augment must fail loudly, not be ignored."""
    from mnistlab.recipes import recipe
    from mnistlab.training.numpy_engine import check_config

    config = recipe("mlp", engine="numpy")
    config.augment.kind = "elastic"
    with pytest.raises(ConfigError, match="--augment elastic"):
        check_config(config)
