"""Real-world-like check: MNIST test digits drawn "as a user would", through `mnistlab predict`.

Each of the first N test digits becomes a user-style image: cropped to its ink, scaled 2-4x (LANCZOS), dark
ink (grey 0-60) on light paper (grey 225-255) with a little noise, placed off-centre on a canvas with random
margins (a third of them with wide margins), saved as PNG (even index) or JPEG quality 85 (odd index). The
files go through the real command line twice, with MNIST-style normalisation and with ``--raw`` (polarity
fixed, whole image resized to 28x28), and the accuracy of each is printed.

Variants (``--variants``) redraw the same digits thicker, thinner or slightly rotated, and digits from other
sources than MNIST: printed digits in the system's TrueType fonts, and scikit-learn's 8x8 UCI handwritten
digits (other writers, scanned at a much lower resolution) upscaled to 64x64.

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE python bench/handwriting_check.py RUN_DIR [--n 1000] [--variants]

The digits are fixed by --seed (default 0); nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnistlab.data import load_dataset

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


def as_user_drawing(
    digit: np.ndarray, rng: np.random.Generator, ink_transform: Transform | None = None
) -> Image.Image:
    """uint8 (28, 28) MNIST digit -> dark-on-light L image, 2-4x larger, off-centre, with margins."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    ink = Image.fromarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    scale = rng.uniform(2.0, 4.0)
    ink = ink.resize(
        (max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.Resampling.LANCZOS
    )
    if ink_transform is not None:
        ink = ink_transform(ink, rng)
    wide = rng.random() < 1 / 3
    side = round(28 * scale * (rng.uniform(1.3, 2.0) if wide else rng.uniform(1.0, 1.3)))
    width, height = max(side, ink.width + 2), max(round(side * rng.uniform(0.9, 1.3)), ink.height + 2)
    left, top = int(rng.integers(0, width - ink.width + 1)), int(rng.integers(0, height - ink.height + 1))
    alpha = np.zeros((height, width))
    alpha[top : top + ink.height, left : left + ink.width] = np.asarray(ink, dtype=np.float64) / 255.0
    paper, pen = rng.uniform(225, 255), rng.uniform(0, 60)
    page = paper * (1 - alpha) + pen * alpha + rng.normal(0, 2.0, alpha.shape)
    return Image.fromarray(np.clip(page, 0, 255).round().astype(np.uint8))


def thicker(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.MaxFilter(5))  # ink is bright here: max grows the stroke ~2 px per side


def thinner(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.MinFilter(3))


def rotated(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.choice([-1, 1]) * rng.uniform(8, 15))  # degrees
    return img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)


def save_user_images(images: list[Image.Image], folder: Path) -> list[Path]:
    paths = []
    for i, img in enumerate(images):
        path = folder / (f"{i:05d}.png" if i % 2 == 0 else f"{i:05d}.jpg")
        img.save(path, quality=85) if path.suffix == ".jpg" else img.save(path)
        paths.append(path)
    return paths


def predict_cli(run_dir: Path, paths: list[Path], raw: bool) -> list[int | None]:
    """Labels from `python -m mnistlab predict --json` (None for a file that failed)."""
    cmd = [sys.executable, "-m", "mnistlab", "predict", str(run_dir), *map(str, paths), "--json"]
    out = subprocess.run(cmd + (["--raw"] if raw else []), capture_output=True, text=True, check=False)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    if len(rows) != len(paths):
        raise SystemExit(f"predict returned {len(rows)} rows for {len(paths)} files:\n{out.stderr[-2000:]}")
    return [row.get("label") for row in rows]


def accuracy(pred: list[int | None], labels: np.ndarray) -> tuple[float, int]:
    correct = sum(int(p == int(t)) for p, t in zip(pred, labels, strict=True))
    return correct / len(labels), sum(p is None for p in pred)


def report(
    name: str, run_dir: Path, images: list[Image.Image], labels: np.ndarray, folder: Path, raw_too: bool
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = save_user_images(images, folder)
    result = {"name": name, "images": len(paths)}
    for raw in (False, True) if raw_too else (False,):
        acc, failed = accuracy(predict_cli(run_dir, paths, raw), labels)
        key = "raw" if raw else "mnist_style"
        result[key] = acc
        result[f"{key}_failed"] = failed
        print(
            f"{name:<28} {'--raw (plain resize)' if raw else 'MNIST-style':<22} accuracy {acc:7.2%} "
            f"({round(acc * len(paths))}/{len(paths)}, {failed} files failed)",
            flush=True,
        )
    return result


def font_digits() -> tuple[list[Image.Image], np.ndarray]:
    """Digits 0-9 printed in every DejaVu/Liberation TrueType font found, black on white, 120 px high."""
    fonts = sorted(Path("/usr/share/fonts/truetype").glob("*/*.ttf"))
    images, labels = [], []
    for font_path in fonts:
        font = ImageFont.truetype(str(font_path), 120)
        for d in range(10):
            img = Image.new("L", (200, 200), 255)
            ImageDraw.Draw(img).text((40, 20), str(d), fill=0, font=font)
            images.append(img)
            labels.append(d)
    return images, np.array(labels)


def uci_digits() -> tuple[list[Image.Image], np.ndarray]:
    """scikit-learn's 1,797 UCI digits (8x8, 0-16, white ink), as dark-on-light 64x64 images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [
        Image.fromarray((255 - x * 255 / 16).astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
        for x in digits.images
    ]
    return images, digits.target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a trained run (e.g. the default cnn)")
    parser.add_argument("--n", type=int, default=1000, help="MNIST test digits to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", action="store_true", help="also thicker/thinner/rotated and non-MNIST")
    parser.add_argument("--keep", type=Path, default=None, help="keep the rendered files in this folder")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    arrays = load_dataset("mnist", progress=False)
    digits, labels = arrays.test_images[: args.n], arrays.test_labels[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rng = np.random.default_rng(args.seed)
        results = [
            report(
                "user-style",
                args.run_dir,
                [as_user_drawing(d, rng) for d in digits],
                labels,
                root / "user",
                True,
            )
        ]
        if args.variants:
            for name, fn in (
                ("thicker strokes", thicker),
                ("thinner strokes", thinner),
                ("rotated 8-15 deg", rotated),
            ):
                rng = np.random.default_rng(args.seed)
                images = [as_user_drawing(d, rng, fn) for d in digits]
                results.append(report(name, args.run_dir, images, labels, root / name.split()[0], True))
            images, font_labels = font_digits()
            results.append(
                report(
                    f"printed fonts ({len(images) // 10})",
                    args.run_dir,
                    images,
                    font_labels,
                    root / "fonts",
                    True,
                )
            )
            images, uci_labels = uci_digits()
            results.append(
                report("UCI 8x8 handwriting", args.run_dir, images, uci_labels, root / "uci", True)
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
