"""The KPIs as computed before issue 20 (speed part 2): src/crmlab/kpis.py of commit 50d97ee, verbatim but
for this docstring, kept as the reference that benchmarks/bench_kpis.py times the new code against and
tests/test_kpis_identity.py compares it with (the same tables, to the last bit)."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CrmlabConfig, KpiConfig, TableSource
from crmlab.errors import ConfigError, DataError, ModelError
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


def _past(transactions: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The rows on or before ``as_of`` with their day; a clear error when a column is missing."""
    if transactions is None:
        raise DataError("the KPIs need a transactions table", expected="project.data.transactions")
    missing = [c for c in ("customer_id", "ts", "amount") if c not in transactions.columns]
    if missing:
        raise DataError(f"transactions lack column(s) {missing}", column=missing[0],
                        expected="clean transactions with customer_id, ts, amount")
    day = _day(transactions["ts"])
    keep = (day <= pd.Timestamp(as_of)).to_numpy()
    cols = ["customer_id", "amount", *(["order_id"] if "order_id" in transactions.columns else [])]
    out = transactions.loc[keep, cols] if not keep.all() else transactions[cols]
    out = out.reset_index(drop=True)
    out["day"] = day[keep].to_numpy()
    return out


def _period_ordinal(day: pd.Series, period: str) -> np.ndarray:
    return day.dt.to_period(_PANDAS_FREQ[period]).array.asi8


def _labels(periods: pd.PeriodIndex, period: str) -> np.ndarray:
    """Period labels: ``1997-01`` (month), ``1997Q1`` (quarter), ISO week ``1997-W01`` (Monday-Sunday)."""
    if period == "W":
        return np.asarray(periods.start_time.strftime("%G-W%V"), dtype=object)
    return np.asarray(periods.astype(str), dtype=object)


def _period_index(first: int, last: int, period: str) -> pd.PeriodIndex:
    freq = _PANDAS_FREQ[period]
    return pd.PeriodIndex.from_ordinals(np.arange(first, last + 1), freq=freq)


@dataclass(frozen=True)
class PurchaseLog:
    """Purchases and returns up to ``as_of``, customers as integer codes into ``ids``, each row with
    its period ordinal. Build it once with :meth:`from_transactions` and pass it instead of the
    transactions to the functions of this module to skip re-reading them (what :func:`compute_kpis`
    does); :meth:`regrid` changes the period."""

    purchases: pd.DataFrame  # cust, amount, day, period (+ order: key unique within a customer)
    returns: pd.DataFrame  # cust, amount, day, period
    ids: pd.Index  # customer id of each code
    as_of: date
    period: str
    first_period: int
    last_period: int

    @classmethod
    def from_transactions(cls, transactions: pd.DataFrame, *, as_of: date, period: str = "M") -> PurchaseLog:
        return _purchase_log(transactions, as_of, period)

    def regrid(self, period: str) -> PurchaseLog:
        """The same rows with period ordinals of another frequency."""
        if period == self.period:
            return self
        if period not in _PANDAS_FREQ:
            raise ConfigError(f"period={period!r} is not one of {', '.join(_PANDAS_FREQ)}")
        pur = self.purchases.assign(period=_period_ordinal(self.purchases["day"], period))
        ret = self.returns.assign(period=_period_ordinal(self.returns["day"], period))
        first = min(int(pur["period"].min()), int(ret["period"].min()) if len(ret) else np.iinfo(np.int64).max)
        last = int(pd.Period(pd.Timestamp(self.as_of), freq=_PANDAS_FREQ[period]).ordinal)
        return PurchaseLog(pur, ret, self.ids, self.as_of, period, first, last)

    def orders(self) -> pd.DataFrame:
        """One row per (customer, order): ``cust``, ``period`` (of its first row), ``value`` (gross)."""
        p = self.purchases
        if "order" not in p.columns:  # every purchase row is an order
            return pd.DataFrame({"cust": p["cust"].to_numpy(), "period": p["period"].to_numpy(),
                                 "value": p["amount"].to_numpy()})
        return p.groupby(["cust", "order"], sort=False, observed=True).agg(
            period=("period", "min"), value=("amount", "sum")).reset_index()


