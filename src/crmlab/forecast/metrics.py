"""Forecast accuracy: MASE, RMSSE, sMAPE, WAPE, bias and RMSE, by the definitions of the M4/M5 competitions.

Scaled errors (Hyndman and Koehler 2006, "Another look at measures of forecast accuracy") divide
each series' errors by the in-sample error of the seasonal naive forecast on the *training* part of
that fold, so series of any size average sensibly and a value below 1 beats the naive method
in-sample. The seasonal lag is the season length when the training history holds at least two
seasons, else 1 (a one-season history would rest the scale on a handful of differences).
"""

from __future__ import annotations

import numpy as np

__all__ = ["point_metrics", "scale_lag", "scales"]


def scale_lag(n_train: int, season_length: int) -> int:
    """The naive lag behind a series' scale: the season when two seasons are known, else 1."""
    return season_length if n_train >= 2 * season_length else 1


def scales(y_train: np.ndarray, season_length: int) -> tuple[float, float]:
    """(MAE, MSE) of the in-sample seasonal naive forecast of one series (NaNs before its start
    ignored): the denominators of MASE and RMSSE. A flat history (scale 0) falls back to its mean
    absolute level, or 1 for an all-zero history, so a scaled error stays finite."""
    y = y_train[~np.isnan(y_train)]
    lag = scale_lag(len(y), season_length)
    if len(y) <= lag:
        return float("nan"), float("nan")
    d = y[lag:] - y[:-lag]
    mae, mse = float(np.mean(np.abs(d))), float(np.mean(d**2))
    if mae == 0:
        level = float(np.mean(np.abs(y))) or 1.0
        return level, level**2
    return mae, mse


def point_metrics(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray, scale2: np.ndarray,
                  group: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy of forecasts against actuals, all arrays aligned (one entry per series, origin and
    step; ``scale``/``scale2`` are the MAE/MSE of the fold's series, see :func:`scales`).

    * ``mase``: mean over groups (series x origin, given by ``group``) of mean |error| / scale;
    * ``rmsse``: mean over groups of sqrt(mean error^2 / scale2);
    * ``smape``: mean of 200 |e| / (|a| + |f|) in percent (0 where both are 0);
    * ``wape``: sum |e| / sum |a|;  ``bias``: sum (f - a) / sum |a| (positive: over-forecast);
    * ``rmse``: in the series' unit.
    """
    a, f = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    e = f - a
    g = np.zeros(len(a), dtype=np.int64) if group is None else np.unique(group, return_inverse=True)[1]
    n_groups = int(g.max()) + 1 if len(g) else 0
    count = np.bincount(g, minlength=n_groups)
    mae_g = np.bincount(g, weights=np.abs(e), minlength=n_groups) / count
    mse_g = np.bincount(g, weights=e**2, minlength=n_groups) / count
    s = np.bincount(g, weights=np.asarray(scale, dtype=np.float64), minlength=n_groups) / count
    s2 = np.bincount(g, weights=np.asarray(scale2, dtype=np.float64), minlength=n_groups) / count
    denom = np.abs(a) + np.abs(f)
    smape = np.where(denom > 0, 200.0 * np.abs(e) / np.where(denom > 0, denom, 1.0), 0.0)
    total = float(np.sum(np.abs(a)))
    return {
        "mase": float(np.mean(mae_g / s)),
        "rmsse": float(np.mean(np.sqrt(mse_g / s2))),
        "smape": float(np.mean(smape)),
        "wape": float(np.sum(np.abs(e)) / total) if total else float("nan"),
        "bias": float(np.sum(e) / total) if total else float("nan"),
        "rmse": float(np.sqrt(np.mean(e**2))),
    }
