"""Phone photos of handwritten digits on paper, rendered from MNIST digits: the measurement set for photos.

A photo is built the way light builds it: the page's reflectance (paper, printed ruled or squared lines, the
ink of the digits, sometimes the table beyond the sheet's edge) times an illumination field (exposure, a
lighting gradient, vignetting, a soft-edged shadow), then the camera: a slight rotation of the page, optical
blur, sensor noise and JPEG compression. Reflectances are RGB in 0-1; the photo is 8-bit RGB JPEG.

Conditions (each photo has every mild effect; its condition makes one of them strong):

    gradient  light falls to 35-70 % of its peak across the photo, plus vignetting
    shadow    a soft-edged shadow (35-65 % darker) over part of the page, often across the digit
    ruled     ruled (blue, grey) or squared paper; the digit sits on and crosses the lines
    noise     low light: sensor noise sigma 5-12 grey levels, JPEG quality 35-70, more blur
    numbers   3-5 digits in a row with varied spacing (a third have two digits pushed together, most of them
              touching; a quarter have a digit broken into strokes), under a random mix of the above, milder

Visible ink, operationally: the ink's Weber contrast against the paper around it, (paper - ink) / paper in
luma, is at least 0.3 here by construction (black, blue or pencil ink), and the noise of the photo is far
below it; a person sees every digit. ``Photo.ink_contrast`` records the value.

Reused by the tests with a small n; ``python bench/paper_photos.py OUT --n 8`` writes examples to look at.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

CONDITIONS = ("gradient", "shadow", "ruled", "noise")
NUMBERS = "numbers"
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow's convert("L")


@dataclass
class Photo:
    """One rendered photo and what it shows."""

    jpeg: bytes
    label: str  # "7", or "2026" for a number
    condition: str
    ink_contrast: float  # weakest ink's Weber contrast against the paper (luma), 0-1
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (x0, y0, x1, y1) per digit
    touching: bool = False  # two neighbouring digits' strokes touch
    broken: bool = False  # a digit's strokes are interrupted (pen skipped)

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.jpeg))


@dataclass
class Scene:
    """The random choices for one photo (sizes in pixels of the photo)."""

    width: int
    height: int
    angle: float  # page rotation, degrees
    paper: np.ndarray  # RGB reflectance (3,)
    ink: np.ndarray  # RGB reflectance (3,)
    light_floor: float  # darkest/brightest light of the gradient, 0-1
    vignette: float  # light lost in the corners, 0-1
    shadow_depth: float  # light lost in the shadow, 0 = none
    lines: str | None  # None, "ruled" or "squared"
    table: tuple[int, float] | None  # the sheet ends on side 0-3 (right, left, bottom, top) at this
    # fraction of the half-width from the centre, and the table shows beyond
    blur: float  # Gaussian sigma, pixels
    noise: float  # sensor noise sigma, grey levels at full light
    quality: int  # JPEG quality


# ---- the scene -----------------------------------------------------------------------------------------------


def draw_scene(condition: str, rng: np.random.Generator) -> Scene:
    """Random photo settings: mild for every effect, strong for the condition's own."""
    strong = {c: condition == c for c in CONDITIONS}
    mild = condition == NUMBERS
    long_side = int(rng.integers(960, 1441))
    short_side = round(long_side * 0.75)
    portrait = rng.random() < 0.5
    ink_kind = rng.choice(["black", "blue", "pencil"], p=[0.45, 0.35, 0.2])
    ink = {
        "black": np.full(3, rng.uniform(0.06, 0.2)),
        "blue": np.array([0.12, 0.18, 0.5]) * rng.uniform(0.6, 1.1),
        "pencil": np.full(3, rng.uniform(0.3, 0.5)),
    }[str(ink_kind)]
    paper = rng.uniform(0.8, 0.95) * (1 + rng.uniform(-0.04, 0.04, 3))
    lines = None
    if strong["ruled"] or (mild and rng.random() < 0.35):
        lines = "ruled" if rng.random() < 0.6 else "squared"
    return Scene(
        width=short_side if portrait else long_side,
        height=long_side if portrait else short_side,
        angle=float(rng.uniform(-4, 4)),
        paper=paper,
        ink=ink,
        light_floor=rng.uniform(0.35, 0.7) if strong["gradient"] else rng.uniform(0.75, 1.0),
        vignette=rng.uniform(0.1, 0.3) if strong["gradient"] else rng.uniform(0.0, 0.15),
        shadow_depth=(rng.uniform(0.35, 0.65) if strong["shadow"] or (mild and rng.random() < 0.3) else 0.0),
        lines=lines,
        table=(int(rng.integers(4)), float(rng.uniform(0.8, 0.95)))
        if rng.random() < (0.1 if strong["noise"] else 0.3)
        else None,
        blur=rng.uniform(0.8, 2.0) if strong["noise"] else rng.uniform(0.3, 1.2),
        noise=rng.uniform(5, 12) if strong["noise"] else rng.uniform(1, 4),
        quality=int(rng.integers(35, 71) if strong["noise"] else rng.integers(80, 96)),
    )


