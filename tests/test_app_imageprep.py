"""MNIST-style normalisation of user images, and a corpus of bad files that must each fail on its own."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.app.imageprep import ImageError, load_grey, mnist_style, prepare, prepare_pixels
from mnistlab.app.predict import predict_files
from mnistlab.cli.app import main
from mnistlab.data import load_dataset


def draw_seven(size=(240, 180), offset=(30, 20), ink=0, paper=255, width=14) -> Image.Image:
    """A '7' in dark ink on light paper, off-centre in a canvas larger than 28x28 (L mode)."""
    img = Image.new("L", size, paper)
    d = ImageDraw.Draw(img)
    x, y = offset
    d.line([(x, y), (x + 90, y), (x + 40, y + 130)], fill=ink, width=width, joint="curve")
    return img


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(digit.shape)
    total = digit.astype(np.float64).sum()
    return float((digit * ys).sum() / total), float((digit * xs).sum() / total)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_layout_matches_mnist():
    digit = prepare(encode(draw_seven(), "PNG"))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    cy, cx = centre_of_mass(digit)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # integer shift: within half a pixel
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (19, 20, 21)  # the 20x20 box (±1 for AA)
    assert digit.max() == 255 and (digit[0] == 0).all() and (digit[:, 0] == 0).all()  # ink white, bg black


def test_mnist_digits_pass_through_nearly_unchanged():
    arrays = load_dataset("mnist", progress=False)
    for image in arrays.test_images[:20]:
        assert similarity(mnist_style(image.astype(np.float32)), image) > 0.8


def test_inversion_alpha_and_formats_give_the_same_digit():
    reference = prepare(encode(draw_seven(), "PNG"))
    inverted = draw_seven(ink=255, paper=0)
    # Canvas-style RGBA: transparent (0,0,0,0) paper, opaque black ink; without compositing on white
    # the paper would be black, like the ink.
    alpha = np.asarray(draw_seven(ink=255, paper=0))
    rgba = Image.fromarray(np.dstack([np.zeros_like(alpha)] * 3 + [alpha]), mode="RGBA")
    sixteen = Image.fromarray(np.asarray(draw_seven(), dtype=np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    variants = {
        "inverted": encode(inverted, "PNG"),
        "rgba": encode(rgba, "PNG"),
        "rgb-jpeg": encode(draw_seven().convert("RGB"), "JPEG", quality=75),
        "palette-gif": encode(draw_seven().convert("P"), "GIF"),
        "bmp": encode(draw_seven(), "BMP"),
        "webp": encode(draw_seven().convert("RGB"), "WEBP"),
        "16-bit": encode(sixteen, "PNG"),
    }
    for name, data in variants.items():
        assert similarity(prepare(data, name), reference) > 0.95, name


def test_paper_texture_and_shading_do_not_move_the_box():
    rng = np.random.default_rng(0)
    clean = np.asarray(draw_seven(), dtype=np.float64)
    shading = np.linspace(0, 40, clean.shape[1])[None, :]  # lighting gradient, 40 grey levels
    photo = np.clip(clean - shading + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
    photo[rng.random(photo.shape) < 0.001] = 90  # dark specks of dust
    assert (
        similarity(prepare(encode(Image.fromarray(photo), "PNG")), prepare(encode(draw_seven(), "PNG"))) > 0.9
    )


def test_pixels_array_validation():
    seven = np.asarray(draw_seven(size=(28, 28), offset=(5, 4), width=2).resize((28, 28)))
    assert prepare_pixels(seven.tolist()).shape == (28, 28)
    assert (prepare_pixels(np.full((28, 28), 7).tolist(), normalize=False) == 7).all()
    for bad in ([[1, 2]], np.full((28, 28), 300).tolist(), "nope", [[float("nan")] * 28] * 28):
        with pytest.raises(ImageError):
            prepare_pixels(bad)
    with pytest.raises(ImageError, match="no ink found"):
        prepare_pixels(np.zeros((28, 28)).tolist())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose valid IHDR claims width x height pixels: Pillow reads the size before any pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def write_bad_corpus(folder: Path) -> dict[str, str]:
    """file name -> the words its error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.png").write_text("this is not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "blank.png").write_bytes(encode(Image.new("L", (200, 200), 255), "PNG"))
    noisy = np.clip(np.random.default_rng(1).normal(200, 6, (200, 200)), 0, 255).astype(np.uint8)
    (folder / "blank-paper.jpg").write_bytes(encode(Image.fromarray(noisy), "JPEG"))
    good = encode(draw_seven(), "PNG")
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(50_000, 50_000))  # 2.5 G pixels: past 2x the limit
    (folder / "bomb-warning.png").write_bytes(png_header_only(10_000, 10_000))  # 1e8: between 1x and 2x
    return {
        "text.png": "not an image",
        "empty.png": "not an image",
        "blank.png": "no ink found",
        "blank-paper.jpg": "no ink found",
        "truncated.png": "cannot decode",
        "bomb.png": "too large",
        "bomb-warning.png": "too large",
        "missing.png": "no such file",
    }


