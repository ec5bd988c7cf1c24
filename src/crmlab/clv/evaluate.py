"""Holdout evaluation of customer-level purchase and spend predictions.

Pure functions on arrays, shared by the probabilistic models and their LightGBM challenger, so that
both are judged by the same code on the same holdout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

__all__ = [
    "conditional_expectation_table",
    "normalised_gini",
    "point_metrics",
    "spend_metrics",
    "top_decile_capture",
]


def point_metrics(actual: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Per-customer MAE, RMSE, Spearman rank correlation, and total predicted vs actual (% error)."""
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape or a.size == 0:
        raise ValueError(f"actual and predicted must be non-empty and aligned, got {a.shape} and {p.shape}")
    err = p - a
    total_a, total_p = float(a.sum()), float(p.sum())
    rho = spearmanr(a, p).statistic if np.ptp(a) > 0 and np.ptp(p) > 0 else np.nan
    return {
        f"{prefix}mae": float(np.mean(np.abs(err))),
        f"{prefix}rmse": float(np.sqrt(np.mean(err**2))),
        f"{prefix}spearman": float(rho),
        f"{prefix}total_actual": total_a,
        f"{prefix}total_predicted": total_p,
        f"{prefix}total_pct_error": float(100.0 * (total_p - total_a) / total_a) if total_a else np.nan,
    }


def conditional_expectation_table(
    frequency_cal: np.ndarray, actual: np.ndarray, predicted: np.ndarray, max_frequency: int = 7
) -> pd.DataFrame:
    """Mean actual vs predicted holdout purchases by calibration frequency 0..max_frequency+ (the
    "conditional expectations" of Fader, Hardie and Lee 2005, figure 4)."""
    f = np.minimum(np.asarray(frequency_cal, dtype=int), max_frequency)
    df = pd.DataFrame({"frequency_cal": f, "actual": np.asarray(actual, float), "predicted": np.asarray(predicted, float)})
    table = df.groupby("frequency_cal").agg(
        customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    table = table.reindex(range(max_frequency + 1), fill_value=0).reset_index()
    table["label"] = [str(i) if i < max_frequency else f"{max_frequency}+" for i in table["frequency_cal"]]
    return table[["label", "frequency_cal", "customers", "actual", "predicted"]]


def top_decile_capture(actual_value: np.ndarray, predicted_value: np.ndarray) -> float:
    """Share of the actual holdout value earned by the 10% of customers ranked highest by prediction."""
    a = np.asarray(actual_value, dtype=float)
    p = np.asarray(predicted_value, dtype=float)
    total = a.sum()
    if total <= 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * a.size)))
    # stable ordering: ties in the prediction keep the input order, so the result is deterministic
    top = np.argsort(-p, kind="stable")[:k]
    return float(a[top].sum() / total)


def _gini(actual: np.ndarray, score: np.ndarray) -> float:
    order = np.lexsort((np.arange(actual.size), -score))
    a = actual[order]
    cum = np.cumsum(a) / a.sum()
    n = a.size
    return float(cum.sum() / n - (n + 1) / (2 * n))


def normalised_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the prediction's ranking of the actual values, divided by the best possible Gini
    (actual ranked by itself): 1 is a perfect ranking, 0 a random one."""
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.sum() <= 0:
        return float("nan")
    return _gini(a, p) / _gini(a, a)


def spend_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """How well predicted holdout spend matches the actual, by the same code for every model:
    MAE, RMSE, Spearman, total % error, share of the holdout revenue captured by the top decile
    of predictions and normalised Gini."""
    out = point_metrics(actual, predicted)
    out["top_decile_share"] = top_decile_capture(actual, predicted)
    out["gini"] = normalised_gini(actual, predicted)
    return out
