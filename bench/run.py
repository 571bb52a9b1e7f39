"""Side-by-side benchmark: mnistlab's recipes against the PyTorch example and scikit-learn, in one process.

    PYTHONPATH=src python bench/run.py --suite cpu   [--seeds 5] [--out bench/results/cpu.json]
    PYTHONPATH=src python bench/run.py --suite smoke  # everything on a tiny budget, < 20 s (tests use it)

It measures, on the same machine and in the same run:
  (a) the pytorch/examples mnist recipe: time to >= 99 % test accuracy (bench/competitors.py);
  (b) scikit-learn's MLPClassifier((100, 100), adam): fit time and test accuracy;
  (c) mnistlab's cnn and mlp recipes through ``mnistlab.train`` (the code path users get): test accuracy
      mean +- std over seeds, median training time (``summary["train_seconds"]``: first batch to last
      optimiser step of every epoch, data already loaded, validation/test scoring excluded);
  (d) the NumPy engine (mnistlab.scratch) on its own recipe, timed the same way, against scikit-learn's
      MLPClassifier with the same hidden sizes (bench/scratch_engine.py);
the cnn seeds are interleaved with the example's epochs, the mlp and NumPy seeds with scikit-learn's fit;
plus training throughput against the FP32 peak, inference latency and throughput, and data loading time.
It writes a JSON result and prints Markdown tables with the targets and whether each is met.

OpenMP's wait policy is left as the environment has it (the report records it), because that is what
`mnistlab train` gets. On idle cores the default (spin, then sleep) is the fast one: with
OMP_WAIT_POLICY=PASSIVE every small parallel region pays a thread wake-up, which made one cnn epoch 16.1 s
instead of 10.7 s on the 2-core box. On cores shared with other busy processes, spinning threads steal time
from the working ones (~4x slower), and PASSIVE is the better choice: set it in the environment for such runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, however the script is started

from threadpoolctl import threadpool_limits

import mnistlab
from competitors import SKLEARN_HIDDEN, Arrays, pytorch_example, sklearn_mlp
from data_load import load_timings
from measure import images_per_second, images_trained, load_average, machine, percentiles_ms, write_json
from mnistlab.data import load_dataset
from mnistlab.models import flops_per_image
from mnistlab.training.environment import git_commit
from scratch_engine import NumpySeeds


@dataclass(frozen=True)
class Suite:
    name: str
    seeds: int  # mnistlab runs per recipe
    train_subset: int | None  # training images for every contender; None = all
    test_subset: int | None  # test images for the competitors' scoring; None = all 10,000
    val_size: int | None  # mnistlab validation split; None = the recipe's
    max_steps: int | None  # optimiser steps per epoch; None = whole epochs
    example_max_epochs: int  # the pytorch example stops at 99 % or after this many epochs
    sklearn_max_iter: int
    latency_repeats: int
    load_repeats: int


SUITES = {
    # The 6-epoch cap bounds the run; the original reaches 99 % after its 4th epoch on this machine kind.
    "cpu": Suite("cpu", 5, None, None, None, None, 6, 200, 500, 3),
    "smoke": Suite("smoke", 1, 2000, 1000, 500, 5, 1, 2, 20, 1),
}

TARGETS = {
    "cnn_accuracy": 0.990,  # mean test accuracy of the default recipe
    "cnn_speedup": 25.0,  # pytorch-example time-to-99 / cnn median training time
    "mlp_accuracy": 0.980,
    "mlp_speedup": 5.0,  # sklearn fit time / mlp median training time
    "numpy_accuracy": 0.980,  # the NumPy engine's mean test accuracy
    "numpy_speedup": 1.0,  # sklearn fit time (same hidden sizes) / NumPy engine median training time
    "load_cold_s": 1.0,
    "load_warm_s": 0.1,
    "cnn_latency_p50_ms": 1.0,
}


# ---- the contenders ----------------------------------------------------------------------------------------
def train_seed(name: str, seed: int, suite: Suite, data: Arrays, workdir: Path) -> tuple[dict, mnistlab.Run]:
    """Train mnistlab's ``name`` recipe once, through mnistlab.train (the code path users get)."""
    cfg = mnistlab.recipe(name)
    cfg.seed, cfg.quiet, cfg.progress = seed, True, False
    cfg.out = str(workdir / f"{name}-seed{seed}")
    if suite.train_subset is not None:
        cfg.data.train_subset = suite.train_subset
    if suite.val_size is not None:
        cfg.data.val_size = suite.val_size
    if suite.max_steps is not None:
        # Smoke: dry_run trains max_steps batches, scores a slice of validation and skips the 10,000-image
        # test pass; we score the (subset) test images ourselves so the row still has an accuracy.
        cfg.dry_run, cfg.dry_run_batches = True, suite.max_steps
    run = mnistlab.train(cfg)
    n_train, images = images_trained(run)
    test_accuracy = run.summary.get("test_accuracy")
    if test_accuracy is None:
        predicted = run.predict(torch.from_numpy(data.test_images)).argmax(1).numpy()
        test_accuracy = float((predicted == data.test_labels).mean())
    record = {
        "seed": seed,
        "test_accuracy": test_accuracy,
        "best_val_accuracy": run.summary["best_val_accuracy"],
        "train_seconds": run.summary["train_seconds"],
        "epochs": run.summary["epochs_run"],
        "train_images": n_train,
        "images": images,  # images trained on, all epochs
    }
    return record, run


