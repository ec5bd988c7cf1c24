"""Cross-sell plots: the holdout leaderboard (matplotlib figures the run logs and the notebook shows)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["plot_leaderboard"]


def plot_leaderboard(board: pd.DataFrame) -> Any:
    """Hit rate and MAP against k, one line per model (item-item, popularity)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from crmlab.plotting import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = {"itemitem": "#2f6db5", "popularity": "#e07b28"}
    for ax, metric, label in ((axes[0], "hit_rate", "hit rate@k"), (axes[1], "map", "MAP@k")):
        for name, part in board.groupby("model", sort=False):
            ax.plot(part["k"], part[metric], marker="o", color=colours.get(str(name), "#555555"), label=str(name))
        ax.set_xlabel("k (recommendations)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False)
    fig.suptitle("Cross-sell on the time holdout: item-item against the popularity baseline")
    return fig
