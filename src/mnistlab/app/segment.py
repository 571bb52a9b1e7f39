"""Read a whole number: split the ink of a row of handwritten digits into digits, by recognition.

Connected components are not digits: a pen that skips breaks one digit into strokes, and digits written close
together touch. So the row's ink is over-segmented, and the model decides:

1. The row: the components whose centres lie in the band of the tallest ones; specks are dropped, and so are
   pieces much fainter than the row's digits (one pen wrote the number; a faint piece is what is left of a
   ruled line or the sheet's edge). Pieces that stand above one another (the detached bar of a 5) form one
   *group*.
2. Slices: a group wide enough to hold two digits is cut, near the low points of its column ink profile, along
   the top-to-bottom path that crosses the least ink (two touching digits meet at a point or along a stroke,
   and the path slips between them even where their columns overlap).
3. Candidates: every run of consecutive slices up to MAX_WIDTH h wide. A candidate in pieces has the narrow
   gaps between them inked over (a pen that skipped). Each is laid out MNIST-style at the row's scale (a
   fragment stays small) and classified, all in one batch.
4. Dynamic programming picks the split of the row into candidates with the best total score: the
   log-probability of each digit's top class, minus penalties for shapes unlike a digit of the row (too short,
   too wide or narrow for its label), for blank gaps inside a digit, and for each cut through ink.

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
from mnistlab.app.photo import Page, component_boxes

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
CUT_MIN_WIDTH = 1.0  # groups at least this many h wide are tried cut into digits
CUT_MARGIN = 0.12  # a cut starts at least this many h from either end of its group and from another cut
MAX_CUTS = 4  # cuts tried per group: near the lowest minima of its column ink profile
CUT_REACH = 0.25  # a cut's path may wander this many h left or right of its column
MAX_WIDTH = 2.0  # a candidate digit is at most this many h wide
# A digit in pieces: gaps up to about twice this many h between its pieces are inked over before it is read.
# 0.05 was chosen on validation photos (the default run's held-out digits): exact 435 -> 438 of 520 (broken
# 82 -> 86) and, confirmed on 600 new ones, 514 -> 519; 0.04-0.12 gave 83-87 broken of 119, no trend.
BRIDGE = 0.05
# Scores are log-probabilities; each penalty below is subtracted from the top class's log-probability.
# Added per digit: a sum of log-probabilities otherwise favours fewer, merged digits (two touching digits read
# as one wide, fairly sure digit). 0.1 was chosen on validation photos (the default run's held-out digits, 520):
# exact 424 -> 435, touching 32 -> 39 of 56, without losing plain or broken numbers; 0.05 and 0.15-0.2 did less.
DIGIT_BONUS = 0.1
CUT_COST = 0.0  # per cut through ink (touching digits are the exception)
CUT_INK_COST = 0.1  # ... plus this per stroke width of ink the cut crosses
GAP_PENALTY = 10.0  # per h of blank gap inside one digit (digits are written apart)
JOIN_PENALTY = 0.5  # per extra tall piece (SHORT h or taller) joined into one digit: tall pieces are digits
SHORT_PENALTY = 10.0  # per h of height short of SHORT h (a fragment read as a digit)
SHORT = 0.65
# Times (|z| - ASPECT_FREE)^2, z: log width/height in spreads from the label's median. 0.125 was chosen on
# validation photos: exact 438 -> 444 of 520 and, confirmed on 600 others, 519 -> 530 (then 507 -> 511 on 600
# fresh ones); at 0.5 a wide 0 or 4 cost more than cutting it in two confident halves ("1" and "7").
ASPECT_PENALTY = 0.125
ASPECT_FREE = 1.5  # spreads of aspect that cost nothing
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


def bridge_gaps(contrast: np.ndarray, mask: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """(contrast, mask) of one candidate digit with the narrow gaps between its pieces inked over.

    A pen that skipped leaves a digit in pieces with gaps of a few percent of its height; laid out at 20x20
    the gap stays visible and a broken 4 reads as a 1. A closing of the mask by BRIDGE h (a disk, through
    distance transforms) fills gaps up to twice that; the filled pixels get the strokes' typical contrast.
    One piece: unchanged. float32 (H, W) and bool (H, W)."""
    radius = BRIDGE * h
    if radius < 1 or ndimage.label(mask, structure=np.ones((3, 3)))[1] < 2:
        return contrast, mask
    pad = int(np.ceil(radius)) + 1
    grown = ndimage.distance_transform_edt(~np.pad(mask, pad)) <= radius
    closed = (ndimage.distance_transform_edt(grown) > radius)[pad:-pad, pad:-pad] | mask
    level = np.float32(np.percentile(contrast[mask], 90))
    return np.where(closed & ~mask, level, contrast), closed


def shape_penalty(box: tuple[slice, slice], h: float, label: int) -> float:
    """Penalty for a candidate shaped unlike one digit ``label`` of the row: the digits of a row are about
    equally tall, and each digit has its typical width (a 1 is narrow, a 0 wide)."""
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    z = (np.log(width / height) - np.log(ASPECT_MEDIAN[label])) / ASPECT_SPREAD[label]
    return SHORT_PENALTY * max(0.0, SHORT - height / h) + ASPECT_PENALTY * max(0.0, abs(z) - ASPECT_FREE) ** 2


def gap_penalty(parts: list[Slice], h: float) -> float:
    """Penalty for joining separate pieces into one digit: per blank column between them, and per tall
    piece beyond the first (a broken digit's pieces are mostly short; two tall ones are mostly two digits)."""
    total, right = 0.0, parts[0].box[1].stop
    for p in parts[1:]:
        total += max(0, p.box[1].start - right)
        right = max(right, p.box[1].stop)
    tall = sum(g.ink.shape[0] >= SHORT * h for g in {id(p.group): p.group for p in parts}.values())
    return GAP_PENALTY * total / h + JOIN_PENALTY * max(0, tall - 1)


def cut_cost(part: Slice, stroke: float) -> float:
    """Penalty for starting a digit at ``part``'s cut: more for more ink cut through."""
    return CUT_COST + CUT_INK_COST * part.cut_ink / stroke if part.cut_ink > 0 else 0.0


def digit_scores(probs: np.ndarray, penalties: np.ndarray) -> np.ndarray:
    """float (N,) score of each candidate read as one digit: its top class's log-probability, plus
    DIGIT_BONUS, minus its shape and cut ``penalties`` (N,). ``probs`` float (N, 10)."""
    return DIGIT_BONUS + np.log(np.clip(probs.max(axis=1), 1e-12, 1.0)) - penalties


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


def read_number(page: Page, classify: Classifier, label: str = "image") -> list[Digit]:
    """The digits of the number written in one row on ``page``, left to right."""
    labels, boxes, sizes = component_boxes(page.mask)
    if not boxes:
        raise ImageError(f"{label}: no digits found")
    order, h = row_pieces(boxes, sizes)
    order = same_pen(order, ink_levels(labels, page.contrast, boxes, order), boxes, h)
    groups = stack_pieces(labels, boxes, order, h)
    stroke = stroke_width(page.mask[min(g.rows.start for g in groups) : max(g.rows.stop for g in groups)])
    parts = slices_of(groups, h)
    spans = [
        (i, j)
        for i in range(len(parts))
        for j in range(i + 1, len(parts) + 1)
        if j == i + 1 or parts[j - 1].box[1].stop - parts[i].box[1].start <= MAX_WIDTH * h
    ]
    boxes_masks = [candidate(parts[i:j]) for i, j in spans]
    seen = np.stack(
        [
            layout_digit(*bridge_gaps(page.contrast[b], m, h), page.edge, label, height=h)
            for b, m in boxes_masks
        ]
    )
    probs = classify(seen)
    penalties = np.array(
        [
            shape_penalty(b, h, int(top)) + gap_penalty(parts[i:j], h) + cut_cost(parts[i], stroke)
            for (b, _), top, (i, j) in zip(boxes_masks, probs.argmax(axis=1), spans, strict=True)
        ]
    )
    scores = digit_scores(probs, penalties)
    return reread([boxes_masks[k] for k in best_split(len(parts), spans, scores)], page, classify, label, h)


def reread(
    chosen: list[tuple[tuple[slice, slice], np.ndarray]],
    page: Page,
    classify: Classifier,
    label: str,
    h: float,
) -> list[Digit]:
    """The chosen digits, each laid out MNIST-style on its own (as the model was trained) and classified."""
    seen = np.stack(
        [layout_digit(*bridge_gaps(page.contrast[box], mask, h), page.edge, label) for box, mask in chosen]
    )
    probs = classify(seen)
    digits = []
    for (ys, xs), p, image in zip((c[0] for c in chosen), probs, seen, strict=True):
        top = int(np.argmax(p))
        digits.append(
            Digit(top, float(p[top]), (int(xs.start), int(ys.start), int(xs.stop), int(ys.stop)), image)
        )
    return digits
