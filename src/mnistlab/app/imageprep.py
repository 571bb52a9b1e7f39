"""Turn a user's image (a photo, a scan, a canvas drawing) into the 28x28 digit an MNIST model expects.

MNIST digits are white ink on a black background, size-normalised (with anti-aliasing) to fit a 20x20 box
and pasted into a 28x28 field so that their centre of mass sits at the middle: (14.0, 14.0) in 0-based
(row, column) pixel coordinates, the mean measured over the MNIST test set. A model trained on that layout
fails on a black-on-white digit that fills a big canvas off-centre; :func:`mnist_style` prepares images the
same way.

Pixel units throughout: grey levels 0-255 (0 = black). All functions return uint8 (28, 28) arrays; the run's
own preprocessing (standardisation etc.) is applied later by ``Run.predict``.

Every input is treated as hostile: Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is
enforced as a hard error (its warning too, without touching the global filter settings), and every failure
becomes an :class:`ImageError` naming the file and the problem.
"""

from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.ndimage import binary_dilation

from mnistlab.app.errors import ImageError
from mnistlab.app.photo import digit_mask, find_ink

FIELD = 28  # output side, pixels
BOX = 20  # the digit's longest side after scaling, pixels (as in MNIST)
CENTRE = 14.0  # target centre of mass (row, col), 0-based pixel coordinates
WORK_SIDE = 640  # larger images are first reduced (BOX filter): a digit keeps its shape, the work stays small
MIN_CONTRAST = 40.0  # --raw only: the brightest ink must stand this many grey levels above the median
FRINGE = True  # keep the stroke's faint fringe, one pixel around the ink mask
ZERO = 0.5  # ... and map contrast ZERO * edge (not edge) to 0
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
# Larger files are refused unread. Within Pillow's pixel limit (~89.5 M) the largest image file we accept
# is a raw 16-bit RGBA PNG: 8 bytes x 89.5 M = 716 MB.
MAX_FILE_BYTES = 1_000_000_000


# ---- loading ------------------------------------------------------------------------------------------------


