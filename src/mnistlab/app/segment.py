"""Read a whole number: split the ink of a row of handwritten digits into digits, by recognition.

Connected components are not digits: a pen that skips breaks one digit into strokes, and digits written close
together touch. So the row's ink is over-segmented, and the model decides:

1. The row: the components whose centres lie in the band of the tallest ones; specks are dropped, and so are
   pieces much fainter than the row's digits (one pen wrote the number; a faint piece is what is left of a
   ruled line or the sheet's edge). Pieces that stand above one another (the detached bar of a 5) form one
   *group*.
2. Slices: a group wide enough to hold two digits (a 1 and its neighbour may be under one h) is cut, near the
   low points of its column ink profile, along the top-to-bottom path that crosses the least ink (two touching
   digits meet at a point or along a stroke, and the path slips between them even where their columns
   overlap).
3. Candidates: every run of consecutive slices up to MAX_WIDTH h wide. A candidate in pieces has the narrow
   gaps between them inked over (a pen that skipped). Each is laid out MNIST-style twice, at the row's scale
   (a fragment stays small) and alone (as the model was trained), and classified, both in one batch.
4. Dynamic programming picks the split of the row into candidates with the best total score. A candidate's
   score is a weighted sum of its FEATURES: the model's confidence in both layouts, its shape against a digit
   of the row (too short, too wide or narrow for its label), blank gaps and extra pieces inside it, and the ink
   its cuts cross. The WEIGHTS were fitted on validation photos (bench/number_weights.py). Each chosen digit
   is read from its stand-alone layout.

Units: pixels of the working image; ``h`` is the row's digit height, ``stroke`` its stroke width.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mnistlab.app.errors import ImageError
from mnistlab.app.imageprep import layout_digit
from mnistlab.app.photo import EIGHT, Page, component_boxes

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 28, 28) -> probabilities float (N, 10)

HEAVY = (
    0.2  # pieces with this share of the heaviest piece's ink set the row's height (line remnants are light)
)
SPECK = 0.2  # a piece smaller than this many h in both directions is a speck, not part of a digit
ROW_OVERLAP = 0.5  # a piece belongs to the row when its vertical centre is within this many h of the row's
# A piece whose ink (90th percentile of its contrast) is under this share of the row's tall pieces' median is not
# the number's ink: a remnant of a ruled line or of the sheet's edge (each read as an extra "1" at the end of the
# number). 0.6 was chosen on validation photos (the default run's held-out digits, 1,720 numbers in four sets):
# exact 1485 -> 1490 with ASPECT_PENALTY 0.125, no set and no kind worse; 0.4 and 0.5 did less.
PEN_LEVEL = 0.6
STACKED = 0.5  # pieces whose columns overlap by this share of the narrower one's width are one group
# Groups at least CUT_MIN_WIDTH h wide are tried cut into digits, at up to MAX_CUTS places. 0.8 and 6 (1.0 and
# 4 before) were chosen together with WEIGHTS: with the hand-tuned penalties they cut wide single digits (plain
# numbers lost what touching ones gained); the fitted scores keep both (BENCHMARKS.md, "Learned scores").
CUT_MIN_WIDTH = 0.8
CUT_MARGIN = 0.12  # a cut starts at least this many h from either end of its group and from another cut
MAX_CUTS = 6  # near the lowest minima of the group's column ink profile
CUT_REACH = 0.25  # a cut's path may wander this many h left or right of its column
MAX_WIDTH = 2.0  # a candidate digit is at most this many h wide
# A digit in pieces: gaps up to about twice this many h between its pieces are inked over before it is read.
# 0.05 was chosen on validation photos (the default run's held-out digits): exact 435 -> 438 of 520 (broken
# 82 -> 86) and, confirmed on 600 new ones, 514 -> 519; 0.04-0.12 gave 83-87 broken of 119, no trend.
BRIDGE = 0.05
SHORT = 0.65  # a candidate shorter than this many h is a fragment (the "short" feature)
ASPECT_FREE = 1.5  # spreads of aspect that are free (the "aspect" feature)
# Width/height of the ink's box of MNIST training digits 0-9: the median, and the robust std of its log.
ASPECT_MEDIAN = np.array([0.9, 0.4, 0.95, 0.8, 0.8, 0.95, 0.7, 0.8, 0.75, 0.7])
ASPECT_SPREAD = np.array([0.17, 0.47, 0.23, 0.2, 0.2, 0.25, 0.23, 0.2, 0.21, 0.23])


@dataclass
class Digit:
    """One digit of a number as read."""

    label: int
    probability: float  # the model's probability of ``label``
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the working image, x1/y1 exclusive
    input_28x28: np.ndarray  # uint8 (28, 28): what the model saw


@dataclass
class Group:
    """Pieces of ink standing above one another, in their common box."""

    rows: slice
    cols: slice
    ink: np.ndarray  # bool (rows, cols)


@dataclass
class Slice:
    """The part of a group between two top-to-bottom boundaries: the unit a row is split into."""

    group: Group
    left: np.ndarray  # int (group rows,): first column of the slice in each row, relative to the group
    right: np.ndarray  # int (group rows,): the column after its last
    box: tuple[slice, slice]  # its ink's bounding box, absolute
    cut_ink: float  # ink pixels its left boundary crosses (0 when it starts the group)

    def ink(self) -> np.ndarray:
        """bool (group rows, group cols): this slice's ink."""
        cols = np.arange(self.group.ink.shape[1])
        return self.group.ink & (cols >= self.left[:, None]) & (cols < self.right[:, None])


