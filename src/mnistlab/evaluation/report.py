"""Self-contained reports: one ``report.html`` (figures embedded as base64 PNG) plus ``report.md``.

A :class:`Report` is built from blocks in reading order: figures first, then short text and tables, so that
a learner sees the result before the explanation. :func:`run_report` builds the report of a training run.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mnistlab.evaluation import plots
from mnistlab.evaluation.metrics import classification_report
from mnistlab.fileio import atomic_write, make_dirs

if TYPE_CHECKING:
    from mnistlab.runs import Run

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.5; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.95em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def write_json(path: Path, data: object) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts with the same keys -> CSV, header from the first row's keys."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


@dataclass
class Report:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def figure(self, path: Path, caption: str) -> Report:
        self.blocks.append(("figure", (Path(path), caption)))
        return self

    def text(self, paragraph: str) -> Report:
        """A paragraph; `code` spans are the only markup (rendered in both HTML and Markdown)."""
        self.blocks.append(("text", paragraph))
        return self

    def heading(self, text: str) -> Report:
        self.blocks.append(("heading", text))
        return self

    def table(self, headers: list[str], rows: list[list[object]]) -> Report:
        self.blocks.append(("table", (headers, rows)))
        return self

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write report.html and report.md into ``out_dir``; figure paths are relative to it in the .md."""
        out_dir = Path(out_dir)
        make_dirs(out_dir)
        html_path, md_path = out_dir / "report.html", out_dir / "report.md"
        atomic_write(html_path, self.to_html())
        atomic_write(md_path, self.to_markdown(out_dir))
        return html_path, md_path

    def to_html(self) -> str:
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, content in self.blocks:
            if kind == "figure":
                path, caption = content  # type: ignore[misc]
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(
                    f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{_inline_html(caption)}</figcaption></figure>"
                )
            elif kind == "text":
                parts.append(f"<p>{_inline_html(str(content))}</p>")
            elif kind == "heading":
                parts.append(f"<h2>{html.escape(str(content))}</h2>")
            elif kind == "table":
                headers, rows = content  # type: ignore[misc]
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                    for row in rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def to_markdown(self, out_dir: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, content in self.blocks:
            if kind == "figure":
                path, caption = content  # type: ignore[misc]
                rel = os.path.relpath(path, out_dir)
                lines += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
            elif kind == "text":
                lines += [str(content), ""]
            elif kind == "heading":
                lines += [f"## {content}", ""]
            elif kind == "table":
                headers, rows = content  # type: ignore[misc]
                lines.append("| " + " | ".join(str(h) for h in headers) + " |")
                lines.append("|" + "---|" * len(headers))
                lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
                lines.append("")
        return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _inline_html(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


# ---- the report of a training run ------------------------------------------------------------------------
GALLERY_SIZE = 16  # images per gallery


def run_report(
    run_dir: str | Path, out: str | Path | None = None, data_dir: str | Path | None = None
) -> Path:
    """Build the report of a finished run folder; returns the path of report.html.

    Scores the run's test split with :meth:`Run.predict` on the raw test images (this *reports* the test
    set; nothing is selected on it). Writes into ``out`` (default: ``RUN_DIR/report``): learning_curves.png,
    confusion_matrix.png, mistakes.png, unsure_correct.png, per_class.csv, report.json, report.html/.md.
    """
    from mnistlab.data import load_dataset
    from mnistlab.runs import load_run

    run = load_run(run_dir)
    out_dir = Path(out) if out else Path(run_dir) / "report"
    make_dirs(out_dir)
    cfg = run.config.data
    arrays = load_dataset(cfg.dataset, data_dir or cfg.data_dir, download=cfg.download, progress=False)
    images = arrays.test_images  # uint8 (N, 28, 28)
    labels = torch.from_numpy(arrays.test_labels).long()
    probs = run.predict(torch.from_numpy(images))  # (N, 10)
    confidence, predicted = probs.max(dim=1)
    result = classification_report(predicted, labels, num_classes=probs.shape[1])
    accuracy = (predicted == labels).double().mean().item()

    report = Report(f"Run report: {Path(run_dir).name}")
    _learning_curves(report, run, Path(run_dir), out_dir)
    report.figure(
        plots.save_figure(
            plots.confusion_heatmap(result["confusion_matrix"], "Test confusion matrix"),
            out_dir / "confusion_matrix.png",
        ),
        "Rows: true digit; columns: what the model said. Off-diagonal cells are mistakes.",
    )
    gallery_rows = _galleries(report, out_dir, images, labels, predicted, confidence)
    s = run.summary
    report.text(
        f"Test accuracy {100 * accuracy:.2f} % on {len(labels):,} images "
        f"({int((predicted != labels).sum()):,} mistakes), macro F1 {result['macro_f1']:.4f}. "
        f"{_describe_model(run.config.model.name, s, run.config.model.input_width)} The test set was not used "
        "to choose anything."
    )
    if s.get("kind") == "committee":
        _committee_section(report, s)
    _per_class_section(report, result["per_class"])
    write_csv(out_dir / "per_class.csv", result["per_class"])
    write_json(
        out_dir / "report.json",
        {"run": str(run_dir), "test_accuracy": accuracy, "images": len(labels)} | result | gallery_rows,
    )
    html_path, _ = report.write(out_dir)
    return html_path


def _learning_curves(report: Report, run: Run, run_dir: Path, out_dir: Path) -> None:
    """Loss per step and validation per epoch; a committee's first member stands for its members (each has its
    own folder, members/K, and its own report)."""
    from mnistlab.runs import MEMBERS_DIR, read_metrics, read_steps

    history, steps, whose = run.history, read_steps(run_dir), ""
    if run.summary.get("kind") == "committee" and not (history or steps):
        first = run_dir / MEMBERS_DIR / "0"
        history, steps, whose = read_metrics(first), read_steps(first), " Member 0 of the committee."
    if history or steps:
        fig = plots.learning_curves(history, steps)
        caption = "Training loss at every step and validation at the end of each epoch; accuracy per epoch."
        report.figure(plots.save_figure(fig, out_dir / "learning_curves.png"), caption + whose)


def _galleries(
    report: Report,
    out_dir: Path,
    images: np.ndarray,
    labels: torch.Tensor,
    predicted: torch.Tensor,
    confidence: torch.Tensor,
) -> dict[str, list[dict]]:
    """The most confident mistakes and the least confident right answers, as figures and as rows."""
    wrong = torch.nonzero(predicted != labels).flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:GALLERY_SIZE]
    right = torch.nonzero(predicted == labels).flatten()
    right = right[confidence[right].argsort()][:GALLERY_SIZE]
    galleries = (
        (wrong, "mistakes.png", "Most confident mistakes", "the model was sure and wrong."),
        (right, "unsure_correct.png", "Least confident correct answers", "right, but only just."),
    )
    rows = {}
    for index, name, title, caption in galleries:
        idx = index.tolist()
        captions = [f"true {labels[i]} → {predicted[i]}\np={confidence[i]:.2f}" for i in idx]
        fig = plots.image_gallery(images[idx] if idx else np.zeros((0, 28, 28)), captions, title)
        report.figure(
            plots.save_figure(fig, out_dir / name), f"{title}: {caption} (p = the model's probability)"
        )
        rows[name.removesuffix(".png")] = [
            {
                "index": i,
                "true": int(labels[i]),
                "predicted": int(predicted[i]),
                "probability": float(confidence[i]),
            }
            for i in idx
        ]
    return rows


def _describe_model(name: str, s: dict, input_width: int | None = None) -> str:
    if s.get("kind") == "committee":
        models = " and ".join(f"`{m}`" for m in s.get("member_models") or [name])  # several models in turn
        return (
            f"A committee of {s['members']} {models} members ({s['combine']} of their softmax outputs; "
            "each member's epoch chosen on validation)."
        )
    variant = f" on digits re-scaled to {input_width} px wide" if input_width else ""
    return (
        f"Model `{name}`{variant}, {s.get('epochs_run', '?')} epochs, best epoch by validation "
        f"{s.get('best_epoch', '?')}."
    )


def _member_variant(m: dict, s: dict) -> str:
    """ ", deep-cnn, width 14 px": what sets a member apart besides its seed (nothing in a plain committee)."""
    model = f", {m['model']}" if s.get("member_models") else ""
    if not any(r.get("input_width") for r in s["member_runs"]):
        return model
    return model + (f", width {m['input_width']} px" if m.get("input_width") else ", as written")


def _committee_section(report: Report, s: dict) -> None:
    """Each member beside the committee: validation and test accuracy, and the errors they share."""
    report.heading("The committee and its members")
    rows = [
        [
            f"member {m['member']} (seed {m['seed']}{_member_variant(m, s)})",
            _percent(m["val_accuracy"]),
            _percent(m["test_accuracy"]),
        ]
        for m in s["member_runs"]
    ]
    mv, mt = s.get("member_val_accuracy"), s["member_test_accuracy"]
    rows.append(["members: mean ± std", _mean_std(mv), _mean_std(mt)])
    rows.append(
        [f"committee ({s['combine']})", _percent(s.get("val_accuracy")), _percent(s["test_accuracy"])]
    )
    report.table(["", "validation accuracy", "test accuracy"], rows)
    if s["test_errors"] is None:
        report.text("Test: not scored when the committee was trained (--no-score-test).")
        return
    report.text(
        f"Test errors: the committee makes {s['test_errors']}; {s['test_errors_shared_by_all_members']} "
        f"images are wrong for every member, {s['test_errors_of_any_member']} for at least one."
    )


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f} %"


def _mean_std(agg: dict | None) -> str:
    return "" if agg is None else f"{100 * agg['mean']:.2f} ± {100 * agg['std']:.2f} %"


def _per_class_section(report: Report, per_class: list[dict]) -> None:
    report.heading("Per-class precision, recall and F1")
    report.text(
        "Precision: of the images called digit d, the share that were d. Recall: of the d's, the share found."
    )
    report.table(
        ["digit", "precision", "recall", "F1", "images"],
        [
            [c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"]]
            for c in per_class
        ],
    )
