"""Metrics and reports on predictions (plots and HTML reports import matplotlib lazily)."""

from mnistlab.evaluation.metrics import classification_report, confusion_matrix

__all__ = ["classification_report", "confusion_matrix"]
