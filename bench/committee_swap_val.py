"""Validation only (issue 14): a committee's subsets before and after some members are swapped for other runs.

    PYTHONPATH=src python bench/committee_swap_val.py COMMITTEE K=RUN [K=RUN ...] [--size 5]

COMMITTEE is a committee folder; each K=RUN swaps member K for RUN, an ordinary run on the same validation
split (checked by comparing the labels), e.g. the same seed retrained with another --monitor. Prints the mean
and spread of the validation errors and loss (nats/image, 10^-3) over every ``size``-member subset of the
committee as it is and as swapped (mean of the softmax outputs), and the swapped members' own scores. The test
split is never loaded.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

from mnistlab.runs import load_run

sys.path.insert(0, str(Path(__file__).parent))
from committee_mix_val import run_log_probs  # one run on the committee's split, its own preprocessing
from committee_mixes_val import members_on_validation, score, spread


def subsets(members: list[torch.Tensor], labels: torch.Tensor, size: int) -> str:
    scores = [
        score([members[i] for i in c], labels) for c in itertools.combinations(range(len(members)), size)
    ]
    errors, low, high, loss, sd = spread(scores)
    return f"{len(scores)} subsets: errors {errors:.2f} (min {low}, max {high}), loss {loss:.3f} ± {sd:.2f}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committee")
    parser.add_argument("swaps", nargs="+", help="K=RUN: member K replaced by RUN")
    parser.add_argument("--size", type=int, default=5, help="members per committee")
    args = parser.parse_args(argv)
    members, labels, split_seed = members_on_validation(args.committee)
    swapped = list(members)
    for swap in args.swaps:
        k, _, folder = swap.partition("=")
        swapped[int(k)] = run_log_probs(load_run(folder), split_seed, labels)
        old, new = score([members[int(k)]], labels), score([swapped[int(k)]], labels)
        print(
            f"member {k}: {old[0]} errors, loss {1000 * old[1]:.2f} -> {folder}: {new[0]}, {1000 * new[1]:.2f}"
        )
    print(f"{args.committee} ({len(members)} members, split seed {split_seed}), {args.size}-member subsets")
    print(f"  as it is: {subsets(members, labels, args.size)}")
    print(f"  swapped:  {subsets(swapped, labels, args.size)}")


if __name__ == "__main__":
    main(sys.argv[1:])