def page_coordinates(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) float32 (H, W): each pixel's position along and across the (rotated) page's lines, pixels."""
    ys, xs = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float32)
    theta = np.deg2rad(scene.angle)
    xs -= scene.width / 2
    ys -= scene.height / 2
    return xs * np.cos(theta) + ys * np.sin(theta), -xs * np.sin(theta) + ys * np.cos(theta)


def line_coverage(coord: np.ndarray, spacing: float, offset: float, width: float) -> np.ndarray:
    """Anti-aliased coverage 0-1 of lines ``width`` px wide every ``spacing`` px along ``coord``."""
    distance = np.abs((coord - offset + spacing / 2) % spacing - spacing / 2)
    return np.clip(width / 2 + 0.5 - distance, 0.0, 1.0)


def paper_with_lines(scene: Scene, digit_height: float, rng: np.random.Generator) -> np.ndarray:
    """RGB reflectance (H, W, 3) of the sheet: paper, its texture, printed lines, the table beyond its edge."""
    u, v = page_coordinates(scene)
    texture = rng.normal(0, 0.012, (scene.height // 8 + 1, scene.width // 8 + 1)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8), np.float32))[: scene.height, : scene.width]
    page = scene.paper[None, None, :].astype(np.float32) * (1 + texture[..., None])
    if scene.lines is not None:
        colour = (
            np.array([0.55, 0.7, 0.95]) if rng.random() < 0.6 else np.full(3, rng.uniform(0.45, 0.7))
        ).astype(np.float32)
        width = rng.uniform(1.0, 2.5) * max(scene.width, scene.height) / 1200
        # Ruled lines are a little wider apart than the writing is tall; squares about half a digit.
        spacing = digit_height * (rng.uniform(0.9, 1.3) if scene.lines == "ruled" else rng.uniform(0.4, 0.6))
        cover = line_coverage(v, spacing, rng.uniform(0, spacing), width)
        if scene.lines == "squared":
            cover = np.maximum(cover, line_coverage(u, spacing, rng.uniform(0, spacing), width))
        page *= 1 - cover[..., None] * (1 - colour)
    if scene.table is not None:
        side, fraction = scene.table
        coord = [u, -u, v, -v][side]
        edge = fraction * (scene.width if side < 2 else scene.height) / 2
        beyond = np.clip(coord - edge + 0.5, 0.0, 1.0)[..., None]
        wood = np.array([0.3, 0.2, 0.12], np.float32) * rng.uniform(0.4, 1.2)
        page = page * (1 - beyond) + wood * (1 + texture[..., None] * 4) * beyond
    return page


def illumination(scene: Scene, near: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Light falling on the page, float32 (H, W) 0-1: gradient x vignetting x shadow.

    ``near`` (x, y) is a point the shadow's edge passes close to (the digits), so it often crosses them.
    """
    ys, xs = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(direction) + ys * np.sin(direction)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    light = scene.light_floor + (1 - scene.light_floor) * ramp
    r2 = ((xs - scene.width / 2) ** 2 + (ys - scene.height / 2) ** 2) / (
        (scene.width / 2) ** 2 + (scene.height / 2) ** 2
    )
    light *= 1 - scene.vignette * r2
    if scene.shadow_depth > 0:
        # A straight shadow edge (a hand, a phone, a lamp's arm) through a point near the digits.
        normal = rng.uniform(0, 2 * np.pi)
        cx = near[0] + rng.normal(0, 0.1) * scene.width
        cy = near[1] + rng.normal(0, 0.1) * scene.height
        signed = (xs - cx) * np.cos(normal) + (ys - cy) * np.sin(normal)
        softness = rng.uniform(0.005, 0.05) * max(scene.width, scene.height)
        shade = 1 / (1 + np.exp(-signed / softness))
        light *= 1 - scene.shadow_depth * shade
    return light.astype(np.float32)


