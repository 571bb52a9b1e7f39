"""Validation only (issue 14): committees of one model against committees of two, over every subset.

    PYTHONPATH=src python bench/committee_mixes_val.py A B [B ...] [--size 5]

A is a committee folder and B another committee folder or several ordinary runs, all on the same validation
split (same split seed and val size; checked by comparing the labels), e.g. five-plus deep-cnn members and
five lenet-wide members of one split seed, or runs of other input widths (each scored with its own
preprocessing and model). For each mix (k members of A and size - k of B, k = size..0) it scores every such subset on the
validation split (mean of the softmax outputs) and prints the mean and spread of the validation errors and
loss (nats/image, 10^-3) over the subsets, plus the subset that interleaves the members in the order that
``--member-models A,B`` would train them (A's member 0, B's 1, A's 2, ...). The test split is never loaded.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

from mnistlab.inference import member_log_probs
from mnistlab.runs import Run, load_run

sys.path.insert(0, str(Path(__file__).parent))
from committee_mix_val import committee_split_seed, run_log_probs, validation  # the shared split


def members_on_validation(folder: str) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """(each member's (N, 10) validation log-probabilities, the labels, the split seed) of a committee."""
    return committee_on_validation(load_run(folder))


def committee_on_validation(committee: Run) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """:func:`members_on_validation` of a committee already loaded."""
    split_seed = committee_split_seed(committee.summary)
    val = validation(committee, split_seed)
    with torch.no_grad():
        members = list(member_log_probs(committee.model, val.images, 2000).cpu())
    return members, val.labels.cpu(), split_seed


def runs_on_validation(folders: list[str], split_seed: int, labels: torch.Tensor) -> list[torch.Tensor]:
    """Each B: a committee's members, or ordinary runs one by one, on the shared split."""
    first = load_run(folders[0])
    if len(folders) == 1 and first.summary.get("kind") == "committee":
        members, labels_b, split_b = committee_on_validation(first)
        if split_b != split_seed or not torch.equal(labels, labels_b):
            raise SystemExit(f"{folders[0]}: another validation split than A's")
        return members
    return [
        run_log_probs(load_run(folder) if k else first, split_seed, labels)
        for k, folder in enumerate(folders)
    ]


def score(log_probs: list[torch.Tensor], labels: torch.Tensor) -> tuple[int, float]:
    """(errors, loss in nats/image) of the mean of the members' probabilities."""
    probs = torch.stack(log_probs).exp().mean(0)
    return int((probs.argmax(1) != labels).sum()), float(torch.nn.functional.nll_loss(probs.log(), labels))


def spread(scores: list[tuple[int, float]]) -> tuple[float, int, int, float, float]:
    """Over subsets' (errors, loss) scores: mean, min and max errors; mean and std of the loss in 10^-3 nats."""
    errors, losses = [s[0] for s in scores], [1000 * s[1] for s in scores]
    sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
    return statistics.fmean(errors), min(errors), max(errors), statistics.fmean(losses), sd


def interleaved(a: list[torch.Tensor], b: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Member k of a committee trained with --member-models A,B: A's member k for even k, B's for odd k."""
    return [(a if k % 2 == 0 else b)[k] for k in range(size)]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b", nargs="+")
    parser.add_argument("--size", type=int, default=5, help="members per committee")
    args = parser.parse_args(argv)
    a, labels, split_seed = members_on_validation(args.a)
    b = runs_on_validation(args.b, split_seed, labels)
    print(
        f"A = {args.a} ({len(a)} members), B = {' '.join(args.b)} ({len(b)} members), split seed {split_seed}"
    )
    for name, members in (("A", a), ("B", b)):
        alone = [score([m], labels) for m in members]
        print(f"{name} alone: errors {[e for e, _ in alone]}, loss {[round(1000 * v, 2) for _, v in alone]}")
    for k in range(args.size, -1, -1):
        if k > len(a) or args.size - k > len(b):
            continue
        scores = [
            score([a[i] for i in ia] + [b[j] for j in ib], labels)
            for ia in itertools.combinations(range(len(a)), k)
            for ib in itertools.combinations(range(len(b)), args.size - k)
        ]
        errors, low, high, loss, sd = spread(scores)
        print(
            f"{k} of A + {args.size - k} of B ({len(scores)} subsets): errors {errors:.1f} "
            f"(min {low}, max {high}), loss {loss:.2f} ± {sd:.2f}"
        )
    if len(a) >= args.size and len(b) >= args.size:
        errors, loss = score(interleaved(a, b, args.size), labels)
        print(f"interleaved A,B (members 0..{args.size - 1}): {errors} errors, loss {1000 * loss:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
