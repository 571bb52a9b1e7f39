"""Analysis only (issue 14): score finished member runs alone and as a committee that averages their softmax.

    PYTHONPATH=src python bench/committee_check.py RUN_DIR [RUN_DIR ...] [--out FILE.json]

Every member must have been trained with the same validation split (``data.split_seed``), so that the
committee has one validation set. Each member's preprocessing is its own (``Run.predict`` applies it to the raw
images). Members are added in the order given, which is fixed before anything is scored. Prints and writes,
per member and for the committee of the first k members (k = 1..N): validation and test accuracy, and for the
whole committee the number of test images that every member gets wrong. The real ``--members`` feature is
built on the refactored training code later; this script only measures the recipe.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnistlab
from measure import write_json
from mnistlab.data import load_dataset, split_train_val


def split_seed_of(run) -> int:
    data = run.config.data
    return run.config.seed if data.split_seed is None else data.split_seed


def raw_splits(run) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Raw uint8 validation and test images (N, 28, 28) with labels, as the run's training split them."""
    data = run.config.data
    arrays = load_dataset(data.dataset, data.data_dir, download=False, progress=False)
    images, labels = torch.from_numpy(arrays.train_images), torch.from_numpy(arrays.train_labels).long()
    _, val_idx = split_train_val(images.shape[0], data.val_size, split_seed_of(run))
    test = (torch.from_numpy(arrays.test_images), torch.from_numpy(arrays.test_labels).long())
    return {"val": (images[val_idx], labels[val_idx]), "test": test}


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return (probabilities.argmax(1) == labels).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [mnistlab.load_run(path) for path in args.runs]
    seeds = {split_seed_of(run) for run in runs}
    if len(seeds) != 1:
        sys.exit(f"the members were trained on different validation splits (split seeds {sorted(seeds)})")
    splits = raw_splits(runs[0])
    probs = {name: [run.predict(images) for run in runs] for name, (images, _) in splits.items()}
    members = []
    for run, val_p, test_p in zip(runs, probs["val"], probs["test"], strict=True):
        members.append(
            {
                "run": str(run.path),
                "seed": run.config.seed,
                "val_accuracy": accuracy(val_p, splits["val"][1]),
                "test_accuracy": accuracy(test_p, splits["test"][1]),
                "train_seconds": run.summary["train_seconds"],
            }
        )
        # the test split scored here is the same as the run's own single test evaluation
        assert abs(members[-1]["test_accuracy"] - run.summary["test_accuracy"]) < 1e-9, run.path
    by_size = []
    for k in range(1, len(runs) + 1):
        row = {"members": k}
        for name, (_, labels) in splits.items():
            row[f"{name}_accuracy"] = accuracy(torch.stack(probs[name][:k]).mean(0), labels)
        by_size.append(row)
    test_labels = splits["test"][1]
    wrong = torch.stack([p.argmax(1) != test_labels for p in probs["test"]])  # (members, 10000)
    result = {
        "rule": "mean of the members' softmax outputs, then argmax",
        "split_seed": seeds.pop(),
        "members": members,
        "member_val_mean": statistics.mean(m["val_accuracy"] for m in members),
        "member_val_std": statistics.pstdev(m["val_accuracy"] for m in members),
        "member_test_mean": statistics.mean(m["test_accuracy"] for m in members),
        "member_test_std": statistics.pstdev(m["test_accuracy"] for m in members),
        "committee_by_size": by_size,
        "committee_val_accuracy": by_size[-1]["val_accuracy"],
        "committee_test_accuracy": by_size[-1]["test_accuracy"],
        "test_errors_shared_by_all_members": int(wrong.all(0).sum()),
        "test_errors_of_the_committee": int(
            (torch.stack(probs["test"]).mean(0).argmax(1) != test_labels).sum()
        ),
    }
    for m in members:
        print(
            f"member seed {m['seed']}: val {100 * m['val_accuracy']:.2f} %  test {100 * m['test_accuracy']:.2f} %  "
            f"({m['train_seconds'] / 60:.1f} min training)"
        )
    print(
        f"members: val {100 * result['member_val_mean']:.3f} ± {100 * result['member_val_std']:.3f} %, "
        f"test {100 * result['member_test_mean']:.3f} ± {100 * result['member_test_std']:.3f} %"
    )
    for row in by_size:
        print(
            f"committee of {row['members']}: val {100 * row['val_accuracy']:.2f} %  test {100 * row['test_accuracy']:.2f} %"
        )
    print(
        f"test errors: committee {result['test_errors_of_the_committee']}, "
        f"shared by all members {result['test_errors_shared_by_all_members']}"
    )
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
