"""`mnistlab lab loss`: cross-entropy worked by hand and checked against PyTorch.

Nothing is trained; every number is computed when the experiment runs (no quick/full difference).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import LabOptions, open_out_dir, write_config

# The lecture's two questions (label 0), then pairs that make the same point from other sides.
LECTURE_PAIRS: list[tuple[str, list[float], list[float]]] = [
    ("Q1", [0.1, 0.2, 0.9], [0.5, 2.0, 0.3]),
    ("Q2", [0.5, 2.0, 0.3], [0.1, 0.2, 0.9]),  # the same pair asked the other way round
    ("shift", [1.0, 2.0, 3.0], [11.0, 12.0, 13.0]),  # adding a constant to all logits changes nothing
    ("confident", [4.0, 0.0, 0.0], [1.0, 0.0, 0.0]),  # more softmax mass on the true class: lower loss
    ("wrong-class order", [2.0, 1.0, 0.0], [2.0, 0.0, 1.0]),  # only the true class's probability matters
]
BINARY_CASES = [(1, 0.9), (1, 0.6), (1, 0.5), (1, 0.1), (0, 0.1), (0, 0.9)]  # (label y, predicted P(y=1))


def cross_entropy_by_hand(logits: torch.Tensor, label: int) -> float:
    """-log softmax(logits)[label], with the log-sum-exp shift for stability. logits: (C,)."""
    shifted = logits - logits.max()
    return float(-(shifted[label] - shifted.exp().sum().log()))


def ce_identity(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """CrossEntropyLoss(logits) vs NLLLoss(LogSoftmax(logits)) vs by hand; logits (N, C), labels (N,)."""
    ce = nn.CrossEntropyLoss(reduction="none")(logits, labels)
    nll = nn.NLLLoss(reduction="none")(nn.LogSoftmax(dim=1)(logits), labels)
    hand = torch.tensor([cross_entropy_by_hand(row, int(y)) for row, y in zip(logits, labels, strict=True)])
    return {
        "cross_entropy": ce.tolist(),
        "logsoftmax_nll": nll.tolist(),
        "by_hand": hand.tolist(),
        "max_abs_difference": float(max((ce - nll).abs().max(), (ce.double() - hand.double()).abs().max())),
    }


def compare_pair(a: list[float], b: list[float], label: int = 0) -> dict:
    """Loss of two logit vectors for the same true label, which is higher, and why (computed)."""
    la, lb = torch.tensor(a), torch.tensor(b)
    pa, pb = torch.softmax(la, 0)[label].item(), torch.softmax(lb, 0)[label].item()
    loss_a = F.cross_entropy(la[None], torch.tensor([label])).item()
    loss_b = F.cross_entropy(lb[None], torch.tensor([label])).item()
    if math.isclose(loss_a, loss_b, rel_tol=1e-6, abs_tol=1e-9):
        higher, why = (
            "equal",
            (
                f"both put the same softmax mass on class {label} (p = {pa:.4f}); the loss depends only on that "
                "probability, not on the logits themselves"
            ),
        )
    else:
        higher = "a" if loss_a > loss_b else "b"
        lo, hi = (pa, pb) if higher == "a" else (pb, pa)
        why = (
            f"{higher} puts less softmax mass on the true class {label} (p = {lo:.4f} vs {hi:.4f}); "
            f"the loss is -log p of the true class, so less mass means a higher loss"
        )
        logit_hi, logit_lo = (a[label], b[label]) if higher == "a" else (b[label], a[label])
        if logit_hi > logit_lo:
            why += (
                f", even though its own logit for class {label} is larger ({logit_hi:g} > {logit_lo:g}): "
                "the softmax compares it with the other logits"
            )
    return {
        "label": label,
        "a": a,
        "b": b,
        "p_true_a": pa,
        "p_true_b": pb,
        "loss_a": loss_a,
        "loss_b": loss_b,
        "higher": higher,
        "why": why,
    }


def binary_cross_entropy_cases() -> list[dict]:
    rows = []
    for y, p in BINARY_CASES:
        by_hand = -(y * math.log(p) + (1 - y) * math.log(1 - p))
        torch_value = F.binary_cross_entropy(torch.tensor([p]), torch.tensor([float(y)])).item()
        rows.append({"label": y, "p_class1": p, "bce_by_hand": by_hand, "bce_torch": torch_value})
    return rows


def run(options: LabOptions) -> Report:
    out = open_out_dir("loss", options)
    write_config(out, "loss", options, {"pairs": LECTURE_PAIRS, "binary_cases": BINARY_CASES})
    pairs = [{"name": name} | compare_pair(a, b) for name, a, b in LECTURE_PAIRS]
    binary = binary_cross_entropy_cases()
    gen = torch.Generator().manual_seed(options.seed)
    logits, labels = torch.randn(8, 10, generator=gen) * 3, torch.randint(0, 10, (8,), generator=gen)
    identity = ce_identity(logits, labels)
    write_csv(out / "pairs.csv", [{k: v for k, v in p.items() if k not in ("a", "b")} for p in pairs])
    write_csv(out / "binary.csv", binary)
    write_json(out / "numbers.json", {"pairs": pairs, "binary": binary, "identity": identity})

    report = Report("Cross-entropy, worked by hand")
    report.figure(
        _neg_log_figure(out), "The loss of one image is −log p, p = probability given to the true class."
    )
    report.figure(
        _pairs_figure(out, pairs[:1] + pairs[2:]), "Softmax probabilities of each logit pair (true class 0)."
    )
    report.text(
        "Cross-entropy looks only at the probability the model gives to the correct class: −log p. It is 0 when "
        "p = 1 and grows without bound as p → 0, so a confident mistake costs far more than an unsure one."
    )
    report.heading("The lecture's questions (true label 0)")
    for p in pairs:
        report.text(
            f"{p['name']}: a = `{p['a']}` → loss {p['loss_a']:.4f}; b = `{p['b']}` → loss {p['loss_b']:.4f}. "
            f"Higher: {p['higher']}. Why: {p['why']}."
        )
    report.heading("Multi-class: CrossEntropyLoss = LogSoftmax + NLLLoss")
    report.text(
        f"On 8 random logit vectors (10 classes) the three computations agree to "
        f"{identity['max_abs_difference']:.2e} (float32 round-off)."
    )
    report.table(
        ["image", "CrossEntropyLoss", "LogSoftmax+NLLLoss", "by hand"],
        [
            [i, f"{c:.6f}", f"{n:.6f}", f"{h:.6f}"]
            for i, (c, n, h) in enumerate(
                zip(identity["cross_entropy"], identity["logsoftmax_nll"], identity["by_hand"], strict=True)
            )
        ],
    )
    report.heading("Binary cross-entropy")
    report.text("BCE = −[y log p + (1 − y) log(1 − p)], p = predicted probability of class 1.")
    report.table(
        ["y", "p", "by hand", "torch"],
        [[r["label"], r["p_class1"], f"{r['bce_by_hand']:.4f}", f"{r['bce_torch']:.4f}"] for r in binary],
    )
    report.write(out)
    return report


def _neg_log_figure(out):
    fig, (ax,) = plots.new_figure()
    p = np.linspace(1e-3, 1.0, 500)
    ax.plot(p, -np.log(p), label="−log(p)")
    for q in (0.9, 0.5, 0.1, 0.01):
        ax.plot([q], [-math.log(q)], "o")
        ax.annotate(
            f"p={q}: {-math.log(q):.2f}", (q, -math.log(q)), textcoords="offset points", xytext=(8, 4)
        )
    ax.set(
        xlabel="p, probability of the true class", ylabel="loss (nats)", title="Cross-entropy of one image"
    )
    ax.set_ylim(0, 7)
    ax.grid(alpha=0.3)
    ax.legend()
    return plots.save_figure(fig, out / "neg_log_p.png")


def _pairs_figure(out, pairs: list[dict]):
    fig, axes = plots.new_figure(len(pairs), size=(3.2, 3.4))
    width = 0.38
    for ax, p in zip(axes, pairs, strict=True):
        x = np.arange(len(p["a"]))
        pa = torch.softmax(torch.tensor(p["a"]), 0).numpy()
        pb = torch.softmax(torch.tensor(p["b"]), 0).numpy()
        ax.bar(x - width / 2, pa, width, label=f"a: loss {p['loss_a']:.2f}")
        ax.bar(x + width / 2, pb, width, label=f"b: loss {p['loss_b']:.2f}")
        ax.set(
            xticks=x, xlabel="class (true = 0)", ylabel="softmax probability", title=p["name"], ylim=(0, 1.15)
        )
        ax.legend(fontsize=8)
    return plots.save_figure(fig, out / "pairs.png")
