"""Lifecycle stages: one stage per customer at a cut-off date, and the moves between two dates.

A *customer* here is anyone with a purchase (``amount >= 0``) on or before ``as_of``; rows after the
cut-off are dropped first. Purchase days are as in :mod:`crmlab.features` (a calendar day with at
least one purchase row of the customer). Everything is in days and per customer:

``tenure_days``
    as_of - first purchase day.
``recency_days``
    as_of - last purchase day.
``typical_gap_days`` (one number for the base; ``lifecycle.typical_gap_days``, auto)
    the median, over the customers with two or more purchase days, of their mean gap between
    consecutive purchase days ((last - first) / (purchase days - 1)).
``usual_gap_days``
    the customer's own mean gap, shrunk towards the typical gap as if ``prior_gaps`` more gaps of
    the typical length had been seen: (sum of gaps + k x typical) / (gaps + k). A one-time buyer's
    usual gap is the typical gap; a customer with many gaps is judged by its own rhythm.
``overdue``
    recency_days / usual_gap_days: how many usual gaps the customer has been silent.
``last_gap_days``, ``prior_gap_days``
    the gap that ended with the last purchase, and the usual gap (shrunk the same way) of the gaps
    before it.
``spend_trend``
    spend (purchase amounts) in the last W days over spend in the W days before, W = ``trend_gaps``
    x usual_gap_days (about that many purchases per window, at the customer's rhythm). Empty when the
    customer is younger than 2 W (no full earlier window to compare with) or spent nothing in either
    window; infinite when it spent in the last window only.
``p_alive``
    P(alive) of the CLV model (BG/NBD family) when one is used (``lifecycle.use_p_alive``).

The rules, tried in this order; the first that holds gives the stage, so every customer has exactly
one (comparisons with an empty value are false):

==============  ============================================================================================
stage           rule
==============  ============================================================================================
``lapsed``      overdue >= ``lapsed_gaps`` (3), or p_alive < ``lapsed_p_alive`` (0.1)
``at_risk``     overdue >= ``at_risk_gaps`` (1.5), or p_alive < ``at_risk_p_alive`` (0.5), or
                spend_trend <= ``decline_ratio`` (0.5)
``new``         tenure_days <= ``new_days`` (auto: the typical gap)
``reactivated`` last_gap_days >= ``lapsed_gaps`` x prior_gap_days: the last purchase ended a lapse
``growing``     spend_trend >= ``growth_ratio`` (1.25), or tenure_days < 2 W (too young for a trend)
``mature``      every other customer: old enough, buying at its rhythm, spend steady
==============  ============================================================================================

Speed: the past rows are put in (customer, day) order once (:func:`crmlab.features.past.past_transactions`)
and every input is a segment reduction over them (numpy), as the features are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.config import CrmlabConfig, LifecycleConfig
from crmlab.errors import ConfigError, DataError
from crmlab.features.frames import as_of_date, day_number, to_polars
from crmlab.features.past import Past, days_of, finish, past_transactions

__all__ = [
    "NOT_A_CUSTOMER",
    "RULE_ORDER",
    "STAGES",
    "LifecycleMigration",
    "assign_stages",
    "lifecycle_inputs",
    "lifecycle_stages",
    "migrate_lifecycle",
    "p_alive_from_bundle",
    "stage_matrix",
    "transition_table",
    "typical_gap_days",
]

log = logging.getLogger(__name__)

#: The stages in display order (the order of the lifecycle), and the order the rules are tried in.
STAGES: tuple[str, ...] = ("new", "growing", "mature", "at_risk", "lapsed", "reactivated")
RULE_ORDER: tuple[str, ...] = ("lapsed", "at_risk", "new", "reactivated", "growing", "mature")
#: The "from" stage of a customer whose first purchase is after the earlier date of a migration.
NOT_A_CUSTOMER = "not_a_customer"


def typical_gap_days(transactions: pd.DataFrame, *, as_of: date | str) -> float:
    """The median over repeat customers (two or more purchase days on or before ``as_of``) of their
    mean gap in days between purchase days; NaN when there is no repeat customer."""
    as_of_day = day_number(as_of_date(as_of))
    plf = to_polars(transactions, ["customer_id", "ts", "amount"], "transactions")
    ts = plf.schema["ts"]
    day = pl.col("ts").dt.date().cast(pl.Int32) if isinstance(ts, pl.Datetime) else pl.col("ts").cast(pl.Int32)
    per = (plf.lazy().with_columns(_day=day).filter((pl.col("_day") <= as_of_day) & (pl.col("amount") >= 0))
           .select("customer_id", "_day")
           .group_by("customer_id")
           .agg(n=pl.col("_day").n_unique(), span=pl.col("_day").max() - pl.col("_day").min())
           .filter(pl.col("n") >= 2)
           .select(gap=pl.col("span").cast(pl.Float64) / (pl.col("n") - 1))
           .collect())
    return float(per["gap"].median()) if per.height else float("nan")


def _no_typical_gap(as_of: date) -> DataError:
    return DataError(f"no repeat customer on or before {as_of}: the typical gap between purchases cannot be "
                     "derived", column="ts", expected="lifecycle.typical_gap_days set to a number of days")


def lifecycle_inputs(transactions: pd.DataFrame | None, *, as_of: date | str, typical_gap: float | None = None,
                     prior_gaps: float = 1.0, trend_gaps: float = 3.0, past: Past | None = None) -> pd.DataFrame:
    """The inputs of the stage rules (module doc), one row per customer with a purchase on or before
    ``as_of``, sorted by id: ``customer_id``, ``tenure_days``, ``recency_days``, ``purchase_days``,
    ``usual_gap_days``, ``overdue``, ``last_gap_days``, ``prior_gap_days``, ``trend_window_days``,
    ``spend_recent``, ``spend_previous``, ``spend_trend``. ``typical_gap``: None derives it from these
    customers (as :func:`typical_gap_days` does, in the same pass); it is in ``attrs``. The input is
    not modified. ``past``: the rows on or before ``as_of`` already in (customer id, day) order, as
    :func:`crmlab.features.past.past_transactions` gives them (or only their purchase rows: returns
    play no part here); ``transactions`` is then not read."""
    if typical_gap is not None and not typical_gap > 0:
        raise ValueError(f"typical_gap={typical_gap!r} should be a positive number of days")
    cut = as_of_date(as_of)
    as_of_day = day_number(cut)
    if past is None:
        past = past_transactions(transactions, as_of_day)
    days = days_of(past)
    keep = days.n_purchase > 0
    every_day = bool(keep.all())  # no day of returns only: every customer is a buyer, numbered 0..n-1
    if every_day:
        cust, day, spend = days.cust, days.day.astype(np.float64), days.purchase_amount
        seg = days.starts
    else:
        cust, day, spend = days.cust[keep], days.day[keep].astype(np.float64), days.purchase_amount[keep]
        head = np.ones(len(cust), dtype=bool)
        np.not_equal(cust[1:], cust[:-1], out=head[1:])
        seg = np.flatnonzero(head)
    m = len(cust)
    end = np.append(seg[1:], m) - 1
    n_days = (end - seg + 1).astype(np.float64)
    first, last = day[seg], day[end]
    prev = np.where(n_days >= 2, day[np.maximum(end - 1, 0)], np.nan)
    n_gaps = n_days - 1
    if typical_gap is None:
        repeat = n_gaps >= 1
        if not repeat.any():
            raise _no_typical_gap(cut)
        typical_gap = float(np.median((last[repeat] - first[repeat]) / n_gaps[repeat]))
    k, typ = float(prior_gaps), float(typical_gap)
    with np.errstate(invalid="ignore", divide="ignore"):
        usual = np.where(n_gaps + k > 0, (last - first + k * typ) / (n_gaps + k), typ)
        prior = np.where(n_gaps - 1 + k > 0, (prev - first + k * typ) / (n_gaps - 1 + k), typ)
    prior = np.where(n_gaps >= 1, prior, np.nan)
    recency, tenure = as_of_day - last, as_of_day - first
    window = trend_gaps * usual
    rows = end - seg + 1
    recent_row = day > np.repeat(as_of_day - window, rows)
    previous_row = ~recent_row & (day > np.repeat(as_of_day - 2 * window, rows))
    owner = cust if every_day else np.repeat(np.arange(len(seg)), rows)
    recent = np.bincount(owner, weights=np.where(recent_row, spend, 0.0), minlength=len(seg))
    previous = np.bincount(owner, weights=np.where(previous_row, spend, 0.0), minlength=len(seg))
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = np.where(previous > 0, recent / np.where(previous > 0, previous, 1.0),
                         np.where(recent > 0, np.inf, np.nan))
        overdue = recency / usual
    trend[tenure < 2 * window] = np.nan
    ids = past.ids.gather(cust[seg]) if len(seg) != past.n else past.ids
    out = finish(ids, {
        "tenure_days": tenure, "recency_days": recency, "purchase_days": n_days.astype(np.int64),
        "usual_gap_days": usual, "overdue": overdue, "last_gap_days": last - prev, "prior_gap_days": prior,
        "trend_window_days": window, "spend_recent": recent, "spend_previous": previous, "spend_trend": trend,
    })
    out.attrs["typical_gap_days"] = typ
    return out


def assign_stages(inputs: pd.DataFrame, cfg: LifecycleConfig, *, new_days: float,
                  p_alive: np.ndarray | None = None) -> np.ndarray:
    """The stage of each row of :func:`lifecycle_inputs` by the rules in :data:`RULE_ORDER` (module
    doc); ``p_alive`` aligned with the rows (NaN: unknown) or None."""
    col = {c: inputs[c].to_numpy(dtype=np.float64) for c in
           ("overdue", "tenure_days", "last_gap_days", "prior_gap_days", "spend_trend", "trend_window_days")}
    pa = np.full(len(inputs), np.nan) if p_alive is None else np.asarray(p_alive, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        rules = {
            "lapsed": (col["overdue"] >= cfg.lapsed_gaps) | (pa < cfg.lapsed_p_alive),
            "at_risk": (col["overdue"] >= cfg.at_risk_gaps) | (pa < cfg.at_risk_p_alive)
            | (col["spend_trend"] <= cfg.decline_ratio),
            "new": col["tenure_days"] <= new_days,
            "reactivated": col["last_gap_days"] >= cfg.lapsed_gaps * col["prior_gap_days"],
            "growing": (col["spend_trend"] >= cfg.growth_ratio) | (col["tenure_days"] < 2 * col["trend_window_days"]),
        }
    codes = np.select([rules[r] for r in RULE_ORDER[:-1]], list(range(len(RULE_ORDER) - 1)),
                      default=len(RULE_ORDER) - 1)
    return np.asarray(RULE_ORDER, dtype=object)[codes]


def lifecycle_stages(transactions: pd.DataFrame | None, *, as_of: date | str, cfg: LifecycleConfig,
                     p_alive: pd.Series | None = None, typical_gap: float | None = None,
                     past: Past | None = None) -> pd.DataFrame:
    """:func:`lifecycle_inputs` with ``lifecycle_stage`` (second column) and ``p_alive`` (when given: a
    Series indexed by customer id; customers it lacks have it empty). ``typical_gap``: the base's
    typical gap when already known (scoring computes it once for all chunks); ``cfg.typical_gap_days``
    wins when it is a number, else it is derived from ``transactions`` in the same pass. ``past``: as in
    :func:`lifecycle_inputs`."""
    cut = as_of_date(as_of)
    if cfg.typical_gap_days != "auto":
        typical_gap = float(cfg.typical_gap_days)
    inputs = lifecycle_inputs(transactions, as_of=cut, typical_gap=typical_gap, prior_gaps=cfg.prior_gaps,
                              trend_gaps=cfg.trend_gaps, past=past)
    typ = inputs.attrs["typical_gap_days"]
    new_days = typ if cfg.new_days == "auto" else float(cfg.new_days)
    pa = None
    if p_alive is not None:
        ids = inputs["customer_id"]
        if len(p_alive) == len(ids) and p_alive.index.equals(pd.Index(ids)):  # already in the rows' order
            pa = p_alive.to_numpy(dtype=np.float64)
        else:
            s = p_alive[~p_alive.index.duplicated()]
            pa = pd.Series(s.to_numpy(dtype=np.float64), index=s.index.astype(str)).reindex(ids.to_numpy()).to_numpy()
        inputs["p_alive"] = pa
    inputs.insert(1, "lifecycle_stage", assign_stages(inputs, cfg, new_days=new_days, p_alive=pa))
    inputs.attrs.update(new_days=new_days, p_alive=p_alive is not None)
    return inputs


def p_alive_from_bundle(cfg: CrmlabConfig, transactions: pd.DataFrame, *, as_of: date | str) -> pd.Series | None:
    """P(alive) at ``as_of`` by the CLV bundle in ``<models_dir>/clv`` (its BG/NBD-family model), by
    customer id; None when ``lifecycle.use_p_alive`` is false, or auto and there is no bundle."""
    use = cfg.lifecycle.use_p_alive
    path = Path(cfg.project.output.models_dir) / "clv"
    if use is False or (use == "auto" and not (path / "manifest.json").is_file()):
        return None
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"lifecycle.use_p_alive=true needs a CLV bundle: {path} has none; run `crmlab train clv` "
                          "or set lifecycle.use_p_alive to auto or false")
    from crmlab.clv.bundle import score_clv
    from crmlab.clv.result import ClvSettings
    from crmlab.export import load_bundle
    from crmlab.features import rfm_summary

    bundle = load_bundle(path, pipeline="clv")
    settings = ClvSettings.from_dict(bundle.params.get("clv", {}))
    rfm = rfm_summary(transactions, as_of=as_of, time_unit=settings.time_unit)
    scores = score_clv(rfm, bundle, parametric_only=True)
    return pd.Series(scores["p_alive"].to_numpy(dtype=np.float64), index=scores["customer_id"].astype(str).to_numpy())


# --------------------------------------------------------------------------- migration


def _revenue_between(transactions: pd.DataFrame, start: date, end: date) -> pd.Series:
    """Net revenue (purchases + returns) per customer id of the rows dated in (start, end]."""
    plf = to_polars(transactions, ["customer_id", "ts", "amount"], "transactions")
    ts = plf.schema["ts"]
    day = pl.col("ts").dt.date().cast(pl.Int32) if isinstance(ts, pl.Datetime) else pl.col("ts").cast(pl.Int32)
    lo, hi = day_number(start), day_number(end)
    per = (plf.lazy().with_columns(_day=day).filter((pl.col("_day") > lo) & (pl.col("_day") <= hi))
           .group_by("customer_id").agg(pl.col("amount").cast(pl.Float64).sum()).collect())
    return pd.Series(per["amount"].to_numpy(), index=per["customer_id"].to_numpy(), dtype=np.float64)


def transition_table(before: pd.DataFrame, after: pd.DataFrame, revenue: pd.Series | None = None) -> pd.DataFrame:
    """The moves between two stage tables (``customer_id``, ``lifecycle_stage``), one row per (from, to)
    with customers: ``from_stage``, ``to_stage``, ``customers``, ``row_share`` (of the from stage's
    customers) and ``revenue`` (the sum of ``revenue`` by customer id over them; 0 without it).

    A customer of the later date only (first purchase after the earlier one) comes from
    ``not_a_customer``. A customer of the earlier date is one at the later date too (purchases only
    accumulate); one missing there (data that lost rows) goes to ``not_a_customer``."""
    merged = before[["customer_id", "lifecycle_stage"]].merge(
        after[["customer_id", "lifecycle_stage"]], on="customer_id", how="outer", suffixes=("_from", "_to"),
        validate="1:1")
    frm = merged["lifecycle_stage_from"].astype("string").fillna(NOT_A_CUSTOMER)
    to = merged["lifecycle_stage_to"].astype("string").fillna(NOT_A_CUSTOMER)
    rev = (revenue.reindex(merged["customer_id"].astype(str).to_numpy()).fillna(0.0).to_numpy()
           if revenue is not None else np.zeros(len(merged)))
    frame = pd.DataFrame({"from_stage": frm.to_numpy(dtype=object), "to_stage": to.to_numpy(dtype=object),
                          "revenue": rev})
    out = frame.groupby(["from_stage", "to_stage"], sort=False).agg(
        customers=("revenue", "size"), revenue=("revenue", "sum")).reset_index()
    order = {s: i for i, s in enumerate((NOT_A_CUSTOMER, *STAGES))}
    out = out.sort_values(["from_stage", "to_stage"], key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    out["row_share"] = out["customers"] / out.groupby("from_stage")["customers"].transform("sum")
    return out[["from_stage", "to_stage", "customers", "row_share", "revenue"]]


def stage_matrix(table: pd.DataFrame, value: str = "customers") -> pd.DataFrame:
    """A :func:`transition_table` as a from x to matrix of ``value`` (0 where no customer moved)."""
    order = (NOT_A_CUSTOMER, *STAGES)
    m = table.pivot(index="from_stage", columns="to_stage", values=value)
    rows = [s for s in order if s in m.index]
    cols = [s for s in order if s in m.columns]
    return m.reindex(index=rows, columns=cols).fillna(0).rename_axis(index="from", columns="to")


@dataclass
class LifecycleMigration:
    """Stages of the customers at two cut-off dates and the moves between them."""

    date_from: date
    date_to: date
    table: pd.DataFrame  # transition_table
    before: pd.DataFrame
    after: pd.DataFrame
    p_alive: bool

    def counts(self) -> pd.DataFrame:
        return stage_matrix(self.table, "customers").astype(np.int64)

    def shares(self) -> pd.DataFrame:
        return stage_matrix(self.table, "row_share")

    def revenue_by_stage(self) -> pd.DataFrame:
        """Per stage at the earlier date: customers, revenue in (from, to] and revenue per customer."""
        by = self.table.groupby("from_stage", sort=False).agg(customers=("customers", "sum"),
                                                               revenue=("revenue", "sum"))
        order = [s for s in (NOT_A_CUSTOMER, *STAGES) if s in by.index]
        by = by.reindex(order)
        by["revenue_per_customer"] = by["revenue"] / by["customers"]
        return by.rename_axis("stage_at_from").reset_index()

    def summary(self) -> list[str]:
        t = self.table
        stayed = int(t.loc[t["from_stage"] == t["to_stage"], "customers"].sum())
        old = int(t.loc[t["from_stage"] != NOT_A_CUSTOMER, "customers"].sum())
        return [f"{old:,} customers at {self.date_from}, {int(t['customers'].sum()) - old:,} more by {self.date_to}; "
                f"{stayed:,} ({stayed / max(old, 1):.1%}) kept their stage (rows: from, columns: to; revenue: "
                f"({self.date_from}, {self.date_to}])" + ("; P(alive) from the CLV bundle" if self.p_alive else "")]


def migrate_lifecycle(cfg: CrmlabConfig, date_from: date | str, date_to: date | str, *, tables: Any = None
                      ) -> LifecycleMigration:
    """Stages at two cut-off dates (P(alive) from the CLV bundle at each, by ``lifecycle.use_p_alive``)
    and the transition table between them, with each cell's revenue between the dates. Default
    tables: the configured data, cleaned."""
    d1, d2 = as_of_date(date_from), as_of_date(date_to)
    if d2 <= d1:
        raise ConfigError(f"lifecycle migration: --to {d2} must be after --from {d1}")
    if tables is None:
        from crmlab.workflow import prepare_data

        tables = prepare_data(cfg.project).tables
    tx = tables.transactions
    if tx is None or tx.empty:
        raise ConfigError("lifecycle stages need transactions: project.data.transactions is null")
    stages = []
    for d in (d1, d2):
        if not (tx["ts"] <= pd.Timestamp(d) + pd.Timedelta(days=1)).any():
            raise DataError(f"no transaction on or before {d}", column="ts",
                            expected=f"a --from date on or after the first transaction ({pd.Timestamp(tx['ts'].min()).date()})")
        stages.append(lifecycle_stages(tx, as_of=d, cfg=cfg.lifecycle, p_alive=p_alive_from_bundle(cfg, tx, as_of=d)))
    table = transition_table(stages[0], stages[1], _revenue_between(tx, d1, d2))
    return LifecycleMigration(d1, d2, table, stages[0], stages[1], bool(stages[0].attrs.get("p_alive")))
