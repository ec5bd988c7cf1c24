"""CRM KPIs by period and overall, acquisition cohorts, CAC, revenue by segment and funnel conversion.

Every figure is computed from the clean transaction log up to the cut-off ``as_of`` (rows dated after
it are ignored), plus the optional customers, marketing-spend and leads tables. The definitions,
shared by the code, the README ("KPIs") and the report:

Purchases, orders, revenue
    A transaction row with ``amount >= 0`` is a *purchase*, a row with ``amount < 0`` a *return* (as in
    :mod:`crmlab.features`). An *order* is a distinct ``order_id`` of a customer's purchase rows; a
    purchase row without an order id is an order of its own. ``gross_sales`` = sum of purchase
    amounts; ``returns`` = sum of return amounts (<= 0); ``revenue`` = gross_sales + returns (net).

Per period ``p`` (month by default; weeks run Monday to Sunday)
    * ``active_customers`` A_p = customers with at least one purchase in p;
    * ``new_customers`` N_p = customers whose first purchase ever (up to as_of) is in p;
      ``returning_customers`` = A_p - N_p;
    * ``retention_rate`` = |A_{p-1} & A_p| / |A_{p-1}| (share of last period's active customers who buy
      again this period) and ``churn_rate`` = 1 - retention_rate; empty for the first period or after
      a period without active customers;
    * ``repeat_purchase_rate`` = share of A_p with at least two orders in total by the end of p;
    * ``aov`` (average order value) = gross_sales / orders;
    * ``purchase_frequency`` = orders / A_p (orders per active customer in the period);
    * ``revenue_per_customer`` = revenue / A_p;
    * ``simple_clv`` = aov x purchase_frequency x expected lifespan x margin, with expected lifespan
      = 1 / churn_rate periods (the mean of a geometric lifetime with that per-period churn); empty
      when the churn rate is 0 or unknown. ``margin`` is ``clv.margin``;
    * ``acquisition_spend`` and ``cac`` = acquisition_spend / N_p: with a marketing-spend table, the
      spend dated in p; else with the customers table's acquisition-cost column, the sum of the costs
      of the new customers of p (so CAC is their mean cost; sign-ups that never buy are not counted);
    * ``ltv_cac`` = simple_clv / cac;
    * ``cac_payback_months`` = cac / (revenue_per_customer x margin) x months per period: the months
      of an active customer's margin that pay back what acquiring one cost.

Overall (the whole window up to as_of; ``kpis_overall`` table, one row per metric)
    Counts are distinct customers over the window (``active_customers``, ``new_customers``); rates are
    pooled over the periods: ``retention_rate`` = sum_p |A_{p-1} & A_p| / sum_p |A_{p-1}| (p from the
    second period), ``purchase_frequency`` = orders / sum_p A_p, ``revenue_per_customer`` = revenue /
    sum_p A_p (per active customer and period), ``repeat_purchase_rate`` = customers with two or more
    orders / customers, ``aov`` = gross_sales / orders, ``simple_clv`` from these as above,
    ``cac`` = total acquisition spend / new customers in the periods the spend covers (all periods for
    the customers column), ``ltv_cac_simple`` = simple_clv / cac, ``ltv_cac_bgnbd`` =
    bgnbd_clv_new_customer / cac and ``cac_payback_months`` as above. Also ``revenue_per_buyer``
    (revenue / customers) and ``orders_per_customer`` (orders / customers).

BG/NBD CLV (next to the simple formula)
    From an exported CLV bundle (``models/clv``, scored with :func:`crmlab.clv.pipeline.score_clv`) or
    by fitting the ``clv`` section's models (:func:`crmlab.clv.pipeline.fit_models` and
    :func:`~crmlab.clv.pipeline.score_rfm`) on the RFM summary at ``as_of``: ``bgnbd_clv_mean`` is
    the mean discounted CLV of the customer base over ``clv.horizon_months`` (what the existing
    customers are still worth), ``bgnbd_clv_new_customer`` = aov (the first order) + the BG/NBD CLV
    of a customer just acquired (frequency = recency = T = 0: the population's expected repeat
    purchases valued at the population mean spend), comparable with the simple CLV of a new customer.

Acquisition cohorts
    The cohort of a customer is the period of the first purchase; ``cohort_retention`` has one row per
    cohort, its size in ``customers`` and in column ``k`` the share of the cohort active k periods later
    (column ``0`` is 1 by definition; empty where that period is after as_of). Periods in which no
    customer was acquired have no row.

Revenue by segment
    One row per segment of the customers with a purchase up to as_of: customers, their share, orders,
    revenue, revenue share, revenue per customer and aov. The segment comes, in this order, from
    ``kpis.segment_table`` (any table with ``customer_id`` and ``segment_name`` or ``segment``, e.g.
    the segmentation pipeline's scores), from the customers column ``kpis.segment_column``, or from
    :func:`rfm_segments`. Customers the mapping does not cover are ``unassigned``.

Lifecycle stages
    ``lifecycle_stages``: per stage of :mod:`crmlab.lifecycle` at as_of (rules in the ``lifecycle``
    section; P(alive) from the CLV bundle when the BG/NBD CLV comes from one), the customers, their
    share, their net revenue up to as_of and its share, and their revenue in the last period.

Satisfaction
    ``satisfaction`` (with a surveys table): NPS and CSAT with intervals overall, by period, by
    segment (the segmentation bundle's, when one exists) and by lifecycle stage; see
    :mod:`crmlab.satisfaction`.

Funnel
    From a leads table (``lead_id``, ``stage``): a lead *reached* stage k when its furthest stage (over
    all its rows) is k or later in ``kpis.funnel_stages``; exit stages (``lost`` ...) reach only the
    first stage. Per stage: leads reached, conversion from the previous stage and from the first.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.config import CrmlabConfig, KpiConfig, TableSource
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.features.order import string_order
from crmlab.features.past import Past
from crmlab.rfm import RFM_SEGMENT_MAP, quintile_scores, rfm_segment_names
from crmlab.utils import Step, no_step

__all__ = [
    "MONTHS_PER_PERIOD",
    "RFM_SEGMENT_MAP",
    "ClvFigures",
    "KpiResult",
    "PurchaseLog",
    "acquisition_spend",
    "bgnbd_clv",
    "cohort_retention",
    "compute_kpis",
    "funnel_conversion",
    "lifecycle_by_stage",
    "load_segments",
    "overall_kpis",
    "period_kpis",
    "pseudonym",
    "read_leads",
    "read_marketing_spend",
    "revenue_by_segment",
    "rfm_segments",
    "run_kpis",
]

#: Months in one KPI period (a week is 7 / 30.4375 of an average month).
MONTHS_PER_PERIOD = {"M": 1.0, "Q": 3.0, "W": 7.0 / 30.4375}
_PANDAS_FREQ = {"M": "M", "Q": "Q", "W": "W-SUN"}



# --------------------------------------------------------------------------- purchases


def _day(ts: pd.Series) -> pd.Series:
    """Calendar day of each timestamp (local date of time-zone-aware ones) as datetime64 midnight."""
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    return ts.dt.normalize()


_NO_DAY = np.iinfo(np.int64).min  # the day number of a missing timestamp (NaT)


def _day_numbers(ts: pd.Series) -> np.ndarray:
    """Calendar day of each timestamp as days since 1970-01-01 (local date of time-zone-aware ones;
    :data:`_NO_DAY` for NaT): the day of :func:`_day` without building timestamps."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    values = ts.to_numpy() if ts.dtype.kind == "M" else _day(ts).to_numpy()
    return values.astype("datetime64[D]").astype(np.int64)  # floors, as normalize does


def _period_ordinal(day: np.ndarray, period: str) -> np.ndarray:
    """Period ordinal (pandas ``Period.ordinal``) of each day number, looked up per distinct day."""
    if day.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(day.min()), int(day.max())
    days = pd.DatetimeIndex(np.arange(lo, hi + 1).astype("datetime64[D]"))
    table = days.to_period(_PANDAS_FREQ[period]).asi8
    return table[day - lo]


def _labels(periods: pd.PeriodIndex, period: str) -> np.ndarray:
    """Period labels: ``1997-01`` (month), ``1997Q1`` (quarter), ISO week ``1997-W01`` (Monday-Sunday)."""
    if period == "W":
        return np.asarray(periods.start_time.strftime("%G-W%V"), dtype=object)
    return np.asarray(periods.astype(str), dtype=object)


def _period_index(first: int, last: int, period: str) -> pd.PeriodIndex:
    freq = _PANDAS_FREQ[period]
    return pd.PeriodIndex.from_ordinals(np.arange(first, last + 1), freq=freq)


