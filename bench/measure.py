"""Measuring helpers for bench/run.py and bench/gpu.py: the machine, its FP32 peak, images trained, inference
latency/throughput, and writing a result file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mnistlab.fileio import atomic_write


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none, e.g. macOS)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            break  # end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine(flops_per_cycle: int) -> dict:
    """CPU model, cores, clock and the FP32 peak we assume: cores x clock x FLOPs per cycle per core.

    ``flops_per_cycle`` is per core: Zen 3 (and other AVX2 + FMA cores with two 256-bit FMA pipes) does
    2 pipes x 8 fp32 lanes x 2 (multiply + add) = 32 FP32 FLOPs per cycle.
    """
    info = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    mhz = float(info.get("cpu MHz", "0") or 0)
    flags = set(info.get("flags", "").split())
    return {
        "cpu_model": info.get("model name", platform.processor() or platform.machine()),
        "cpu_family_model": f"family {info.get('cpu family', '?')} model {info.get('model', '?')}",
        "simd": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}),
        "cores": cores,
        "clock_mhz": mhz,
        "flops_per_cycle_per_core": flops_per_cycle,
        "peak_fp32_gflops": round(cores * mhz * 1e6 * flops_per_cycle / 1e9, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def percentiles_ms(fn: Callable[[], object], repeats: int, warmup: int = 10) -> dict:
    """p50 and p99 wall time of ``fn()`` in milliseconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 4),
        "p99_ms": round(times[min(len(times) - 1, round(0.99 * (len(times) - 1)))], 4),
        "repeats": repeats,
    }


def images_per_second(fn: Callable[[], object], images: int, repeats: int) -> float:
    """Best-of-``repeats`` throughput of ``fn()``, which processes ``images`` images (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return images / best


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: how busy the machine was (other processes share the cores)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


MNIST_TRAIN_IMAGES = 60_000  # MNIST's training split, before the validation images are held out


def images_trained(run) -> tuple[int, int]:
    """(images in the run's training split, images trained on over all epochs) for a finished mnistlab Run.

    An epoch trains on every image once; a run stopped early by ``max_steps`` or ``dry_run`` counts its steps.
    """
    cfg = run.config
    n_train = cfg.data.train_subset or MNIST_TRAIN_IMAGES - cfg.data.val_size
    return n_train, sum(min(h["steps"] * cfg.batch_size, n_train) for h in run.history)


def write_json(path: Path, result: dict) -> None:
    """Write ``result`` as JSON atomically (mnistlab's one writer): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result, indent=2))
