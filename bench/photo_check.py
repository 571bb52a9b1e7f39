"""Phone photos of paper through `predict`: refusals, accuracy per condition, whole numbers, preparation time.

The photos come from ``bench/paper_photos.py`` (MNIST *test* digits, or any split): N single-digit photos per
condition (gradient, shadow, ruled, noise) and N numbers of 3-5 digits. They are written once into FOLDER
(JPEG, the label in the name) and then read back, so that two versions of mnistlab score the same files:

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE python bench/photo_check.py RUN_DIR FOLDER [--n 100]
    PYTHONPATH=/path/to/old/src python bench/photo_check.py RUN_DIR FOLDER --n 100   # "before", same files

Single digits go through ``prepare`` (what `mnistlab predict` does); a refusal is a photo that ``prepare``
rejected (every photo here has visible ink, see ``paper_photos.py``). Numbers go through ``read_number_in``
(`predict --number`) where the installed mnistlab has it; exact means the whole string is right. The
preparation time is the wall time of ``prepare`` per photo (decode included), p50 and p90, one thread.
Nothing is tuned on these photos.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnistlab.api import load_run
from mnistlab.app.imageprep import prepare
from mnistlab.app.predict import predict_digits
from mnistlab.errors import MnistlabError
from paper_photos import CONDITIONS, NUMBERS, photo_set


def validation_digits(run, arrays) -> tuple[np.ndarray, np.ndarray]:
    """The training images ``run`` held out for validation (its own split: seed and size from its config),
    so that choices made on val photos never see digits the model was trained on."""
    from mnistlab.data import split_train_val

    data = run.config.data
    seed = run.config.seed if data.split_seed is None else data.split_seed
    _, val = split_train_val(arrays.train_images.shape[0], data.val_size, seed)
    return arrays.train_images[val.numpy()], arrays.train_labels[val.numpy()]


def write_photos(run, folder: Path, n: int, split: str, seed: int) -> None:
    """Render the photo set into ``folder`` unless it is there already (a file per photo, label in the name):
    MNIST test digits, or with ``split`` "val" the run's validation digits."""
    if (folder / "done.json").exists():
        return
    from mnistlab.data import load_dataset

    arrays = load_dataset("mnist", progress=False)
    images, labels = (
        (arrays.test_images, arrays.test_labels) if split == "test" else validation_digits(run, arrays)
    )
    folder.mkdir(parents=True, exist_ok=True)
    for condition in (*CONDITIONS, NUMBERS):
        for i, photo in enumerate(photo_set(images, labels, condition, n, seed)):
            kind = "touching" if photo.touching else "broken" if photo.broken else "plain"
            (folder / f"{condition}-{i:04d}-{kind}-{photo.label}.jpg").write_bytes(photo.jpeg)
    (folder / "done.json").write_text(json.dumps({"n": n, "split": split, "seed": seed}))


def check_singles(run, files: list[Path]) -> dict:
    """Refusals, accuracy (refusals count as wrong) and preparation times for single-digit photos."""
    seen, labels, refused, times = [], [], [], []
    for path in files:
        start = time.perf_counter()
        try:
            seen.append(prepare(path.read_bytes(), path.name))
            labels.append(int(path.stem.rsplit("-", 1)[1]))
        except MnistlabError as exc:
            refused.append(str(exc))
        times.append(time.perf_counter() - start)
    right = 0
    if seen:
        right = int((predict_digits(run, np.stack(seen)).argmax(axis=1) == np.array(labels)).sum())
    return {
        "photos": len(files),
        "refused": len(refused),
        "accuracy": right / len(files),
        "prep_ms_p50": 1000 * float(np.median(times)),
        "prep_ms_p90": 1000 * float(np.percentile(times, 90)),
        "first_refusals": refused[:3],
    }