def summarise(name: str, runs: list[dict], first: mnistlab.Run, peak_gflops: float) -> dict:
    """Accuracy mean +- std over the seeds, median training time, throughput against the FP32 peak."""
    accuracies = [r["test_accuracy"] for r in runs]
    seconds = [r["train_seconds"] for r in runs]
    flops = 3 * flops_per_image(first.model)
    throughput = sum(r["images"] for r in runs) / sum(seconds)
    return {
        "name": f"mnistlab {name} recipe",
        "config": first.config.to_dict(),
        "runs": runs,
        "test_accuracy_mean": statistics.fmean(accuracies),
        "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "train_seconds_median": statistics.median(seconds),
        "images_per_second": throughput,
        "flops_per_train_image": flops,
        "percent_of_peak": 100 * throughput * flops / (peak_gflops * 1e9),
        "run": first,
    }


class Seeds:
    """mnistlab's runs of one recipe, trained one seed at a time whenever the harness calls :meth:`next`."""

    def __init__(self, name: str, suite: Suite, data: Arrays, workdir: Path, log) -> None:
        self.name, self.suite, self.data, self.workdir, self.log = name, suite, data, workdir, log
        self.runs: list[dict] = []
        self.first: mnistlab.Run | None = None

    def next(self) -> None:
        if len(self.runs) >= self.suite.seeds:
            return
        seed = len(self.runs)
        self.log(f"mnistlab {self.name} seed {seed} ...")
        # mnistlab.train seeds torch's global generator; keep the interleaved contender's random stream intact.
        rng = torch.get_rng_state()
        try:
            record, run = train_seed(self.name, seed, self.suite, self.data, self.workdir)
        finally:
            torch.set_rng_state(rng)
        self.runs.append(record)
        self.first = self.first or run

    def finish(self, peak_gflops: float) -> dict:
        while len(self.runs) < self.suite.seeds:
            self.next()
        assert self.first is not None
        return summarise(self.name, self.runs, self.first, peak_gflops)


def inference(results: dict, data: Arrays, suite: Suite) -> dict:
    """Batch throughput and single-image latency per model, each through the path its users would call."""
    out = {}
    test_u8 = torch.from_numpy(data.test_images)  # (M, 28, 28) uint8
    one_u8 = test_u8[:1]
    for key in ("cnn", "mlp"):
        run = results[key]["run"]
        out[f"mnistlab {key}"] = {
            "path": "Run.predict (preprocessing + forward + softmax)",
            "batch_images_per_second": images_per_second(
                lambda run=run: run.predict(test_u8), len(test_u8), repeats=3
            ),
            **single_image(lambda run=run: run.predict(one_u8), suite.latency_repeats),
        }
    model = results["pytorch_example"]["model"].eval()
    x = test_u8.float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)  # (M, 1, 28, 28)

    @torch.inference_mode()
    def example_batches() -> None:
        for i in range(0, len(x), 1000):  # the example's test batch
            model(x[i : i + 1000])

    out["pytorch example"] = {
        "path": "model(x) on normalised tensors, inference_mode",
        "batch_images_per_second": images_per_second(example_batches, len(x), repeats=3),
        **single_image(torch.inference_mode()(lambda: model(x[:1])), suite.latency_repeats),
    }
    clf = results["sklearn"]["classifier"]
    flat = data.test_images.reshape(len(data.test_images), -1).astype(np.float32) / 255.0
    out["sklearn MLP"] = {
        "path": "predict_proba on pixels / 255",
        "batch_images_per_second": images_per_second(lambda: clf.predict_proba(flat), len(flat), repeats=3),
        **single_image(lambda: clf.predict_proba(flat[:1]), suite.latency_repeats),
    }
    return out


