"""Churn plots: feature importance and calibration (matplotlib figures the run logs and the report shows)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def plot_importance(importance: pd.DataFrame, top: int = 15) -> Any:
    """Two bar charts side by side: share of split gain and mean |SHAP| (log-odds), top features."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from crmlab.plotting import Figure

    df = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(10, 0.35 * len(df) + 1.5), layout="constrained")
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2, sharey=True)
    a.barh(df["feature"], df["gain_share"], color="#2f6db5")
    a.set_xlabel("share of split gain")
    b.barh(df["feature"], df["mean_abs_shap"], color="#e07b28")
    b.set_xlabel("mean |SHAP| (churn log-odds)")
    fig.suptitle("LightGBM churn model: global importance")
    return fig


def plot_calibration(table: pd.DataFrame) -> Any:
    """Observed churn rate against mean predicted probability, one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from crmlab.plotting import Figure

    fig = Figure(figsize=(5.5, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1)
    for name, part in table.groupby("model", sort=False):
        ax.plot(part["predicted"], part["observed"], marker="o", ms=3, label=str(name))
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend()
    return fig
