"""Training curves of the variants side by side, one column per variant."""

from __future__ import annotations

from pathlib import Path


def plot_histories(histories: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Loss (top row) and accuracy (bottom row), train vs validation, for each variant."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    columns = max(1, len(histories))
    figure, axes = plt.subplots(2, columns, figsize=(4.5 * columns, 6.5), squeeze=False)
    for column, (variant, history) in enumerate(histories.items()):
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row][column]
            for prefix, label in (("", "train"), ("val_", "validation")):
                values = history.get(prefix + metric)
                if values:
                    ax.plot(range(1, len(values) + 1), values, label=label)
            ax.set_title(f"{variant}: {metric}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
