"""Forecast plots: history, forecast and intervals per series."""

from __future__ import annotations

from typing import Any

import pandas as pd

from crmlab.forecast.series import (
    Panel,
)


def plot_forecasts(panel: Panel, future: pd.DataFrame, *, max_series: int = 6) -> Any:
    """History (last two seasons or 104 periods), forecast and 80%/95% intervals, one panel per series."""
    from crmlab.plotting import Figure

    ids = list(panel.series_ids)[:max_series]
    fig = Figure(figsize=(10, 2.6 * len(ids)), layout="constrained")
    axes = fig.subplots(len(ids), 1, squeeze=False)[:, 0]
    for ax, sid in zip(axes, ids, strict=True):
        i = panel.series_ids.index(sid)
        end = int(panel.ends[i])
        start = max(0, end - 104)
        ax.plot(panel.periods[start:end], panel.values[i, start:end], color="black", lw=1.2, label="actual")
        f = future[future["series_id"] == sid]
        ax.fill_between(f["period"], f["lower_95"], f["upper_95"], color="tab:blue", alpha=0.15, label="95%")
        ax.fill_between(f["period"], f["lower_80"], f["upper_80"], color="tab:blue", alpha=0.3, label="80%")
        ax.plot(f["period"], f["forecast"], color="tab:blue", lw=1.5, label="forecast")
        ax.set_title(str(sid))
        ax.legend(loc="upper left", fontsize=8)
    return fig