# ---- 1. the row ----------------------------------------------------------------------------------------------


def row_pieces(boxes: list, sizes: np.ndarray) -> tuple[list[int], float]:
    """(indices of the components in the number's row, the row's digit height h).

    h is the median height of the tall pieces (at least half the tallest of the pieces with at least
    HEAVY of the heaviest one's ink: a thin remnant of a ruled line may be taller than any digit): a broken
    digit's strokes are shorter than whole digits, and so are specks. The row is the band those tall pieces
    share.
    """
    heights = np.array([b[0].stop - b[0].start for b in boxes], dtype=np.float64)
    widths = np.array([b[1].stop - b[1].start for b in boxes], dtype=np.float64)
    heavy = sizes >= HEAVY * sizes.max()
    tall = heavy & (heights >= 0.5 * heights[heavy].max())
    h = float(np.median(heights[tall]))
    centres = np.array([(b[0].start + b[0].stop) / 2 for b in boxes])
    middle = float(np.median(centres[tall]))
    if not any(abs(centres[tall] - middle) <= ROW_OVERLAP * h):  # tall pieces far apart: the tallest's row
        middle = float(centres[int(np.argmax(np.where(heavy, heights, 0)))])
    keep = [
        i
        for i in range(len(boxes))
        if max(heights[i], widths[i]) >= SPECK * h and abs(centres[i] - middle) <= ROW_OVERLAP * h
    ]
    return keep, h


def ink_levels(labels: np.ndarray, contrast: np.ndarray, boxes: list, order: list[int]) -> np.ndarray:
    """float (len(order),): each piece's ink level, the 90th percentile of its pixels' contrast (its strokes'
    core, not their faint edges). ``labels`` int (H, W) from :func:`component_boxes`, ``contrast`` float (H, W)."""
    return np.array([np.percentile(contrast[boxes[i]][labels[boxes[i]] == i + 1], 90) for i in order])


def same_pen(order: list[int], levels: np.ndarray, boxes: list, h: float) -> list[int]:
    """The pieces of ``order`` written with the row's pen: ink ``levels`` at least PEN_LEVEL of the median level
    of the tall pieces (SHORT h or taller: the digits). A broken digit's strokes keep the pen's level; a
    remnant of a printed line is fainter. At least the median tall piece is kept."""
    tall = [
        level
        for i, level in zip(order, levels, strict=True)
        if boxes[i][0].stop - boxes[i][0].start >= SHORT * h
    ]
    if not tall:
        return order
    floor = PEN_LEVEL * float(np.median(tall))
    return [i for i, level in zip(order, levels, strict=True) if level >= floor]


