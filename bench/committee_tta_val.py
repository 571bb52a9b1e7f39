"""Validation only (issue 14): does averaging each member over 1-pixel shifts of the input help a committee?

    PYTHONPATH=src python bench/committee_tta_val.py COMMITTEE [--size 5]

For each member of COMMITTEE and each view set (none; the image and its four 1-pixel shifts; all nine shifts
within one pixel), the member's probabilities are averaged over the views; then, for every subset of ``size``
members, the committee (mean rule) is scored on the validation split. Prints the mean errors and loss
(nats/image, 10^-3) of single members and of the subsets. The test split is never loaded.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from committee_mix_val import committee_split_seed, validation  # the shared split, its own preprocessing
from committee_mixes_val import score  # errors and loss of the mean of a list of log-probabilities
from mnistlab.runs import load_run

VIEWS = {
    "none": [(0, 0)],
    "plus": [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)],
    "nine": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
}


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (N, 1, 28, 28), preprocessed, moved by (dy, dx) pixels; the edge filled with the background (its min)."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=float(x.amin()))
    return padded[:, :, 1 + dy : 29 + dy, 1 + dx : 29 + dx]


def member_log_probs(member: torch.nn.Module, x: torch.Tensor, views: list[tuple[int, int]]) -> torch.Tensor:
    """(N, 10) log of the member's probabilities averaged over the shifted views."""
    with torch.no_grad():
        probs = [torch.cat([member(b).softmax(1) for b in shifted(x, *v).split(2000)]) for v in views]
    return torch.stack(probs).mean(0).log()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committee")
    parser.add_argument("--size", type=int, default=5, help="members per committee")
    args = parser.parse_args(argv)
    committee = load_run(args.committee)
    val = validation(committee, committee_split_seed(committee.summary))
    labels, members = val.labels.cpu(), list(committee.model.members)
    for name, views in VIEWS.items():
        lp = [member_log_probs(m.eval(), val.images, views).cpu() for m in members]
        single = [score([p], labels) for p in lp]
        subsets = [
            score([lp[i] for i in s], labels) for s in itertools.combinations(range(len(lp)), args.size)
        ]
        print(
            f"{name} ({len(views)} views): single members errors {statistics.fmean(e for e, _ in single):.1f} "
            f"loss {1000 * statistics.fmean(x for _, x in single):.2f}; {len(subsets)} subsets of {args.size}: "
            f"errors {statistics.fmean(e for e, _ in subsets):.1f} loss {1000 * statistics.fmean(x for _, x in subsets):.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
