"""Fit the number reader's WEIGHTS (``app/segment.py``) on validation photos, and score them on others.

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE python bench/number_weights.py RUN_DIR CACHE_DIR
        [--train-seeds 12 13 14 15] [--select-seeds 7 11] [--n 600] [--lr 0.03] [--passes 6]

Numbers of 3-5 digits are rendered as phone photos (``paper_photos.photo_set``) from the run's *held-out
validation* digits, never test digits, ``--n`` per seed, and read as `predict --number` reads them. Every
candidate digit of every photo is classified once, with its features, and cached in CACHE_DIR (one .npz per
seed: re-running with other fitting settings reuses it).

The fit is an averaged structured perceptron over the dynamic programme of ``segment.read_number``: for each
training photo read wrong, the weights move towards the features of the best-scoring split whose digits
spell the true number (when the candidates allow one) and away from the split that was read. Features are
standardised by their spread over the training candidates, so that one learning rate fits them all; the fit
starts from the hand-tuned penalties the reader had before (HAND). The script prints the fitted weights and the
exact whole-number counts on the selection seeds for HAND, for segment.WEIGHTS and for the fit.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnistlab.api import load_run
from mnistlab.app import segment
from mnistlab.app.imageprep import load_grey
from mnistlab.app.photo import find_ink
from mnistlab.app.predict import predict_digits
from paper_photos import NUMBERS, photo_set
from photo_check import validation_digits

# The reader's hand-tuned penalties before the fit, as weights over segment.FEATURES (zero: not used then):
# a bonus of 0.1 per digit, the log-probability, 10 per h short of 0.65 h, 0.125 x the aspect excess squared,
# 10 per h of blank gap, 0.5 per extra tall group, 0.1 per stroke width of ink a cut crosses.
HAND = {
    "digit": 0.1,
    "log_p": 1.0,
    "short": -10.0,
    "aspect": -0.125,
    "blank": -10.0,
    "extra_tall": -0.5,
    "cut_ink": -0.1,
}


@dataclass
class Page:
    """One photo's candidates, as the reader's dynamic programme sees them."""

    label: str  # the true number
    kind: str  # plain, touching or broken
    slices: int
    spans: np.ndarray  # int (K, 2)
    features: np.ndarray  # float (K, len(FEATURES))
    reads: np.ndarray  # int (K,): each candidate's stand-alone top class (what the number would say)


def render_pages(run, seed: int, n: int) -> list[Page]:
    """``n`` validation numbers of ``seed``, read into candidates by the reader."""
    from mnistlab.data import load_dataset

    images, labels = validation_digits(run, load_dataset("mnist", progress=False))
    pages = []
    for photo in photo_set(images, labels, NUMBERS, n, seed):
        found = segment.candidates(find_ink(load_grey(photo.jpeg, "photo")), lambda d: predict_digits(run, d))
        kind = "touching" if photo.touching else "broken" if photo.broken else "plain"
        spans = np.array(found.spans)
        pages.append(Page(photo.label, kind, found.slices, spans, found.features, found.probs.argmax(axis=1)))
    return pages


def cached_pages(run, cache: Path, seed: int, n: int) -> list[Page]:
    """:func:`render_pages`, kept in ``cache`` (a file of this script's own arrays, never a user's). The name
    carries what the candidates depend on besides the photos: the run, the features and the cut settings."""
    what = f"{Path(run.path).resolve()} {segment.FEATURES} {segment.CUT_MIN_WIDTH} {segment.MAX_CUTS}"
    path = cache / f"numbers-{seed}-{n}-{hashlib.sha256(what.encode()).hexdigest()[:12]}.npz"
    if not path.exists():
        pages = render_pages(run, seed, n)
        sizes = np.array([len(p.spans) for p in pages])
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            labels=np.array([p.label for p in pages]),
            kinds=np.array([p.kind for p in pages]),
            slices=np.array([p.slices for p in pages]),
            sizes=sizes,
            spans=np.concatenate([p.spans for p in pages]),
            features=np.concatenate([p.features for p in pages]),
            reads=np.concatenate([p.reads for p in pages]),
        )
        tmp.replace(path)
    data = np.load(path)
    ends = np.cumsum(data["sizes"])
    parts = [np.split(data[key], ends[:-1]) for key in ("spans", "features", "reads")]
    return [
        Page(str(label), str(kind), int(slices), spans, features, reads)
        for label, kind, slices, spans, features, reads in zip(
            data["labels"], data["kinds"], data["slices"], *parts, strict=True
        )
    ]


def spelled(page: Page, scores: np.ndarray) -> list[int] | None:
    """The best-scoring split of ``page`` whose candidates read the true number, or None when none does.
    Dynamic programme over (slices used, digits spelled)."""
    best: dict[tuple[int, int], tuple[float, tuple[int, int, int] | None]] = {(0, 0): (0.0, None)}
    for k in np.argsort(page.spans[:, 0], kind="stable"):
        i, j = (int(x) for x in page.spans[k])
        for m, digit in enumerate(page.label):
            if (i, m) in best and page.reads[k] == int(digit):
                total = best[(i, m)][0] + scores[k]
                if (j, m + 1) not in best or total > best[(j, m + 1)][0]:
                    best[(j, m + 1)] = (total, (int(k), i, m))
    key = (page.slices, len(page.label))
    if key not in best:
        return None
    chosen = []
    while best[key][1] is not None:
        k, i, m = best[key][1]
        chosen.append(k)
        key = (i, m)
    return chosen[::-1]


def read(page: Page, scores: np.ndarray) -> list[int]:
    """The candidates the reader picks, given each candidate's score."""
    spans = [(int(i), int(j)) for i, j in page.spans]
    return segment.best_split(page.slices, spans, scores)


