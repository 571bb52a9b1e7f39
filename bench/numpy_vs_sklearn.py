"""Only the NumPy engine's comparison from bench/run.py: the engine, scikit-learn (same hidden sizes) and the
torch mlp recipe, interleaved in one process. Quicker than the whole suite (no pytorch example, no cnn).

    PYTHONPATH=src python bench/numpy_vs_sklearn.py [--seeds 3] [--threads 2] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from competitors import sklearn_mlp
from measure import load_average
from mnistlab.data import load_dataset
from mnistlab.training.numpy_engine import numpy_recipe
from run import SUITES, Seeds, Suite, _jsonable, _subset
from scratch_engine import NumpySeeds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: all cores)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    suite = Suite(**{**asdict(SUITES[args.suite]), "seeds": args.seeds})
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    res: dict = {"suite": suite.name, "threads": threads, "load_before": load_average()}
    data = _subset(load_dataset("mnist", progress=False), suite)
    with threadpool_limits(threads), tempfile.TemporaryDirectory() as tmp:
        numpy_seeds, mlp = NumpySeeds(suite, log), Seeds("mlp", suite, data, Path(tmp), log)
        for _ in range(suite.seeds // 2):
            numpy_seeds.next()
            mlp.next()
        log("sklearn ...")
        hidden = numpy_recipe().model.hidden  # scikit-learn gets the engine's hidden sizes
        res["sklearn"] = sklearn_mlp(data, max_iter=suite.sklearn_max_iter, hidden=hidden)
        numpy = numpy_seeds.finish()
        res["numpy_engine"], res["mlp"] = numpy, mlp.finish(peak_gflops=1.0)
    sk, torch_mlp = res["sklearn"], res["mlp"]
    res["ratios"] = {
        "sklearn_fit_over_numpy_train": sk["fit_seconds"] / numpy["train_seconds_median"],
        "sklearn_fit_over_numpy_fit": sk["fit_seconds"] / numpy["fit_seconds_median"],
        "torch_mlp_train_over_numpy_train": torch_mlp["train_seconds_median"] / numpy["train_seconds_median"],
    }
    res["load_after"] = load_average()
    print(
        f"numpy engine {tuple(numpy['hidden'])}: test {100 * numpy['test_accuracy_mean']:.2f} % "
        f"± {100 * numpy['test_accuracy_std']:.2f}, {numpy['train_seconds_median']:.2f} s median training "
        f"({numpy['fit_seconds_median']:.2f} s with validation), {len(numpy['runs'])} seeds\n"
        f"{sk['name']}: test {100 * sk['test_accuracy']:.2f} %, {sk['fit_seconds']:.2f} s fit "
        f"({sk['iterations']} iterations)\n"
        f"torch mlp recipe: test {100 * torch_mlp['test_accuracy_mean']:.2f} % "
        f"± {100 * torch_mlp['test_accuracy_std']:.2f}, {torch_mlp['train_seconds_median']:.2f} s median\n"
        f"ratios: sklearn / numpy {res['ratios']['sklearn_fit_over_numpy_train']:.2f}x "
        f"({res['ratios']['sklearn_fit_over_numpy_fit']:.2f}x with validation), "
        f"torch mlp / numpy {res['ratios']['torch_mlp_train_over_numpy_train']:.2f}x; "
        f"per-seed numpy seconds {[r['train_seconds'] for r in numpy['runs']]}, "
        f"torch {[r['train_seconds'] for r in torch_mlp['runs']]}; load {res['load_before']} -> {res['load_after']}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(_jsonable(res), indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
