"""Data-parallel training on CPU: throughput of 1 rank x T threads against N ranks x T/N threads, and accuracy.

    python bench/distributed.py steps --steps 150 --repeats 5           # training steps only, in one script
    python bench/distributed.py throughput --steps 200 --repeats 3      # default cnn, batch 128 (global)
    python bench/distributed.py accuracy --seeds 0 1 2                  # default cnn recipe, 1 vs 2 ranks

Each configuration is a real ``mnistlab train`` run in fresh processes (torchrun for N > 1); throughput is
images per second over the training part of epoch 1, read from the run's metrics.jsonl (``steps`` x global
batch / ``seconds``; the epoch's one gather of the shuffled split is included). Runs alternate between the
configurations so that a change in machine load hits both; the median of the repeats is reported.

``steps`` times only the optimiser steps (forward, backward with DDP's all-reduce, SGD update) of the default
cnn on random inputs, in spawned processes, and also reports CPU seconds per 1,000 images summed over all
processes: on a shared machine, wall-clock rates swing with the other load, CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def mnistlab_train(nproc: int, threads: int, args: list[str], out: Path) -> dict:
    """Run one training and return (metrics of epoch 1 .. n, summary)."""
    train = ["train", "--threads", str(threads), "--out", str(out), "-q", *args]
    if nproc == 1:
        cmd = [sys.executable, "-m", "mnistlab", *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        cmd += ["-m", "mnistlab", *train]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(threads)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = json.loads((out / "summary.json").read_text())
    return {"metrics": metrics, "summary": summary}


def throughput(args: argparse.Namespace) -> None:
    layouts = [(1, args.cores), (args.cores, 1)]  # (ranks, threads per rank)
    rates: dict[tuple[int, int], list[float]] = {layout: [] for layout in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for nproc, threads in layouts:
                out = Path(tmp) / f"r{repeat}-{nproc}x{threads}"
                result = mnistlab_train(
                    nproc,
                    threads,
                    ["--epochs", "1", "--max-steps", str(args.steps), "--val-size", "5000"],
                    out,
                )
                epoch = result["metrics"][0]
                rate = epoch["steps"] * 128 / epoch["seconds"]
                rates[(nproc, threads)].append(rate)
                print(f"{nproc} rank(s) x {threads} thread(s): {rate:7.0f} images/s", flush=True)
    for (nproc, threads), values in rates.items():
        print(
            f"median {nproc} rank(s) x {threads} thread(s): {statistics.median(values):.0f} images/s "
            f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
        )


def accuracy(args: argparse.Namespace) -> None:
    results: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for nproc, threads in ((1, args.cores), (2, max(1, args.cores // 2))):
                out = Path(tmp) / f"s{seed}-{nproc}"
                summary = mnistlab_train(nproc, threads, ["--seed", str(seed)], out)["summary"]
                results[nproc].append(summary["test_accuracy"])
                print(
                    f"seed {seed} ranks {nproc}: test accuracy {100 * summary['test_accuracy']:.2f} %, "
                    f"best val {100 * summary['best_val_accuracy']:.2f} %, {summary['train_seconds']:.0f} s",
                    flush=True,
                )
    for nproc, values in results.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{nproc} rank(s): mean test accuracy {100 * statistics.mean(values):.2f} % "
            f"(sd {100 * spread:.2f}, n={len(values)})"
        )


def _step_worker(rank: int, world: int, threads: int, steps: int, port: int, batch: int, queue) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from mnistlab.models import build_model

    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build_model("cnn")
    step_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch // world, 1, 28, 28)  # the per-rank share of the global batch
    y = torch.randint(0, 10, (batch // world,))

    def step() -> None:
        loss = F.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):  # warm-up: allocator, DDP buckets
        step()
    if world > 1:
        dist.barrier()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if world > 1:
        dist.barrier()
    queue.put((rank, time.perf_counter() - wall, time.process_time() - cpu))
    if world > 1:
        dist.destroy_process_group()


def timed_steps(world: int, threads: int, steps: int, batch: int) -> tuple[float, float]:
    """(images per second, CPU seconds per 1,000 images over all processes) for one layout."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        ctx.Process(target=_step_worker, args=(r, world, threads, steps, port, batch, queue))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    images = steps * batch
    return images / wall, 1000 * cpu / images


def steps_benchmark(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(SRC))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    layouts = [(1, args.cores), (args.cores, 1)]
    rates: dict[tuple[int, int], list[tuple[float, float]]] = {layout: [] for layout in layouts}
    for _ in range(args.repeats):
        for world, threads in layouts:
            rate, cpu = timed_steps(world, threads, args.steps, 128)
            rates[(world, threads)].append((rate, cpu))
            print(
                f"{world} rank(s) x {threads} thread(s): {rate:7.0f} images/s, {cpu:.3f} CPU s / 1000 images"
            )
    for (world, threads), values in rates.items():
        print(
            f"median {world} rank(s) x {threads} thread(s): {statistics.median(v[0] for v in values):.0f} "
            f"images/s, {statistics.median(v[1] for v in values):.3f} CPU s per 1000 images "
            f"(rates: {', '.join(f'{v[0]:.0f}' for v in values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--steps", type=int, default=200, help="optimiser steps per run (global batch 128)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--cores", type=int, default=2, help="threads of the 1-rank run = ranks of the other")
    st = sub.add_parser("steps")
    st.add_argument("--steps", type=int, default=150, help="timed optimiser steps (global batch 128)")
    st.add_argument("--repeats", type=int, default=5)
    st.add_argument("--cores", type=int, default=2)
    a = sub.add_parser("accuracy")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    {"throughput": throughput, "accuracy": accuracy, "steps": steps_benchmark}[args.what](args)


if __name__ == "__main__":
    main()
