"""Benchmark: loading all 70,000 MNIST images, cold (decode the gzipped IDX) and warm (decoded .npy cache).

Also compares the two ways to draw shuffled mini-batches (batch 128 from 55,000 x 1 x 28 x 28 float32).

    PYTHONPATH=src python bench/data_load.py [--repeats 5] [--data-dir DIR]

Targets on a 2-core machine: cold <= 1 s, warm <= 0.1 s. Times are medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mnistlab.data import load_dataset


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, fastest) seconds; the fastest shows the cost without interference from other processes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def load_timings(data_dir: str | None, repeats: int) -> list[tuple[str, tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)

        def cold_fresh_cache() -> None:  # decode + write the cache into an empty dir each time
            with tempfile.TemporaryDirectory(dir=cache) as fresh:
                load_dataset("mnist", data_dir, cache_dir=Path(fresh), download=False, progress=False)

        rows = [
            ("cold, cache disabled", lambda: load_dataset("mnist", data_dir, cache=False, download=False)),
            ("cold, fresh cache (decode + write)", cold_fresh_cache),
        ]
        timings = [(label, median_seconds(fn, repeats)) for label, fn in rows]
        load_dataset("mnist", data_dir, cache_dir=cache, download=False)  # populate
        warm = median_seconds(
            lambda: load_dataset("mnist", data_dir, cache_dir=cache, download=False), repeats
        )
        return [*timings, ("warm (decoded cache)", warm)]


def batching_timings(repeats: int) -> list[tuple[str, tuple[float, float]]]:
    images, labels = torch.randn(55_000, 1, 28, 28), torch.randint(0, 10, (55_000,))

    def gather_per_batch() -> None:
        order = torch.randperm(len(labels))
        for s in range(0, len(labels), 128):
            idx = order[s : s + 128]
            images.index_select(0, idx), labels.index_select(0, idx)

    def permute_once_then_slice() -> None:
        order = torch.randperm(len(labels))
        x, y = images.index_select(0, order), labels.index_select(0, order)
        for s in range(0, len(labels), 128):
            x[s : s + 128], y[s : s + 128]

    return [
        ("index_select per batch", median_seconds(gather_per_batch, repeats)),
        ("permute whole tensor, then slice (used)", median_seconds(permute_once_then_slice, repeats)),
    ]


def print_table(title: str, rows: list[tuple[str, tuple[float, float]]]) -> None:
    print(f"\n{title}")
    width = max(len(label) for label, _ in rows)
    print(f"  {'':<{width}}  {'median':>8}  {'fastest':>8}")
    for label, (median, fastest) in rows:
        print(f"  {label:<{width}}  {median * 1000:6.1f} ms  {fastest * 1000:5.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is shown")
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: the usual search)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print_table("load all 70,000 MNIST images", load_timings(args.data_dir, args.repeats))
    print_table("one epoch of shuffled batches (55,000 images, batch 128)", batching_timings(args.repeats))


if __name__ == "__main__":
    main()