def test_bad_corpus_each_file_gets_its_own_error(tmp_path):
    expected = write_bad_corpus(tmp_path)
    for name, words in expected.items():
        with pytest.raises(ImageError, match=words) as info:
            load_grey(tmp_path / name) if words != "no ink found" else prepare(tmp_path / name)
        assert name in str(info.value)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the global limit is left as Pillow ships it


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [draw_seven(), Image.new("L", (240, 180), 255)]  # second frame blank
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    assert similarity(prepare(path), prepare(encode(draw_seven(), "PNG"))) > 0.95


def test_predict_files_keeps_going_past_bad_files(app_run, tmp_path):
    write_bad_corpus(tmp_path)
    Image.fromarray(load_dataset("mnist", progress=False).test_images[0]).save(tmp_path / "good.png")
    names = ["text.png", "good.png", "bomb.png", "missing.png", "blank.png"]
    results = predict_files(app_run, [tmp_path / n for n in names])
    assert [r.error is None for r in results] == [False, True, False, False, False]
    good = results[1]
    assert abs(sum(good.probabilities) - 1) < 1e-6 and good.input_28x28.shape == (28, 28)


def test_cli_predict_reports_per_file_and_fails_at_the_end(app_run, tmp_path, capsys):
    write_bad_corpus(tmp_path / "bad")
    arrays = load_dataset("mnist", progress=False)
    big = Image.fromarray(255 - arrays.test_images[0]).resize((112, 112))  # dark on light, 4x larger
    big.save(tmp_path / "seven.png")
    files = [str(tmp_path / "seven.png"), str(tmp_path / "bad" / "text.png"), str(tmp_path / "missing.png")]
    args = ["predict", str(app_run.path), *files, "--json", "--save-input", str(tmp_path / "seen")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)  # in-process: the same entry point as the `mnistlab` script, without a new interpreter
    out = capsys.readouterr()
    assert exit_info.value.code == 1, out.err
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [("error" in x) for x in lines] == [False, True, True]
    assert len(lines[0]["top_k"]) == 3 and abs(sum(lines[0]["probabilities"]) - 1) < 1e-6
    saved = list((tmp_path / "seen").glob("*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (28, 28)
    assert "2 of 3 files failed" in out.err and "Traceback" not in out.err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(app_run.path), str(tmp_path / "seven.png"), "--top-k", "2"])
    assert exit_info.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'seven.png'}: ") and line.count("%") == 2


def test_paths_that_are_not_image_files_each_get_their_own_reason(tmp_path, monkeypatch):
    """Not "no such file" for all of them (issue 12, defect 7); a FIFO or /dev/zero must not hang either."""
    import contextlib
    import os
    import threading
    import time

    from mnistlab.app import imageprep

    (tmp_path / "a-folder").mkdir()
    os.mkfifo(tmp_path / "a-pipe")

    def unblock_pipe() -> None:  # should load_grey open the pipe, it would wait for a writer for ever
        time.sleep(3)
        with contextlib.suppress(OSError), open(tmp_path / "a-pipe", "wb"):
            pass

    threading.Thread(target=unblock_pipe, daemon=True).start()
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:  # sparse: no disk space used
        f.truncate(1001)
    monkeypatch.setattr(imageprep, "MAX_FILE_BYTES", 1000)
    expected = {
        tmp_path / "missing.png": "no such file",
        tmp_path / "a-folder": "is a folder, not an image file",
        tmp_path / "a-pipe": "not a regular file (a named pipe)",
        Path("/dev/zero"): "not a regular file (a character device)",
        huge: "file too large for an image (0 MB; the limit is 0 MB)",
    }
    for path, words in expected.items():
        if not path.exists() and words != "no such file":
            continue  # e.g. no /dev/zero in a container
        with pytest.raises(ImageError) as info:
            load_grey(path)
        assert str(info.value) == f"{path}: {words}"


def test_cli_predict_names_each_bad_file_once(app_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(app_run.path), str(tmp_path / "notes.txt"), str(tmp_path / "imgs")])
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 1
    assert err == [
        f"{tmp_path / 'notes.txt'}: error: not an image (or not PNG, JPEG, BMP, GIF or WebP)",
        f"{tmp_path / 'imgs'}: error: is a folder, not an image file",
        "2 of 2 files failed",
    ]
    with pytest.raises(SystemExit):
        main(["predict", str(app_run.path), str(tmp_path / "notes.txt"), "--json"])
    line = json.loads(capsys.readouterr().out)
    assert line == {
        "file": str(tmp_path / "notes.txt"),
        "error": "not an image (or not PNG, JPEG, BMP, GIF or WebP)",
    }
