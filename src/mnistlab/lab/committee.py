"""`mnistlab lab committee`: what combining members buys, where they agree, and what none of them gets.

Trains one committee (an ordinary committee run folder, ``committee/`` inside the experiment's folder), then:

- validation and test accuracy of the committee of the first k members, k = 1..N. The order of adding
  members is their index, fixed before anything is scored; nothing is chosen from these curves;
- the members' error overlap: how many test images members i and j both get wrong (the diagonal: each
  member's own errors). Low overlap is what averaging can fix;
- the test digits the whole committee gets wrong, with every member's vote.

Each member's and the committee's test accuracy is scored once by the training itself (summary.json); this
report scores the members once more on validation and test to draw the curves, choosing nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from mnistlab.config import TrainConfig
from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_json
from mnistlab.inference import member_log_probs
from mnistlab.lab.common import LabOptions, load_splits, open_out_dir, write_config
from mnistlab.models import Committee
from mnistlab.recipes import COMMITTEE_MODEL, committee_recipe
from mnistlab.runs import Run
from mnistlab.training.committee import train_committee
from mnistlab.training.progress import Reporter

GALLERY_SIZE = 24


def settings(quick: bool) -> dict:
    return {
        "model": "cnn" if quick else COMMITTEE_MODEL,
        "members": 3 if quick else 5,
        "train_subset": 6000 if quick else None,  # None = all 55,000 training images
        "max_epochs": 1 if quick else 3,  # min(the long recipe's epochs, this): a lecture-sized budget
    }


def committee_config(s: dict, options: LabOptions, out) -> TrainConfig:
    config = committee_recipe(s["model"], s["members"])
    config.epochs = min(config.epochs, s["max_epochs"])
    config.data.train_subset = s["train_subset"]
    config.seed, config.threads, config.quiet, config.progress = options.seed, options.threads, True, False
    config.out = str(out)
    return config


def run(options: LabOptions) -> Report:
    out = open_out_dir("committee", options)
    s = settings(options.quick)
    config = committee_config(s, options, out / "committee")
    write_config(out, "committee", options, s | {"recipe": config.to_dict()})
    committee = train_committee(config, reporter=Reporter(quiet=True))
    result = analyse(committee)
    write_json(out / "results.json", {k: v for k, v in result.items() if k != "gallery"})
    report = _report(out, committee, result, s, options)
    report.write(out)
    return report


def analyse(run: Run) -> dict:
    """Accuracy against committee size, the error-overlap matrix and the committee's test mistakes."""
    model = run.model
    if not isinstance(model, Committee):
        raise TypeError("analyse needs a committee run")
    member_config = TrainConfig.from_dict(run.config.to_dict() | {"members": 1})
    member_config.data.split_seed = run.summary["split_seed"]
    splits = load_splits(member_config)  # the members' validation split and preprocessing
    named = {"val": splits.val, "test": splits.test}
    log_probs = {  # (M, N, 10) per split: every member scored once
        name: member_log_probs(model, split.images, run.config.eval_batch_size).cpu()
        for name, split in named.items()
        if split is not None
    }
    by_size = {
        name: [accuracy(model.combine(lp[:k]), named[name].labels) for k in range(1, len(lp) + 1)]
        for name, lp in log_probs.items()
    }
    test_log_probs = log_probs["test"]
    labels = splits.test.labels
    wrong = (test_log_probs.argmax(2) != labels).int()  # (M, N)
    committee_wrong = torch.nonzero(model.combine(test_log_probs).argmax(1) != labels).flatten()
    return {
        "order": "member index",
        "accuracy_by_size": by_size,
        "error_overlap": (wrong @ wrong.T).tolist(),  # [i][j]: test images both i and j get wrong
        "committee_test_errors": len(committee_wrong),
        "gallery": [
            {"index": int(i), "true": int(labels[i]), "votes": test_log_probs[:, i].argmax(1).tolist()}
            for i in committee_wrong[:GALLERY_SIZE]
        ],
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).double().mean().item()


def _report(out, run: Run, result: dict, s: dict, options: LabOptions) -> Report:
    report = Report("A committee: members combined")
    report.figure(_size_figure(out, result), "Accuracy of the first k members combined, k = 1..N.")
    report.figure(_overlap_figure(out, result), "Test images two members both get wrong.")
    report.figure(_gallery(out, run, result), "Test digits the whole committee gets wrong, with each vote.")
    n = s["train_subset"] or 55_000
    summary = run.summary
    report.text(
        f"{s['members']} `{s['model']}` members (seeds {options.seed}–{options.seed + s['members'] - 1}), "
        f"{run.config.epochs} epoch(s) on {n:,} images, distortions: {run.config.augment.kind}, combined "
        f"by the {run.config.combine} of their softmax outputs. Test accuracy: members "
        f"{100 * summary['member_test_accuracy']['mean']:.2f} ± {100 * summary['member_test_accuracy']['std']:.2f} %, "
        f"committee {100 * summary['test_accuracy']:.2f} %; {summary['test_errors_shared_by_all_members']} test "
        "images are wrong for every member, and no average of these members can fix those."
        + (" QUICK MODE: a training subset and one epoch." if options.quick else "")
    )
    return report


def _size_figure(out, result: dict):
    fig, (ax,) = plots.new_figure()
    for name, label in (("val", "validation"), ("test", "test")):
        values = result["accuracy_by_size"].get(name)
        if values:
            ax.plot(range(1, len(values) + 1), [100 * v for v in values], "o-", label=label)
    ax.set(
        xlabel="members combined (in index order)", ylabel="accuracy (%)", title="Accuracy vs committee size"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return plots.save_figure(fig, out / "accuracy_by_size.png")


def _overlap_figure(out, result: dict):
    matrix = np.asarray(result["error_overlap"])
    fig, (ax,) = plots.new_figure(size=(5.6, 4.8))
    image = ax.imshow(matrix, cmap="Reds")
    middle = (matrix.min() + matrix.max()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value > middle else "black",
        )
    ticks = range(len(matrix))
    ax.set(xticks=ticks, yticks=ticks, xlabel="member", ylabel="member", title="Shared test errors")
    fig.colorbar(image, ax=ax)
    return plots.save_figure(fig, out / "error_overlap.png")


def _gallery(out, run: Run, result: dict):
    from mnistlab.data import load_dataset

    data = run.config.data
    images = load_dataset(data.dataset, data.data_dir, download=data.download, progress=False).test_images
    rows = result["gallery"]
    captions = [f"true {r['true']}\nvotes {''.join(map(str, r['votes']))}" for r in rows]
    picked = images[[r["index"] for r in rows]] if rows else np.zeros((0, 28, 28))
    title = f"The committee's test mistakes ({len(rows)} of {result['committee_test_errors']:,} shown)"
    fig = plots.image_gallery(picked, captions, title)
    return plots.save_figure(fig, out / "committee_mistakes.png")