@dataclass(frozen=True)
class _Rows:
    """Purchase or return rows in the order of the transactions: customer code, amount, day number
    (days since 1970-01-01) and period ordinal."""

    cust: np.ndarray
    amount: np.ndarray
    day: np.ndarray
    period: np.ndarray

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"cust": self.cust, "amount": self.amount,
                             "day": self.day.astype("datetime64[D]").astype("datetime64[ns]"), "period": self.period})


@dataclass(frozen=True)
class _ByCustomer:
    """The purchase rows sorted by (customer id, day), ties in their order in the transactions (what
    :func:`crmlab.features.past.past_transactions` does): ``perm`` of the purchase rows, ``starts`` of each
    buyer's rows, ``buyers`` (customer codes in id order), ``cust`` (0..buyers-1 of each sorted row)."""

    perm: np.ndarray
    starts: np.ndarray
    buyers: np.ndarray
    cust: np.ndarray
    day: np.ndarray  # of each sorted row


@dataclass(frozen=True, eq=False)
class PurchaseLog:
    """Purchases and returns up to ``as_of``, customers as integer codes into ``ids`` (in the order
    they first appear), each row with its period ordinal. Build it once with :meth:`from_transactions`
    and pass it instead of the transactions to the functions of this module to skip re-reading them
    (what :func:`compute_kpis` does); :meth:`regrid` changes the period. What does not depend on the
    period (the rows sorted by customer, the orders without order ids) is computed once and shared
    by the regridded logs."""

    pur: _Rows
    ret: _Rows
    order: pd.Series | None  # order key of each purchase row (unique within a customer), None: a row is an order
    ids: pd.Index  # customer id of each code
    as_of: date
    period: str
    first_period: int
    last_period: int
    shared: dict = field(default_factory=dict, repr=False)  # caches that do not depend on the period
    cache: dict = field(default_factory=dict, repr=False)  # caches of this period

    @classmethod
    def from_transactions(cls, transactions: pd.DataFrame, *, as_of: date, period: str = "M") -> PurchaseLog:
        return _purchase_log(transactions, as_of, period)

    @property
    def purchases(self) -> pd.DataFrame:
        """cust, amount, day (datetime64 midnight), period (+ order: key unique within a customer)."""
        out = self.pur.frame()
        if self.order is not None:
            out["order"] = self.order.to_numpy()
        return out

    @property
    def returns(self) -> pd.DataFrame:
        """cust, amount (< 0), day, period."""
        return self.ret.frame()

    def regrid(self, period: str) -> PurchaseLog:
        """The same rows with period ordinals of another frequency."""
        if period == self.period:
            return self
        if period not in _PANDAS_FREQ:
            raise ConfigError(f"period={period!r} is not one of {', '.join(_PANDAS_FREQ)}")
        pur = _Rows(self.pur.cust, self.pur.amount, self.pur.day, _period_ordinal(self.pur.day, period))
        ret = _Rows(self.ret.cust, self.ret.amount, self.ret.day, _period_ordinal(self.ret.day, period))
        first = min(int(pur.period.min()), int(ret.period.min()) if len(ret.period) else np.iinfo(np.int64).max)
        last = int(pd.Period(pd.Timestamp(self.as_of), freq=_PANDAS_FREQ[period]).ordinal)
        return PurchaseLog(pur, ret, self.order, self.ids, self.as_of, period, first, last, shared=self.shared)

    def orders(self) -> pd.DataFrame:
        """One row per (customer, order): ``cust``, ``period`` (of its first row), ``value`` (gross)."""
        cust, period, value = self.order_arrays()
        return pd.DataFrame({"cust": cust, "period": period, "value": value})

    def order_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`orders` as arrays (the purchase rows themselves when every row is an order)."""
        if "orders" not in self.cache:
            p = self.pur
            if self.order is None:  # every purchase row is an order
                self.cache["orders"] = (p.cust, p.period, p.amount)
            else:
                o = self.purchases.groupby(["cust", "order"], sort=False, observed=True).agg(
                    period=("period", "min"), value=("amount", "sum")).reset_index()
                self.cache["orders"] = (o["cust"].to_numpy(), o["period"].to_numpy(), o["value"].to_numpy())
        return self.cache["orders"]

    def id_order(self) -> np.ndarray:
        """The customer codes sorted by id (as :meth:`pandas.Index.sort_values` sorts the ids)."""
        if "id_order" not in self.shared:
            ids = self.ids
            if ids.dtype == "str" and len(ids) > 1:  # text: byte-wise, as pandas and polars sort it
                order = string_order(pl.from_pandas(pd.Series(ids, copy=False)))
            else:
                order = np.asarray(ids.argsort(), dtype=np.int64)
            self.shared["id_order"] = np.asarray(order, dtype=np.int64)
        return self.shared["id_order"]

    def by_customer(self) -> _ByCustomer:
        """The purchase rows sorted by (customer id, day), computed once (one stable integer sort)."""
        if "by_customer" not in self.shared:
            n = len(self.ids)
            rank = np.empty(n, dtype=np.int64)
            rank[self.id_order()] = np.arange(n)
            day = self.pur.day
            lo = int(day.min())
            bits = max(1, (int(day.max()) - lo).bit_length())
            key = rank[self.pur.cust]
            key <<= bits
            key |= day - lo
            # one stable sort gives the order and the sorted keys, from which the day and the customer
            # of every sorted row follow without gathering them
            done = pl.DataFrame({"key": key}).with_row_index("row").sort("key", maintain_order=True)
            del key
            perm = done["row"].to_numpy().astype(np.int64)
            sorted_key = done["key"].to_numpy()
            del done
            sorted_day = (sorted_key & ((1 << bits) - 1)) + lo
            sorted_key = sorted_key >> bits
            new = np.ones(len(perm), dtype=bool)
            np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
            del sorted_key
            starts = np.flatnonzero(new)
            self.shared["by_customer"] = _ByCustomer(perm=perm, starts=starts, buyers=self.pur.cust[perm[starts]],
                                                     cust=np.cumsum(new, dtype=np.int64) - 1, day=sorted_day)
        return self.shared["by_customer"]

    def customer_periods(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (customer, period) pairs with a purchase, sorted by customer id then period:
        customer (0..buyers-1, in id order), period offset from ``first_period`` and purchase rows."""
        if "customer_periods" not in self.cache:
            bc = self.by_customer()
            off = _period_ordinal(bc.day, self.period) - self.first_period
            new = np.ones(len(off), dtype=bool)
            np.not_equal(off[1:], off[:-1], out=new[1:])
            new[bc.starts] = True
            pairs = np.flatnonzero(new)
            self.cache["customer_periods"] = (bc.cust[pairs], off[pairs], np.diff(np.r_[pairs, len(off)]))
        return self.cache["customer_periods"]

    def past(self) -> Past:
        """The purchase rows as :func:`crmlab.features.past.past_transactions` orders them (customers in id
        order; the returns, which the lifecycle stages do not use, left out)."""
        bc = self.by_customer()
        ids = pl.from_pandas(pd.Series(self.ids[bc.buyers], copy=False)).alias("customer_id")
        return Past(ids=ids, starts=bc.starts, cust=bc.cust, day=bc.day.astype(np.int32),
                    amount=self.pur.amount[bc.perm], has_returns=False, extra={})


def _purchase_log(transactions: pd.DataFrame | PurchaseLog, as_of: date, period: str) -> PurchaseLog:
    if isinstance(transactions, PurchaseLog):
        if transactions.as_of != as_of:
            raise ValueError(f"the purchase log was built at as_of={transactions.as_of}, not {as_of}")
        return transactions.regrid(period)
    if period not in _PANDAS_FREQ:
        raise ConfigError(f"period={period!r} is not one of {', '.join(_PANDAS_FREQ)}")
    if transactions is None:
        raise DataError("the KPIs need a transactions table", expected="project.data.transactions")
    missing = [c for c in ("customer_id", "ts", "amount") if c not in transactions.columns]
    if missing:
        raise DataError(f"transactions lack column(s) {missing}", column=missing[0],
                        expected="clean transactions with customer_id, ts, amount")
    day = _day_numbers(transactions["ts"])
    as_of_day = int(np.datetime64(as_of, "D").astype(np.int64))
    keep = (day <= as_of_day) & (day != _NO_DAY)
    everything = bool(keep.all())
    if not keep.any():
        raise DataError(f"no transaction on or before the cut-off as_of={as_of}", column="ts")

    def past(col: str) -> pd.Series:
        s = transactions[col]
        return s.reset_index(drop=True) if everything else s[keep].reset_index(drop=True)

    day = day if everything else day[keep]
    codes, ids = pd.factorize(past("customer_id"), sort=False)
    period_ord = _period_ordinal(day, period)
    amount = past("amount").to_numpy(dtype=np.float64)
    is_purchase = amount >= 0
    if not is_purchase.any():
        raise DataError(f"no purchase (amount >= 0) on or before as_of={as_of}", column="amount")
    is_return = ~is_purchase
    codes = codes.astype(np.int64, copy=False)
    if is_return.any():
        pur = _Rows(codes[is_purchase], amount[is_purchase], day[is_purchase], period_ord[is_purchase])
        ret = _Rows(codes[is_return], amount[is_return], day[is_return], period_ord[is_return])
    else:  # no return: the purchases are every row
        pur = _Rows(codes, amount, day, period_ord)
        ret = _Rows(codes[:0], amount[:0], day[:0], period_ord[:0])
    order = None
    if "order_id" in transactions.columns:
        oids = past("order_id")
        if oids.notna().any():
            oid = oids.astype("string")[is_purchase].reset_index(drop=True)
            rows = pd.Series(np.flatnonzero(is_purchase)).astype("string")
            order = oid.where(oid.notna(), "\x00row" + rows)
    last = int(pd.Period(pd.Timestamp(as_of), freq=_PANDAS_FREQ[period]).ordinal)
    return PurchaseLog(pur, ret, order, pd.Index(ids, name="customer_id"), as_of, period,
                       int(period_ord.min()), last)


