"""Targets from after the cut-off: churn labels, calibration/holdout splits and snapshot dates.

Features come only from on or before ``as_of`` (:mod:`crmlab.features.build`); everything here looks
only at what happens after it. The day conventions are the same: a row belongs to a day by its
calendar date, a purchase is a row with ``amount >= 0``, a purchase day a day with a purchase.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl

from crmlab.features.frames import (
    as_of_date,
    check_no_nulls,
    day_expr,
    day_number,
    require_columns,
    to_polars,
    unit_days,
)
from crmlab.features.past import days_of, finish, past_transactions, rfm_arrays

__all__ = ["calibration_holdout_split", "churn_label", "snapshot_dates"]

log = logging.getLogger(__name__)


def churn_label(
    transactions: pd.DataFrame,
    population_ids: Iterable[str],
    *,
    as_of: date | datetime | str,
    horizon_days: int,
) -> pd.Series:
    """1 for each customer with no purchase in ``(as_of, as_of + horizon_days]``, else 0.

    ``population_ids`` are the customers scored at ``as_of`` (those active on or before it, e.g.
    the ``customer_id`` column of :func:`~crmlab.features.build_features`); the result is indexed
    by them, in their order, and named ``churn``. Only rows after ``as_of`` are looked at. When the
    data end before ``as_of + horizon_days`` the labels are censored: a warning says so.
    """
    if isinstance(horizon_days, bool) or int(horizon_days) != horizon_days or horizon_days <= 0:
        raise ValueError(f"horizon_days={horizon_days!r} should be a positive whole number of days")
    start = day_number(as_of_date(as_of))
    end = start + int(horizon_days)
    require_columns(transactions, ("customer_id", "ts", "amount"), "transactions")
    plf = to_polars(transactions, ["customer_id", "ts", "amount"], "transactions")
    check_no_nulls(transactions, plf, ("customer_id", "ts", "amount"), "transactions")
    day = day_expr(plf, "ts", transactions, "transactions")
    last_day = plf.select(day.max()).item()
    if last_day is not None and last_day < end:
        epoch = date(1970, 1, 1)
        log.warning(
            "churn labels are censored: the transactions end on %s, before as_of + %d days = %s",
            epoch + timedelta(days=int(last_day)), horizon_days, epoch + timedelta(days=end),
        )
    buyers = (
        plf.lazy()
        .filter((day > start) & (day <= end) & (pl.col("amount") >= 0))
        .select(pl.col("customer_id").unique())
        .collect()
        .to_series()
    )
    if isinstance(population_ids, pl.Series):
        ids = population_ids.cast(pl.String)
    else:
        ids = pl.from_pandas(pd.Series(population_ids if isinstance(population_ids, pd.Series)
                                       else list(population_ids), dtype=object).astype("str")).cast(pl.String)
    churned = (~ids.is_in(buyers.implode())).cast(pl.Int64).to_numpy()
    index = pd.Index(ids.to_pandas().astype("str"), name="customer_id")
    return pd.Series(churned, index=index, name="churn")


def calibration_holdout_split(
    transactions: pd.DataFrame,
    *,
    calibration_end: date | datetime | str,
    holdout_end: date | datetime | str,
    calibration_start: date | datetime | str | None = None,
    time_unit: str = "W",
) -> pd.DataFrame:
    """Calibration RFM and holdout targets per customer, for CLV evaluation.

    The cohort: customers whose first purchase falls in ``[calibration_start, calibration_end]``
    (no lower bound when ``calibration_start`` is None). Columns:

    * ``customer_id``
    * ``frequency_cal``, ``recency_cal``, ``T_cal``, ``monetary_value_cal``: :func:`rfm_summary` at
      ``calibration_end`` (rows on or before it only),
    * ``frequency_holdout``: purchase days in ``(calibration_end, holdout_end]``,
    * ``monetary_value_holdout``: mean day total over those purchase days (0 when none),
    * ``amount_sum_holdout``: sum of all amounts in the holdout, net of returns,
    * ``duration_holdout``: holdout length in ``time_unit``.

    Like lifetimes' ``calibration_and_holdout_data(..., freq="D")`` with times divided by the unit.
    """
    unit = unit_days(time_unit)
    cal_end = day_number(as_of_date(calibration_end))
    hold_end = day_number(as_of_date(holdout_end))
    if hold_end <= cal_end:
        raise ValueError(f"holdout_end={holdout_end!s} should be after calibration_end={calibration_end!s}")
    cal_start = None if calibration_start is None else day_number(as_of_date(calibration_start))
    if cal_start is not None and cal_start > cal_end:
        raise ValueError(f"calibration_start={calibration_start!s} should not be after calibration_end={calibration_end!s}")

    ids, cols, first = rfm_arrays(transactions, cal_end, unit)
    cohort = np.ones(len(ids), dtype=bool) if cal_start is None else first >= cal_start
    ids = ids.filter(pl.Series(cohort))
    out = {f"{k}_cal": v[cohort] for k, v in cols.items()}

    hold = past_transactions(transactions, hold_end, after_day=cal_end)
    days = days_of(hold)
    is_pday = days.n_purchase > 0
    n_pdays = np.bincount(days.cust, weights=is_pday, minlength=hold.n)
    pday_total = np.bincount(days.cust, weights=np.where(is_pday, days.net, 0.0), minlength=hold.n)
    net_total = np.bincount(days.cust, weights=days.net, minlength=hold.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_spend = np.where(n_pdays > 0, pday_total / np.maximum(n_pdays, 1), 0.0)
    found = (
        pl.DataFrame({"customer_id": ids, "_row": np.arange(len(ids), dtype=np.int64)})
        .join(pl.DataFrame({"customer_id": hold.ids, "_h": np.arange(hold.n, dtype=np.int64)}), on="customer_id")
    )
    rows, h = found["_row"].to_numpy(), found["_h"].to_numpy()
    for name, values in (("frequency_holdout", n_pdays), ("monetary_value_holdout", mean_spend),
                         ("amount_sum_holdout", net_total)):
        arr = np.zeros(len(ids))
        arr[rows] = values[h]
        out[name] = arr
    out["duration_holdout"] = np.full(len(ids), (hold_end - cal_end) / unit)
    return finish(ids, out)


def snapshot_dates(last_as_of: date | datetime | str, n: int, step_days: int) -> list[date]:
    """``n`` cut-off dates ``step_days`` apart, ending on ``last_as_of``, oldest first."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n={n!r} should be a whole number >= 1")
    if isinstance(step_days, bool) or int(step_days) != step_days or step_days <= 0:
        raise ValueError(f"step_days={step_days!r} should be a positive whole number of days")
    last = as_of_date(last_as_of)
    return [last - timedelta(days=int(step_days) * k) for k in range(int(n) - 1, -1, -1)]