def stack_pieces(labels: np.ndarray, boxes: list, order: list[int], h: float) -> list[Group]:
    """The row's pieces grouped where a short one stands above or below another (columns overlapping by
    STACKED of the narrower's width): the detached bar of a 5 or a 7, a stroke broken along its length.
    Two tall pieces side by side stay apart: a slanted 1 leans over its neighbour. Left to right."""

    def height(i: int) -> int:
        return boxes[i][0].stop - boxes[i][0].start

    members: list[list[int]] = []
    for i in sorted(order, key=lambda i: boxes[i][1].start):
        xs = boxes[i][1]
        if members:
            left = min(boxes[j][1].start for j in members[-1])
            right = max(boxes[j][1].stop for j in members[-1])
            overlap = min(xs.stop, right) - max(xs.start, left)
            short = min(height(i), max(height(j) for j in members[-1])) < SHORT * h
            if short and overlap >= STACKED * min(xs.stop - xs.start, right - left):
                members[-1].append(i)
                continue
        members.append([i])
    groups = []
    for group in members:
        rows = slice(min(boxes[i][0].start for i in group), max(boxes[i][0].stop for i in group))
        cols = slice(min(boxes[i][1].start for i in group), max(boxes[i][1].stop for i in group))
        groups.append(Group(rows, cols, np.isin(labels[rows, cols], [i + 1 for i in group])))
    return groups


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in ``mask``, pixels: twice the median distance to the paper along the strokes'
    centre lines (the ridge of the distance transform); at least 1."""
    distance = ndimage.distance_transform_edt(mask)
    ridge = (distance >= 1) & (distance >= ndimage.maximum_filter(distance, size=3))
    return max(1.0, 2.0 * float(np.median(distance[ridge]))) if ridge.any() else 1.0


# ---- 2. slices -----------------------------------------------------------------------------------------------


def cut_columns(profile: np.ndarray, h: float) -> list[int]:
    """Where to try cuts in a group with column ink ``profile``: its lowest local minima, at least
    CUT_MARGIN h from either end and from each other (offsets into ``profile``)."""
    margin = max(1, round(CUT_MARGIN * h))
    if profile.size < 2 * margin + 1:
        return []
    smooth = np.convolve(profile.astype(np.float64), np.ones(3) / 3, mode="same")
    inner = np.arange(margin, profile.size - margin)
    is_min = (smooth[inner] <= smooth[inner - 1]) & (smooth[inner] <= smooth[inner + 1])
    cuts: list[int] = []
    for x in sorted(inner[is_min], key=lambda x: smooth[x]):
        if all(abs(x - c) >= margin for c in cuts):
            cuts.append(int(x))
        if len(cuts) == MAX_CUTS:
            break
    return sorted(cuts)


def cut_path(ink: np.ndarray, column: int, reach: int) -> np.ndarray:
    """The top-to-bottom path through bool (H, W) ``ink`` near ``column`` that crosses the least ink:
    int (H,) column per row, moving at most one column per row, never more than ``reach`` from ``column``."""
    height, width = ink.shape
    lo, hi = max(0, column - reach), min(width, column + reach + 1)
    # Ink costs 1 per pixel; a little pull towards the chosen column keeps the path from wandering.
    cost_map = ink[:, lo:hi].astype(np.float64) + 0.01 * np.abs(np.arange(lo, hi) - column) / max(reach, 1)
    total = cost_map[0].copy()
    moves = np.zeros((height, hi - lo), dtype=np.int64)
    for row in range(1, height):
        options = np.stack([np.r_[np.inf, total[:-1]], total, np.r_[total[1:], np.inf]])  # from x-1, x, x+1
        pick = options.argmin(axis=0)
        total = options[pick, np.arange(hi - lo)] + cost_map[row]
        moves[row] = pick - 1
    path = np.empty(height, dtype=np.int64)
    path[-1] = int(total.argmin())
    for row in range(height - 1, 0, -1):
        path[row - 1] = path[row] + moves[row, path[row]]
    return path + lo


def slices_of(groups: list[Group], h: float) -> list[Slice]:
    """The row cut into slices, left to right."""
    out: list[Slice] = []
    for group in groups:
        height, width = group.ink.shape
        bounds = [np.zeros(height, dtype=np.int64)]
        if width >= CUT_MIN_WIDTH * h:
            for column in cut_columns(group.ink.sum(axis=0), h):
                path = np.maximum(cut_path(group.ink, column, round(CUT_REACH * h)), bounds[-1])
                bounds.append(path)
        bounds.append(np.full(height, width, dtype=np.int64))
        for left, right in itertools.pairwise(bounds):
            part = Slice(group, left, right, (slice(0, 0), slice(0, 0)), 0.0)
            ink = part.ink()
            if not ink.any():
                continue
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            part.box = (
                slice(group.rows.start + rows[0], group.rows.start + rows[-1] + 1),
                slice(group.cols.start + cols[0], group.cols.start + cols[-1] + 1),
            )
            if left.any():
                part.cut_ink = float(group.ink[np.arange(height), np.minimum(left, width - 1)].sum())
            out.append(part)
    return out


# ---- 3-4. candidates and the best split ----------------------------------------------------------------------

# A candidate's score is WEIGHTS . its features; the best split maximises the sum over its digits. "row": the
# candidate laid out at the row's scale (a fragment stays small); "alone": laid out MNIST-style on its own (what
# the model sees for a chosen digit, as it was trained). t is the top class at the row's scale.
FEATURES = (
    "digit",  # 1 per digit: sets how readily the row is split into more digits
    "log_p",  # ln p(t), row layout
    "short",  # max(0, SHORT - height / h): a fragment read as a digit
    "aspect",  # max(0, |z| - ASPECT_FREE)^2, z: ln(width / height) in spreads from t's median
    "blank",  # blank columns between the candidate's pieces, in h (digits are written apart)
    "extra_tall",  # tall groups (SHORT h or taller) beyond the first: tall pieces are mostly whole digits
    "cut",  # 1 when the candidate starts at a cut through ink
    "cut_ink",  # ink that cut crosses, in stroke widths
    "end_cut_ink",  # ink crossed by the cut that ends the candidate, in stroke widths
    "extra_pieces",  # 8-connected pieces of its ink beyond the first (before the gaps are inked over)
    "extra_groups",  # groups of the row it joins beyond the first
    "abs_z",  # |z|
    "margin",  # ln p(t) - ln p(second class), row layout
    "log_p_alone",  # ln of the top probability, alone layout
    "width",  # width / h
)
# Fitted by an averaged structured perceptron (bench/number_weights.py: the default run, 2,400 validation
# numbers of seeds 12-15, learning rate 0.03 on standardised features, 6 passes), starting from the earlier
# hand-tuned penalties. Chosen on 1,200 other validation numbers (seeds 7 and 11) under a rule written before
# the results (adopt if >= 24 more exact): 1,044 -> 1,072 exact (broken 229 -> 242, touching 74 -> 89,
# plain 741 -> 741); with the hand penalties on the same cuts, 1,053 (BENCHMARKS.md, "Learned scores").
WEIGHTS = np.array(
    [
        -0.1166,  # digit
        0.1687,  # log_p
        -3.1147,  # short
        -0.0592,  # aspect
        -0.4369,  # blank
        -0.2513,  # extra_tall
        0.1839,  # cut
        -0.2363,  # cut_ink
        -0.1322,  # end_cut_ink
        -0.0925,  # extra_pieces
        0.2488,  # extra_groups
        0.0087,  # abs_z
        0.0502,  # margin
        0.2554,  # log_p_alone
        -0.7272,  # width
    ]
)


def candidate(parts: list[Slice]) -> tuple[tuple[slice, slice], np.ndarray]:
    """(bounding box, bool ink mask in it) of the union of consecutive slices."""
    y0, y1 = min(p.box[0].start for p in parts), max(p.box[0].stop for p in parts)
    x0, x1 = min(p.box[1].start for p in parts), max(p.box[1].stop for p in parts)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for p in parts:
        g = p.group
        ink = p.ink()[p.box[0].start - g.rows.start : p.box[0].stop - g.rows.start,
                      p.box[1].start - g.cols.start : p.box[1].stop - g.cols.start]  # fmt: skip
        mask[p.box[0].start - y0 : p.box[0].stop - y0, p.box[1].start - x0 : p.box[1].stop - x0] |= ink
    return (slice(y0, y1), slice(x0, x1)), mask


def bridge_gaps(
    contrast: np.ndarray, mask: np.ndarray, h: float, pieces: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(contrast, mask) of one candidate digit with the narrow gaps between its pieces inked over.

    A pen that skipped leaves a digit in pieces with gaps of a few percent of its height; laid out at 20x20
    the gap stays visible and a broken 4 reads as a 1. A closing of the mask by BRIDGE h (a disk, through
    distance transforms) fills gaps up to twice that; the filled pixels get the strokes' typical contrast.
    One piece: unchanged. float32 (H, W) and bool (H, W); ``pieces``: the mask's 8-connected pieces, when
    known."""
    radius = BRIDGE * h
    pieces = ndimage.label(mask, structure=EIGHT)[1] if pieces is None else pieces
    if radius < 1 or pieces < 2:
        return contrast, mask
    pad = int(np.ceil(radius)) + 1
    grown = ndimage.distance_transform_edt(~np.pad(mask, pad)) <= radius
    closed = (ndimage.distance_transform_edt(grown) > radius)[pad:-pad, pad:-pad] | mask
    level = np.float32(np.percentile(contrast[mask], 90))
    return np.where(closed & ~mask, level, contrast), closed