def check_numbers(run, files: list[Path]) -> dict | None:
    """Exact whole-string accuracy for number photos, overall and by kind (plain, touching, broken)."""
    try:
        from mnistlab.app.predict import read_number_in
    except ImportError:
        return None  # this version of mnistlab cannot read numbers
    by_kind: dict[str, list[int]] = {}
    times, wrong = [], []
    for path in files:
        _, _, kind, label = path.stem.split("-")
        start = time.perf_counter()
        try:
            got = "".join(str(d.label) for d in read_number_in(run, path.read_bytes(), path.name))
        except MnistlabError as exc:
            got = f"error: {exc}"
        times.append(time.perf_counter() - start)
        by_kind.setdefault(kind, []).append(int(got == label))
        if got != label:
            wrong.append(f"{path.name}: {got}")
    every = [ok for oks in by_kind.values() for ok in oks]
    return {
        "photos": len(files),
        "exact": float(np.mean(every)),
        "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_kind.items())},
        "read_ms_p50": 1000 * float(np.median(times)),
        "first_wrong": wrong[:8],
    }


def picture(run, folder: Path, out: Path) -> None:
    """One typical photo per condition and a number (top row) and what the model saw (bottom row), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistlab.app.predict import read_number_in

    files = [sorted(folder.glob(f"{c}-*.jpg"))[0] for c in CONDITIONS]
    number = sorted(folder.glob(f"{NUMBERS}-*-touching-*.jpg"))[0]
    fig, axes = plt.subplots(2, 5, figsize=(12, 5.2), gridspec_kw={"height_ratios": [3, 1.2]})
    for ax, path in zip(axes[0], [*files, number], strict=True):
        ax.imshow(plt.imread(path))
        ax.set_title(path.stem.split("-")[0], fontsize=10)
    for ax, path in zip(axes[1, :4], files, strict=True):
        seen = prepare(path.read_bytes(), path.name)
        label = int(predict_digits(run, seen[None]).argmax())
        ax.imshow(seen, cmap="gray")
        ax.set_title(f"model saw: {label}", fontsize=9)
    digits = read_number_in(run, number.read_bytes(), number.name)
    axes[1, 4].imshow(np.hstack([d.input_28x28 for d in digits]), cmap="gray")
    axes[1, 4].set_title(f"model read: {''.join(str(d.label) for d in digits)}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("folder", type=Path, help="where the photos are written once, then read back")
    parser.add_argument("--n", type=int, default=100, help="photos per condition, and numbers")
    parser.add_argument(
        "--split",
        choices=["val", "test"],
        default="test",
        help="MNIST test digits, or the run's validation digits",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--picture", type=Path, help="write typical photos and what the model saw (PNG) and stop"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run_dir)
    write_photos(run, args.folder, args.n, args.split, args.seed)
    if args.picture:
        picture(run, args.folder, args.picture)
        return
    results: dict = {"run": str(args.run_dir), "folder": str(args.folder)}
    for condition in CONDITIONS:
        results[condition] = check_singles(run, sorted(args.folder.glob(f"{condition}-*.jpg")))
        r = results[condition]
        print(
            f"{condition:9s} {r['photos']:4d} photos  refused {r['refused']:3d}  accuracy {100 * r['accuracy']:5.1f} %"
            f"  prepare p50 {r['prep_ms_p50']:5.1f} ms  p90 {r['prep_ms_p90']:5.1f} ms",
            flush=True,
        )
    numbers = check_numbers(run, sorted(args.folder.glob(f"{NUMBERS}-*.jpg")))
    results[NUMBERS] = numbers
    if numbers is None:
        print("numbers   not supported by this version of mnistlab")
    else:
        print(
            f"numbers   {numbers['photos']:4d} photos  exact {100 * numbers['exact']:5.1f} %  {numbers['by_kind']}"
            f"  read p50 {numbers['read_ms_p50']:5.1f} ms"
        )
        for line in numbers["first_wrong"]:
            print(f"    {line}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
