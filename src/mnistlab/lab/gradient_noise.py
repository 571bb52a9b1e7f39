"""`mnistlab lab gradient-noise`: how well a mini-batch's mean gradient points along the full-batch gradient.

On fixed weights (the initial ones, and the same network after one epoch of training) the NumPy engine
(:mod:`mnistlab.scratch`) computes the full-batch gradient G, the mean over all N training images, and the
mean gradient g_B of many random mini-batches of B images. It reports the cosine similarity of g_B with G
and the relative error |g_B - G| / |G|, against B.

The 1/sqrt(B) rule: g_B is the mean of B per-image gradients, so its error has variance tr(Sigma) / B
(Sigma: covariance of one image's gradient), times (N - B) / (N - 1) because a batch draws without
replacement. The rule is drawn from the measured error at B = 1. If the error is roughly orthogonal to G (it
is, in 235,000 dimensions), cos(g_B, G) ~ 1 / sqrt(1 + r(B)^2), with r(B) the relative error. The noise
scale B_noise = r(1)^2 = tr(Sigma) / |G|^2 is the batch size at which the noise is as large as the signal.
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.evaluation import plots
from mnistlab.evaluation.report import Report, write_csv, write_json
from mnistlab.lab.common import LabOptions, load_splits, open_out_dir, smoke_settings, write_config
from mnistlab.recipes import recipe
from mnistlab.scratch import MLP
from mnistlab.training.numpy_engine import as_arrays, initial_mlp, train_numpy


def settings(quick: bool) -> dict:
    return {
        "hidden": [100, 100],  # the NumPy engine's recipe network
        "train_subset": 10_000 if quick else None,  # N: images of the full-batch gradient; None = all 55,000
        "batch_sizes": [1, 4, 16, 64, 256, 1024, 4096] if quick else [1, 4, 16, 64, 256, 1024, 4096, 16384],
        "repeats": 30 if quick else 100,  # random mini-batches per batch size and weight set
        "train_epochs": 1,  # the "after training" weights: SGD (the engine recipe's lr) for this many epochs
        "lr": 0.05,
        "batch_size": 128,
    }


def flat_gradient(net: MLP, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The mean gradient of the loss over the images (x (B, 784), y (B,)), as one float64 vector (P,)."""
    net.loss_and_gradients(x, y)
    return np.concatenate([g.ravel() for g in net.gradients()]).astype(np.float64)


