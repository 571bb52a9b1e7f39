"""Training N committee members at once (one grouped network) against one after another: step throughput.

    PYTHONPATH=src python bench/committee_speed.py --model deep-cnn --members 5 --threads 1
    PYTHONPATH=src python bench/committee_speed.py --device cuda --members 5      # on a GPU (bench/gpu.sh)

Both sides train the same N members of ``--model`` at the committee recipe's batch size on real preprocessed
MNIST batches, each member on its own batches, with distortions when ``--augment`` says so (default: the
committee recipe's). **One after another**: every member takes ``--steps`` eager steps
(:func:`mnistlab.training.loop.eager_step`, its own optimiser). **At once**: ``--steps`` grouped steps
(:func:`mnistlab.training.grouped.grouped_step`) of the N-member grouped network. Rounds alternate the two so
that a change in machine load hits both; the figure is the median over rounds of the time per member-step, and
the ratio one-after-another / at-once (> 1: grouping is faster). On CUDA each timed block ends with
``torch.cuda.synchronize()``. ``--out FILE`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import write_json
from mnistlab.data.augment import build_distorter
from mnistlab.models import model_from_config
from mnistlab.models.grouped import GroupedNetwork
from mnistlab.recipes import committee_recipe
from mnistlab.training.grouped import Group, grouped_step
from mnistlab.training.loop import eager_step
from mnistlab.training.optim import build_optimizer
from mnistlab.training.trainer import augment_seed, prepare_data


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="member model (default: the committee recipe's)")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per member per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--augment", default=None, help="none|affine|elastic|both (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(args: argparse.Namespace, device: torch.device):
    config = committee_recipe(args.model, args.members)
    if args.augment:
        config.augment.kind = args.augment
    splits = prepare_data(config, device, progress=False)
    order = torch.Generator().manual_seed(1)
    batches = list(splits.train.batches(config.batch_size, shuffle=True, generator=order))[:64]
    models = []
    for k in range(args.members):
        torch.manual_seed(k)
        models.append(model_from_config(config.model).to(device))
    distorters = [
        build_distorter(config.augment, splits.preprocessor, device, augment_seed(k))
        for k in range(args.members)
    ]
    return config, batches, models, distorters


def distort(distorter, x: torch.Tensor) -> torch.Tensor:
    return x if distorter is None else distorter(x)


def one_after_another(models, optimizers, distorters, batches, steps: int, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for n, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
        model.train()
        for i in range(steps):
            x, y = batches[(i + 7 * n) % len(batches)]
            eager_step(model, optimizer, distort(distorters[n], x), y)
    sync(device)
    return time.perf_counter() - t0


def at_once(group: Group, distorters, batches, steps: int, config, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    group.network.train()
    count = len(distorters)
    for i in range(steps):
        pairs = [batches[(i + 7 * n) % len(batches)] for n in range(count)]
        x = torch.cat([distort(d, xb) for d, (xb, _) in zip(distorters, pairs, strict=True)], dim=1)
        y = torch.stack([yb for _, yb in pairs])
        grouped_step(group, x, y, config)
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config, batches, models, distorters = setup(args, device)
    network = GroupedNetwork(models)
    if config.channels_last:  # both sides as training runs them: in the recipe's memory format
        network = network.to(memory_format=torch.channels_last)
        models = [m.to(memory_format=torch.channels_last) for m in models]
    optimizers = [build_optimizer(m, config.optim) for m in models]
    group = Group(network, build_optimizer(network, config.optim), None, [])  # type: ignore[arg-type]
    one_after_another(models, optimizers, distorters, batches, 2, device)  # warm-up: allocations, kernels
    at_once(group, distorters, batches, 2, config, device)
    member_steps = args.members * args.steps
    sequential, grouped = [], []
    for r in range(args.rounds):
        sequential.append(
            one_after_another(models, optimizers, distorters, batches, args.steps, device) / member_steps
        )
        grouped.append(at_once(group, distorters, batches, args.steps, config, device) / member_steps)
        print(
            f"round {r}: one after another {1e3 * sequential[-1]:.2f} ms, at once {1e3 * grouped[-1]:.2f} ms per member-step"
        )
    seq, grp = statistics.median(sequential), statistics.median(grouped)
    result = {
        "model": config.model.name,
        "members": args.members,
        "batch_size": config.batch_size,
        "augment": config.augment.kind,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "channels_last": config.channels_last,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "ms_per_member_step_one_after_another": 1e3 * seq,
        "ms_per_member_step_at_once": 1e3 * grp,
        "speedup_at_once": seq / grp,
    }
    print(
        f"{args.members} x {config.model.name} (batch {config.batch_size}, augment {config.augment.kind}) on "
        f"{result['device']}, {torch.get_num_threads()} threads: {1e3 * seq:.2f} ms per member-step one after "
        f"another, {1e3 * grp:.2f} ms at once: {seq / grp:.2f}x"
    )
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
