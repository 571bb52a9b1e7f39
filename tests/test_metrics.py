"""Confusion matrix and per-class scores, against hand counts and scikit-learn as the reference."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from mnistlab.evaluation.metrics import classification_report, confusion_matrix


def test_confusion_matrix_rows_are_true_labels_and_columns_predictions():
    """Asymmetric on purpose: two 0s called 1, nothing called 0; swapping rows and columns would show."""
    labels = torch.tensor([0, 0, 1, 1, 2])
    predicted = torch.tensor([1, 1, 1, 2, 2])
    cm = confusion_matrix(predicted, labels, num_classes=3)
    assert cm.tolist() == [[0, 2, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.tolist() == sk_confusion_matrix(labels, predicted, labels=[0, 1, 2]).tolist()


def test_precision_and_recall_are_not_swapped():
    """Class 1 is predicted 4 times (1 right): precision 1/4. It occurs twice (1 found): recall 1/2."""
    labels = torch.tensor([1, 1, 0, 0, 0, 2])
    predicted = torch.tensor([1, 0, 1, 1, 1, 2])
    one = classification_report(predicted, labels, num_classes=3)["per_class"][1]
    assert (one["precision"], one["recall"], one["support"]) == (0.25, 0.5, 2)
    assert one["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)


def test_report_matches_sklearn_on_random_predictions_with_a_class_never_predicted():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (500,), generator=g)
    predicted = torch.randint(
        0, 9, (500,), generator=g
    )  # class 9 is never predicted: precision 0 by convention
    report = classification_report(predicted, labels, num_classes=10)
    p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=range(10), zero_division=0)
    for c, row in enumerate(report["per_class"]):
        assert row["precision"] == pytest.approx(p[c]) and row["recall"] == pytest.approx(r[c])
        assert row["f1"] == pytest.approx(f[c]) and row["support"] == support[c]
    assert report["macro_f1"] == pytest.approx(f.mean())
    assert report["confusion_matrix"] == sk_confusion_matrix(labels, predicted, labels=range(10)).tolist()