def piece_features(
    parts: list[Slice], span: tuple[int, int], pieces: int, h: float, stroke: float
) -> list[float]:
    """FEATURES blank .. extra_groups (those that do not depend on the model) of the candidate made of
    slices ``span`` = (i, j), i..j-1 of the row's ``parts``, its ink in ``pieces`` 8-connected pieces."""
    i, j = span
    run = parts[i:j]
    blank, right = 0.0, run[0].box[1].stop
    for p in run[1:]:
        blank += max(0, p.box[1].start - right)
        right = max(right, p.box[1].stop)
    groups = {id(p.group): p.group for p in run}.values()
    tall = sum(g.ink.shape[0] >= SHORT * h for g in groups)
    cut = run[0].cut_ink / stroke
    ends_in_cut = j < len(parts) and parts[j].group is run[-1].group
    return [
        blank / h,
        max(0, tall - 1),
        float(cut > 0),
        cut,
        parts[j].cut_ink / stroke if ends_in_cut else 0.0,
        max(0, pieces - 1),
        len(groups) - 1,
    ]


def model_features(
    row: np.ndarray, alone: np.ndarray, boxes: list[tuple[slice, slice]], h: float
) -> np.ndarray:
    """FEATURES digit, log_p, short, aspect, abs_z, margin, log_p_alone, width: float (N, 8) in that order,
    from the probabilities float (N, 10) of the candidates laid out at the row's scale (``row``) and alone,
    and their ``boxes``."""
    top = row.argmax(axis=1)
    ordered = np.sort(np.clip(row, 1e-12, 1.0), axis=1)
    log_p, log_second = np.log(ordered[:, -1]), np.log(ordered[:, -2])
    height = np.array([b[0].stop - b[0].start for b in boxes], dtype=np.float64)
    width = np.array([b[1].stop - b[1].start for b in boxes], dtype=np.float64)
    z = (np.log(width / height) - np.log(ASPECT_MEDIAN[top])) / ASPECT_SPREAD[top]
    return np.stack(
        [
            np.ones(len(top)),
            log_p,
            np.maximum(0.0, SHORT - height / h),
            np.maximum(0.0, np.abs(z) - ASPECT_FREE) ** 2,
            np.abs(z),
            log_p - log_second,
            np.log(np.clip(alone.max(axis=1), 1e-12, 1.0)),
            width / h,
        ],
        axis=1,
    )