def _lg_period(transactions: pd.DataFrame | PurchaseLog) -> str:
    """The period of a purchase log (for functions whose result does not depend on it), else M."""
    return transactions.period if isinstance(transactions, PurchaseLog) else "M"


def _sorted_unique(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and their counts (one sort; numpy's hash-based
    ``unique`` is several times slower on millions of keys)."""
    k = np.sort(key, kind="stable")
    if k.size == 0:
        return k, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[starts], np.diff(np.r_[starts, k.size])


def _positions(index: pd.Index, keys: pd.Index) -> np.ndarray:
    """Position in ``index`` (unique) of each key, -1 where it lacks one: ``index.get_indexer(keys)``,
    by a polars hash join when both hold text without missing values (several times faster on
    millions of ids)."""
    if (index.dtype == "str" and keys.dtype == "str" and len(keys) > 10_000
            and not index.hasnans and not keys.hasnans):
        left = pl.DataFrame({"k": pl.from_pandas(pd.Series(keys, copy=False))})
        right = pl.DataFrame({"k": pl.from_pandas(pd.Series(index, copy=False)),
                              "pos": np.arange(len(index), dtype=np.int64)})
        joined = left.join(right, on="k", how="left", maintain_order="left")
        return joined["pos"].fill_null(-1).to_numpy()
    return index.get_indexer(keys)


def _reindex(series: pd.Series, keys: pd.Index) -> pd.Series:
    """``series.reindex(keys)`` (unique index) through :func:`_positions`."""
    if not (len(series) and series.index.dtype == "str" and keys.dtype == "str" and series.index.is_unique):
        return series.reindex(keys)
    pos = _positions(series.index, keys)
    out = series.iloc[np.maximum(pos, 0)].reset_index(drop=True)
    if (pos < 0).any():
        out = out.where(pos >= 0)
    return out.set_axis(keys)


def _period_sums(rows: _Rows, idx: np.ndarray) -> pd.Series:
    """The amounts summed by period over ``idx`` (0 for a period without rows): pandas' group sums in
    row order (compensated), grouped on the period offsets as categories instead of hashing them."""
    periods = pd.Categorical.from_codes(rows.period - idx[0], categories=np.arange(len(idx)))
    sums = pd.Series(rows.amount).groupby(periods, observed=False).sum()
    return pd.Series(sums.to_numpy(dtype=np.float64), index=idx)


def _ratio(num: Any, den: Any) -> Any:
    """num / den with NaN where den is 0 or missing."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def _simple_clv(aov: Any, frequency: Any, churn: Any, margin: float) -> Any:
    """aov x frequency x (1 / churn) x margin; NaN when churn is 0 or missing."""
    lifespan = _ratio(1.0, churn)
    return np.asarray(aov, dtype=np.float64) * np.asarray(frequency, dtype=np.float64) * lifespan * margin


# --------------------------------------------------------------------------- by period


def period_kpis(
    transactions: pd.DataFrame | PurchaseLog,
    *,
    as_of: date,
    period: str = "M",
    margin: float = 1.0,
    spend: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per period from the first transaction's to as_of's (see the module doc for every column).

    ``spend`` is the acquisition spend per period (a Series indexed by :class:`pandas.Period` of the
    same frequency, from :func:`acquisition_spend`); without it the CAC columns are empty.
    """
    if period not in _PANDAS_FREQ:
        raise ConfigError(f"kpis.period={period!r} is not one of {', '.join(_PANDAS_FREQ)}")
    lg = _purchase_log(transactions, as_of, period)
    idx = np.arange(lg.first_period, lg.last_period + 1)
    n_per = len(idx)
    # (customer, period) pairs with a purchase, sorted by customer, then period, with their orders
    if lg.order is None:  # every purchase row is an order
        cust, off, n_in = lg.customer_periods()
    else:
        o_cust, o_period, _ = lg.order_arrays()
        key = o_cust.astype(np.int64) * n_per + (o_period - lg.first_period)
        ukey, n_in = _sorted_unique(key)
        cust, off = ukey // n_per, ukey % n_per
    active = pd.Series(np.bincount(off, minlength=n_per), index=idx)
    head = np.r_[True, cust[1:] != cust[:-1]]  # first period of each customer
    new = pd.Series(np.bincount(off[head], minlength=n_per), index=idx)
    kept = ~head & (np.r_[0, off[:-1]] == off - 1)  # active in the period before too
    retained = pd.Series(np.bincount(off[kept], minlength=n_per), index=idx)
    base = active.shift(1).to_numpy(dtype=np.float64)  # |A_{p-1}|, NaN for the first period
    # cumulative orders of the customer by the end of each of its active periods
    cum = np.cumsum(n_in)
    starts = np.maximum.accumulate(np.where(head, np.arange(len(head)), 0))
    cum_by_customer = cum - np.r_[0, cum][starts]
    repeaters = pd.Series(np.bincount(off[cum_by_customer >= 2], minlength=n_per), index=idx)

    n_orders = pd.Series(np.bincount(off, weights=n_in, minlength=n_per).astype(np.int64), index=idx)
    gross = _period_sums(lg.pur, idx)
    rets = _period_sums(lg.ret, idx)
    revenue = gross + rets

    periods = _period_index(lg.first_period, lg.last_period, period)
    out = pd.DataFrame({
        "period": _labels(periods, period),
        "start": periods.start_time.normalize(),
        "end": periods.end_time.normalize(),
        "complete": periods.end_time.normalize() <= pd.Timestamp(as_of),
        "active_customers": active.to_numpy(),
        "new_customers": new.to_numpy(),
        "returning_customers": (active - new).to_numpy(),
        "orders": n_orders.to_numpy(),
        "gross_sales": gross.to_numpy(),
        "returns": rets.to_numpy(),
        "revenue": revenue.to_numpy(),
    })
    retention = _ratio(retained.to_numpy(), base)
    out["retention_rate"] = retention
    out["churn_rate"] = 1.0 - retention
    out["repeat_purchase_rate"] = _ratio(repeaters.to_numpy(), active.to_numpy())
    out["aov"] = _ratio(gross.to_numpy(), n_orders.to_numpy())
    out["purchase_frequency"] = _ratio(n_orders.to_numpy(), active.to_numpy())
    out["revenue_per_customer"] = _ratio(revenue.to_numpy(), active.to_numpy())
    out["simple_clv"] = _simple_clv(out["aov"], out["purchase_frequency"], out["churn_rate"], margin)
    if spend is not None:
        s = spend.reindex(periods).to_numpy(dtype=np.float64)
        out["acquisition_spend"] = s
        out["cac"] = _ratio(s, out["new_customers"].to_numpy())
    else:
        out["acquisition_spend"] = np.nan
        out["cac"] = np.nan
    out["ltv_cac"] = _ratio(out["simple_clv"].to_numpy(), out["cac"].to_numpy())
    out["cac_payback_months"] = _ratio(out["cac"].to_numpy(), out["revenue_per_customer"].to_numpy() * margin) \
        * MONTHS_PER_PERIOD[period]
    return out


# --------------------------------------------------------------------------- overall


def overall_kpis(
    transactions: pd.DataFrame | PurchaseLog,
    by_period: pd.DataFrame,
    *,
    as_of: date,
    period: str = "M",
    margin: float = 1.0,
    clv: ClvFigures | None = None,
) -> pd.DataFrame:
    """The KPIs over the whole window (module doc, "Overall"): a table of ``metric``, ``value``,
    ``definition``. ``by_period`` is :func:`period_kpis`'s table of the same data and period."""
    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    o_cust, _, _ = lg.order_arrays()
    per_customer = np.bincount(o_cust, minlength=len(lg.ids))
    per_customer = per_customer[per_customer > 0]  # customers with only returns are not customers here
    n_customers = int(per_customer.size)
    n_orders = int(len(o_cust))
    gross = float(pd.Series(lg.pur.amount).sum())
    revenue = gross + float(pd.Series(lg.ret.amount).sum())
    bp = by_period
    active_periods = float(bp["active_customers"].sum())
    retained = float((bp["retention_rate"] * bp["active_customers"].shift(1)).sum(min_count=1))
    base = float(bp["active_customers"].shift(1)[bp["retention_rate"].notna()].sum())
    retention = _ratio(retained, base)
    aov = _ratio(gross, n_orders)
    frequency = _ratio(n_orders, active_periods)
    rpc = _ratio(revenue, active_periods)
    simple = float(_simple_clv(aov, frequency, 1.0 - retention, margin))
    covered = bp["acquisition_spend"].notna()
    spend = float(bp.loc[covered, "acquisition_spend"].sum()) if covered.any() else math.nan
    cac = _ratio(spend, float(bp.loc[covered, "new_customers"].sum())) if covered.any() else math.nan
    months = MONTHS_PER_PERIOD[period]
    unit = {"M": "month", "W": "week", "Q": "quarter"}[period]
    rows: list[tuple[str, float, str]] = [
        ("periods", float(len(bp)), f"{unit}s from the first transaction to as_of"),
        ("active_customers", float(n_customers), "customers with a purchase in the window"),
        ("new_customers", float(bp["new_customers"].sum()), "customers whose first purchase is in the window"),
        ("active_customers_last_period", float(bp["active_customers"].iloc[-1]),
         f"customers with a purchase in the last {unit} ({bp['period'].iloc[-1]})"),
        ("orders", float(n_orders), "distinct orders (order_id, else purchase rows)"),
        ("gross_sales", gross, "sum of purchase amounts"),
        ("revenue", revenue, "gross sales + returns (net)"),
        ("retention_rate", retention, f"pooled {unit}-over-{unit}: sum |A(p-1) & A(p)| / sum |A(p-1)|"),
        ("churn_rate", 1.0 - retention, "1 - retention_rate"),
        ("repeat_purchase_rate", _ratio(float((per_customer >= 2).sum()), n_customers),
         "customers with 2+ orders / customers"),
        ("aov", aov, "gross sales / orders"),
        ("purchase_frequency", frequency, f"orders per active customer per {unit} (orders / sum of A(p))"),
        ("orders_per_customer", _ratio(n_orders, n_customers), "orders / customers over the window"),
        ("revenue_per_customer", rpc, f"revenue per active customer per {unit} (revenue / sum of A(p))"),
        ("revenue_per_buyer", _ratio(revenue, n_customers), "revenue / customers over the window"),
        ("expected_lifespan_months", _ratio(1.0, 1.0 - retention) * months,
         f"1 / churn_rate (in {unit}s), converted to months"),
        ("simple_clv", simple, "aov x purchase_frequency x (1 / churn_rate) x margin"),
        ("acquisition_spend", spend, "acquisition spend over the periods it covers"),
        ("cac", cac, "acquisition spend / new customers of those periods"),
        ("ltv_cac_simple", _ratio(simple, cac), "simple_clv / cac"),
        ("cac_payback_months", _ratio(cac, rpc * margin) * months,
         "cac / (revenue_per_customer x margin), in months"),
    ]
    if clv is not None:
        rows += [
            ("bgnbd_clv_mean", clv.mean, f"mean BG/NBD CLV of the {clv.customers:,} customers over "
             f"{clv.horizon_months} months ({clv.source})"),
            ("bgnbd_clv_median", clv.median, "median of the same"),
            ("bgnbd_clv_new_customer", aov + clv.new_customer if np.isfinite(clv.new_customer) else math.nan,
             "aov (first order) + BG/NBD CLV of a customer just acquired"),
        ]
        rows.append(("ltv_cac_bgnbd", _ratio(rows[-1][1], cac), "bgnbd_clv_new_customer / cac"))
    return pd.DataFrame(rows, columns=["metric", "value", "definition"])


# --------------------------------------------------------------------------- cohorts


def cohort_retention(transactions: pd.DataFrame | PurchaseLog, *, as_of: date, period: str = "M") -> pd.DataFrame:
    """Acquisition-cohort retention: one row per cohort (period of the first purchase), ``customers``
    (the cohort's size), then columns ``0, 1, 2, ...``: the share of the cohort with a purchase k
    periods after its first (empty where that period is after as_of)."""
    lg = _purchase_log(transactions, as_of, period)
    n_per = lg.last_period - lg.first_period + 1
    cust, off, _ = lg.customer_periods()
    head = np.r_[True, cust[1:] != cust[:-1]]
    cohort_of = off[np.maximum.accumulate(np.where(head, np.arange(len(head)), 0))]
    counts = np.bincount(cohort_of * n_per + (off - cohort_of), minlength=n_per * n_per).reshape(n_per, n_per)
    cohorts = np.arange(lg.first_period, lg.last_period + 1)
    ages = np.arange(0, n_per)
    sizes = pd.Series(counts[:, 0], index=cohorts)
    share = counts.astype(np.float64) / np.where(sizes.to_numpy() > 0, sizes.to_numpy(), np.nan)[:, None]
    observed = (cohorts[:, None] + ages[None, :]) <= lg.last_period
    share = np.where(observed, np.nan_to_num(share, nan=0.0), np.nan)
    share[sizes.to_numpy() == 0] = np.nan
    out = pd.DataFrame(share, columns=[str(a) for a in ages])
    out.insert(0, "customers", sizes.to_numpy())
    out.insert(0, "cohort", _labels(_period_index(lg.first_period, lg.last_period, period), period))
    return out[out["customers"] > 0].reset_index(drop=True)


# --------------------------------------------------------------------------- acquisition cost


def _example(df: pd.DataFrame, mask: np.ndarray) -> dict[str, Any] | None:
    rows = np.flatnonzero(mask)
    return df.iloc[int(rows[0])].to_dict() if rows.size else None


def read_marketing_spend(source: TableSource) -> pd.DataFrame:
    """Read the marketing-spend table: ``period`` (a date, or a month such as ``1997-01``) as the
    first day of that period, ``spend`` (number >= 0) and ``channel`` (``all`` when absent)."""
    from crmlab.data.io import read_table, source_name

    raw = read_table(source, "marketing_spend")
    name = source_name(source)
    when = pd.to_datetime(raw["period"].astype("string"), errors="coerce", format="mixed")
    bad = when.isna().to_numpy()
    if bad.any():
        raise DataError("period is not a date or a month", file=name, column="period",
                        expected="dates such as 1997-01-01 or months such as 1997-01", example=_example(raw, bad))
    spend = pd.to_numeric(raw["spend"].astype("string").str.replace(r"[,$\s]", "", regex=True), errors="coerce")
    bad = (spend.isna() | (spend < 0)).to_numpy()
    if bad.any():
        raise DataError("spend is not a number >= 0", file=name, column="spend", expected="amounts such as 1250.50",
                        example=_example(raw, bad))
    channel = raw["channel"].astype("string").fillna("unknown") if "channel" in raw.columns else "all"
    return pd.DataFrame({"period": when.to_numpy(), "channel": channel, "spend": spend.to_numpy(dtype=np.float64)})


def acquisition_spend(
    kcfg: KpiConfig,
    transactions: pd.DataFrame | PurchaseLog,
    *,
    as_of: date,
    period: str,
    customers: pd.DataFrame | None = None,
    marketing_spend: pd.DataFrame | None = None,
) -> tuple[pd.Series | None, str, pd.DataFrame | None]:
    """Acquisition spend per period (indexed by :class:`pandas.Period`), its source, and CAC by channel
    (marketing spend by channel / new customers by the customers table's acquisition channel, when
    both exist). See the module doc for the two sources and ``kpis.cac_source``."""
    source = kcfg.cac_source
    has_cost = customers is not None and kcfg.acquisition_cost_column in customers.columns
    if source == "auto":
        source = "marketing_spend" if marketing_spend is not None else "customers" if has_cost else "none"
    if source == "none":
        return None, "none", None
    freq = _PANDAS_FREQ[period]
    lg = _purchase_log(transactions, as_of, period)
    bc = lg.by_customer()
    first_period = np.full(len(lg.ids), np.iinfo(np.int64).min)
    first_period[bc.buyers] = lg.pur.period[bc.perm[bc.starts]]  # rows sorted by day: the first is the earliest
    buyers = np.flatnonzero(first_period != np.iinfo(np.int64).min)  # in code order
    first = pd.Series(first_period[buyers], index=pd.Index(lg.ids[buyers], name="customer_id"))
    if source == "marketing_spend":
        if marketing_spend is None:
            raise ConfigError("kpis.cac_source=marketing_spend needs project.data.marketing_spend (a table with "
                              "period, spend, optional channel)")
        ms = marketing_spend[marketing_spend["period"] <= pd.Timestamp(as_of)]
        per = pd.PeriodIndex(ms["period"], freq=freq)
        spend = ms.groupby(per)["spend"].sum()
        by_channel = None
        chan_col = kcfg.acquisition_channel_column
        if (ms["channel"] != "all").any() and customers is not None and chan_col in customers.columns:
            spend_ch = ms.groupby("channel")["spend"].sum()
            covered = set(spend.index.asi8)
            new_ids = first[first.isin(covered)].index
            chan = customers.drop_duplicates("customer_id").set_index("customer_id")[chan_col]
            new_ch = _reindex(chan, new_ids).astype("string").fillna("unknown").value_counts()
            by_channel = pd.DataFrame({"acquisition_spend": spend_ch, "new_customers": new_ch}).fillna(0)
            by_channel["cac"] = _ratio(by_channel["acquisition_spend"].to_numpy(),
                                       by_channel["new_customers"].to_numpy())
            by_channel = by_channel.rename_axis("channel").reset_index()
        return spend, "marketing_spend", by_channel
    if not has_cost:
        raise ConfigError(f"kpis.cac_source=customers needs a customers table with the column "
                          f"kpis.acquisition_cost_column={kcfg.acquisition_cost_column!r}")
    cost = pd.to_numeric(customers.drop_duplicates("customer_id").set_index("customer_id")[kcfg.acquisition_cost_column],
                         errors="coerce")
    frame = pd.DataFrame({"period": first, "cost": _reindex(cost, first.index)})
    spend = frame.groupby("period")["cost"].sum(min_count=1)
    spend.index = pd.PeriodIndex.from_ordinals(spend.index.to_numpy(), freq=freq)
    return spend, f"customers.{kcfg.acquisition_cost_column}", None


# --------------------------------------------------------------------------- segments


def rfm_segments(transactions: pd.DataFrame | PurchaseLog, *, as_of: date) -> pd.DataFrame:
    """Named RFM segments of the customers with a purchase up to as_of: ``customer_id``,
    ``r_score``, ``f_score``, ``m_score`` (1..5) and ``segment``.

    Scores are quintiles of the percentile rank (ties share their average rank): recency = days from
    the last purchase to as_of (fewer days = higher score), frequency = orders, monetary = gross
    sales; ``segment`` is the first pattern of :data:`RFM_SEGMENT_MAP` matching "<r><f>".
    """
    return _rfm_segments(_purchase_log(transactions, as_of, _lg_period(transactions)))[0]


def _rfm_segments(lg: PurchaseLog) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`rfm_segments` and the customer code of each of its rows."""
    bc, r, f, m = _rfm_scores(lg)
    names = rfm_segment_names()
    out = pd.DataFrame({"customer_id": lg.ids[bc.buyers].to_numpy(), "r_score": r, "f_score": f, "m_score": m,
                        "segment": names[r * 6 + f]})
    return out, bc.buyers


def _rfm_scores(lg: PurchaseLog) -> tuple[_ByCustomer, np.ndarray, np.ndarray, np.ndarray]:
    """The buyers in id order and their R, F and M scores (:func:`rfm_segments`)."""
    n = len(lg.ids)
    bc = lg.by_customer()  # buyers in id order, their rows by day
    last = bc.day[np.r_[bc.starts[1:], len(bc.day)] - 1]
    codes, _, value = lg.order_arrays()
    as_of_day = int(np.datetime64(lg.as_of, "D").astype(np.int64))
    r = _count_quintiles(as_of_day - last, ascending=False).astype(int)
    f = _count_quintiles(np.bincount(codes, minlength=n)[bc.buyers]).astype(int)
    m = quintile_scores(np.bincount(codes, weights=value, minlength=n)[bc.buyers]).astype(int)
    return bc, r, f, m


def _count_quintiles(values: np.ndarray, *, ascending: bool = True) -> np.ndarray:
    """:func:`crmlab.rfm.quintile_scores` of whole numbers >= 0 (days, orders), by counting instead of
    sorting: the average rank of a tie group is the sum of its ranks over its size, as pandas
    computes it (the sum is a whole number, exact in float64), then divided by the count."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0 or v.min() < 0 or v.max() > 50_000_000:
        return quintile_scores(pd.Series(values), ascending=ascending)
    if not ascending:
        v = v.max() - v
    counts = np.bincount(v)
    below = np.cumsum(counts) - counts
    sum_ranks = counts * below + counts * (counts + 1) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        average = sum_ranks.astype(np.float64) / counts.astype(np.float64)
    pct = average[v] / float(v.size)
    return np.clip(np.ceil(pct * 5), 1, 5).astype(np.int8)


def _rfm_segment_codes(lg: PurchaseLog) -> tuple[np.ndarray, np.ndarray]:
    """The RFM segment of every customer code as a code into the distinct names (the second item;
    ``unassigned`` for customers without a purchase)."""
    bc, r, f, _ = _rfm_scores(lg)
    name_of_cell, names = pd.factorize(rfm_segment_names())
    names = [str(s) for s in names]
    if "unassigned" not in names:
        names.append("unassigned")
    codes = np.full(len(lg.ids), names.index("unassigned"), dtype=np.int64)
    codes[bc.buyers] = name_of_cell[r * 6 + f]
    return codes, np.asarray(names, dtype=object)


def load_segments(
    kcfg: KpiConfig,
    transactions: pd.DataFrame | PurchaseLog,
    *,
    as_of: date,
    customers: pd.DataFrame | None = None,
) -> tuple[pd.Series, str]:
    """customer_id -> segment, and where it came from (module doc, "Revenue by segment")."""
    if kcfg.segment_table is not None:
        path = Path(kcfg.segment_table)
        if not path.is_file():
            raise DataError("file not found", file=str(path), expected="kpis.segment_table: a CSV or Parquet file")
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
        col = next((c for c in ("segment_name", "segment") if c in df.columns), None)
        if "customer_id" not in df.columns or col is None:
            raise DataError("needs columns customer_id and segment_name (or segment)", file=str(path),
                            column="segment_name", expected=f"found {list(df.columns)[:12]}",
                            example=df.iloc[0].to_dict() if len(df) else None)
        seg = df.drop_duplicates("customer_id").set_index(df.drop_duplicates("customer_id")["customer_id"].astype(str))
        return seg[col].astype("string"), f"{path}:{col}"
    if kcfg.segment_column is not None:
        if customers is None or kcfg.segment_column not in customers.columns:
            raise ConfigError(f"kpis.segment_column={kcfg.segment_column!r} is not a column of the customers table"
                              + (f" (columns: {list(customers.columns)[:12]})" if customers is not None else
                                 " (no customers table: set project.data.customers)"))
        c = customers.drop_duplicates("customer_id")
        return c.set_index("customer_id")[kcfg.segment_column].astype("string"), \
            f"customers.{kcfg.segment_column}"
    rfm = rfm_segments(transactions, as_of=as_of)
    return rfm.set_index("customer_id")["segment"], "rfm"


def _segment_of(ids: pd.Index, segments: pd.Series) -> np.ndarray:
    """The segment label of each id (``unassigned`` when the mapping lacks it); ids are matched as
    they are, or as text when their types differ (1001 vs '1001')."""
    seg = segments[~segments.index.duplicated()]
    index = pd.Index(seg.index)
    pos = _positions(index, ids)
    if len(ids) and (pos < 0).all() and len(index):
        pos = _positions(index.astype(str), pd.Index(ids).astype(str))
    labels = seg.astype("string").fillna("unassigned").to_numpy(dtype=object)
    return np.where(pos >= 0, labels[np.maximum(pos, 0)] if len(labels) else "unassigned", "unassigned")


def _group_sums(labels: Any, columns: dict[str, np.ndarray], name: str) -> pd.DataFrame:
    """``DataFrame(columns).groupby(labels).agg(...)``: rows per label (``customers``) and the sums of the
    columns, indexed by the labels sorted (missing labels left out). ``labels``: the labels, or their
    integer codes (-1: missing) and the distinct labels. Grouping on codes sums each group in the same
    row order as grouping on the labels does, without hashing millions of strings again."""
    codes, uniques = labels if isinstance(labels, tuple) else pd.factorize(labels)
    groups = pd.Categorical.from_codes(codes, categories=np.arange(len(uniques)))  # -1: missing, left out
    first = next(iter(columns))
    out = pd.DataFrame(columns).groupby(groups, observed=True).agg(
        customers=(first, "size"), **{c: (c, "sum") for c in columns})
    out.index = pd.Index(np.asarray(uniques, dtype=object)[np.asarray(out.index, dtype=np.int64)], name=name)
    return out.sort_index()


def revenue_by_segment(transactions: pd.DataFrame | PurchaseLog, segments: pd.Series, *, as_of: date) -> pd.DataFrame:
    """Revenue by segment of the customers with a purchase up to as_of (module doc)."""
    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    return _revenue_by_segment(lg, _segment_of(lg.ids, segments))


def _revenue_by_segment(lg: PurchaseLog, labels: np.ndarray | tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """:func:`revenue_by_segment` with the segment label of each customer code (or their codes and the
    distinct labels, as :func:`_group_sums` takes them)."""
    n = len(lg.ids)
    codes, _, value = lg.order_arrays()
    n_orders = np.bincount(codes, minlength=n)
    gross = np.bincount(codes, weights=value, minlength=n)
    revenue = gross + np.bincount(lg.ret.cust, weights=lg.ret.amount, minlength=n)
    bought = n_orders > 0
    labels = (labels[0][bought], labels[1]) if isinstance(labels, tuple) else labels[bought]
    out = _group_sums(labels, {"orders": n_orders[bought], "gross_sales": gross[bought],
                                       "revenue": revenue[bought]}, "segment")
    out = out[["customers", "orders", "gross_sales", "revenue"]]
    out["customer_share"] = out["customers"] / out["customers"].sum()
    total = out["revenue"].sum()
    out["revenue_share"] = _ratio(out["revenue"].to_numpy(), np.full(len(out), total))
    out["revenue_per_customer"] = out["revenue"] / out["customers"]
    out["aov"] = _ratio(out["gross_sales"].to_numpy(), out["orders"].to_numpy())
    out = out.sort_values("revenue", ascending=False).reset_index()
    return out[["segment", "customers", "customer_share", "orders", "revenue", "revenue_share",
                "revenue_per_customer", "aov"]]


# --------------------------------------------------------------------------- funnel


def read_leads(source: TableSource) -> pd.DataFrame:
    """Read the leads/opportunities table (``lead_id``, ``stage``; other columns kept)."""
    from crmlab.data.io import read_table, source_name

    df = read_table(source, "leads")
    df = df.assign(lead_id=df["lead_id"].astype("string"), stage=df["stage"].astype("string"))
    df.attrs["source"] = source_name(source)
    return df


def funnel_conversion(leads: pd.DataFrame, stages: list[str], exit_stages: list[str] = ()) -> pd.DataFrame:
    """Per stage: ``leads`` that reached it, ``conversion_from_previous`` and ``conversion_from_first``
    (module doc, "Funnel"). A stage outside ``stages`` and ``exit_stages`` is a named error."""
    name = leads.attrs.get("source")
    for col in ("lead_id", "stage"):
        if col not in leads.columns:
            raise DataError(f"the leads table lacks column {col!r}", file=name, column=col,
                            expected="lead_id and stage")
    order = {s.strip().lower(): i for i, s in enumerate(stages)}
    exits = {s.strip().lower() for s in exit_stages}
    stage = leads["stage"].astype("string").str.strip().str.lower()
    known = stage.isin(list(order) + list(exits)).fillna(False).to_numpy()
    if not known.all() or leads["lead_id"].isna().any():
        bad = ~known | leads["lead_id"].isna().to_numpy()
        raise DataError(f"unknown stage {stage[bad].iloc[0]!r} or missing lead_id", file=name, column="stage",
                        expected=f"one of kpis.funnel_stages {stages} or kpis.funnel_exit_stages {list(exit_stages)}",
                        example=_example(leads[["lead_id", "stage"]], bad))
    idx = stage.map(order).fillna(0).astype(int)
    furthest = idx.groupby(leads["lead_id"].to_numpy()).max()
    reached = np.array([(furthest >= k).sum() for k in range(len(stages))], dtype=np.int64)
    return pd.DataFrame({
        "stage": stages,
        "leads": reached,
        "conversion_from_previous": np.concatenate([[np.nan], _ratio(reached[1:], reached[:-1])]),
        "conversion_from_first": _ratio(reached, np.full(len(stages), reached[0])),
    })


# --------------------------------------------------------------------------- lifecycle


def lifecycle_by_stage(transactions: pd.DataFrame | PurchaseLog, stages: pd.DataFrame, *, as_of: date) -> pd.DataFrame:
    """Per lifecycle stage (``stages``: :func:`crmlab.lifecycle.lifecycle_stages` at ``as_of``): ``customers``,
    ``customer_share``, ``revenue`` (net, up to as_of), ``revenue_share`` and ``revenue_last_period`` (net,
    in the period holding as_of). Every stage has a row, in lifecycle order."""
    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    pos = _positions(pd.Index(lg.ids.astype(str)), pd.Index(stages["customer_id"].astype(str)))
    return _lifecycle_by_stage(lg, stages, pos)


def _lifecycle_by_stage(lg: PurchaseLog, stages: pd.DataFrame, pos: np.ndarray) -> pd.DataFrame:
    """:func:`lifecycle_by_stage` with the customer code of each row of ``stages`` (-1: none)."""
    from crmlab.lifecycle import STAGES

    n = len(lg.ids)
    p, r = lg.pur, lg.ret
    last = p.period == lg.last_period
    last_r = r.period == lg.last_period
    revenue = np.bincount(p.cust, weights=p.amount, minlength=n) + np.bincount(r.cust, weights=r.amount, minlength=n)
    recent = (np.bincount(p.cust[last], weights=p.amount[last], minlength=n)
              + np.bincount(r.cust[last_r], weights=r.amount[last_r], minlength=n))
    out = _group_sums(stages["lifecycle_stage"], {
        "revenue": np.where(pos >= 0, revenue[np.maximum(pos, 0)], 0.0),
        "revenue_last_period": np.where(pos >= 0, recent[np.maximum(pos, 0)], 0.0)}, "stage")
    out = out.reindex(list(STAGES)).fillna(0.0)
    out["customers"] = out["customers"].astype(np.int64)
    out["customer_share"] = _ratio(out["customers"].to_numpy(), np.full(len(out), out["customers"].sum()))
    out["revenue_share"] = _ratio(out["revenue"].to_numpy(), np.full(len(out), out["revenue"].sum()))
    return out.rename_axis("stage").reset_index()[["stage", "customers", "customer_share", "revenue",
                                                   "revenue_share", "revenue_last_period"]]


def _stages_at(cfg: CrmlabConfig, transactions: pd.DataFrame, as_of: date, clv: ClvFigures | None,
               notes: list[str], past: Past | None = None) -> pd.DataFrame | None:
    """Lifecycle stages at as_of, P(alive) from the CLV figures when they come from the bundle (or when
    lifecycle.use_p_alive says yes); None with a note when the stages cannot be derived. ``past``: the
    purchase rows of ``transactions`` in (customer id, day) order, when already at hand."""
    from crmlab.lifecycle import lifecycle_stages

    use = cfg.lifecycle.use_p_alive
    p_alive = None
    if clv is not None and (use is True or (use == "auto" and clv.source.startswith("bundle"))):
        p_alive = pd.Series(clv.scores["p_alive"].to_numpy(dtype=np.float64),
                            index=clv.scores["customer_id"].astype(str).to_numpy())
    elif use is True:
        raise ConfigError("lifecycle.use_p_alive=true needs the BG/NBD CLV (kpis.clv_source is none or it failed)")
    try:
        return lifecycle_stages(transactions, as_of=as_of, cfg=cfg.lifecycle, p_alive=p_alive, past=past)
    except DataError as exc:
        notes.append(f"lifecycle stages not available: {exc}")
        return None


# --------------------------------------------------------------------------- BG/NBD CLV


@dataclass
class ClvFigures:
    """BG/NBD + Gamma-Gamma CLV of the customer base, from a bundle or a fit (module doc)."""

    scores: pd.DataFrame  # customer_id, frequency, recency, T, monetary_value, p_alive, expected_*, clv
    new_customer: float
    source: str
    horizon_months: int
    time_unit: str

    @property
    def customers(self) -> int:
        return int(self.scores["clv"].notna().sum())

    @property
    def mean(self) -> float:
        return float(self.scores["clv"].mean())

    @property
    def median(self) -> float:
        return float(self.scores["clv"].median())


_NEW = {"customer_id": ["(new customer)"], "frequency": [0.0], "recency": [0.0], "T": [0.0], "monetary_value": [0.0]}


def bgnbd_clv(cfg: CrmlabConfig, transactions: pd.DataFrame, *, as_of: date) -> ClvFigures | None:
    """BG/NBD CLV per customer at ``as_of`` by ``kpis.clv_source`` (None for 'none'): scored with the
    exported bundle ``<models_dir>/clv`` or fitted with the ``clv`` section (crmlab.clv.pipeline)."""
    source = cfg.kpis.clv_source
    if source == "none":
        return None
    from crmlab.clv.bundle import score_clv
    from crmlab.clv.models import fit_models, score_rfm
    from crmlab.clv.result import ClvSettings
    from crmlab.export import load_bundle
    from crmlab.features import rfm_summary

    path = Path(cfg.project.output.models_dir) / "clv"
    if source == "bundle" or (source == "auto" and (path / "manifest.json").is_file()):
        bundle = load_bundle(path, pipeline="clv")
        settings = ClvSettings.from_dict(bundle.params.get("clv", {}))
        rfm = rfm_summary(transactions, as_of=as_of, time_unit=settings.time_unit)
        # the BG/NBD-family model of the bundle, also when it shipped LightGBM or a blend for expected purchases
        scores = rfm.merge(score_clv(rfm, bundle, parametric_only=True), on="customer_id")
        new = float(score_clv(pd.DataFrame(_NEW), bundle, parametric_only=True)["clv"].iloc[0])
        label = f"bundle {path} ({bundle.version})"
    else:
        settings = ClvSettings.from_config(cfg.clv, cfg.project)
        rfm = rfm_summary(transactions, as_of=as_of, time_unit=settings.time_unit)
        models = fit_models(rfm, cfg.clv)
        scores = rfm.merge(score_rfm(models, rfm, settings), on="customer_id")
        new = float(score_rfm(models, pd.DataFrame(_NEW), settings)["clv"].iloc[0])
        label = f"{models.label} fitted at {as_of}"  # what shipped, after any fallback
    return ClvFigures(scores, new, label, settings.horizon_months, settings.time_unit)


def pseudonym(customer_id: Any) -> str:
    """A short stable pseudonym of a customer id (``c-`` + 10 hex digits of its SHA-256)."""
    return "c-" + hashlib.sha256(str(customer_id).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- the customer's voice


@dataclass
class VoiceKpis:
    """Sentiment by period and the complaint topics of the customers' texts (:mod:`crmlab.voice.topics`)."""

    by_period: pd.DataFrame  # period, texts, customers, sentiment_mean, negative_share, positive_share
    keywords: pd.DataFrame  # period, rank, term, weight, negative_texts (c-TF-IDF of the negative texts)
    topics: pd.DataFrame  # topic, terms, share, texts (NMF over the negative texts)
    topics_by_period: pd.DataFrame  # period, one share column per topic
    n_texts: int
    n_empty: int
    source: str
    note: str = ""

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"voice_by_period": self.by_period, "voice_keywords": self.keywords, "voice_topics": self.topics,
                "voice_topics_by_period": self.topics_by_period}

    def summary(self) -> str:
        neg = float((self.by_period["negative_share"] * self.by_period["texts"]).sum() / max(self.n_texts, 1))
        return (f"customer voice: {self.n_texts:,} texts ({self.n_empty:,} empty skipped), {neg:.1%} negative"
                + (f"; {self.note}" if self.note else ""))


def voice_kpis(cfg: CrmlabConfig, interactions: pd.DataFrame | None, *, as_of: date) -> VoiceKpis | None:
    """The voice tables from the interactions' text column (``project.voice``), None without one."""
    from crmlab.voice.texts import text_column_of, texts_frame
    from crmlab.voice.topics import complaint_topics, period_keywords, scored_texts, sentiment_by_period

    v = cfg.project.voice
    column = text_column_of(interactions, v.text_column)
    if interactions is None or column is None or not v.enabled:
        return None
    texts = texts_frame(interactions, text_column=column)
    scored = scored_texts(texts.frame, as_of=as_of, language=v.language, period=cfg.kpis.period)
    by_period = sentiment_by_period(scored, negative_threshold=v.negative_threshold)
    keywords = period_keywords(scored, n_terms=v.n_terms, negative_threshold=v.negative_threshold)
    topics, by = complaint_topics(scored, n_topics=v.n_topics, n_terms=v.n_terms, seed=cfg.project.seed,
                                  negative_threshold=v.negative_threshold, min_texts=v.min_texts)
    note = "" if len(topics) else f"fewer than {v.min_texts} negative texts: no complaint topics"
    return VoiceKpis(by_period=by_period, keywords=keywords, topics=topics, topics_by_period=by,
                     n_texts=len(scored), n_empty=texts.n_empty, source=texts.source, note=note)


# --------------------------------------------------------------------------- wiring


@dataclass
class KpiResult:
    """Everything ``crmlab kpis`` computes (the report reads it too)."""

    as_of: date
    period: str
    by_period: pd.DataFrame
    overall: pd.DataFrame
    cohorts: pd.DataFrame
    segments: pd.DataFrame
    segment_source: str
    cac_source: str
    clv: ClvFigures | None = None
    cac_by_channel: pd.DataFrame | None = None
    funnel: pd.DataFrame | None = None
    voice: VoiceKpis | None = None
    lifecycle: pd.DataFrame | None = None  # lifecycle_by_stage
    satisfaction: pd.DataFrame | None = None  # crmlab.satisfaction.satisfaction_table
    fingerprint: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data_notes: list[str] = field(default_factory=list)  # cleaning's notes: outlier customers, date order
    written: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str | None = None

    def value(self, metric: str) -> float:
        """One overall figure by name."""
        hit = self.overall.loc[self.overall["metric"] == metric, "value"]
        if hit.empty:
            raise KeyError(metric)
        return float(hit.iloc[0])

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables written by :meth:`write`, by file stem."""
        out = {"kpis_by_period": self.by_period, "kpis_overall": self.overall, "cohort_retention": self.cohorts,
               "revenue_by_segment": self.segments}
        if self.cac_by_channel is not None:
            out["cac_by_channel"] = self.cac_by_channel
        if self.funnel is not None:
            out["funnel"] = self.funnel
        if self.voice is not None:
            out.update(self.voice.tables())
        if self.lifecycle is not None:
            out["lifecycle_stages"] = self.lifecycle
        if self.satisfaction is not None:
            out["satisfaction"] = self.satisfaction
        return out

    def write(self, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
        """Write every table as ``<out_dir>/<name>.csv`` (or ``.parquet``), atomically."""
        from crmlab.utils import write_table_atomic

        suffix = ".parquet" if fmt == "parquet" else ".csv"
        out = Path(out_dir)
        self.written = {name: write_table_atomic(df, out / f"{name}{suffix}") for name, df in self.tables().items()}
        return self.written

    def summary(self) -> list[str]:
        """A few lines for the CLI."""
        v = self.value
        unit = {"M": "month", "W": "week", "Q": "quarter"}[self.period]
        bp = self.by_period
        last = bp.iloc[-1]
        lines = [
            f"{int(v('active_customers')):,} customers, {int(v('orders')):,} orders, revenue {v('revenue'):,.2f} "
            f"over {len(bp)} {unit}s to {self.as_of}",
            f"last {unit} {last['period']}: {int(last['active_customers']):,} active, {int(last['new_customers']):,} new, "
            f"retention {last['retention_rate']:.1%}",
            f"{unit}ly retention {v('retention_rate'):.1%} (churn {v('churn_rate'):.1%}), repeat purchase rate "
            f"{v('repeat_purchase_rate'):.1%}, AOV {v('aov'):,.2f}, {v('purchase_frequency'):.3f} orders per active "
            f"customer per {unit}",
            f"simple CLV {v('simple_clv'):,.2f} (lifespan {v('expected_lifespan_months'):.2f} months)"
            + (f"; BG/NBD CLV over {self.clv.horizon_months} months: mean {v('bgnbd_clv_mean'):,.2f}, "
               f"new customer {v('bgnbd_clv_new_customer'):,.2f}" if self.clv is not None else ""),
        ]
        if self.cac_source != "none":
            lines.append(f"CAC {v('cac'):,.2f} ({self.cac_source}), LTV:CAC {v('ltv_cac_simple'):.2f} (simple)"
                         + (f" / {v('ltv_cac_bgnbd'):.2f} (BG/NBD)" if self.clv is not None else "")
                         + f", payback {v('cac_payback_months'):.2f} months")
        if self.funnel is not None:
            f = self.funnel
            lines.append(f"funnel {f['stage'].iloc[0]} -> {f['stage'].iloc[-1]}: {int(f['leads'].iloc[0]):,} leads, "
                         f"{f['conversion_from_first'].iloc[-1]:.1%} converted")
        if self.voice is not None:
            lines.append(self.voice.summary())
        if self.lifecycle is not None:
            lc = self.lifecycle
            lines.append(f"lifecycle stages at {self.as_of}: " + ", ".join(
                f"{st} {int(c):,} ({sh:.0%})" for st, c, sh in zip(lc["stage"], lc["customers"], lc["customer_share"],
                                                                   strict=True)))
        if self.satisfaction is not None:
            sat = self.satisfaction[self.satisfaction["by"] == "overall"]
            for r in sat.itertuples(index=False):
                lines.append(f"NPS {r.value:+.0f} points [{r.low:+.0f}, {r.high:+.0f}] from {r.answers:,} answers"
                             if r.metric == "nps" else
                             f"CSAT {r.value:.1%} [{r.low:.1%}, {r.high:.1%}] from {r.answers:,} answers")
            lines += [f"note: {n}" for n in self.satisfaction["note"] if n]
        lines += self.notes
        lines += [f"data: {n}" for n in self.data_notes]
        if self.written:
            lines.append(f"tables: {Path(next(iter(self.written.values()))).parent}/")
        return lines


def _lifecycle_reads_the_log(transactions: pd.DataFrame, lg: PurchaseLog) -> bool:
    """Whether :func:`crmlab.features.past.past_transactions` would read the purchase rows of ``lg``
    from ``transactions`` (so :meth:`PurchaseLog.past` can stand in for it): text ids, dated
    timestamps and numeric amounts, none missing (it refuses missing values; the log drops them)."""
    ts, amount, ids = transactions["ts"], transactions["amount"], transactions["customer_id"]
    return (lg.ids.dtype == "str" and ids.dtype == "str" and amount.dtype.kind in "iuf"
            and (ts.dtype.kind == "M" or isinstance(ts.dtype, pd.DatetimeTZDtype))
            and not (ids.hasnans or ts.hasnans or amount.hasnans))


def compute_kpis(
    cfg: CrmlabConfig,
    transactions: pd.DataFrame,
    *,
    as_of: date,
    customers: pd.DataFrame | None = None,
    marketing_spend: pd.DataFrame | None = None,
    leads: pd.DataFrame | None = None,
    segments: pd.Series | None = None,
    segment_source: str | None = None,
    interactions: pd.DataFrame | None = None,
    surveys: pd.DataFrame | None = None,
    survey_segments: pd.Series | None = None,
) -> KpiResult:
    """Every KPI from clean tables (pure: nothing read or written). ``segments`` (customer_id ->
    segment) overrides ``kpis.segment_table`` / ``segment_column`` / the RFM segments. ``surveys``
    (clean, with ``scale``) gives the satisfaction table; ``survey_segments`` (customer_id -> segment,
    e.g. the segmentation bundle's) its by-segment rows."""
    k = cfg.kpis
    margin = cfg.clv.margin
    notes: list[str] = []
    lg = PurchaseLog.from_transactions(transactions, as_of=as_of, period=k.period)
    spend, cac_source, by_channel = acquisition_spend(k, lg, as_of=as_of, period=k.period,
                                                      customers=customers, marketing_spend=marketing_spend)
    by_period = period_kpis(lg, as_of=as_of, period=k.period, margin=margin, spend=spend)
    clv = None
    try:
        clv = bgnbd_clv(cfg, transactions, as_of=as_of)
    except ModelError as exc:
        if k.clv_source in ("bundle", "fit"):
            raise
        notes.append(f"BG/NBD CLV not available: {exc}")
    overall = overall_kpis(lg, by_period, as_of=as_of, period=k.period, margin=margin, clv=clv)
    cohorts = cohort_retention(lg, as_of=as_of, period=k.cohort_period)
    if segments is None and k.segment_table is None and k.segment_column is None:  # RFM segments, by code
        seg_table, segment_source = _revenue_by_segment(lg, _rfm_segment_codes(lg)), "rfm"
    else:
        if segments is None:
            segments, segment_source = load_segments(k, lg, as_of=as_of, customers=customers)
        seg_table = revenue_by_segment(lg, segments, as_of=as_of)
    funnel = funnel_conversion(leads, k.funnel_stages, k.funnel_exit_stages) if leads is not None else None
    same_rows = _lifecycle_reads_the_log(transactions, lg)  # the lifecycle's rows are the log's purchases
    stages = _stages_at(cfg, transactions, as_of, clv, notes, past=lg.past() if same_rows else None)
    lifecycle = None
    if stages is not None:
        pos = lg.by_customer().buyers if same_rows else _positions(
            pd.Index(lg.ids.astype(str)), pd.Index(stages["customer_id"].astype(str)))
        lifecycle = _lifecycle_by_stage(lg, stages, pos)
    satisfaction = None
    if surveys is not None:
        from crmlab.lifecycle import STAGES
        from crmlab.satisfaction import satisfaction_table

        satisfaction = satisfaction_table(
            surveys, as_of=as_of, period=k.period, level=k.satisfaction_level, small_n=k.satisfaction_small_n,
            segments=survey_segments,
            stages=stages.set_index("customer_id")["lifecycle_stage"] if stages is not None else None,
            stage_order=list(STAGES))
    voice = voice_kpis(cfg, interactions, as_of=as_of)
    return KpiResult(as_of=as_of, period=k.period, by_period=by_period, overall=overall, cohorts=cohorts,
                     segments=seg_table, segment_source=segment_source or "given", cac_source=cac_source, clv=clv,
                     cac_by_channel=by_channel, funnel=funnel, lifecycle=lifecycle, satisfaction=satisfaction,
                     voice=voice, notes=notes)


def run_kpis(
    cfg: CrmlabConfig,
    *,
    out_dir: str | Path | None = None,
    tracker: Any = None,
    step: Step | None = None,
    log_run: bool = True,
) -> KpiResult:
    """Load and clean the configured data, compute the KPIs, write the tables to ``out_dir``
    (default ``<output.dir>/kpis``) and log a ``kpis`` MLflow run with the overall figures and tables."""
    from crmlab.tracking import Tracker
    from crmlab.workflow import prepare_data

    step = step or no_step
    project = cfg.project
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project)
        tx = prepared.tables.transactions
        if tx is None:
            raise ConfigError("the KPIs need transactions: project.data.transactions is null")
        ms = read_marketing_spend(project.data.marketing_spend) if project.data.marketing_spend else None
        leads = read_leads(project.data.leads) if project.data.leads else None
    surveys = prepared.tables.surveys
    with step(f"Computing KPIs by {cfg.kpis.period} to {prepared.as_of}"):
        survey_segments = _bundle_segments(cfg, prepared.tables, prepared.as_of) if surveys is not None else None
        result = compute_kpis(cfg, tx, as_of=prepared.as_of, customers=prepared.tables.customers,
                              marketing_spend=ms, leads=leads, surveys=surveys, survey_segments=survey_segments,
                              interactions=prepared.tables.interactions)
    result.fingerprint = prepared.fingerprint
    result.data_notes = [f"{name}: {n}" for name, t in prepared.cleaning.report.tables.items() for n in t.notes]
    target = Path(out_dir) if out_dir is not None else Path(project.output.dir) / "kpis"
    result.write(target, cfg.kpis.format)
    if log_run:
        tracker = tracker or Tracker(project.tracking, pii_columns=project.features.pii_columns)
        with tracker.start_run("kpis", pipeline="kpis", config=cfg.section("kpis"),
                               fingerprint=prepared.fingerprint) as run:
            log_kpis(run, result)
            result.run_id = run.run_id
            result.tracking_uri = tracker.uri if run.active else None
    return result


def _bundle_segments(cfg: CrmlabConfig, tables: Any, as_of: date) -> pd.Series | None:
    """customer_id -> segment name at as_of by the segmentation bundle (``<models_dir>/segmentation``),
    or None when there is none."""
    path = Path(cfg.project.output.models_dir) / "segmentation"
    if not (path / "manifest.json").is_file():
        return None
    from crmlab.features import build_features_from_tables
    from crmlab.segmentation.bundle import score_segmentation

    scores = score_segmentation(build_features_from_tables(tables, as_of=as_of, cfg=cfg.project), path)
    return pd.Series(scores["segment_name"].to_numpy(), index=scores["customer_id"].astype(str).to_numpy())


def log_kpis(run: Any, result: KpiResult) -> None:
    """The overall figures as metrics (``kpi_<name>``), the last complete periods as stepped metrics
    and every table as an artifact (``kpis/<name>.csv``)."""
    if not run.active:
        return
    run.log_metrics({f"kpi_{m}": v for m, v in zip(result.overall["metric"], result.overall["value"], strict=True)
                     if np.isfinite(v)})
    run.log_params({"kpis_resolved": {"segment_source": result.segment_source, "cac_source": result.cac_source,
                             "clv_source": result.clv.source if result.clv else "none"}})
    for name, df in result.tables().items():
        run.log_table(df, f"kpis/{name}.csv")
