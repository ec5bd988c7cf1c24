"""Holdout evaluation of customer-level purchase and spend predictions.

Pure functions on arrays, shared by the probabilistic models and their LightGBM challenger, so that
both are judged by the same code on the same holdout.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crmlab.clv.models import SpendModel, TransactionModel
from crmlab.clv.result import MAX_FREQUENCY, ClvModels, ClvWindow
from crmlab.clv.window import local_days

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


def predict_holdout(models: ClvModels, split: pd.DataFrame) -> pd.DataFrame:
    """Per cohort customer: actual and predicted holdout purchases and spend.

    Predicted spend = expected holdout purchases x expected spend per purchase (Gamma-Gamma);
    actual spend is the customer's net holdout amount (returns subtracted).
    """
    duration = float(split["duration_holdout"].iloc[0])
    x, tx, age = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    purchases = models.transaction.predict_purchases(duration, x, tx, age)
    spend = models.spend.conditional_expected_spend(x, split["monetary_value_cal"])
    return pd.DataFrame({
        "customer_id": split["customer_id"].to_numpy(),
        "frequency_cal": split["frequency_cal"].to_numpy(),
        "actual_purchases": split["frequency_holdout"].to_numpy(dtype=np.float64),
        "predicted_purchases": purchases,
        "expected_spend": spend,
        "actual_spend": split["amount_sum_holdout"].to_numpy(dtype=np.float64),
        "predicted_spend": purchases * spend,
    })


def evaluate_holdout(holdout: pd.DataFrame, spend_model: SpendModel) -> tuple[dict[str, float], pd.DataFrame]:
    """Holdout metrics (``purchases_*``, ``spend_*``, Gamma-Gamma diagnostics ``gg_*``) and the
    conditional-expectation table by calibration frequency 0..7+."""
    metrics: dict[str, float] = {"holdout_customers": float(len(holdout))}
    metrics.update(point_metrics(holdout["actual_purchases"], holdout["predicted_purchases"], prefix="purchases_"))
    metrics.update({f"spend_{k}": v for k, v in spend_metrics(holdout["actual_spend"].to_numpy(),
                                                               holdout["predicted_spend"].to_numpy()).items()})
    report = spend_model.report_
    corr = report.get("freq_spend_corr")
    metrics.update({
        "gg_freq_spend_corr": float("nan") if corr is None else float(corr),
        "gg_n_nonpositive_spend": float(report.get("n_nonpositive_spend", 0)),
        "gg_n_excluded": float(report.get("n_excluded", 0)),
        "gg_n_floored": float(report.get("n_floored", 0)),
    })
    table = conditional_expectation_table(
        holdout["frequency_cal"].to_numpy(), holdout["actual_purchases"].to_numpy(),
        holdout["predicted_purchases"].to_numpy(), max_frequency=MAX_FREQUENCY,
    )
    return metrics, table


def cumulative_repeat_purchases(
    transactions: pd.DataFrame, split: pd.DataFrame, window: ClvWindow, model: TransactionModel, *, max_points: int = 400
) -> pd.DataFrame:
    """Cumulative repeat purchases of the cohort, actual and expected by ``model``, on a grid of
    dates from the cohort's first purchase to the end of the holdout (FHL 2005a, figure 2).

    A repeat purchase is a purchase day after the customer's first; the expectation is
    :meth:`TransactionModel.expected_repeat_purchases_cumulative` from each customer's first day.
    """
    from crmlab.features import TIME_UNITS

    unit = TIME_UNITS[window.time_unit]
    tx = transactions.loc[transactions["amount"] >= 0, ["customer_id", "ts"]]
    tx = pd.DataFrame({"customer_id": tx["customer_id"].astype("str"), "day": local_days(tx["ts"])})
    tx = tx[tx["customer_id"].isin(set(split["customer_id"].astype("str")))]
    tx = tx.drop_duplicates().sort_values(["customer_id", "day"], kind="stable")
    first = tx.groupby("customer_id", sort=False)["day"].transform("min")
    repeat = tx.loc[tx["day"] > first, "day"]
    repeat = repeat[repeat <= pd.Timestamp(window.holdout_end)]

    cal_end = pd.Timestamp(window.calibration_end)
    origin = cal_end - pd.to_timedelta(split["T_cal"].max() * unit, unit="D")
    origin = origin.normalize()
    span_units = (pd.Timestamp(window.holdout_end) - origin).days / unit
    step = max(1.0, math.ceil(span_units / max_points))
    times = np.arange(step, span_units + step / 2, step)
    dates = origin + pd.to_timedelta(times * unit, unit="D")
    births = ((cal_end - origin).days / unit) - split["T_cal"].to_numpy(dtype=np.float64)
    counts = np.searchsorted(np.sort(repeat.to_numpy()), dates.floor("D").to_numpy(), side="right")
    expected = model.expected_repeat_purchases_cumulative(times, births)
    return pd.DataFrame({"date": dates.floor("D"), "time": times, "actual": counts.astype(np.float64),
                         "expected": expected, "holdout": dates.floor("D") > cal_end})
