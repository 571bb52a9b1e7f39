"""Find the ink in a photo of paper: flatten uneven light, threshold, drop ruled lines and the sheet's edges.

A phone photo of a digit is paper times light. The light falls off across the sheet, a hand or a phone casts a
shadow, the sheet may be ruled or squared, and the table shows beyond its edge. One global threshold cannot
separate ink from paper there: paper in a shadow can be darker than ink in the light. So, in order:

1. Polarity, decided locally: is the paper light and the ink dark (pen, pencil), or the reverse (chalk, a
   white-on-black drawing)? The ink is the minority that departs from the local median, on one side.
2. The paper's own brightness B(x, y) is estimated on a small copy by a grey closing (an opening for dark
   paper) with a window half the copy's short side: wider than any pen stroke, so the ink vanishes from it,
   while lighting gradients, vignetting and shadow edges survive (a closing keeps linear ramps and step
   edges exactly).
3. Ink contrast c = (paper - grey) / paper, the Weber contrast a person sees: 0 on paper, 1 for black ink,
   whatever the light. The paper's noise (grey levels) comes from Otsu's paper class.
4. Visible ink: a mark at least VISIBLE (10 %) darker than the paper around it and NOISE_SIGMAS times the
   paper's noise. Such pixels seed the ink; hysteresis grows them to the faint edges of the strokes.
5. Ruled and squared lines and the sheet's edge: thin straight bands across most of the photo (found by
   projecting the ink along page angles of +-6 degrees) are erased, except where a stroke crosses them.
   Components lying along the photo's border (the table beyond the sheet) are dropped.

Units: grey levels 0-255 for images, Weber contrast 0-1 for ``contrast``, pixels of the working image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.app.errors import ImageError

BACKGROUND_SIDE = 256  # longest side of the copy the paper's brightness is estimated on, pixels
PAPER_WINDOW = 0.5  # closing window, fraction of that copy's short side: wider than any stroke
ROUGH_INK = 0.15  # what the closing raised by 15 % or more is ink, or a fill to check
SMOOTH_SLOPE = 0.04  # brightness changing by less than 4 % per pixel (of the small copy) is no edge
FILL_SIDE = 64  # longest side of the copy whose enclosed dark basins are filled, pixels
ENCLOSED_SHARE = 0.25  # raised by the basin fill less than this share of the closing's rise: paper
POLARITY_SIDE = 32  # longest side of the copy the polarity is decided on, pixels
VISIBLE = 0.10  # ink is visible when at least 10 % darker than the paper around it (Weber contrast)
NOISE_SIGMAS = 5.0  # ... and this many standard deviations of the paper's noise
EDGE_FRACTION = 0.35  # the stroke's faint edge: this fraction of the ink's typical contrast
LINE_MAX_ANGLE = 6.0  # page rotations searched for ruled lines: +-6 degrees
LINE_EVIDENCE = 0.03  # a faint line: 3 % darker than the paper beside it (and 4 noise std)
LINE_WINDOW = 7  # ... within this many pixels across the line
LINE_REMNANT = 0.7  # ink left with this share of its pixels on the lines, once erased, was line too
LINE_COVER = 0.8  # a line crosses at least this share of the photo (in 16 bins)
LINE_SPREAD = 0.5  # ... its band: the rows around its peak with at least this share of the peak's evidence
LINE_SEEN = 0.25  # ... and shows (not hidden under a stroke) in at least this share of the 16 bins
LINE_THICKNESS = 0.02  # ... and is at most this thick, fraction of the photo's short side
LINE_MIN_SIDE = 100  # smaller images (an MNIST array, an icon) are not searched for lines, pixels
BORDER_DIGIT = 0.02  # ink along the border alone is still a digit when it covers this share of the photo
EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


@dataclass
class Page:
    """The ink found on one photo (working resolution)."""

    contrast: np.ndarray  # float32 (H, W): Weber contrast of ink against the local paper; paper ~ 0
    mask: np.ndarray  # bool (H, W): ink pixels, lines and the sheet's edges removed
    edge: float  # contrast where a stroke's mask ends (its faint edge)
    lines: int  # straight lines removed (ruled or squared paper, the sheet's edges)


# ---- 1-3: polarity, paper brightness, contrast ---------------------------------------------------------------


def shrink(grey: np.ndarray, side: int) -> np.ndarray:
    """Area-averaged copy whose longest side is at most ``side`` pixels (float32)."""
    h, w = grey.shape
    if max(h, w) <= side:
        return grey.astype(np.float32, copy=False)
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(grey.astype(np.float32)).resize(size, Image.Resampling.BOX))


def paper_is_light(grey: np.ndarray) -> bool:
    """True when the ink is darker than the paper around it (the usual case), False for light-on-dark.

    On a small copy, each pixel is compared with the median of its neighbourhood (a third of the copy): the
    median follows the paper through gradients and shadow edges, so what departs from it strongly is ink.
    The paper is dark only when the brighter departures outweigh the darker ones three times and the
    photo's bulk is dark too (its median under half its 99th percentile): a shadow's or the table's edges
    also depart both ways, and taking light paper for dark loses all the ink.
    """
    small = shrink(grey, POLARITY_SIDE)
    window = max(3, min(small.shape) // 3)
    departure = small - ndimage.median_filter(small, size=window, mode="nearest")
    spread = 1.4826 * float(np.median(np.abs(departure)))
    floor = 3 * spread + 2.0  # grey levels: noise and texture are not ink
    darker = float(np.clip(-departure - floor, 0, None).sum())
    brighter = float(np.clip(departure - floor, 0, None).sum())
    bulk, top = np.percentile(small, [50, 99])
    return not (brighter > 3 * darker and bulk < 0.5 * top)


def paper_brightness(grey: np.ndarray, light: bool) -> np.ndarray:
    """float32 (H, W): the paper's grey level under each pixel, ink removed (see the module's step 2).

    A closing fills every dark feature narrower than its window: the ink, but also the thin tip of a shadow
    where its edge meets the photo's border, a narrow band of table, or the crook between a shadow and a
    stroke. Two tests tell such fills from ink. Ink is enclosed by paper, a fill runs out of the photo:
    filling the basins of the brightness landscape (each pixel raised to the lowest level at which it
    connects to the photo's rim) raises ink as the closing does, a fill hardly at all. And ink is ringed by
    its edges, while a fill runs smoothly into paper the closing left alone. (The first test alone would
    also flag a pale stroke that runs into a shadow darker than itself; such a stroke keeps its edges.)
    Where both say "fill", the paper is the basin fill's.
    """
    small = ndimage.gaussian_filter(shrink(grey, BACKGROUND_SIDE), 1.0)  # less noise, less closing bias
    sign = 1.0 if light else -1.0  # light-on-dark paper: the same steps on the negative image
    window = max(3, round(PAPER_WINDOW * min(small.shape)))
    # mode="nearest" pads each of the closing's passes with the border's values: a stroke touching the border
    # is closed over as anywhere else. The price: the dark end of a steep ramp at the border is lifted to the
    # level half a window inside and comes out as faint ink (see find_ink's BORDER_DIGIT).
    narrow = sign * ndimage.grey_closing(sign * small, size=(window, window), mode="nearest")
    enclosed = sign * fill_basins(sign * small, rim=sign * narrow)
    fills = _open_fills(sign * (narrow - small), sign * (enclosed - small), small, narrow)
    paper = np.where(fills, enclosed, narrow)
    if paper.shape == grey.shape:
        return paper
    size = (grey.shape[1], grey.shape[0])
    return np.asarray(Image.fromarray(paper).resize(size, Image.Resampling.BILINEAR))


def _open_fills(
    raised: np.ndarray, raised_enclosed: np.ndarray, small: np.ndarray, paper: np.ndarray
) -> np.ndarray:
    """bool: pixels the closing raised (by ``raised`` grey levels) that are a fill, not ink (see above)."""
    scale = np.maximum(np.abs(paper), 8.0)
    lifted = raised >= ROUGH_INK * scale
    candidates = lifted & (raised_enclosed < ENCLOSED_SHARE * raised)
    if not candidates.any():
        return candidates
    # Relative change per pixel (a Sobel filter's gain is 8); a pen's edge changes by 20-50 % per pixel here.
    slope = np.hypot(ndimage.sobel(small, 0), ndimage.sobel(small, 1)) / (8 * scale)
    smooth = slope < SMOOTH_SLOPE
    region = candidates & smooth
    doors = region & ndimage.binary_dilation(~lifted & smooth, structure=EIGHT)
    if not doors.any():
        return np.zeros_like(candidates)
    labels, _ = ndimage.label(region, structure=EIGHT)
    fills = np.isin(labels, np.unique(labels[doors]))
    return ndimage.binary_dilation(fills, structure=EIGHT, iterations=2) & candidates


def fill_basins(image: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """Grey-level hole filling: each pixel raised to the lowest level at which it connects to the rim.

    The photo is taken as surrounded by ``rim``'s values on its border (the closing's, so a stroke that
    touches the border is still enclosed, by the paper the closing puts there). Computed on a copy of at
    most FILL_SIDE pixels by reconstruction by erosion: start from the top, erode (3x3 min) and never go
    below the image, until nothing changes; then resized to ``image``'s shape. float32.
    """
    small = shrink(image, FILL_SIDE)
    rim_small = shrink(rim, FILL_SIDE)
    floor = np.pad(small, 1, mode="edge")
    floor[0, 1:-1], floor[-1, 1:-1] = rim_small[0], rim_small[-1]
    floor[1:-1, 0], floor[1:-1, -1] = rim_small[:, 0], rim_small[:, -1]
    level = np.full_like(floor, float(floor.max()))
    level[0], level[-1], level[:, 0], level[:, -1] = floor[0], floor[-1], floor[:, 0], floor[:, -1]
    for _ in range(sum(floor.shape)):
        lower = np.maximum(ndimage.grey_erosion(level, size=(3, 3), mode="nearest"), floor)
        if np.array_equal(lower, level):
            break
        level = lower
    filled = level[1:-1, 1:-1]
    if filled.shape == image.shape:
        return filled
    size = (image.shape[1], image.shape[0])
    return np.asarray(Image.fromarray(filled).resize(size, Image.Resampling.BILINEAR))


def histogram_quantile(values: np.ndarray, q: float, lo: float, hi: float, bins: int = 1024) -> float:
    """The q-quantile (0-1) of ``values`` clipped to [lo, hi], to 1/bins of the range: a histogram, no sort."""
    scaled = np.clip((values - lo) * (bins / (hi - lo)), 0, bins - 1).astype(np.int64)
    cumulative = np.cumsum(np.bincount(scaled.ravel(), minlength=bins))
    index = int(np.searchsorted(cumulative, q * cumulative[-1]))
    return lo + (index + 0.5) * (hi - lo) / bins


def otsu(values: np.ndarray, lo: float, hi: float, bins: int = 256) -> float:
    """Otsu's threshold (maximal between-class variance) of ``values`` clipped to [lo, hi]."""
    scaled = np.clip((values - lo) * (bins / (hi - lo)), 0, bins - 1).astype(np.int64)
    hist = np.bincount(scaled.ravel(), minlength=bins).astype(np.float64)
    levels = np.arange(bins, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    best = int(np.argmax(w0 * w1 * (mean0 - mean1) ** 2))
    return lo + (best + 1) * (hi - lo) / bins


def paper_level_and_noise(departure: np.ndarray, visible: float) -> tuple[float, float]:
    """(paper's level, paper's noise std) of the departure from the estimated paper, in grey levels.

    Paper is the histogram's peak among departures under ``visible`` grey levels (VISIBLE of the paper's
    brightness: about what this module calls visible ink; when the histogram still rises at that bound, the
    paper is too grainy for it and the whole range is searched). The closing sits on the paper's brightest
    grain, so that peak is a little above 0. Without the bound, a bold marker's flat, dark strokes covering a
    quarter of a grainy photo made a sharper peak than the paper's, were taken for paper, and the photo was
    refused as blank. Ink only departs upwards, so the half below the peak is pure paper
    and gives the noise: 31.7 % of a normal's lower half lies more than one std below its mean. Holds whether
    ink covers 1 % or 50 %.
    """
    lo, hi, bins = -64.0, 255.0, 1276  # 0.25 grey level per bin
    index = np.clip((departure - lo) * (bins / (hi - lo)), 0, bins - 1).astype(np.int64)
    hist = np.bincount(index.ravel(), minlength=bins).astype(np.float64)
    smooth = ndimage.gaussian_filter1d(hist, 2.0)
    below_ink = max(1, int((visible - lo) * (bins / (hi - lo))))  # bins under ``visible``
    peak = int(np.argmax(smooth[:below_ink]))
    if peak == below_ink - 1:  # still rising at the bound: paper so grainy that its peak lies beyond it
        peak = int(np.argmax(smooth))
    below = np.cumsum(hist[: peak + 1])
    one_std = int(np.searchsorted(below, 0.3173 * below[-1]))
    width = (hi - lo) / bins
    return lo + (peak + 0.5) * width, max((peak - one_std) * width, 0.5)


@dataclass
class Contrast:
    """Ink contrast and the paper's noise, before any thresholding."""

    weber: np.ndarray  # float32 (H, W): (paper - grey) / paper, ink positive (light-on-dark: / 255)
    excess: np.ndarray  # float32 (H, W): the same departure in grey levels, minus the paper's own level
    noise: float  # robust std of the paper's grey levels around B, grey levels
    light: bool  # light paper, dark ink


def ink_contrast(grey: np.ndarray) -> Contrast:
    """Weber contrast of the ink against the paper under it, and the paper's noise (module steps 1-3)."""
    light = paper_is_light(grey)
    paper = paper_brightness(grey, light)
    departure = paper - grey if light else grey - paper  # grey levels, ink positive
    # Weber contrast's denominator (below): the paper's brightness on light paper (smooth: every 8th pixel
    # gives its median), 255 on dark.
    typical = float(np.median(paper[::8, ::8])) if light else 255.0
    level, noise = paper_level_and_noise(departure, VISIBLE * typical)
    excess = departure - level
    # Weber contrast needs the paper's brightness; a quarter of the brightest paper bounds it from below so
    # that the table beyond the sheet (or a deep shadow) does not turn its noise into contrast.
    scale = np.maximum(paper - level, 0.25 * float(paper.max(initial=1.0))) if light else 255.0
    return Contrast(
        weber=(excess / scale).astype(np.float32), excess=excess.astype(np.float32), noise=noise, light=light
    )


# ---- 4: visible ink ------------------------------------------------------------------------------------------


def visible_ink(contrast: Contrast, label: str) -> tuple[np.ndarray, float]:
    """(bool (H, W) ink mask, contrast at the strokes' faint edge); ImageError when nothing is visible."""
    weber, noise_floor = contrast.weber, NOISE_SIGMAS * contrast.noise
    seeds = (weber >= VISIBLE) & (contrast.excess >= noise_floor)
    if not seeds.any():
        darkest = histogram_quantile(weber, 0.9999, -1.0, 1.0)
        raise ImageError(
            f"{label}: no ink found (blank page: the darkest marks are {100 * max(darkest, 0):.0f} % darker "
            f"than the paper around them; ink must be at least {100 * VISIBLE:.0f} % darker, and stand "
            f"out of the paper's grain)"
        )
    typical = histogram_quantile(weber[seeds], 0.9, 0.0, 1.0)
    edge = max(EDGE_FRACTION * typical, VISIBLE / 2)
    candidates = (weber >= edge) & (contrast.excess >= 0.5 * noise_floor)
    labels, count = ndimage.label(candidates, structure=EIGHT)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[labels[seeds]] = True
    seeded[0] = False
    return seeded[labels], edge


# ---- 5: ruled lines and the sheet's edges --------------------------------------------------------------------


def _sheared_rows(ys: np.ndarray, xs: np.ndarray, angle: float, pad: int) -> np.ndarray:
    """Row index of each pixel once lines at ``angle`` degrees are sheared flat (offset by ``pad``)."""
    return ys - np.round(xs * np.tan(np.deg2rad(angle))).astype(np.int64) + pad


def _line_rows(evidence: np.ndarray, ink: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """Horizontal lines in ``evidence`` (bool (H, W)): (page angle, degrees; [(first, last) sheared row]).

    Each angle shears the evidence so that lines at that angle become rows; the angle whose row projection
    is most peaked wins (1-degree steps, then half-degree). A line's band covers LINE_COVER of 16 column
    bins and is at most LINE_THICKNESS thick.
    """
    ys, xs = np.nonzero(evidence)
    h, w = evidence.shape
    if ys.size == 0:
        return 0.0, []
    pad = int(np.ceil(w * np.tan(np.deg2rad(LINE_MAX_ANGLE + 1)))) + 1

    def peakedness(angle: float) -> float:
        profile = np.bincount(_sheared_rows(ys, xs, angle, pad), minlength=h + 2 * pad)
        return float(np.square(profile, dtype=np.float64).sum())

    coarse = max(np.arange(-LINE_MAX_ANGLE, LINE_MAX_ANGLE + 0.1, 1.0), key=peakedness)
    angle = float(max((coarse - 0.5, coarse, coarse + 0.5), key=peakedness))
    rows = _sheared_rows(ys, xs, angle, pad)
    ink_ys, ink_xs = np.nonzero(ink)
    ink_rows = _sheared_rows(ink_ys, ink_xs, angle, pad)
    profile = np.bincount(rows, minlength=h + 2 * pad).astype(np.float64)
    profile = np.convolve(profile, np.ones(3), mode="same")  # a line drifting by a row still counts
    thick = max(3, round(LINE_THICKNESS * min(h, w)))
    lines: list[tuple[int, int]] = []
    for peak in np.flatnonzero(profile >= 0.5 * w):
        if (lines and peak <= lines[-1][1] + pad) or profile[peak] < profile[
            max(peak - 1, 0) : peak + 2
        ].max():
            continue
        first, last = peak, peak
        while first > 0 and profile[first - 1] >= LINE_SPREAD * profile[peak]:
            first -= 1
        while last + 1 < profile.size and profile[last + 1] >= LINE_SPREAD * profile[peak]:
            last += 1
        bins = np.unique(xs[(rows >= first) & (rows <= last)] * 16 // w)
        # A stroke written along the line hides it (no evidence there): its ink counts towards the cover.
        hidden = np.unique(ink_xs[(ink_rows >= first - 1) & (ink_rows <= last + 1)] * 16 // w)
        cover = np.union1d(bins, hidden).size
        if last - first + 1 <= thick and bins.size >= LINE_SEEN * 16 and cover >= LINE_COVER * 16:
            lines.append((first - pad, last - pad))
    return angle, lines


def _erase_rows(
    mask: np.ndarray, weber: np.ndarray, angle: float, lines: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(``mask`` without the sheared row bands, the bands) (each band one row wider each side). Ink stays
    in columns where it goes on beyond the band (a stroke crossing or touching the line), and where a pixel
    is clearly darker than the line itself (a stroke running along it: printed lines are paler than ink)."""
    h, w = mask.shape
    out = mask.copy()
    bands = np.zeros_like(mask)
    cols = np.arange(w)
    shift = np.round(cols * np.tan(np.deg2rad(angle))).astype(np.int64)

    def at(row: int) -> tuple[np.ndarray, np.ndarray]:  # (ys, inside) of one sheared row
        ys = row + shift
        return ys, (ys >= 0) & (ys < h)

    def ink(row: int) -> np.ndarray:  # the mask along one sheared row, False outside the image
        ys, inside = at(row)
        got = np.zeros(w, dtype=bool)
        got[inside] = mask[ys[inside], cols[inside]]
        return got

    for first, last in lines:
        first, last = first - 1, last + 1
        crossing = ink(first - 1) | ink(first - 2) | ink(last + 1) | ink(last + 2)
        band = [at(row) for row in range(first, last + 1)]
        values = np.concatenate([weber[ys[inside], cols[inside]] for ys, inside in band])
        on_line = values[values >= LINE_EVIDENCE]
        level = float(np.median(on_line)) if on_line.size else 0.0
        darker = max(1.5 * level, level + 0.15)  # Weber contrast of ink that is not the line
        for ys, inside in band:
            bands[ys[inside], cols[inside]] = True
            erase = inside & ~crossing
            erase[erase] = weber[ys[erase], cols[erase]] < darker
            out[ys[erase], cols[erase]] = False
    return out, bands


def line_evidence(grey: np.ndarray, light: bool, noise: float, across: int) -> np.ndarray:
    """bool (H, W): thin dark lines running across ``across`` (0: horizontal lines, 1: vertical lines).

    A black top-hat along one axis: how much a pixel is darker than a closing over LINE_WINDOW pixels along
    that axis. Lines a few pixels thick stand out; the paper's slow changes do not, and neither do the
    closing's errors. A pixel is evidence when LINE_EVIDENCE (Weber) and 4 noise std darker.
    """
    sign = 1.0 if light else -1.0
    size = (LINE_WINDOW, 1) if across == 0 else (1, LINE_WINDOW)
    closed = sign * ndimage.grey_closing(sign * grey, size=size)
    dip = sign * (closed - grey)
    return (dip >= LINE_EVIDENCE * (np.abs(closed) if light else 255.0)) & (dip >= 4 * noise)


def remove_lines(
    mask: np.ndarray, weber: np.ndarray, grey: np.ndarray, light: bool, noise: float
) -> tuple[np.ndarray, int]:
    """(``mask`` without ruled or squared lines and straight sheet edges, number of lines removed).

    Lines are found in :func:`line_evidence`, not in the ink mask: a faint line breaks up in the ink mask
    but runs whole in the evidence. What is left mostly on the lines afterwards (where two lines of a grid
    cross) goes too.
    """
    if min(mask.shape) < LINE_MIN_SIDE:
        return mask, 0
    out, bands = mask, np.zeros_like(mask)
    angle, rows = _line_rows(line_evidence(grey, light, noise, across=0), mask)
    if rows:
        out, bands = _erase_rows(mask, weber, angle, rows)
    angle_t, cols = _line_rows(line_evidence(grey, light, noise, across=1).T, mask.T)
    if cols:
        out_t, bands_t = _erase_rows(out.T, weber.T, angle_t, cols)
        out, bands = out_t.T, bands | bands_t.T
    if rows or cols:
        labels, count = ndimage.label(out, structure=EIGHT)
        on_lines = np.bincount(labels.ravel(), weights=bands.ravel(), minlength=count + 1)[
            1:
        ]  # fast sum_labels
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        drop = np.r_[False, on_lines >= LINE_REMNANT * sizes]
        out = out & ~drop[labels]
    return out, len(rows) + len(cols)


def drop_border_bands(mask: np.ndarray) -> np.ndarray:
    """``mask`` without what runs along or across the photo from its border: the table beyond the sheet's
    edge (a band along the border for more than a third of that side), and the thin sliver the edge itself
    leaves (half the photo long, a ruled line's thickness thin, reaching the border).

    A digit may touch the border, but with a stroke's width, and it is not that long and thin.
    """
    labels, count = ndimage.label(mask, structure=EIGHT)
    if count == 0:
        return mask
    h, w = mask.shape
    drop = np.zeros(count + 1, dtype=bool)
    touching = np.zeros(count + 1, dtype=bool)
    for side, length in ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)):
        along = np.bincount(side, minlength=count + 1)
        drop |= along >= 0.35 * length
        touching |= along > 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    for i, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
        span = max(ys.stop - ys.start, xs.stop - xs.start)
        if touching[i] and span >= 0.5 * min(h, w) and sizes[i] <= span * LINE_THICKNESS * min(h, w):
            drop[i] = True
    drop[0] = False
    return mask & ~drop[labels] if drop.any() else mask


# ---- all steps -----------------------------------------------------------------------------------------------


def find_ink(grey: np.ndarray, label: str = "image") -> Page:
    """The ink on a photo or scan (float32 (H, W) grey levels 0-255); ImageError, in plain words, when none."""
    contrast = ink_contrast(grey)
    mask, edge = visible_ink(contrast, label)
    cleaned, lines = remove_lines(mask, contrast.weber, grey, contrast.light, contrast.noise)
    inside = drop_border_bands(cleaned)
    # Nothing but bands along the border: a tightly cropped digit whose thick stroke hugs the edge, or the table.
    # Keep it when it is ink enough to be a digit (BORDER_DIGIT of the photo): refusing visible ink is worse.
    cleaned = inside if inside.any() or cleaned.mean() < BORDER_DIGIT else cleaned
    if not cleaned.any():
        what = f"{lines} ruled line(s) or the sheet's edge" if lines else "the sheet's edge or the table"
        raise ImageError(f"{label}: no digit found (the only marks are {what})")
    return Page(contrast=contrast.weber, mask=cleaned, edge=edge, lines=lines)


def component_boxes(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]], np.ndarray]:
    """(labels int32 (H, W), bounding slices per component, pixel count per component), 8-connected."""
    labels, count = ndimage.label(mask, structure=EIGHT)
    boxes = ndimage.find_objects(labels)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels, boxes, sizes


def digit_mask(page: Page, label: str = "image") -> np.ndarray:
    """The components that form one digit: the heaviest ink and its close neighbours (a broken stroke, a
    detached bar); far marks and specks are left out. bool (H, W)."""
    labels, boxes, _ = component_boxes(page.mask)
    mass = np.bincount(labels.ravel(), weights=page.contrast.ravel(), minlength=len(boxes) + 1)[1:]
    order = np.argsort(mass)[::-1]
    main = int(order[0])
    keep = [main]
    y0, y1 = boxes[main][0].start, boxes[main][0].stop
    x0, x1 = boxes[main][1].start, boxes[main][1].stop
    changed = True
    while changed:  # grow the cluster by nearby components not much bigger than itself
        changed = False
        size = max(y1 - y0, x1 - x0)
        for i in order[1:]:
            i = int(i)
            by, bx = boxes[i]
            if (
                i in keep
                or mass[i] < 0.02 * mass[main]
                or max(by.stop - by.start, bx.stop - bx.start) > 1.5 * size
            ):
                continue
            gap_y = max(by.start - y1, y0 - by.stop, 0)
            gap_x = max(bx.start - x1, x0 - bx.stop, 0)
            if max(gap_y, gap_x) <= 0.25 * size:
                keep.append(i)
                y0, y1 = min(y0, by.start), max(y1, by.stop)
                x0, x1 = min(x0, bx.start), max(x1, bx.stop)
                changed = True
    return np.isin(labels, np.array(keep) + 1)