def camera(scene: Scene, radiance: np.ndarray, rng: np.random.Generator) -> bytes:
    """float32 (H, W, 3) 0-1 light reaching the sensor -> JPEG bytes: blur, exposure, noise, compression."""
    exposure = rng.uniform(200, 250)  # grey level of white paper in full light
    img = radiance * exposure
    img = ndimage.gaussian_filter(img, sigma=(scene.blur, scene.blur, 0))
    # Sensor noise: shot noise grows with the signal's square root, read noise is constant.
    sigma = scene.noise * np.sqrt(np.clip(img, 1, None) / exposure)
    img = img + rng.normal(0, 1, img.shape).astype(np.float32) * sigma
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB").save(
        buf, format="JPEG", quality=scene.quality
    )
    return buf.getvalue()


# ---- digits on the page -------------------------------------------------------------------------------------


def digit_alpha(digit: np.ndarray, height: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 (28, 28) white-on-black MNIST digit -> a pen's ink coverage float32 0-1, ``height`` px tall,
    rotated with the page.

    The digit is upscaled smoothly and cut at a random level: a pen's stroke has crisp edges (the camera
    blurs them later), and a higher cut gives a thinner pen than MNIST's marker-like strokes.
    """
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    crop = np.pad(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 2)
    scale = height / (crop.shape[0] - 4)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    big = Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC)
    big = big.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    smooth = ndimage.gaussian_filter(np.asarray(big, np.float32) / 255, sigma=0.4 * scale)
    cut = rng.uniform(0.3, 0.6)
    alpha = np.clip((smooth - cut) / 0.06 + 0.5, 0.0, 1.0)
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    return alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def break_strokes(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The pen skipped: erase one or two thin bands across the digit (its ink breaks into pieces)."""
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = alpha.copy()
    for _ in range(int(rng.integers(1, 3))):
        angle = rng.uniform(0, np.pi)
        centre = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.25, 0.75) * h)
        distance = np.abs((xs - centre[0]) * np.cos(angle) + (ys - centre[1]) * np.sin(angle))
        out *= np.clip(distance - rng.uniform(0.02, 0.05) * h, 0.0, 1.0)
    return out


def paste(canvas: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """canvas = max(canvas, alpha) with alpha's top-left at (x, y); clipped to the canvas."""
    h, w = alpha.shape
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, canvas.shape[0]), min(x + w, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        region = canvas[y0:y1, x0:x1]
        np.maximum(region, alpha[y0 - y : y1 - y, x0 - x : x1 - x], out=region)


def free_area(scene: Scene) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): where digits may go: 4 % inside the photo, and on the sheet, not the table."""
    x0, y0 = 0.04 * scene.width, 0.04 * scene.height
    x1, y1 = scene.width - x0, scene.height - y0
    if scene.table is not None:
        side, fraction = scene.table
        inset = (1 - fraction + 0.08) / 2  # the table's band plus a margin, fraction of the side
        if side == 0:
            x1 -= inset * scene.width
        elif side == 1:
            x0 += inset * scene.width
        elif side == 2:
            y1 -= inset * scene.height
        else:
            y0 += inset * scene.height
    return x0, y0, x1, y1


def layout_number(
    alphas: list[np.ndarray], scene: Scene, area: tuple[float, float, float, float], rng: np.random.Generator
) -> list[tuple[int, int]] | None:
    """Top-left positions for the digits of a number written in a row; None when it does not fit ``area``.

    Gaps between neighbours are 3-45 % of the digit height; in a third of the numbers one pair is pushed
    together (their boxes overlap by 0-6 % of the height) so that their strokes often touch.
    """
    x0, y0, x1, y1 = area
    height = max(a.shape[0] for a in alphas)
    gaps = list(rng.uniform(0.03, 0.45, len(alphas) - 1) * height)
    if rng.random() < 1 / 3:
        gaps[int(rng.integers(len(gaps)))] = rng.uniform(-0.06, 0.0) * height
    total = sum(a.shape[1] for a in alphas) + sum(gaps)
    if total > x1 - x0 or height * 1.2 > y1 - y0:
        return None
    x = rng.uniform(x0, x1 - total)
    base = rng.uniform(y0 + 0.1 * height, y1 - 1.1 * height)
    slope = np.tan(np.deg2rad(scene.angle))  # the row follows the page's rotation
    positions = []
    for i, a in enumerate(alphas):
        y = base + (height - a.shape[0]) / 2 + slope * (x - scene.width / 2) + rng.normal(0, 0.03) * height
        positions.append((round(x), round(y)))
        x += a.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return positions


def place_digits(
    digits: list[np.ndarray], scene: Scene, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[tuple[int, int]], bool]:
    """(ink coverage per digit, top-left position per digit, broken?) for one digit or a number.

    One digit is 25-60 % of the photo's height; a number's digits 14-26 %, and a quarter of the numbers
    have one digit broken into strokes. What does not fit the sheet is written smaller.
    """
    area = free_area(scene)
    single = len(digits) == 1
    height = (rng.uniform(0.25, 0.6) if single else rng.uniform(0.14, 0.26)) * scene.height
    broken = not single and rng.random() < 0.25
    which = int(rng.integers(len(digits)))
    while True:
        alphas = [
            digit_alpha(d, height * rng.uniform(0.9, 1.1), scene.angle + rng.normal(0, 3), rng)
            for d in digits
        ]
        if broken:
            alphas[which] = break_strokes(alphas[which], rng)
        if single:
            h, w = alphas[0].shape
            if w <= area[2] - area[0] and h <= area[3] - area[1]:
                x, y = rng.uniform(area[0], area[2] - w), rng.uniform(area[1], area[3] - h)
                return alphas, [(round(x), round(y))], broken
        else:
            positions = layout_number(alphas, scene, area, rng)
            if positions is not None:
                return alphas, positions, broken
        height *= 0.85


def touches(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two same-size ink layers touch (pixels >= half coverage that are 8-neighbours)?"""
    grown = np.asarray(Image.fromarray(((a > 0.5) * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3)))
    return bool(((grown > 0) & (b > 0.5)).any())