def single_image(fn, repeats: int) -> dict:
    """Latency of one-image calls with all threads, and with one (a tiny input cannot use two cores, and
    waking the second thread for every op costs more than it saves)."""
    threads = torch.get_num_threads()
    result = {"single_image": percentiles_ms(fn, repeats)}
    torch.set_num_threads(1)
    try:
        result["single_image_1_thread"] = percentiles_ms(fn, repeats)
    finally:
        torch.set_num_threads(threads)
    return result


# ---- targets and report ------------------------------------------------------------------------------------
def targets(res: dict) -> list[dict]:
    example_t = res["pytorch_example"]["time_to_99"]
    example_bound = example_t is None  # never reached 99 %: its total time is only a lower bound
    example_t = example_t or res["pytorch_example"]["train_seconds"]
    cnn, mlp = res["cnn"], res["mlp"]
    cnn_speedup = example_t / cnn["train_seconds_median"]
    mlp_speedup = res["sklearn"]["fit_seconds"] / mlp["train_seconds_median"]
    numpy = res["numpy_engine"]
    numpy_speedup = numpy["sklearn_same_hidden"]["fit_seconds"] / numpy["train_seconds_median"]
    load = res["data_loading"]
    cnn_inference = res["inference"]["mnistlab cnn"]
    latency = min(cnn_inference["single_image"]["p50_ms"], cnn_inference["single_image_1_thread"]["p50_ms"])
    rows = [
        ("cnn mean test accuracy", cnn["test_accuracy_mean"], ">=", TARGETS["cnn_accuracy"]),
        (
            "cnn speed-up vs pytorch example time-to-99" + (" (lower bound)" if example_bound else ""),
            cnn_speedup,
            ">=",
            TARGETS["cnn_speedup"],
        ),
        ("mlp mean test accuracy", mlp["test_accuracy_mean"], ">=", TARGETS["mlp_accuracy"]),
        ("mlp speed-up vs sklearn fit", mlp_speedup, ">=", TARGETS["mlp_speedup"]),
        ("numpy engine mean test accuracy", numpy["test_accuracy_mean"], ">=", TARGETS["numpy_accuracy"]),
        (
            f"numpy engine speed-up vs sklearn fit, same hidden sizes {tuple(numpy['hidden'])}",
            numpy_speedup,
            ">=",
            TARGETS["numpy_speedup"],
        ),
        ("data load cold (s)", load["cold_s"], "<=", TARGETS["load_cold_s"]),
        ("data load warm (s)", load["warm_s"], "<=", TARGETS["load_warm_s"]),
        (
            "cnn single-image latency p50, best thread count (ms)",
            latency,
            "<=",
            TARGETS["cnn_latency_p50_ms"],
        ),
    ]
    return [
        {"target": name, "measured": value, "op": op, "threshold": limit, "met": bool(value >= limit)}
        if op == ">="
        else {"target": name, "measured": value, "op": op, "threshold": limit, "met": bool(value <= limit)}
        for name, value, op, limit in rows
    ]