def _purchase_log(transactions: pd.DataFrame | PurchaseLog, as_of: date, period: str) -> PurchaseLog:
    if isinstance(transactions, PurchaseLog):
        if transactions.as_of != as_of:
            raise ValueError(f"the purchase log was built at as_of={transactions.as_of}, not {as_of}")
        return transactions.regrid(period)
    if period not in _PANDAS_FREQ:
        raise ConfigError(f"period={period!r} is not one of {', '.join(_PANDAS_FREQ)}")
    past = _past(transactions, as_of)
    if past.empty:
        raise DataError(f"no transaction on or before the cut-off as_of={as_of}", column="ts")
    codes, ids = pd.factorize(past["customer_id"], sort=False)
    period_ord = _period_ordinal(past["day"], period)
    amount = past["amount"].to_numpy(dtype=np.float64)
    is_purchase = amount >= 0
    if not is_purchase.any():
        raise DataError(f"no purchase (amount >= 0) on or before as_of={as_of}", column="amount")
    purchases = pd.DataFrame({"cust": codes[is_purchase], "amount": amount[is_purchase],
                              "day": past["day"].to_numpy()[is_purchase], "period": period_ord[is_purchase]})
    if "order_id" in past.columns and past["order_id"].notna().any():
        oid = past["order_id"].astype("string")[is_purchase].reset_index(drop=True)
        rows = pd.Series(np.flatnonzero(is_purchase)).astype("string")
        purchases["order"] = oid.where(oid.notna(), "\x00row" + rows)
    returns = pd.DataFrame({"cust": codes[~is_purchase], "amount": amount[~is_purchase],
                            "day": past["day"].to_numpy()[~is_purchase], "period": period_ord[~is_purchase]})
    last = int(pd.Period(pd.Timestamp(as_of), freq=_PANDAS_FREQ[period]).ordinal)
    return PurchaseLog(purchases, returns, pd.Index(ids, name="customer_id"), as_of, period,
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
    p = lg.purchases
    idx = np.arange(lg.first_period, lg.last_period + 1)
    orders = lg.orders()

    # (customer, period) pairs with a purchase, as one int64 key: cust * n_periods + offset
    n_per = len(idx)
    key = orders["cust"].to_numpy(dtype=np.int64) * n_per + (orders["period"].to_numpy() - lg.first_period)
    ukey, n_in = _sorted_unique(key)  # sorted by customer, then period
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
    gross = p.groupby("period")["amount"].sum().reindex(idx, fill_value=0.0)
    rets = lg.returns.groupby("period")["amount"].sum().reindex(idx, fill_value=0.0)
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
    orders = lg.orders()
    per_customer = np.bincount(orders["cust"].to_numpy(), minlength=len(lg.ids))
    per_customer = per_customer[per_customer > 0]  # customers with only returns are not customers here
    n_customers = int(per_customer.size)
    n_orders = int(len(orders))
    gross = float(lg.purchases["amount"].sum())
    revenue = gross + float(lg.returns["amount"].sum())
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
    key = lg.purchases["cust"].to_numpy(dtype=np.int64) * n_per + (lg.purchases["period"].to_numpy() - lg.first_period)
    ukey, _ = _sorted_unique(key)
    cust, off = ukey // n_per, ukey % n_per
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
    first_code = lg.purchases.groupby("cust")["period"].min()
    first = pd.Series(first_code.to_numpy(), index=pd.Index(lg.ids[first_code.index.to_numpy()], name="customer_id"))
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
            new_ch = chan.reindex(new_ids).astype("string").fillna("unknown").value_counts()
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
    frame = pd.DataFrame({"period": first, "cost": cost.reindex(first.index)})
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
    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    n = len(lg.ids)
    last = lg.purchases.groupby("cust")["day"].max().reindex(np.arange(n))
    orders = lg.orders()
    codes = orders["cust"].to_numpy()
    frame = pd.DataFrame({"recency": (pd.Timestamp(as_of) - last).dt.days.to_numpy(),
                          "n": np.bincount(codes, minlength=n),
                          "m": np.bincount(codes, weights=orders["value"].to_numpy(), minlength=n)},
                         index=pd.Index(lg.ids, name="customer_id"))
    bought = frame["recency"].notna().to_numpy()
    frame = frame[bought].sort_index()

    r = quintile_scores(frame["recency"], ascending=False).astype(int)
    f = quintile_scores(frame["n"]).astype(int)
    m = quintile_scores(frame["m"]).astype(int)
    names = rfm_segment_names()
    return pd.DataFrame({"customer_id": frame.index.to_numpy(), "r_score": r, "f_score": f, "m_score": m,
                         "segment": names[r * 6 + f]})


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
    pos = index.get_indexer(ids)
    if len(ids) and (pos < 0).all() and len(index):
        pos = index.astype(str).get_indexer(pd.Index(ids).astype(str))
    labels = seg.astype("string").fillna("unassigned").to_numpy(dtype=object)
    return np.where(pos >= 0, labels[np.maximum(pos, 0)] if len(labels) else "unassigned", "unassigned")


def revenue_by_segment(transactions: pd.DataFrame | PurchaseLog, segments: pd.Series, *, as_of: date) -> pd.DataFrame:
    """Revenue by segment of the customers with a purchase up to as_of (module doc)."""
    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    n = len(lg.ids)
    orders = lg.orders()
    codes = orders["cust"].to_numpy()
    per = pd.DataFrame({
        "orders": np.bincount(codes, minlength=n),
        "gross": np.bincount(codes, weights=orders["value"].to_numpy(), minlength=n),
        "revenue": np.bincount(codes, weights=orders["value"].to_numpy(), minlength=n)
        + np.bincount(lg.returns["cust"].to_numpy(), weights=lg.returns["amount"].to_numpy(), minlength=n),
    })
    per["segment"] = _segment_of(lg.ids, segments)
    per = per[per["orders"] > 0]
    out = per.groupby("segment").agg(customers=("orders", "size"), orders=("orders", "sum"),
                                     gross_sales=("gross", "sum"), revenue=("revenue", "sum"))
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
    from crmlab.lifecycle import STAGES

    lg = _purchase_log(transactions, as_of, _lg_period(transactions))
    n = len(lg.ids)
    last = lg.purchases["period"].to_numpy() == lg.last_period
    last_r = lg.returns["period"].to_numpy() == lg.last_period
    revenue = (np.bincount(lg.purchases["cust"].to_numpy(), weights=lg.purchases["amount"].to_numpy(), minlength=n)
               + np.bincount(lg.returns["cust"].to_numpy(), weights=lg.returns["amount"].to_numpy(), minlength=n))
    recent = (np.bincount(lg.purchases["cust"].to_numpy()[last], weights=lg.purchases["amount"].to_numpy()[last],
                          minlength=n)
              + np.bincount(lg.returns["cust"].to_numpy()[last_r], weights=lg.returns["amount"].to_numpy()[last_r],
                            minlength=n))
    pos = pd.Index(lg.ids.astype(str)).get_indexer(stages["customer_id"].astype(str))
    frame = pd.DataFrame({"stage": stages["lifecycle_stage"].to_numpy(dtype=object),
                          "revenue": np.where(pos >= 0, revenue[np.maximum(pos, 0)], 0.0),
                          "revenue_last_period": np.where(pos >= 0, recent[np.maximum(pos, 0)], 0.0)})
    out = frame.groupby("stage").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                     revenue_last_period=("revenue_last_period", "sum"))
    out = out.reindex(list(STAGES)).fillna(0.0)
    out["customers"] = out["customers"].astype(np.int64)
    out["customer_share"] = _ratio(out["customers"].to_numpy(), np.full(len(out), out["customers"].sum()))
    out["revenue_share"] = _ratio(out["revenue"].to_numpy(), np.full(len(out), out["revenue"].sum()))
    return out.rename_axis("stage").reset_index()[["stage", "customers", "customer_share", "revenue",
                                                   "revenue_share", "revenue_last_period"]]