def render(digits: list[np.ndarray], labels: list[int], condition: str, rng: np.random.Generator) -> Photo:
    """One photo of the given MNIST digits (one digit, or a number written left to right)."""
    scene = draw_scene(condition, rng)
    alphas, positions, broken = place_digits(digits, scene, rng)
    layers = []
    for a, (x, y) in zip(alphas, positions, strict=True):
        layer = np.zeros((scene.height, scene.width), np.float32)
        paste(layer, a, x, y)
        layers.append(layer)
    ink = np.max(layers, axis=0)
    boxes = [(x, y, x + a.shape[1], y + a.shape[0]) for a, (x, y) in zip(alphas, positions, strict=True)]
    page = paper_with_lines(scene, float(np.mean([a.shape[0] for a in alphas])), rng)
    reflectance = page * (1 - ink[..., None]) + scene.ink[None, None, :] * ink[..., None]
    centre = (np.mean([b[0] + b[2] for b in boxes]) / 2, np.mean([b[1] + b[3] for b in boxes]) / 2)
    light = illumination(scene, centre, rng)
    paper_luma, ink_luma = float(scene.paper @ LUMA), float(scene.ink @ LUMA)
    return Photo(
        jpeg=camera(scene, reflectance * light[..., None], rng),
        label="".join(str(int(d)) for d in labels),
        condition=condition,
        ink_contrast=(paper_luma - ink_luma) / paper_luma,
        boxes=boxes,
        touching=any(touches(layers[i], layers[i + 1]) for i in range(len(layers) - 1)),
        broken=broken,
    )


def photo_set(images: np.ndarray, labels: np.ndarray, condition: str, n: int, seed: int = 0) -> list[Photo]:
    """``n`` photos for one condition from uint8 (N, 28, 28) digits: single digits take images[i] in order;
    numbers draw 3-5 digits at random from the whole array. Fixed by ``seed``."""
    rng = np.random.default_rng([seed, (*CONDITIONS, NUMBERS).index(condition)])
    photos = []
    for i in range(n):
        if condition == NUMBERS:
            pick = rng.choice(len(images), size=int(rng.integers(3, 6)), replace=False)
        else:
            pick = np.array([i % len(images)])
        photos.append(render(list(images[pick]), [int(t) for t in labels[pick]], condition, rng))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for the example JPEGs")
    parser.add_argument("--n", type=int, default=4, help="photos per condition")
    parser.add_argument("--split", choices=["train", "test"], default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from mnistlab.data import load_dataset

    arrays = load_dataset("mnist", progress=False)
    images, labels = (
        (arrays.test_images, arrays.test_labels)
        if args.split == "test"
        else (arrays.train_images, arrays.train_labels)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for condition in (*CONDITIONS, NUMBERS):
        for i, photo in enumerate(photo_set(images, labels, condition, args.n, args.seed)):
            (args.out / f"{condition}-{i:03d}-{photo.label}.jpg").write_bytes(photo.jpeg)
    print(f"wrote {5 * args.n} photos to {args.out}")


if __name__ == "__main__":
    main()
