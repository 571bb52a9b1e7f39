"""Recipe search for the long-budget recipes and the committee (issue 14), chosen on validation only.

One call trains one configuration through the public API (``mnistlab.train``) on one CPU thread and appends
one JSON line to the results file: the full config, validation accuracy per epoch, the best one, seconds per
epoch, and the test accuracy, which is *recorded for the final report only*: nothing here prints it, and no
choice in docs/recipe-search.md was made on it.

    python bench/recipe_search.py --tag deep-e15 --model deep-cnn --epochs 15 \\
        --set augment.kind=both --set optim.lr=0.1 --seeds 0

``--set PATH=VALUE`` overrides any TrainConfig field by its dotted path (VALUE is parsed as JSON when it
can be, else taken as a string). Runs go to /tmp/i14-runs/<tag>/seed-<k>; results to
bench/results/recipe_search.jsonl (one line per run). ``--summary`` prints the table of validation figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import mnistlab
from mnistlab.config import TrainConfig
from mnistlab.recipes import recipe

RESULTS = Path(__file__).parent / "results" / "recipe_search.jsonl"
RUNS = Path(os.environ.get("I14_RUNS", "/tmp/i14-runs"))


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: TrainConfig, pairs: list[str]) -> TrainConfig:
    for pair in pairs:
        path, _, text = pair.partition("=")
        *parents, leaf = path.split(".")
        target = config
        for name in parents:
            target = getattr(target, name)
        if not hasattr(target, leaf):
            sys.exit(f"--set {pair}: {type(target).__name__} has no field {leaf!r}")
        value = parse_value(text)
        setattr(target, leaf, tuple(value) if isinstance(value, list) else value)
    return config.validate()


def build(args: argparse.Namespace, seed: int) -> TrainConfig:
    config = recipe(args.base or args.model)
    config.model.name = args.model
    config.epochs = args.epochs
    config.seed = seed
    config.threads = args.threads
    config.quiet = True
    config.progress = False
    config.out = str(RUNS / args.tag / f"seed-{seed}")
    return apply_overrides(config, args.set)


def run_one(args: argparse.Namespace, seed: int) -> dict:
    config = build(args, seed)
    load = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    run = mnistlab.train(config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    val = [h["val_accuracy"] for h in run.history]
    record = {
        "tag": args.tag,
        "seed": seed,
        "config": config.to_dict(),
        "val_accuracy": val,
        "best_val_accuracy": max(val),
        "best_epoch": run.summary["best_epoch"],
        "last_val_accuracy": val[-1],
        "seconds_per_epoch": [h["seconds"] for h in run.history],
        "train_seconds": run.summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        # CPU seconds of the whole run (data loading, training, validation, test): with one thread this is
        # close to what the run takes on an idle core, whatever the load was
        "cpu_seconds": round(cpu, 1),
        "load_at_start": round(load, 2),
        "host": platform.node(),
        # recorded for the final report; never printed here and never used to choose
        "test_accuracy_not_for_selection": run.summary["test_accuracy"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(
        f"{args.tag} seed {seed}: best val {100 * max(val):.2f} % (epoch {record['best_epoch']}), "
        f"last {100 * val[-1]:.2f} %, {run.summary['train_seconds'] / len(val):.1f} s/epoch, "
        f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU, load {load:.1f}",
        flush=True,
    )
    return record


def summary() -> None:
    """Validation figures per tag: mean of the last epoch's and of the best epoch's accuracy over seeds."""
    rows: dict[str, list[dict]] = {}
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            rows.setdefault(record["tag"], []).append(record)
    print(f"{'tag':40s} {'seeds':>6s} {'last val %':>10s} {'best val %':>10s} {'s/epoch':>8s} {'min':>6s}")
    for tag, records in rows.items():
        last = statistics.mean(r["last_val_accuracy"] for r in records)
        best = statistics.mean(r["best_val_accuracy"] for r in records)
        per_epoch = statistics.mean(r["train_seconds"] / len(r["val_accuracy"]) for r in records)
        minutes = statistics.mean(r["wall_seconds"] for r in records) / 60
        seeds = ",".join(str(r["seed"]) for r in records)
        print(f"{tag:40s} {seeds:>6s} {100 * last:10.2f} {100 * best:10.2f} {per_epoch:8.1f} {minutes:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tag", help="name of this configuration (run folders and results)")
    parser.add_argument("--model", default="deep-cnn")
    parser.add_argument("--base", help="recipe to start from (default: the model's)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, trained one after another")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--summary", action="store_true", help="print the validation table and exit")
    args = parser.parse_args()
    if args.summary:
        summary()
        return
    if not args.tag:
        parser.error("--tag is required")
    for seed in (int(s) for s in args.seeds.split(",")):
        run_one(args, seed)


if __name__ == "__main__":
    main()
