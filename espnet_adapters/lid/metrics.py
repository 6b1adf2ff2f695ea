"""Classification metrics from a confusion matrix, with numpy only.

Rows are the reference label, columns the prediction, so a row sums to the
number of test utterances of that language.  Accuracy alone hides what
matters for routing (a LID that never answers Punjabi still scores well when
Punjabi is rare), hence per-label precision and recall and the macro-F1, the
unweighted mean of the labels' F1.  Like scikit-learn's default, the macro
average runs over the labels that occur in the reference or the predictions,
and a label never predicted has precision 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(reference: Sequence[int], predicted: Sequence[int], n_labels: int) -> np.ndarray:
    """Counts (n_labels, n_labels): ``[i, j]`` = utterances of label i predicted as j."""
    counts = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(counts, (np.asarray(reference, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_report(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """accuracy, macro_f1, per-label precision/recall/f1/support, confusion counts and n."""
    correct = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision, recall = _ratio(correct, predicted), _ratio(correct, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    total = int(confusion.sum())
    return {
        "n": total,
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_label": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "confusion": {"labels": list(labels), "counts": confusion.tolist()},
    }


def evaluate_predictions(reference: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """:func:`classification_report` of label indices."""
    return classification_report(confusion_matrix(reference, predicted, len(labels)), labels)


def confusion_markdown(confusion: np.ndarray, labels: Sequence[str], title: str) -> str:
    """A markdown section: reference rows, predicted columns, row totals and recall."""
    lines = [f"## {title}", "", "| ref \\ hyp | " + " | ".join(labels) + " | total | recall |",
             "|---|" + "---:|" * (len(labels) + 2)]
    for i, label in enumerate(labels):
        total = int(confusion[i].sum())
        recall = f"{100 * confusion[i, i] / total:.1f}%" if total else "-"
        cells = " | ".join(str(int(count)) for count in confusion[i])
        lines.append(f"| **{label}** | {cells} | {total} | {recall} |")
    return "\n".join(lines) + "\n"