def full_gradient(net: MLP, x: np.ndarray, y: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """G: the mean gradient over all N images, chunk by chunk (each chunk's mean weighted by its size)."""
    total = np.zeros(sum(p.size for p in net.parameters()))
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        total += flat_gradient(net, x[rows], y[rows]) * len(y[rows])
    return total / len(x)


def batch_gradient_errors(
    net: MLP,
    x: np.ndarray,
    y: np.ndarray,
    full: np.ndarray,
    batch: int,
    repeats: int,
    rng: np.random.Generator,
) -> dict:
    """Cosine with G and relative error |g_B - G| / |G| of ``repeats`` random batches of ``batch`` images."""
    cosines, errors = [], []
    norm = np.linalg.norm(full)
    for _ in range(repeats):
        idx = rng.choice(len(x), size=batch, replace=False)  # one batch: B distinct images
        g = flat_gradient(net, x[idx], y[idx])
        cosines.append(float(g @ full / (np.linalg.norm(g) * norm)))
        errors.append(float(np.linalg.norm(g - full) / norm))
    return {"cosines": cosines, "relative_errors": errors}


def per_image_variance(net: MLP, x: np.ndarray, y: np.ndarray, full: np.ndarray) -> float:
    """tr(Sigma) = mean over the N images of |g_i - G|^2, one single-image gradient at a time (exact)."""
    return float(
        np.mean([np.sum((flat_gradient(net, x[i : i + 1], y[i : i + 1]) - full) ** 2) for i in range(len(x))])
    )


def rule(noise_scale: float, batch: int, n: int) -> float:
    """The 1/sqrt(B) rule for the RMS relative error of g_B, B of N images drawn without replacement.

    ``noise_scale`` = tr(Sigma) / |G|^2; the factor (N - B) / (N - 1) is 0 at B = N (then g_B is G).
    """
    return math.sqrt(noise_scale * (n - batch) / (batch * (n - 1)))


def measure(net: MLP, x: np.ndarray, y: np.ndarray, batch_sizes: list[int], repeats: int, seed: int) -> dict:
    """Per batch size: quartiles of cosine and relative error, their RMS, and the rule's prediction."""
    full = full_gradient(net, x, y)
    noise_scale = per_image_variance(net, x, y, full) / float(full @ full)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for batch in batch_sizes:
        m = batch_gradient_errors(net, x, y, full, batch, repeats, rng)
        predicted = rule(noise_scale, batch, len(x))
        rows.append(
            {
                "batch_size": batch,
                "cosine": np.percentile(m["cosines"], [25, 50, 75]).tolist(),
                "relative_error": np.percentile(m["relative_errors"], [25, 50, 75]).tolist(),
                "rms_relative_error": float(np.sqrt(np.mean(np.square(m["relative_errors"])))),
                "rule_relative_error": predicted,
                "rule_cosine": 1 / math.sqrt(1 + predicted**2),
            }
        )
    return {"noise_scale": noise_scale, "gradient_norm": float(np.linalg.norm(full)), "rows": rows}


def weight_sets(s: dict, seed: int, splits) -> dict[str, MLP]:
    """The fixed weights: torch's initialisation for the seed, and that network after a little SGD training."""
    cfg = recipe("mlp")
    cfg.model.hidden, cfg.model.dropout, cfg.seed = tuple(s["hidden"]), 0.0, seed
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.schedule = "sgd", s["lr"], "constant"
    cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.weight_decay = 0.9, True, 0.0
    cfg.batch_size, cfg.epochs = s["batch_size"], s["train_epochs"]
    return {"at initialisation": initial_mlp(cfg), "after training": train_numpy(cfg, splits).net}


def run(options: LabOptions) -> Report:
    out = open_out_dir("gradient-noise", options)
    s = smoke_settings(settings(options.quick))
    write_config(out, "gradient-noise", options, s)
    cfg = recipe("mlp")
    cfg.seed, cfg.data.train_subset = options.seed, s["train_subset"]
    splits = load_splits(cfg)
    x, y = as_arrays(splits.train)
    results = {}
    val_x, val_y = as_arrays(splits.val)
    for name, net in weight_sets(s, options.seed, splits).items():
        accuracy = float((net.predict_logits(val_x).argmax(1) == val_y).mean())
        results[name] = {"val_accuracy": accuracy} | measure(
            net, x, y, s["batch_sizes"], s["repeats"], options.seed
        )
    write_json(out / "results.json", results)
    write_csv(
        out / "results.csv",
        [
            {
                "weights": name,
                "batch_size": row["batch_size"],
                "median_cosine": row["cosine"][1],
                "median_relative_error": row["relative_error"][1],
                "rms_relative_error": row["rms_relative_error"],
                "rule_relative_error": row["rule_relative_error"],
            }
            for name, r in results.items()
            for row in r["rows"]
        ],
    )
    return _report(out, results, s, len(x))


def _report(out, results: dict, s: dict, n: int) -> Report:
    report = Report("The mean gradient of a mini-batch, against the full-batch gradient")
    report.figure(
        _figure(out, results, n),
        "Relative error |g_B − G| / |G| (log-log; dots: RMS over the random batches) and cosine similarity of g_B "
        "with G (dots: median) against the batch size B; bars: quartiles of single batches; lines: the 1/√B rule "
        "with tr(Σ) from every single-image gradient.",
    )
    report.text(
        f"The MLP {s['hidden']} on N = {n:,} training images. G is the mean gradient over all N; g_B the mean "
        f"gradient of B images drawn at random ({s['repeats']} batches per B). Two fixed sets of weights: "
        f"torch's initialisation and the same network after {s['train_epochs']} epoch of SGD. Computed with the "
        "NumPy engine (mnistlab.scratch), whose gradients equal torch's."
    )
    for name, r in results.items():
        report.text(
            f"{name} (validation accuracy {100 * r['val_accuracy']:.1f} %): noise scale tr(Σ)/|G|² = "
            f"{r['noise_scale']:,.0f} images, the batch size at which the noise of g_B is as large as G itself."
        )
    report.text(
        "The error of g_B falls only like 1/√B while a step's cost grows like B: 4× the images per step halve the "
        "noise. Well below the noise scale a step is mostly noise, but an epoch makes N/B of them and their noise "
        "averages out; well above it, more images per step barely improve the direction and only cut the number "
        "of updates per epoch. The noise scale grows as the network learns, so a batch that is large at the "
        "start is small later."
    )
    report.table(
        [
            "weights",
            "B",
            "cosine (median)",
            "rule",
            "relative error (RMS)",
            "rule",
            "relative error (median)",
        ],
        [
            [
                name,
                f"{row['batch_size']:,}",
                f"{row['cosine'][1]:.3f}",
                f"{row['rule_cosine']:.3f}",
                f"{row['rms_relative_error']:.3f}",
                f"{row['rule_relative_error']:.3f}",
                f"{row['relative_error'][1]:.3f}",
            ]
            for name, r in results.items()
            for row in r["rows"]
        ],
    )
    report.write(out)
    return report


def _figure(out, results: dict, n: int):
    fig, (ax_err, ax_cos) = plots.new_figure(2)
    for name, r in results.items():
        rows = r["rows"]
        b = np.array([row["batch_size"] for row in rows])
        err, cos = (
            np.array([row["relative_error"] for row in rows]),
            np.array([row["cosine"] for row in rows]),
        )
        fine = np.unique(np.geomspace(1, b.max(), 200).round().astype(int))
        rule_err = np.array([rule(r["noise_scale"], int(bb), n) for bb in fine])
        (line,) = ax_err.plot(fine, rule_err, "-", alpha=0.7, label=f"{name}: 1/√B rule")
        colour = line.get_color()
        ax_err.plot(b, [row["rms_relative_error"] for row in rows], "o", color=colour, label=f"{name}: RMS")
        ax_err.vlines(b, err[:, 0], err[:, 2], color=colour, lw=3, alpha=0.35)
        ax_cos.plot(fine, 1 / np.sqrt(1 + rule_err**2), "-", color=colour, alpha=0.7, label=f"{name}: rule")
        ax_cos.plot(b, cos[:, 1], "o", color=colour, label=f"{name}: median")
        ax_cos.vlines(b, cos[:, 0], cos[:, 2], color=colour, lw=3, alpha=0.35)
    ax_err.axhline(1.0, color="k", ls=":", lw=1, label="noise as large as the signal")
    ax_err.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B (images, log scale)",
        ylabel="|g_B − G| / |G| (log scale)",
        title="Error of the mini-batch gradient (bars: quartiles)",
    )
    ax_cos.set(
        xscale="log",
        xlabel="batch size B (images, log scale)",
        ylabel="cosine(g_B, G)",
        title="Its direction: cosine with G (bars: quartiles)",
        ylim=(0, 1.02),
    )
    for ax in (ax_err, ax_cos):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return plots.save_figure(fig, out / "gradient_noise.png")
