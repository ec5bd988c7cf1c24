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
from crmlab.errors import ModelError

__all__ = [
    "BLEND",
    "LIGHTGBM",
    "SHIP_CHOICES",
    "choose_shipped",
    "conditional_expectation_table",
    "conditional_expectations_by_model",
    "purchase_leaderboard",
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


# --------------------------------------------------------------------------- which purchase model ships

#: The names of the purchase-model candidates other than the parametric model (whose name is its kind).
LIGHTGBM, BLEND = "lightgbm", "blend"
SHIP_CHOICES = ("auto", "model", LIGHTGBM, BLEND)


def purchase_leaderboard(actual: np.ndarray, predictions: dict[str, np.ndarray], baseline: str) -> pd.DataFrame:
    """One row per purchase model on the holdout: MAE, RMSE, Spearman, total and its % error, and the
    mean squared error's change against ``baseline`` (the parametric model) with its 95% interval
    (paired over customers: the normal interval of the mean per-customer difference of squared errors)."""
    a = np.asarray(actual, dtype=np.float64)
    base_se = (np.asarray(predictions[baseline], dtype=np.float64) - a) ** 2
    rows = []
    for name, pred in predictions.items():
        p = np.asarray(pred, dtype=np.float64)
        m = point_metrics(a, p)
        diff = (p - a) ** 2 - base_se
        half = 1.959963984540054 * diff.std(ddof=1) / np.sqrt(a.size) if a.size > 1 else np.nan
        gain = float(diff.mean())
        rows.append({"model": name, "mse": float(np.mean((p - a) ** 2)), "mae": m["mae"], "rmse": m["rmse"],
                     "spearman": m["spearman"], "total_predicted": m["total_predicted"],
                     "total_actual": m["total_actual"], "total_pct_error": m["total_pct_error"],
                     "mse_change": gain, "mse_change_low": gain - half, "mse_change_high": gain + half})
    return pd.DataFrame(rows)


def choose_shipped(board: pd.DataFrame, ship: str, baseline: str) -> tuple[str, str]:
    """(the purchase model that ships, why): ``ship`` when it names one (``"model"``: ``baseline``);
    with ``"auto"`` the candidate with the smallest holdout mean squared error among those that beat
    ``baseline`` significantly (the 95% interval of the change in mean squared error entirely below 0),
    else ``baseline``: a challenger must earn its place, so on data the parametric model describes
    it keeps shipping. Squared error, not MAE: CLV multiplies the *expected* count, and the squared
    error is the loss the expectation minimises (MAE favours the median, 0 for most customers)."""
    rows = board.set_index("model")
    fmt = lambda n: (f"{n}: holdout MSE {rows.loc[n, 'mse']:.4f}, MAE {rows.loc[n, 'mae']:.3f}, total "  # noqa: E731
                     f"{rows.loc[n, 'total_pct_error']:+.1f}%")
    if ship != "auto":
        name = baseline if ship == "model" else ship
        if name not in rows.index:
            raise ModelError(f"clv.ship={ship}: the {name} purchase model could not be trained on these data "
                             "(see the warnings); set clv.ship=auto or model")
        return name, f"clv.ship={ship} ({fmt(name)})"
    others = [n for n in rows.index if n != baseline]
    better = [n for n in others if rows.loc[n, "mse_change_high"] < 0]

    def change(n: str) -> str:
        r = rows.loc[n]
        return (f"MSE change {r['mse_change']:+.4f}, 95% CI {r['mse_change_low']:+.4f} to "
                f"{r['mse_change_high']:+.4f}")

    if better:
        best = min(better, key=lambda n: rows.loc[n, "mse"])
        beaten = [baseline, *(n for n in others if n != best)]
        return best, (f"{best} predicts holdout purchases significantly better than {baseline} ({change(best)}); "
                      f"{fmt(best)}; it beat " + "; ".join(fmt(n) for n in beaten))
    if not others:
        return baseline, f"{baseline} (no challenger could be trained); {fmt(baseline)}"
    return baseline, (f"no challenger predicts holdout purchases significantly better than {baseline} ("
                      + "; ".join(f"{n}: {change(n)}" for n in others) + f"); {fmt(baseline)}")


def conditional_expectations_by_model(frequency_cal: np.ndarray, actual: np.ndarray,
                                      predictions: dict[str, np.ndarray], max_frequency: int = MAX_FREQUENCY
                                      ) -> pd.DataFrame:
    """:func:`conditional_expectation_table` with one column of mean predicted holdout purchases per model."""
    out = None
    for name, pred in predictions.items():
        t = conditional_expectation_table(frequency_cal, actual, pred, max_frequency=max_frequency)
        if out is None:
            out = t.drop(columns=["predicted"])
        out[name] = t["predicted"].to_numpy()
    return out
