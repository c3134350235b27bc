"""The evaluation report of a trained emotion model: per-class metrics, the confusion
matrix, a text table and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def classification_report(targets: np.ndarray, predictions: np.ndarray,
                          labels: tuple[str, ...]) -> dict[str, Any]:
    k = len(labels)
    confusion = np.zeros((k, k), np.int64)  # rows: true class, columns: predicted
    np.add.at(confusion, (targets, predictions), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    return {
        "labels": list(labels),
        "samples": len(targets),
        "accuracy": float(tp.sum() / max(len(targets), 1)),
        "balanced_accuracy": float(recall[actual > 0].mean()) if (actual > 0).any() else 0.0,
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(actual[i])}
                      for i, label in enumerate(labels)},
        "confusion": confusion.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['split']} set: {report['samples']} images, accuracy "
             f"{report['accuracy']:.1%}, balanced accuracy {report['balanced_accuracy']:.1%}",
             f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for label, m in report["per_class"].items():
        lines.append(f"{label:>14} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} "
                     f"{m['support']:8d}")
    return "\n".join(lines)


def save_confusion_png(report: dict[str, Any], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, via the Agg canvas (no display, and no
    change to pyplot's global backend)."""
    labels = report["labels"]
    counts = np.asarray(report["confusion"], dtype=np.float64)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    side = 2.0 + 0.7 * len(labels)
    figure = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, label="fraction of the true class")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{int(counts[i, j])}\n{rates[i, j]:.0%}", ha="center",
                      va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
