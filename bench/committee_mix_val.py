"""Validation only (issue 14): does a run of another recipe add more to a committee than one more seed?

    PYTHONPATH=src python bench/committee_mix_val.py COMMITTEE RUN [RUN ...] [--first K]

COMMITTEE is a committee folder, each RUN an ordinary run trained on the same validation split (same split
seed, val size and preprocessing; checked by comparing the labels). Prints the validation errors and loss
(nats/image, 10^-3) of the committee's first K members, of those plus member K (one more seed), and of those
plus each RUN in turn, combined by the mean of the softmax outputs. The test split is never loaded.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mnistlab.config import TrainConfig
from mnistlab.inference import member_log_probs
from mnistlab.lab.common import load_splits
from mnistlab.runs import Run, load_run


def committee_split_seed(summary: dict) -> int:
    """The split seed a committee's members share (unset in a member trained as a plain run and copied in:
    then the committee's seed, which a plain run's split defaults to)."""
    return summary["seed"] if summary["split_seed"] is None else summary["split_seed"]


def validation(run: Run, split_seed: int):
    """The run's validation split with its own preprocessing applied."""
    config = TrainConfig.from_dict(run.config.to_dict() | {"members": 1})
    config.data.split_seed = split_seed
    return load_splits(config).val


def run_log_probs(run: Run, split_seed: int, labels: torch.Tensor) -> torch.Tensor:
    """(N, 10) log-probabilities of ``run`` on the shared validation split."""
    val = validation(run, split_seed)
    if not torch.equal(val.labels.cpu(), labels):
        raise SystemExit(f"{run.path}: another validation split than the committee's")
    with torch.no_grad():
        return torch.cat([torch.log_softmax(run.model(x), 1) for x in val.images.split(2000)]).cpu()


def score(log_probs: list[torch.Tensor], labels: torch.Tensor) -> str:
    probs = torch.stack(log_probs).exp().mean(0)  # (N, 10): the mean rule
    errors = int((probs.argmax(1) != labels).sum())
    loss = float(torch.nn.functional.nll_loss(probs.log(), labels))
    return f"{errors} errors, loss {1000 * loss:.2f}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committee")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--first", type=int, default=5, help="K: the committee members to start from")
    args = parser.parse_args(argv)
    committee = load_run(args.committee)
    split_seed = committee_split_seed(committee.summary)
    val = validation(committee, split_seed)
    labels = val.labels.cpu()
    members = list(member_log_probs(committee.model, val.images, 2000).cpu())  # M x (N, 10)
    base = members[: args.first]
    print(f"first {args.first} members: {score(base, labels)}")
    print(f"  + member {args.first} (one more seed): {score([*base, members[args.first]], labels)}")
    for folder in args.runs:
        extra = run_log_probs(load_run(folder), split_seed, labels)
        print(f"  + {folder}: {score([*base, extra], labels)} (alone: {score([extra], labels)})")


if __name__ == "__main__":
    main(sys.argv[1:])
