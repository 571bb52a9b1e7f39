"""Time-to-99 % of mnistlab's default cnn recipe on a CUDA GPU, beside the pytorch/examples recipe in the same run.

Run it through bench/gpu.sh. What it measures:

- **mnistlab cnn recipe**, one run per seed: ``summary["train_seconds"]``, first batch to last optimiser
  step summed over epochs; per-epoch validation, checkpoint writing and the single test evaluation are
  excluded. The data lives on the device (``prepare_data`` moves the preprocessed splits there once) and the
  epoch loop never syncs with the host (loss and accuracy accumulate on the device and are read once at epoch
  end, which is also where each epoch's timer stops, so the time is the GPU's, not just the launch queue's).
  By default it is the recipe as ``mnistlab train`` runs it on a GPU: float32, channels_last, each step
  replayed as a CUDA graph (``mnistlab.training.graphs``). ``--amp`` adds bf16 autocast, ``--no-cuda-graphs``
  runs eager steps, ``--compile`` uses ``torch.compile`` instead of the hand-captured graph (its compile
  time falls inside the first epoch and so inside the reported time).
- **pytorch/examples recipe** on the same GPU (``bench/competitors.py``, ``device="cuda"``): its epochs until
  the test accuracy after an epoch reaches 99 %, as on the CPU suite. ``--no-example`` skips it.

- **a committee** (``--committee N``, instead of the above): the committee recipe (``recipes.py``) as
  ``mnistlab train --members N`` trains it, timed as wall seconds of the whole ``mnistlab.train`` call (data
  preparation, validation, checkpoints and test scores included): one member alone; the N members one after
  another (``members_at_once=1``, each step a CUDA graph); and the N members at once as one grouped network
  (``members_at_once=N``, eager steps). ``--epochs`` shortens the recipe for a quick look.

One short untimed warm-up run first initialises CUDA, cuBLAS and cuDNN so that the timed runs do not pay for
it. Validation accuracy is printed beside test accuracy: compare variants (``--batch-size``, ``--lr``) on
validation, never on test. ``--out FILE`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, however the script is started

import mnistlab
from competitors import Arrays, pytorch_example
from measure import images_per_second, images_trained, percentiles_ms, write_json
from mnistlab.data import load_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="timed runs (seeds 0..N-1)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time counts)"
    )
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (the recipe trains in float32)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument(
        "--no-cuda-graphs", dest="cuda_graphs", action="store_false", help="eager steps, no CUDA-graph replay"
    )
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms for each new shape"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--no-example", dest="example", action="store_false", help="skip the pytorch example")
    parser.add_argument(
        "--committee",
        type=int,
        default=0,
        help="time a committee of N members of the committee recipe instead",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    # For the CPU smoke test of this script (tests/test_bench_smoke.py): not a benchmark setting.
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def mnistlab_runs(args: argparse.Namespace, tmp: Path, data: Arrays) -> dict:
    def config(seed: int, out: Path) -> mnistlab.TrainConfig:
        cfg = mnistlab.recipe("cnn")
        cfg.device, cfg.seed, cfg.quiet, cfg.progress, cfg.out = args.device, seed, True, False, str(out)
        cfg.amp, cfg.channels_last, cfg.compile = args.amp, args.channels_last, args.compile
        cfg.cuda_graphs = args.cuda_graphs
        cfg.batch_size = args.batch_size or cfg.batch_size
        cfg.optim.lr = args.lr or cfg.optim.lr
        cfg.epochs = args.epochs or cfg.epochs
        cfg.max_steps = args.max_steps
        return cfg

    warm = config(0, tmp / "warmup")
    warm.epochs, warm.max_steps = 1, 20
    mnistlab.train(warm)
    cfg = config(0, tmp / "unused")
    print(
        f"mnistlab cnn recipe: {cfg.epochs} epoch(s), batch {cfg.batch_size}, peak lr {cfg.optim.lr:g}, "
        f"amp bf16 {cfg.amp}, channels_last {cfg.channels_last}, compile {cfg.compile}, "
        f"cuda_graphs {cfg.cuda_graphs and not cfg.compile}, "
        f"cudnn.benchmark {torch.backends.cudnn.benchmark}",
        flush=True,
    )
    runs, run = [], None
    for seed in range(args.seeds):
        run = mnistlab.train(config(seed, tmp / f"seed{seed}"))
        s = run.summary
        _, images = images_trained(run)
        runs.append(
            {
                "seed": seed,
                "train_seconds": s["train_seconds"],
                "epoch_seconds": [h["seconds"] for h in run.history],
                "val_accuracy": s["best_val_accuracy"],
                "test_accuracy": s["test_accuracy"],
                "images_per_second": images / s["train_seconds"] if s["train_seconds"] else None,
            }
        )
        print(
            f"  seed {seed}: {s['train_seconds']:.3f} s training, val {100 * s['best_val_accuracy']:.2f} %, "
            f"test {100 * s['test_accuracy']:.2f} %",
            flush=True,
        )
    times = [r["train_seconds"] for r in runs]
    tests = [r["test_accuracy"] for r in runs]
    vals = [r["val_accuracy"] for r in runs]
    result = {
        "config": cfg.to_dict(),
        "runs": runs,
        "train_seconds_median": statistics.median(times),
        "test_accuracy_mean": statistics.fmean(tests),
        "test_accuracy_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "val_accuracy_mean": statistics.fmean(vals),
    }
    if run is not None:
        result["inference"] = inference(run, data)
    verdict = "reached" if result["test_accuracy_mean"] >= 0.99 else "NOT reached"
    print(
        f"time-to-99 %: median {result['train_seconds_median']:.3f} s training; mean test accuracy "
        f"{100 * result['test_accuracy_mean']:.2f} % ± {100 * result['test_accuracy_std']:.2f} over "
        f"{len(runs)} seeds (99 % {verdict}); mean val accuracy {100 * result['val_accuracy_mean']:.2f} %",
        flush=True,
    )
    return result


def committee_runs(args: argparse.Namespace, tmp: Path) -> dict:
    """Wall seconds of one member, of N members one after another, and of N members at once."""
    from mnistlab.recipes import committee_recipe
    from mnistlab.training.committee import member_config

    def config(members: int, at_once: int, out: Path) -> mnistlab.TrainConfig:
        cfg = committee_recipe(members=max(members, 2))
        cfg.device, cfg.quiet, cfg.progress, cfg.members_at_once = args.device, True, False, at_once
        cfg.epochs = args.epochs or cfg.epochs
        cfg.max_steps = args.max_steps
        if members == 1:
            return member_config(cfg, 0, out.parent / "one-member-committee")
        cfg.members, cfg.out = members, str(out)
        return cfg

    warm = config(2, 2, tmp / "warmup")
    warm.epochs, warm.max_steps = 1, 10
    mnistlab.train(warm)  # untimed: CUDA, cuBLAS, cuDNN, the grouped kernels
    result: dict = {"config": config(args.committee, 1, tmp / "shown").to_dict()}
    for name, members, at_once in (
        ("one_member", 1, 1),
        ("one_after_another", args.committee, 1),
        ("at_once", args.committee, args.committee),
    ):
        t0 = time.perf_counter()
        run = mnistlab.train(config(members, at_once, tmp / name))
        seconds = time.perf_counter() - t0
        s = run.summary
        result[name] = {"wall_seconds": seconds, "test_accuracy": s["test_accuracy"]} | (
            {"member_test_accuracy": s["member_test_accuracy"], "val_accuracy": s["val_accuracy"]}
            if members > 1
            else {"val_accuracy": s["best_val_accuracy"]}
        )
        print(
            f"  {name} ({members} member(s)): {seconds:.1f} s wall, test {100 * s['test_accuracy']:.2f} %",
            flush=True,
        )
    ratio = result["one_after_another"]["wall_seconds"] / result["at_once"]["wall_seconds"]
    result["speedup_at_once"] = ratio
    print(f"committee of {args.committee}: at once {ratio:.2f}x faster than one after another", flush=True)
    return result


def inference(run: mnistlab.Run, data: Arrays) -> dict:
    """Run.predict on the training device: raw uint8 images in, probabilities back on the host (so each call
    ends with a device-to-host copy, which waits for the GPU: the times are complete)."""
    images = data.test_images  # (10000, 28, 28) uint8
    result = {
        "path": "Run.predict (preprocessing + forward + softmax, result copied to the host)",
        "batch_images_per_second": images_per_second(lambda: run.predict(images), len(images), repeats=5),
        "single_image": percentiles_ms(lambda: run.predict(images[:1]), repeats=300),
    }
    single = result["single_image"]
    print(
        f"inference: {result['batch_images_per_second']:,.0f} images/s for the 10,000 test images at once; "
        f"one image p50 {single['p50_ms']:.3f} ms, p99 {single['p99_ms']:.3f} ms",
        flush=True,
    )
    return result


def example_run(args: argparse.Namespace, data: Arrays) -> dict:
    res = pytorch_example(data, max_epochs=14, max_steps=args.max_steps, device=args.device)
    res.pop("model")
    for e in res["epochs"]:
        print(f"  example epoch {e['epoch']}: {e['seconds']:.2f} s, test {100 * e['test_accuracy']:.2f} %")
    reached = f"{res['time_to_99']:.2f} s" if res["time_to_99"] is not None else "not reached"
    print(f"pytorch/examples recipe on the same device: time-to-99 % {reached}", flush=True)
    return res


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.sh: torch sees no CUDA device (torch.cuda.is_available() is False)")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # this process only: a benchmark setting
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    cuda = torch.version.cuda
    print(f"device: {device}; torch {torch.__version__} (CUDA {cuda}); argv {sys.argv[1:]}", flush=True)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": device,
        "torch": torch.__version__,
        "cuda": cuda,
        "argv": sys.argv[1:],
        "host_cpus": os.cpu_count(),
    }
    arrays = load_dataset("mnist", None, download=False, progress=False)  # the package's own copy
    data = Arrays(arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels)
    with tempfile.TemporaryDirectory(prefix="mnistlab-gpu-") as tmp:
        if args.committee:
            result["committee"] = committee_runs(args, Path(tmp))
            if args.out is not None:
                write_json(args.out, result)
            return
        result["mnistlab_cnn"] = mnistlab_runs(args, Path(tmp), data)
    if args.example:
        result["pytorch_example"] = ex = example_run(args, data)
        if ex["time_to_99"]:
            ratio = ex["time_to_99"] / result["mnistlab_cnn"]["train_seconds_median"]
            result["speedup_vs_example"] = ratio
            print(f"speed-up, example time-to-99 % / mnistlab median: {ratio:.1f}x", flush=True)
    if args.out is not None:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
