"""What distortions add to a training step: the cnn recipe's step with and without each kind, in one process.

    PYTHONPATH=src python bench/augment_cost.py [--threads N] [--rounds 9] [--steps 40] [--out FILE]

One step is what the fit loop does per batch: distort the batch (when distorting), forward, cross-entropy,
backward and the fused SGD update (:func:`mnistlab.training.loop.eager_step`), on real preprocessed MNIST
batches of 128 with the cnn recipe's model (channels_last). The kinds take turns, ``--steps`` steps each,
for ``--rounds`` rounds, so that a busy spell of the shared machine hits all of them alike; a kind's time is
the median over rounds of its median step, and the ratio is against ``none`` measured in the same rounds.
The target (issue 14): each ratio <= 1.20.

By default steps are timed in CPU seconds of this process (``time.process_time``), which a busy shared machine
barely moves with one thread, where elapsed time swings by 2-5x between rounds; ``--clock wall`` on an idle
machine gives the elapsed figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import load_average, machine, write_json
from mnistlab.config import AugmentConfig
from mnistlab.data.augment import Distorter
from mnistlab.models import build_model
from mnistlab.recipes import recipe
from mnistlab.training.fit import prepare_data
from mnistlab.training.loop import eager_step
from mnistlab.training.optim import build_optimizer

KINDS = ("none", "affine", "elastic", "both")
TARGET_RATIO = 1.20


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def step_times(model, optimizer, batches, distorter: Distorter | None, steps: int, clock) -> list[float]:
    """Seconds per step for ``steps`` steps over ``batches`` (cycled), each timed on its own."""
    times = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        t0 = clock()
        if distorter is not None:
            x = distorter(x)
        eager_step(model, optimizer, x, y)
        times.append(clock() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=40, help="steps per kind per round")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: CPU seconds of this process (robust when other processes share the cores; with several "
        "threads it also counts their spin-waiting); wall: elapsed time",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "augment_cost.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = recipe("cnn")
    splits = prepare_data(config, torch.device("cpu"), progress=False)
    order = torch.Generator().manual_seed(1)
    batches = list(splits.train.batches(config.batch_size, shuffle=True, generator=order))[:64]
    torch.manual_seed(0)
    model = build_model("cnn").to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    model.train()
    distorters = {
        kind: None
        if kind == "none"
        else Distorter(AugmentConfig(kind=kind), splits.preprocessor, "cpu", seed=0)
        for kind in KINDS
    }
    load_before = load_average()
    medians: dict[str, list[float]] = {kind: [] for kind in KINDS}
    step_times(
        model, optimizer, batches, None, 20, CLOCKS[args.clock]
    )  # warm-up: oneDNN primitives, allocator
    for _ in range(args.rounds):
        for kind in KINDS:
            medians[kind].append(
                statistics.median(
                    step_times(model, optimizer, batches, distorters[kind], args.steps, CLOCKS[args.clock])
                )
            )
    base = statistics.median(medians["none"])
    result = {
        "what": "cnn recipe training step (batch 128, channels_last, fused SGD) with each distortion kind",
        "step_ms": {kind: round(1000 * statistics.median(m), 3) for kind, m in medians.items()},
        "ratio_to_none": {kind: round(statistics.median(m) / base, 3) for kind, m in medians.items()},
        # the ratio within each round, to show the spread that the shared machine adds
        "ratio_per_round": {
            kind: [round(a / b, 3) for a, b in zip(m, medians["none"], strict=True)]
            for kind, m in medians.items()
        },
        "clock": args.clock,
        "torch_threads": torch.get_num_threads(),
        "target_ratio": TARGET_RATIO,
        "augment_defaults": AugmentConfig().__dict__ | {"kind": "each"},
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine(flops_per_cycle=32),
    }
    write_json(args.out, result)
    print(
        f"{'kind':8s} {'ms/step':>8s} {'ratio':>6s}  (target <= {TARGET_RATIO}; load {load_before} -> {load_average()})"
    )
    for kind in KINDS:
        ok = "ok" if result["ratio_to_none"][kind] <= TARGET_RATIO else "OVER"
        print(f"{kind:8s} {result['step_ms'][kind]:8.2f} {result['ratio_to_none'][kind]:6.3f}  {ok}")


if __name__ == "__main__":
    main()
