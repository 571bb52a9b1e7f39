"""Metrics and reports on predictions."""

from mnistlab.evaluation.metrics import classification_report, confusion_matrix

__all__ = ["classification_report", "confusion_matrix"]
