"""Validation only (issue 14): what the k-th member adds to a finished committee, k = 1..N.

    PYTHONPATH=src python bench/committee_val_curve.py RUN [RUN ...] [--out FILE.json]

For each committee folder: the validation errors and the validation loss (nats/image) of the committee of the
first k members, in member order (fixed before anything is scored), and each member's own validation errors.
It reads the members' shared validation split only; the test split is never loaded, so a choice made from
this curve (e.g. how many members the recipe should have) is not a choice made on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mnistlab.config import TrainConfig
from mnistlab.inference import member_log_probs
from mnistlab.lab.common import load_splits
from mnistlab.runs import load_run


def val_curve(folder: str) -> dict:
    run = load_run(folder)
    member = TrainConfig.from_dict(run.config.to_dict() | {"members": 1})
    member.data.split_seed = run.summary["split_seed"]
    val = load_splits(member).val  # the members' held-out images, their preprocessing applied
    log_probs = member_log_probs(run.model, val.images, run.config.eval_batch_size).cpu()  # (M, N, 10)
    labels = val.labels.cpu()
    sizes = range(1, len(log_probs) + 1)
    combined = [run.model.combine(log_probs[:k]) for k in sizes]  # (N, 10) log of the combined probabilities
    return {
        "committee": folder,
        "val_images": len(labels),
        "val_errors_by_size": [int((c.argmax(1) != labels).sum()) for c in combined],
        "val_loss_by_size": [round(float(torch.nn.functional.nll_loss(c, labels)), 5) for c in combined],
        "member_val_errors": [int((lp.argmax(1) != labels).sum()) for lp in log_probs],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    curves = [val_curve(folder) for folder in args.runs]
    for c in curves:
        print(f"{c['committee']}: {c['val_images']} validation images")
        print(f"  errors of the first k members, k = 1..N: {c['val_errors_by_size']}")
        print(f"  loss of the first k members (nats/image): {c['val_loss_by_size']}")
        print(f"  each member's own errors: {c['member_val_errors']}")
    if args.out:
        args.out.write_text(json.dumps(curves, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