def load_grey(
    source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Decode an image file (path or bytes) to float32 (H, W) grey levels 0-255, alpha composited on white.

    Animated images give their first frame. 16-bit greys are scaled to 0-255. Images larger than
    WORK_SIDE on their longest side are reduced with a box filter first (the digit's shape survives).
    ``max_pixels`` (default: Pillow's ``Image.MAX_IMAGE_PIXELS``, about 89 M) may only lower the limit; the
    web app uses a lower one, since a 2 MB PNG of one colour can still decode to tens of millions of pixels.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, Image.MAX_IMAGE_PIXELS)
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{label}: empty file, not an image")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        _check_file(stream, label)
    try:
        with warnings.catch_warnings():
            # Only inside this block: Pillow warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse both. (The
            # warnings filter is process-wide; _check_size refuses such images even if another thread's
            # catch_warnings were to restore the filter meanwhile.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=FORMATS) as img:
                _check_size(img, label, limit)
                img.seek(0)  # first frame of an animated GIF/WebP/PNG
                if img.format == "JPEG":
                    img.draft("L", (WORK_SIDE, WORK_SIDE))  # decode at 1/2..1/8 scale when that is enough
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # phones store the camera's rotation in EXIF
                grey = _to_grey(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{label}: image too large (more than {limit:,} pixels; refused as a possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (or not PNG, JPEG, BMP, GIF or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError(f"{label}: cannot decode image: {exc}") from None
    return grey


def _check_file(path: Path, label: str) -> None:
    """Refuse, with the reason, a path that cannot be an image file: missing, a folder, a pipe or device, huge.

    Checked before Pillow opens it: opening a FIFO blocks until a writer comes, and /dev/zero never ends.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise ImageError(f"{label}: is a folder, not an image file")
    if not stat.S_ISREG(mode):
        kinds = {
            stat.S_IFIFO: "a named pipe",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket",
        }
        kind = kinds.get(stat.S_IFMT(mode), "special")
        raise ImageError(f"{label}: not a regular file ({kind})")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(
            f"{label}: file too large for an image ({info.st_size / 1e6:,.0f} MB; "
            f"the limit is {MAX_FILE_BYTES / 1e6:,.0f} MB)"
        )


def _check_size(img: Image.Image, label: str, limit: int | None) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: image has no pixels ({width}x{height})")
    if limit is not None and width * height > limit:
        raise Image.DecompressionBombError(f"{width}x{height}")


def _to_grey(img: Image.Image) -> np.ndarray:
    """float32 (H, W) 0-255 from any Pillow mode; transparent pixels become white paper."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr * (255.0 / 65535.0)  # 16-bit grey -> 8-bit units
        grey = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        grey = Image.alpha_composite(paper, rgba).convert("L")
    else:
        grey = img.convert("L")
    if max(grey.size) > WORK_SIDE:
        factor = max(grey.size) / WORK_SIDE
        size = (max(1, round(grey.width / factor)), max(1, round(grey.height / factor)))
        grey = grey.resize(size, Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32)


# ---- normalisation -------------------------------------------------------------------------------------------


def ink_on_black(grey: np.ndarray) -> np.ndarray:
    """Invert when the background is light, so ink is bright on dark, as in MNIST. float32 (H, W)."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    # The border is almost all background even when a stroke touches it; the median ignores the stroke.
    return 255.0 - grey if np.median(border) > 127.5 else grey


def mnist_style(grey: np.ndarray, label: str = "image") -> np.ndarray:
    """MNIST-style uint8 (28, 28) of the one digit in a photo, scan or drawing (float32 (H, W) grey levels)."""
    page = find_ink(grey, label)
    return layout_digit(page.contrast, digit_mask(page, label), page.edge, label)


def layout_digit(
    contrast: np.ndarray, mask: np.ndarray, edge: float, label: str = "image", height: float | None = None
) -> np.ndarray:
    """MNIST layout of the ink under ``mask``: crop, fit 20x20 (aspect kept, LANCZOS), centre of mass at 14,14.

    ``contrast`` float32 (H, W) is the ink's contrast (paper 0), ``edge`` the contrast where the mask stops:
    it becomes 0, and the ink's typical contrast (90th percentile) becomes 255, like MNIST's saturated
    strokes. Ink outside ``mask`` (another digit, an erased ruled line) is left out. With ``height`` (the
    height of the digits of a row, pixels), the ink is scaled as a digit that tall would be, so a fragment
    stays small instead of filling the box like a digit. uint8 (28, 28).
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ImageError(f"{label}: no ink found")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop, inside = contrast[box], mask[box]
    level = max(float(np.percentile(crop[inside], 90)), edge + 1e-3)
    if FRINGE:
        # The stroke's anti-aliased fringe (just below ``edge``, one pixel around the mask) is kept, faint:
        # without it a thin pen's strokes come out thinner and dimmer than MNIST's once shrunk to 20x20.
        inside = binary_dilation(np.pad(mask[box], 1), np.ones((3, 3), dtype=bool))[1:-1, 1:-1]
    zero = ZERO * edge
    ink = np.clip((crop - zero) / (level - zero), 0.0, 1.0) * inside * 255.0
    return centre_in_field(ink, label, height)


def centre_in_field(crop: np.ndarray, label: str = "image", height: float | None = None) -> np.ndarray:
    """float (h, w) ink 0-255 cropped to its box -> uint8 (28, 28): longest side 20 (or ``height`` 20, if
    that is longer), centre of mass at 14,14."""
    h, w = crop.shape
    scale = BOX / max(h, w, height or 0)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # Pillow sizes are (width, height)
    small = Image.fromarray(np.round(crop).astype(np.uint8), mode="L").resize(size, Image.Resampling.LANCZOS)
    digit = np.asarray(small, dtype=np.float64)  # (<=20, <=20)
    total = digit.sum()
    if total <= 0:
        raise ImageError(f"{label}: no ink found (the ink vanished when scaled to 20x20)")
    ys, xs = np.indices(digit.shape)
    com_y, com_x = (digit * ys).sum() / total, (digit * xs).sum() / total
    # Integer shift that puts the centre of mass nearest (14, 14), kept inside the 28x28 field.
    top = int(np.clip(round(CENTRE - com_y), 0, FIELD - digit.shape[0]))
    left = int(np.clip(round(CENTRE - com_x), 0, FIELD - digit.shape[1]))
    out = np.zeros((FIELD, FIELD), dtype=np.uint8)
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = digit.astype(np.uint8)
    return out


def plain_resize(grey: np.ndarray, label: str = "image") -> np.ndarray:
    """The naive baseline (``--raw``): polarity fixed, then the whole image squeezed to 28x28. uint8."""
    x = ink_on_black(grey)
    if float(x.max(initial=0.0) - np.median(x)) < MIN_CONTRAST:
        raise ImageError(f"{label}: no ink found (blank image)")
    img = Image.fromarray(np.round(x).astype(np.uint8), mode="L")
    return np.asarray(img.resize((FIELD, FIELD), Image.Resampling.LANCZOS), dtype=np.uint8)


def prepare(
    source: str | Path | bytes, name: str | None = None, raw: bool = False, max_pixels: int | None = None
) -> np.ndarray:
    """Load and normalise one image file (path or bytes): uint8 (28, 28), white ink on black."""
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    grey = load_grey(source, label, max_pixels)
    return plain_resize(grey, label) if raw else mnist_style(grey, label)


def prepare_pixels(pixels: object, normalize: bool = True, label: str = "pixels") -> np.ndarray:
    """Validate a client's 28x28 array of grey levels 0-255 (any polarity); uint8 (28, 28).

    With ``normalize`` the array goes through :func:`mnist_style` like any image (near-idempotent for a digit
    already in MNIST layout); without, it must already be white ink on black and is used as is.
    """
    try:
        arr = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise ImageError(f"{label}: must be a 28x28 array of numbers 0-255") from None
    if arr.shape != (FIELD, FIELD):
        raise ImageError(f"{label}: must be a 28x28 array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise ImageError(f"{label}: values must be finite grey levels in 0-255")
    if not normalize:
        return np.round(arr).astype(np.uint8)
    return mnist_style(arr.astype(np.float32), label)
