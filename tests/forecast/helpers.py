"""Small series and tables with known structure, shared by the forecast tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlab.forecast.series import Panel


def panel(values: np.ndarray | list[list[float]], *, freq: str = "M", start: str = "2015-01-01",
          ids: list[str] | None = None, covariates: dict[str, np.ndarray] | None = None, n_future: int = 0) -> Panel:
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    periods = pd.period_range(start, periods=v.shape[1], freq={"M": "M", "W": "W-SUN", "D": "D"}[freq]).start_time
    return Panel(tuple(ids or [f"s{i}" for i in range(len(v))]), pd.DatetimeIndex(periods), v, freq,
                 covariates or {}, n_future)


def seasonal_trend(n: int = 96, *, season: int = 12, slope: float = 2.0, amplitude: float = 40.0,
                   noise: float = 3.0, seed: int = 0) -> np.ndarray:
    """100 + slope * t + amplitude * sin(2 pi t / season) + N(0, noise): a known seasonality and trend."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + slope * t + amplitude * np.sin(2 * np.pi * t / season) + rng.normal(0, noise, n)