def _stages_at(cfg: CrmlabConfig, transactions: pd.DataFrame, as_of: date, clv: ClvFigures | None,
               notes: list[str]) -> pd.DataFrame | None:
    """Lifecycle stages at as_of, P(alive) from the CLV figures when they come from the bundle (or when
    lifecycle.use_p_alive says yes); None with a note when the stages cannot be derived."""
    from crmlab.lifecycle import lifecycle_stages

    use = cfg.lifecycle.use_p_alive
    p_alive = None
    if clv is not None and (use is True or (use == "auto" and clv.source.startswith("bundle"))):
        p_alive = pd.Series(clv.scores["p_alive"].to_numpy(dtype=np.float64),
                            index=clv.scores["customer_id"].astype(str).to_numpy())
    elif use is True:
        raise ConfigError("lifecycle.use_p_alive=true needs the BG/NBD CLV (kpis.clv_source is none or it failed)")
    try:
        return lifecycle_stages(transactions, as_of=as_of, cfg=cfg.lifecycle, p_alive=p_alive)
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
    from crmlab.clv.bundle import score_clv
    from crmlab.clv.models import fit_models, score_rfm
    from crmlab.clv.result import ClvSettings
    from crmlab.export import load_bundle
    from crmlab.features import rfm_summary

    source = cfg.kpis.clv_source
    if source == "none":
        return None
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
    if segments is None:
        segments, segment_source = load_segments(k, lg, as_of=as_of, customers=customers)
    seg_table = revenue_by_segment(lg, segments, as_of=as_of)
    funnel = funnel_conversion(leads, k.funnel_stages, k.funnel_exit_stages) if leads is not None else None
    stages = _stages_at(cfg, transactions, as_of, clv, notes)
    lifecycle = lifecycle_by_stage(lg, stages, as_of=as_of) if stages is not None else None
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
