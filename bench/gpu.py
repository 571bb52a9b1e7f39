"""Time-to-99 % of mnistlab's default cnn recipe on a CUDA GPU (run through bench/gpu.sh).

The data lives on the device (``prepare_data`` moves the preprocessed splits there once); the epoch loop never
syncs with the host (loss and accuracy accumulate on the device and are read once at epoch end, which is also
where each epoch's timer stops, so the time is the GPU's, not just the launch queue's). bf16 autocast and
channels_last are on by default, ``torch.compile`` is behind ``--compile`` (its compile time is inside the
first epoch and so inside the reported time).

Training time is ``summary["train_seconds"]``: first batch to last optimiser step, summed over epochs;
per-epoch validation, checkpoint writing and the single test evaluation are excluded. One short untimed
warm-up run first initialises CUDA, cuBLAS and cuDNN so that the timed runs do not pay for it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

import mnistlab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="timed runs (seeds 0..N-1)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time counts)"
    )
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="float32 instead of bf16 autocast")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.sh: torch sees no CUDA device (torch.cuda.is_available() is False)")

    def config(seed: int, out: Path) -> mnistlab.TrainConfig:
        cfg = mnistlab.recipe("cnn")
        cfg.device, cfg.seed, cfg.quiet, cfg.progress, cfg.out = "cuda", seed, True, False, str(out)
        cfg.amp, cfg.channels_last, cfg.compile = args.amp, args.channels_last, args.compile
        cfg.batch_size = args.batch_size or cfg.batch_size
        cfg.optim.lr = args.lr or cfg.optim.lr
        cfg.epochs = args.epochs or cfg.epochs
        return cfg

    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda})")
    with tempfile.TemporaryDirectory(prefix="mnistlab-gpu-") as tmp:
        warm = config(0, Path(tmp) / "warmup")
        warm.epochs, warm.max_steps = 1, 20
        mnistlab.train(warm)
        cfg = config(0, Path(tmp) / "unused")
        print(
            f"recipe: cnn, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.optim.lr:g}, "
            f"amp bf16 {cfg.amp}, channels_last {cfg.channels_last}, compile {cfg.compile}"
        )
        times, accuracies = [], []
        for seed in range(args.seeds):
            run = mnistlab.train(config(seed, Path(tmp) / f"seed{seed}"))
            times.append(run.summary["train_seconds"])
            accuracies.append(run.summary["test_accuracy"])
            print(f"  seed {seed}: {times[-1]:.3f} s training, test accuracy {100 * accuracies[-1]:.2f} %")
    mean = statistics.fmean(accuracies)
    verdict = "reached" if mean >= 0.99 else "NOT reached"
    print(
        f"time-to-99 %: median {statistics.median(times):.3f} s training; mean test accuracy "
        f"{100 * mean:.2f} % over {len(accuracies)} seeds (99 % {verdict})"
    )


if __name__ == "__main__":
    main()