def features(model: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """float (N, len(FEATURES)) in FEATURES' order (the earlier hand-tuned penalties' features first) from
    :func:`model_features` (N, 8) and :func:`piece_features` (N, 7)."""
    return np.concatenate([model[:, :4], pieces, model[:, 4:]], axis=1)


def best_split(n: int, spans: list[tuple[int, int]], scores: np.ndarray) -> list[int]:
    """Indices into ``spans`` of the split of slices 0..n-1 into consecutive runs with the best total score."""
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back = [-1] * (n + 1)
    for k in sorted(range(len(spans)), key=lambda k: spans[k][1]):
        i, j = spans[k]
        if best[i] + scores[k] > best[j]:
            best[j], back[j] = best[i] + scores[k], k
    chosen, j = [], n
    while j > 0:
        chosen.append(back[j])
        j = spans[back[j]][0]
    return chosen[::-1]


@dataclass
class Candidates:
    """Every candidate digit of a row: runs of consecutive slices up to MAX_WIDTH h wide."""

    slices: int  # how many slices the row was cut into
    spans: list[tuple[int, int]]  # candidate k is slices spans[k][0] .. spans[k][1] - 1
    boxes: list[tuple[slice, slice]]  # each candidate's ink box in the working image
    seen: np.ndarray  # uint8 (N, 28, 28): each laid out alone, MNIST-style (the layout a digit is read from)
    probs: np.ndarray  # float (N, 10): the model's probabilities for ``seen``
    features: np.ndarray  # float (N, len(FEATURES))

    def digit(self, k: int) -> Digit:
        """Candidate ``k`` as a digit of the number."""
        (ys, xs), top = self.boxes[k], int(np.argmax(self.probs[k]))
        box = (int(xs.start), int(ys.start), int(xs.stop), int(ys.stop))
        return Digit(top, float(self.probs[k, top]), box, self.seen[k])


def row_slices(page: Page, label: str) -> tuple[list[Slice], float, float]:
    """(the row's slices left to right, its digit height h, its stroke width), steps 1-2."""
    labels, boxes, sizes = component_boxes(page.mask)
    if not boxes:
        raise ImageError(f"{label}: no digits found")
    order, h = row_pieces(boxes, sizes)
    order = same_pen(order, ink_levels(labels, page.contrast, boxes, order), boxes, h)
    groups = stack_pieces(labels, boxes, order, h)
    stroke = stroke_width(page.mask[min(g.rows.start for g in groups) : max(g.rows.stop for g in groups)])
    return slices_of(groups, h), h, stroke


def candidates(page: Page, classify: Classifier, label: str = "image") -> Candidates:
    """Every candidate digit of the number on ``page``, classified at the row's scale and alone, with its
    features."""
    parts, h, stroke = row_slices(page, label)
    if not parts:
        raise ImageError(f"{label}: no digits found")
    spans = [
        (i, j)
        for i in range(len(parts))
        for j in range(i + 1, len(parts) + 1)
        if j == i + 1 or parts[j - 1].box[1].stop - parts[i].box[1].start <= MAX_WIDTH * h
    ]
    boxes, masks = (list(column) for column in zip(*(candidate(parts[i:j]) for i, j in spans), strict=True))
    pieces = [ndimage.label(m, structure=EIGHT)[1] for m in masks]
    bridged = [bridge_gaps(page.contrast[b], m, h, n) for b, m, n in zip(boxes, masks, pieces, strict=True)]
    at_row = np.stack([layout_digit(c, m, page.edge, label, height=h) for c, m in bridged])
    seen = np.stack([layout_digit(c, m, page.edge, label) for c, m in bridged])
    row, alone = np.split(classify(np.concatenate([at_row, seen])), 2)  # one forward pass for both
    shapes = np.array([piece_features(parts, s, n, h, stroke) for s, n in zip(spans, pieces, strict=True)])
    found = features(model_features(row, alone, boxes, h), shapes)
    return Candidates(len(parts), spans, boxes, seen, alone, found)


def read_number(page: Page, classify: Classifier, label: str = "image") -> list[Digit]:
    """The digits of the number written in one row on ``page``, left to right."""
    found = candidates(page, classify, label)
    return [found.digit(k) for k in best_split(found.slices, found.spans, found.features @ WEIGHTS)]
