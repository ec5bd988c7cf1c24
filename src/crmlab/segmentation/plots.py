"""Plots of the segmentation pipeline (matplotlib, Agg canvas, no pyplot state): the k sweep and
the segment profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from crmlab.plotting import Figure

__all__ = ["plot_profiles", "plot_sweep"]

_PANELS = (("inertia", "inertia (elbow)"), ("silhouette", "silhouette (higher is better)"),
           ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
           ("davies_bouldin", "Davies-Bouldin (lower is better)"))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_sweep(table: pd.DataFrame, chosen: int, criterion: str) -> Figure:
    """Each sweep criterion against k; the chosen k is marked and unstable k are drawn hollow."""
    fig = _figure(9.0, 6.0)
    axes = fig.subplots(2, 2).ravel()
    stable = ~table["unstable"].to_numpy(dtype=bool)
    for ax, (col, title) in zip(axes, _PANELS):
        ax.plot(table["k"], table[col], color="#2f6db5", lw=1.5)
        ax.scatter(table["k"][stable], table[col][stable], color="#2f6db5", zorder=3)
        ax.scatter(table["k"][~stable], table[col][~stable], facecolors="white", edgecolors="#2f6db5", zorder=3,
                   label="unstable (bootstrap ARI below threshold)" if (~stable).any() else None)
        ax.axvline(chosen, color="#e07b28", ls="--", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("k")
    if (~stable).any():
        axes[0].legend(fontsize=8)
    fig.suptitle(f"k sweep: k={chosen} chosen by {criterion}")
    return fig


def plot_profiles(profiles: pd.DataFrame, ranks: pd.DataFrame) -> Figure:
    """A heat map of each segment's mean percentile rank on each feature (0.5 = the base), with
    the segment's name and share of customers."""
    fig = _figure(1.6 + 1.3 * ranks.shape[1], 1.2 + 0.5 * len(ranks))
    ax = fig.subplots()
    values = ranks.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="RdBu_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(values.shape[1]), list(ranks.columns), rotation=20, ha="right")
    ax.set_yticks(np.arange(len(profiles)), [f"{n} ({s:.0%})" for n, s in zip(profiles["name"], profiles["share"])])
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="mean percentile rank in the base")
    ax.set_title("Segment profiles")
    return fig
