"""PNG figures of a LID run: the training curve and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from espnet_adapters.utils.plots import pyplot_module, save_figure


def plot_training(history: Sequence[Mapping[str, float]], best_epoch: int, path: Path, title: str) -> None:
    """Train and dev loss (left axis) and train and dev accuracy (right axis) per epoch."""
    plt = pyplot_module()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["dev_loss"] for h in history], "s-", label="dev loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats)")
    acc_ax = ax.twinx()
    acc_ax.plot(epochs, [h["train_acc"] for h in history], "o--", color="tab:green", label="train acc")
    acc_ax.plot(epochs, [h["dev_acc"] for h in history], "s--", color="tab:red", label="dev acc")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.axvline(best_epoch, color="tab:red", alpha=0.3, lw=1)
    lines, names = ax.get_legend_handles_labels()
    more_lines, more_names = acc_ax.get_legend_handles_labels()
    ax.legend(lines + more_lines, names + more_names, loc="center right")
    ax.set_title(title)
    save_figure(fig, path)


def plot_confusions(panels: Mapping[str, np.ndarray], labels: Sequence[str], path: Path) -> None:
    """One annotated count matrix per system (reference rows, predicted columns), side by side."""
    plt = pyplot_module()
    size = 1.0 + 0.6 * len(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) + 1, size + 0.6), squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels.items(), strict=True):
        ax.imshow(counts, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(title)
        threshold = counts.max() / 2 if counts.size else 0
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, str(int(count)), ha="center", va="center",
                    color="white" if count > threshold else "black")
    save_figure(fig, path)