def markdown(res: dict) -> str:
    m, ex, sk, cnn, mlp = res["machine"], res["pytorch_example"], res["sklearn"], res["cnn"], res["mlp"]
    pct = lambda a: f"{100 * a:.2f} %"  # noqa: E731
    lines = [
        f"Suite `{res['suite']}`, {res['date']}, commit {res['git_commit'] or '?'}.",
        f"Machine: {m['cpu_model']} ({m['cpu_family_model']}), {m['cores']} cores at {m['clock_mhz']:.0f} MHz, "
        f"torch {m['torch']} with {m['torch_threads']} threads, OMP_WAIT_POLICY={m['omp_wait_policy']}. "
        f"Assumed FP32 peak: {m['cores']} cores x {m['clock_mhz'] / 1000:.3f} GHz x "
        f"{m['flops_per_cycle_per_core']} FLOP/cycle = {m['peak_fp32_gflops']} GFLOP/s.",
        f"Load average (1/5/15 min) before {res['load_before']}, after {res['load_after']}; "
        f"total wall time {res['wall_seconds']:.0f} s.",
        "",
        "| recipe | train images | test accuracy | training time | epochs | images/s | % of FP32 peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    t99 = (
        f"{ex['time_to_99']:.1f} s to 99 %"
        if ex["time_to_99"]
        else f"never 99 % ({ex['train_seconds']:.1f} s)"
    )
    example_pct = 100 * ex["images_per_second"] * ex["flops_per_train_image"] / (m["peak_fp32_gflops"] * 1e9)
    lines.append(
        f"| pytorch/examples mnist (Adadelta, bs 64) | {ex['train_images']:,} | {pct(ex['final_test_accuracy'])} "
        f"| {t99} | {len(ex['epochs'])} | {ex['images_per_second']:,.0f} | {example_pct:.1f} % |"
    )
    lines.append(
        f"| sklearn MLPClassifier(100, 100) adam | {sk['train_images']:,} | {pct(sk['test_accuracy'])} "
        f"| {sk['fit_seconds']:.1f} s fit ({sk['iterations']} iterations) | | | |"
    )
    for r in (cnn, mlp):
        lines.append(
            f"| {r['name']} ({len(r['runs'])} seeds) | {r['runs'][0]['train_images']:,} "
            f"| {pct(r['test_accuracy_mean'])} ± {100 * r['test_accuracy_std']:.2f} "
            f"| {r['train_seconds_median']:.2f} s median | {r['runs'][0]['epochs']} "
            f"| {r['images_per_second']:,.0f} | {r['percent_of_peak']:.1f} % |"
        )
    lines += numpy_lines(res, pct)
    lines += ["", "| target | measured | required | met |", "|---|---:|---:|---|"]
    for t in res["targets"]:
        value = f"{100 * t['measured']:.2f} %" if "accuracy" in t["target"] else f"{t['measured']:.3g}"
        limit = f"{100 * t['threshold']:.1f} %" if "accuracy" in t["target"] else f"{t['threshold']:g}"
        lines.append(f"| {t['target']} | {value} | {t['op']} {limit} | {'yes' if t['met'] else '**no**'} |")
    threads = m["torch_threads"]
    lines += [
        "",
        f"| model | inference path | batch images/s | 1 image p50 / p99, {threads} threads | "
        "1 image p50 / p99, 1 thread |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in res["inference"].items():
        a, b = r["single_image"], r["single_image_1_thread"]
        lines.append(
            f"| {name} | {r['path']} | {r['batch_images_per_second']:,.0f} "
            f"| {a['p50_ms']:.3f} / {a['p99_ms']:.3f} ms | {b['p50_ms']:.3f} / {b['p99_ms']:.3f} ms |"
        )
    lines += ["", "| data loading (70,000 images) | median | fastest |", "|---|---:|---:|"]
    for label, (median, fastest) in res["data_loading"]["rows"]:
        lines.append(f"| {label} | {1000 * median:.1f} ms | {1000 * fastest:.1f} ms |")
    return "\n".join(lines)


def numpy_lines(res: dict, pct) -> list[str]:
    """The NumPy engine's table row, and its ratios against scikit-learn and the torch mlp recipe."""
    r, mlp = res["numpy_engine"], res["mlp"]
    sk = r["sklearn_same_hidden"]
    lines = [
        f"| {r['name']} ({len(r['runs'])} seeds) | {r['runs'][0]['train_images']:,} "
        f"| {pct(r['test_accuracy_mean'])} ± {100 * r['test_accuracy_std']:.2f} "
        f"| {r['train_seconds_median']:.2f} s median ({r['fit_seconds_median']:.2f} s with validation) "
        f"| {r['runs'][0]['epochs']} | | |",
    ]
    if sk is not res["sklearn"]:
        lines.append(
            f"| {sk['name']} | {sk['train_images']:,} | {pct(sk['test_accuracy'])} "
            f"| {sk['fit_seconds']:.1f} s fit ({sk['iterations']} iterations) | | | |"
        )
    return [
        *lines,
        "",
        f"NumPy engine against {sk['name']} (same hidden sizes, same run): "
        f"{sk['fit_seconds'] / r['train_seconds_median']:.2f}x less training time "
        f"({sk['fit_seconds'] / r['fit_seconds_median']:.2f}x counting its per-epoch validation), "
        f"{100 * (r['test_accuracy_mean'] - sk['test_accuracy']):+.2f} points of test accuracy. "
        f"Against the torch mlp recipe: {mlp['train_seconds_median'] / r['train_seconds_median']:.2f}x "
        f"its training time, {100 * (r['test_accuracy_mean'] - mlp['test_accuracy_mean']):+.2f} points.",
        "",
    ]


def _jsonable(obj):
    """Drop live objects (models, runs, classifiers) from the result before writing JSON."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k not in ("model", "run", "classifier")}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _subset(arrays, suite: Suite) -> Arrays:
    n, m = suite.train_subset, suite.test_subset
    return Arrays(
        arrays.train_images[:n], arrays.train_labels[:n], arrays.test_images[:m], arrays.test_labels[:m]
    )


def run_suite(suite: Suite, threads: int, flops_per_cycle: int, data_dir: str | None) -> dict:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    res: dict = {
        "suite": suite.name,
        "settings": asdict(suite),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_before": load_average(),
        "machine": machine(flops_per_cycle),
    }
    rows = load_timings(data_dir, suite.load_repeats)
    timing = dict(rows)
    res["data_loading"] = {
        "rows": rows,
        "cold_s": timing["cold, fresh cache (decode + write)"][0],  # a first-ever load: decode and cache
        "warm_s": timing["warm (decoded cache)"][0],
    }
    data = _subset(load_dataset("mnist", data_dir, progress=False), suite)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    peak = res["machine"]["peak_fp32_gflops"]
    # Contenders are interleaved, not run one after another: on a shared machine the speed of the cores
    # drifts by tens of percent over minutes, and a ratio of two blocks run minutes apart would measure that
    # drift. One cnn seed runs after each epoch of the pytorch example (outside its timed part), and
    # scikit-learn's fit sits between the mlp seeds.
    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
        cnn, mlp = (Seeds(name, suite, data, Path(tmp), log) for name in ("cnn", "mlp"))
        numpy_seeds = NumpySeeds(suite, log)
        log("pytorch example, interleaved with the cnn seeds ...")
        res["pytorch_example"] = pytorch_example(
            data,
            max_epochs=suite.example_max_epochs,
            max_steps=suite.max_steps,
            between_epochs=lambda _epoch: cnn.next(),
        )
        res["cnn"] = cnn.finish(peak)
        for _ in range(suite.seeds // 2):
            mlp.next()
            numpy_seeds.next()
        log("sklearn ...")
        res["sklearn"] = sklearn_mlp(data, max_iter=suite.sklearn_max_iter)
        res["mlp"] = mlp.finish(peak)
        res["numpy_engine"] = numpy_seeds.finish()
        hidden = tuple(res["numpy_engine"]["hidden"])
        res["numpy_engine"]["sklearn_same_hidden"] = (
            res["sklearn"]
            if hidden == SKLEARN_HIDDEN
            else sklearn_mlp(data, max_iter=suite.sklearn_max_iter, hidden=hidden)
        )
        res["inference"] = inference(res, data, suite)
    res["targets"] = targets(res)
    res["load_after"] = load_average()
    res["wall_seconds"] = round(time.perf_counter() - started, 1)
    return res


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--seeds", type=int, default=None, help="mnistlab runs per recipe (default: suite's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--flops-per-cycle",
        type=int,
        default=32,
        help="FP32 FLOPs per cycle per core (32: AVX2, 2 FMA pipes)",
    )
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: the usual search)")
    parser.add_argument("--out", default=None, help="write the JSON result here (default: print only)")
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.seeds is not None:
        suite = Suite(**{**asdict(suite), "seeds": args.seeds})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with threadpool_limits(args.threads or cores):  # NumPy's BLAS (the engine, scikit-learn): torch's count
        res = run_suite(suite, args.threads or cores, args.flops_per_cycle, args.data_dir)
    report = markdown(res)
    res["markdown"] = report
    print(report)
    if args.out:
        write_json(Path(args.out), _jsonable(res))
    return res


if __name__ == "__main__":
    main()