def reads_right(page: Page, chosen: list[int]) -> bool:
    """Do the ``chosen`` candidates spell the true number?"""
    return "".join(str(page.reads[k]) for k in chosen) == page.label


def fit(pages: list[Page], start: np.ndarray, lr: float, passes: int) -> np.ndarray:
    """Averaged structured perceptron from ``start`` (original units); returns the average, original units."""
    scale = np.concatenate([p.features for p in pages]).std(axis=0)
    scale[(scale == 0) | (np.arange(scale.size) == 0)] = 1.0  # the per-digit constant stays 1
    weights, total, steps = start * scale, np.zeros_like(start), 0
    order = np.random.default_rng(0)
    for _ in range(passes):
        for index in order.permutation(len(pages)):
            page = pages[index]
            scores = page.features / scale @ weights
            got = read(page, scores)
            if not reads_right(page, got):
                gold = spelled(page, scores)
                if gold is not None:
                    step = page.features[gold].sum(axis=0) - page.features[got].sum(axis=0)
                    weights = weights + lr * step / scale
            total, steps = total + weights, steps + 1
    return total / steps / scale


def exact(pages: list[Page], weights: np.ndarray) -> dict[str, int]:
    """Numbers read exactly right with ``weights``: in all, and per kind."""
    counts = {"all": 0, "plain": 0, "broken": 0, "touching": 0}
    for page in pages:
        if reads_right(page, read(page, page.features @ weights)):
            counts["all"] += 1
            counts[page.kind] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("cache", type=Path, help="folder for the candidates of each seed's photos")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[12, 13, 14, 15])
    parser.add_argument("--select-seeds", type=int, nargs="+", default=[7, 11])
    parser.add_argument("--n", type=int, default=600, help="numbers per seed")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--passes", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run_dir)
    train = [p for s in args.train_seeds for p in cached_pages(run, args.cache, s, args.n)]
    select = [p for s in args.select_seeds for p in cached_pages(run, args.cache, s, args.n)]
    hand = np.array([HAND.get(name, 0.0) for name in segment.FEATURES])
    fitted = fit(train, hand, args.lr, args.passes)
    print(f"{len(train)} training numbers (seeds {args.train_seeds}), {len(select)} selection numbers")
    for name, weights in (("hand", hand), ("segment.WEIGHTS", segment.WEIGHTS), ("fitted", fitted)):
        print(f"{name:16s} exact on the selection numbers: {exact(select, weights)}")
    print("WEIGHTS = [" + ", ".join(f"{w:.4f}" for w in fitted) + "]  # " + ", ".join(segment.FEATURES))


if __name__ == "__main__":
    main()
