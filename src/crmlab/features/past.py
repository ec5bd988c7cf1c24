"""The past rows of the transaction log in (customer, day) order, and the RFM computed from them.

:func:`past_transactions` keeps the rows on or before the cut-off and sorts them once (see
:mod:`crmlab.features.order`); features (:mod:`crmlab.features.build`) and labels
(:mod:`crmlab.features.labels`) are segment reductions over these contiguous rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.errors import DataError
from crmlab.features.frames import (
    check_no_nulls,
    day_expr,
    example_row,
    require_columns,
    source_name,
    to_polars,
)
from crmlab.features.order import customer_day_order, dense_codes

#: optional columns of the transactions table that features use
TX_OPTIONAL = ("order_id", "quantity", "product_id", "category", "channel")


@dataclass
class Past:
    """Transaction rows of the period, sorted by (customer id, day).

    Customers are numbered 0..n-1 in id order; ``ids`` holds their ids.
    """

    ids: pl.Series
    starts: np.ndarray  # first row of each customer
    cust: np.ndarray  # customer number of each row
    day: np.ndarray  # day number of each row (int32)
    amount: np.ndarray  # float64
    has_returns: bool
    extra: dict[str, np.ndarray | pl.Series]  # optional columns, in the same row order

    @property
    def n(self) -> int:
        return len(self.starts)


def past_transactions(transactions: pd.DataFrame, as_of_day: int, after_day: int | None = None) -> Past:
    """Rows dated on or before ``as_of_day`` (and after ``after_day`` when given), sorted."""
    table = "transactions"
    require_columns(transactions, ("customer_id", "ts", "amount"), table)
    optional = [c for c in TX_OPTIONAL if c in transactions.columns]
    plf = to_polars(transactions, ["customer_id", "ts", "amount", *optional], table)
    check_no_nulls(transactions, plf, ("customer_id", "ts", "amount"), table)
    if not plf.schema["amount"].is_numeric():
        raise DataError(
            f"has dtype {transactions['amount'].dtype}",
            file=source_name(transactions, table),
            column="amount",
            expected="numbers (negative for returns)",
            example=example_row(transactions, 0),
        )
    # Filter first: nothing after the cut-off goes any further.
    keep = pl.col("_day") <= as_of_day
    if after_day is not None:
        keep = keep & (pl.col("_day") > after_day)
    day_of_row = day_expr(plf, "ts", transactions, table)
    past = plf.lazy().with_columns(_day=day_of_row).filter(keep).drop("ts").collect()
    del plf
    day = past["_day"].to_numpy()
    if past.height == 0:
        perm, new, ids = None, np.zeros(0, dtype=bool), past["customer_id"]
    else:
        perm, new, ids = customer_day_order(past["customer_id"], day)
    amount = past["amount"].cast(pl.Float64).to_numpy()

    def ordered(values: np.ndarray) -> np.ndarray:
        return values if perm is None else values[perm]

    extra: dict[str, np.ndarray | pl.Series] = {}
    for col in optional:
        if col == "quantity":
            extra[col] = ordered(past[col].cast(pl.Float64).fill_null(np.nan).to_numpy())
        elif col == "order_id":
            extra[col] = past[col] if perm is None else past[col].gather(perm)
        else:
            extra[col] = ordered(dense_codes(past[col]))
    return Past(
        ids=ids.alias("customer_id"),
        starts=np.flatnonzero(new),
        cust=np.cumsum(new, dtype=np.int64) - 1,
        day=ordered(day),
        amount=ordered(amount),
        has_returns=bool((amount < 0).any()),
        extra=extra,
    )


@dataclass
class Days:
    """The rows collapsed to one row per (customer, day), in the same order."""

    starts: np.ndarray  # first day-row of each customer (every customer has one)
    cust: np.ndarray
    day: np.ndarray
    n_purchase: np.ndarray  # purchase rows that day (int64)
    purchase_amount: np.ndarray  # sum of purchase amounts
    n_return: np.ndarray
    return_amount: np.ndarray  # sum of returned amounts (positive)
    net: np.ndarray  # sum of all amounts that day
    has_returns: bool


def days_of(past: Past) -> Days:
    n_rows = len(past.day)
    new_day = np.ones(n_rows, dtype=bool)
    np.not_equal(past.day[1:], past.day[:-1], out=new_day[1:])
    new_day[past.starts] = True
    dstarts = np.flatnonzero(new_day)
    nd = len(dstarts)
    day_of_row = np.cumsum(new_day, dtype=np.int64) - 1
    del new_day
    net = np.bincount(day_of_row, weights=past.amount, minlength=nd)
    if past.has_returns:
        ret = past.amount < 0
        n_return = np.bincount(day_of_row[ret], minlength=nd)
        return_amount = np.bincount(day_of_row[ret], weights=-past.amount[ret], minlength=nd)
        purchase_amount = np.bincount(day_of_row, weights=np.where(ret, 0.0, past.amount), minlength=nd)
    else:
        n_return = np.zeros(nd, dtype=np.int64)
        return_amount = np.zeros(nd)
        purchase_amount = net
    del day_of_row
    cust = past.cust[dstarts]
    first = np.ones(nd, dtype=bool)
    np.not_equal(cust[1:], cust[:-1], out=first[1:])
    return Days(
        starts=np.flatnonzero(first),
        cust=cust,
        day=past.day[dstarts],
        n_purchase=np.diff(np.append(dstarts, n_rows)) - n_return,
        purchase_amount=purchase_amount,
        n_return=n_return,
        return_amount=return_amount,
        net=net,
        has_returns=past.has_returns,
    )


@dataclass
class PurchaseDays:
    """Per customer: purchase-day count, first and last purchase day, repeat-day spend, gaps."""

    n_days: np.ndarray  # int64
    first: np.ndarray  # float64 day number, NaN without purchase
    last: np.ndarray
    repeat_sum: np.ndarray  # sum of the day totals of repeat purchase days
    gap_sq_sum: np.ndarray  # int64, sum of squared gaps between consecutive purchase days


def purchase_days(days: Days, n: int) -> PurchaseDays:
    if days.has_returns:
        keep = days.n_purchase > 0
        cust, day, net = days.cust[keep], days.day[keep], days.net[keep]
    else:  # every day is a purchase day
        cust, day, net = days.cust, days.day, days.net
    m = len(cust)
    first = np.ones(m, dtype=bool)
    np.not_equal(cust[1:], cust[:-1], out=first[1:])
    seg = np.flatnonzero(first)
    seg_last = np.append(seg[1:], m)[: len(seg)] - 1
    first_day, last_day = day[seg].astype(np.float64), day[seg_last].astype(np.float64)
    gaps = np.zeros(m)
    np.subtract(day[1:], day[:-1], out=gaps[1:])
    gaps[first] = 0.0
    np.multiply(gaps, gaps, out=gaps)  # whole numbers below 2**53: exact in float64
    net = np.where(first, 0.0, net)
    pdays = PurchaseDays(
        n_days=np.diff(np.append(seg, m))[: len(seg)],
        first=first_day,
        last=last_day,
        repeat_sum=np.bincount(cust, weights=net, minlength=n),
        gap_sq_sum=np.bincount(cust, weights=gaps, minlength=n).astype(np.int64),
    )
    if len(seg) != n:  # customers without a purchase day
        buyers = cust[seg]
        for name, fill in (("n_days", 0), ("first", np.nan), ("last", np.nan)):
            values = getattr(pdays, name)
            full = np.full(n, fill, dtype=values.dtype)
            full[buyers] = values
            setattr(pdays, name, full)
    return pdays


def rfm_columns(pdays: PurchaseDays, as_of_day: int, unit: float) -> dict[str, np.ndarray]:
    n_days = pdays.n_days
    buyer = n_days > 0
    freq = np.where(buyer, n_days - 1.0, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(n_days > 1, pdays.repeat_sum / np.maximum(n_days - 1, 1), 0.0)
    monetary[~buyer] = np.nan
    return {
        "frequency": freq,
        "recency": (pdays.last - pdays.first) / unit,
        "T": (as_of_day - pdays.first) / unit,
        "monetary_value": monetary,
    }


def finish(ids: pl.Series, columns: dict[str, Any]) -> pd.DataFrame:
    """A pandas frame with customer_id first, rows as given; arrays are not copied."""
    data = {"customer_id": ids.to_pandas().astype("str")}
    data.update(columns)
    return pd.DataFrame(data, copy=False)


def rfm_arrays(transactions: pd.DataFrame, as_of_day: int, unit: float) -> tuple[pl.Series, dict[str, np.ndarray], np.ndarray]:
    """RFM of the customers with a purchase on or before as_of, sorted by id, and their first purchase day."""
    past = past_transactions(transactions, as_of_day)
    pdays = purchase_days(days_of(past), past.n)
    cols = rfm_columns(pdays, as_of_day, unit)
    buyers = pdays.n_days > 0
    if buyers.all():
        return past.ids, cols, pdays.first
    return past.ids.filter(pl.Series(buyers)), {k: v[buyers] for k, v in cols.items()}, pdays.first[buyers]
