"""Customer features at a cut-off date: one row per customer, one function for every pipeline.

:func:`build_features` turns clean, typed tables (canonical column names, see ``DESIGN.md``) into
one row per customer as of a cut-off date ``as_of``. Churn, CLV, segmentation and forecast use it,
for training and for scoring alike: the same tables and the same ``as_of`` give the same columns,
in the same order, with the same values.

Cut-off convention
    ``as_of`` is a calendar date. A row belongs to the past when its ``ts`` falls on or before that
    date (``ts < as_of + 1 day``). Rows after it are dropped first, before anything is computed,
    so nothing after the cut-off can reach a feature. Trailing windows of ``w`` days hold the rows
    whose day is in ``(as_of - w days, as_of]``.

Population
    Every customer with a transaction on or before ``as_of``, plus the customers-table customers
    whose ``signup_date`` is on or before ``as_of`` (or unknown). Rows are sorted by
    ``customer_id``; ``customer_id`` is the first column.

Purchases and returns
    A row with ``amount >= 0`` is a purchase, a row with ``amount < 0`` a return. A *purchase day*
    is a calendar day with at least one purchase row of that customer. RFM follows lifetimes'
    ``summary_data_from_transaction_data(..., freq="D")`` divided by the unit length
    (``time_unit`` D=1, W=7, M=30.4375 days), with returns not counted as purchase days:

    * ``frequency`` = purchase days - 1 (repeat purchase days),
    * ``recency`` = (last purchase day - first purchase day) / unit,
    * ``T`` = (as_of - first purchase day) / unit,
    * ``monetary_value`` = mean over repeat purchase days (the first excluded) of the day's total
      amount (all the day's rows, so a same-day return is netted), 0 when ``frequency == 0``.

Columns, in this order (``{w}``: each window, ascending; ``{s}_{l}``: consecutive windows):

* ``customer_id`` (text);
* ``frequency``, ``recency``, ``T``, ``monetary_value``: RFM above;
* ``recency_days``: days from the last purchase day to as_of; ``tenure_days``: days from
  ``signup_date`` (when known and not after as_of), else from the first purchase day, to as_of;
* ``txn_count_{w}d`` (purchase rows), ``amount_sum_{w}d`` (purchase amounts),
  ``purchase_days_{w}d``, ``return_count_{w}d`` (return rows), ``return_amount_{w}d`` (returned
  amounts, positive); each for every window, then ``_total`` over the whole past;
* ``txn_trend_{s}d_{l}d`` = (txn_count_{s}d / s) / (txn_count_{l}d / l), ``amount_trend_{s}d_{l}d``
  the same for amount_sum; NaN when the longer window is empty;
* ``gap_mean_days``, ``gap_std_days``: mean and sample std (ddof=1) of the gaps in days between
  consecutive purchase days; ``overdue_ratio`` = recency_days / gap_mean_days;
* ``order_value_mean``, ``order_value_std``, ``order_value_max``: purchase value per order
  (``order_id``; a purchase row without one is an order of its own), else per purchase row;
* when the column is given: ``quantity_sum``, ``quantity_mean`` (purchase rows);
  ``n_categories``, ``top_category_share`` (distinct categories of the purchase rows, share of
  those rows in the most frequent one); ``n_channels``, ``top_channel_share``; ``n_products``;
* with interactions: ``interaction_count_{w}d``, then ``interaction_{kind}_count_{w}d`` for each
  kind (snake_case, sorted) the population shows on or before as_of, and
  ``days_since_last_interaction``;
* with a text column in the interactions (``voice.text_column``, else ``text``): ``n_texts``,
  ``sentiment_mean``, ``sentiment_mean_{r}d``, ``sentiment_trend``, ``negative_share``
  (:mod:`crmlab.features.voice`; ``r`` is ``voice.recent_days``);
* with surveys: ``survey_count``, ``survey_last_score``, ``survey_score_trend``,
  ``survey_detractor``, ``days_since_last_survey`` (:mod:`crmlab.features.surveys`; answers on or
  before as_of only);
* the customers table's other columns, in its order: numbers as they are, text as pandas
  ``category`` (categories: the sorted values of the output rows).

Not used: ``region`` of the transactions (a customer attribute belongs in the customers table)
and ``value`` of the interactions.

Customers without a purchase get NaN for the RFM, gap and order-value features and 0 counts.
Personal data (``pii_columns``, and any column :func:`crmlab.data.pii.find_personal_columns` flags by
its name or content: e-mail addresses, phone numbers, names, addresses, ID numbers, near-unique free
text; each left out with a logged note), ``signup_date``, ``label_column`` and ``drop_columns`` never
become features; neither do date or time-span columns of the customers table (a cancellation date would
leak the label). Without a transactions table (a contract business) only ``tenure_days``, the
interaction features and the attributes are built.

Dtypes: counts are int32; amounts, RFM and days are float64 (day counts are exact); trends,
shares, gap statistics and ratios are float32.

Speed: the past rows are put in (customer id, day) order once, and every feature is then a
segment reduction over contiguous rows (numpy ``bincount``, one call per metric for all windows).
The order costs one pass when the input is already sorted by customer id; otherwise one 64-bit
integer sort, on exact keys read from the ids' bytes when the ids are short or code-like
(``'00017'``, ``'C-10294'``), else on a hash of the id packed with the day number. A second,
independent hash checks every hashed key (a collision re-draws the seeds and, in the end, falls
back to exact codes), and the customers are then sorted by id. The 10-million-row benchmark
(``benchmarks/bench_features.py``) runs in a few seconds on two cores.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.config import FeatureConfig, ProjectConfig, VoiceConfig
from crmlab.data.pii import find_personal_columns
from crmlab.errors import DataError
from crmlab.features.frames import (
    DEFAULT_PII_COLUMNS,
    TIME_UNITS,
    as_of_date,
    check_no_nulls,
    check_windows,
    day_expr,
    day_number,
    example_row,
    require_columns,
    snake_case,
    source_name,
    to_polars,
    unit_days,
)
from crmlab.features.order import string_order
from crmlab.features.voice import sentiment_features
from crmlab.features.surveys import survey_columns
from crmlab.features.past import (
    Days,
    Past,
    PurchaseDays,
    days_of,
    finish,
    past_transactions,
    purchase_days,
    rfm_arrays,
    rfm_columns,
)

__all__ = [
    "DEFAULT_PII_COLUMNS",
    "DEFAULT_WINDOWS",
    "RFM_COLUMNS",
    "TIME_UNITS",
    "as_of_date",
    "build_features",
    "build_features_from_tables",
    "rfm_summary",
    "snake_case",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOWS: tuple[int, ...] = tuple(FeatureConfig().windows)
RFM_COLUMNS: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")

# (input column, distinct-count feature, top-share feature or None)
_DIVERSITY = (
    ("category", "n_categories", "top_category_share"),
    ("channel", "n_channels", "top_channel_share"),
    ("product_id", "n_products", None),
)


def _window_columns(days: Days, as_of_day: int, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """The five counts/sums for each trailing window and over the whole past (``_total``).

    Each day-row falls in the shortest window that holds it (bucket 0), a longer one, ... or none
    (the last bucket); one ``bincount`` per metric over (bucket, customer) and a running sum over
    the buckets give every window at once (bucket-major, so each window is a contiguous row)."""
    n, nb = len(days.starts), len(windows) + 1
    bucket = np.zeros(len(days.day), dtype=np.int8)
    for w in windows:
        bucket += days.day <= as_of_day - w
    slot = bucket * np.int64(n) + days.cust
    del bucket
    # (name, weights per day-row, None: each day-row counts 1; is a count)
    metrics = [
        ("txn_count", days.n_purchase, True),
        ("amount_sum", days.purchase_amount, False),
        ("purchase_days", days.n_purchase > 0 if days.has_returns else None, True),
        ("return_count", days.n_return, True),
        ("return_amount", days.return_amount, False),
    ]
    suffixes = [f"{w}d" for w in windows] + ["total"]
    out: dict[str, np.ndarray] = {}
    for name, weights, is_count in metrics:
        if name.startswith("return_") and not days.has_returns:
            table = np.zeros((nb, n), dtype=np.int32 if is_count else np.float64)
        else:
            table = np.bincount(slot, weights=weights, minlength=nb * n).reshape(nb, n)
            for j in range(1, nb):
                table[j] += table[j - 1]
            if is_count:
                table = table.astype(np.int32)
        for j, suffix in enumerate(suffixes):
            out[f"{name}_{suffix}"] = table[j]  # contiguous rows of one block
    return out


def _trend_columns(win: Mapping[str, np.ndarray], windows: Sequence[int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for prefix, metric in (("txn", "txn_count"), ("amount", "amount_sum")):
        for s, l in zip(windows[:-1], windows[1:], strict=True):
            short = win[f"{metric}_{s}d"] / s
            long = win[f"{metric}_{l}d"] / l
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(long > 0, short / long, np.nan)
            out[f"{prefix}_trend_{s}d_{l}d"] = ratio.astype(np.float32)
    return out


def _gap_columns(pdays: PurchaseDays, recency_days: np.ndarray) -> dict[str, np.ndarray]:
    k = pdays.n_days - 1  # number of gaps
    with np.errstate(invalid="ignore", divide="ignore"):
        span = np.nan_to_num(pdays.last - pdays.first).astype(np.int64)  # sum of the gaps
        mean = np.where(k >= 1, span / np.maximum(k, 1), np.nan)
        # exact integers: k * sum(g^2) - (sum g)^2 = k (k - 1) * sample variance
        num = k * pdays.gap_sq_sum - span * span
        std = np.where(k >= 2, np.sqrt(np.maximum(num, 0) / np.maximum(k * (k - 1), 1)), np.nan)
        overdue = recency_days / mean
    return {
        "gap_mean_days": mean.astype(np.float32),
        "gap_std_days": std.astype(np.float32),
        "overdue_ratio": overdue.astype(np.float32),
    }


def _order_value_columns(past: Past, win: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean, sample std and max of the purchase value per order (``order_id``) or per row."""
    n = past.n
    is_p = past.amount >= 0
    if "order_id" in past.extra:
        orders = (
            pl.DataFrame({"c": past.cust, "o": past.extra["order_id"], "a": past.amount})
            .lazy()
            .with_columns(r=pl.when(pl.col("o").is_null()).then(pl.int_range(pl.len())).otherwise(-1))
            .filter(pl.col("a") >= 0)
            .group_by("c", "o", "r", maintain_order=True)  # a row without order_id is an order
            .agg(pl.col("a").sum())
            .group_by("c", maintain_order=True)  # a fixed order of summation: the same floats every run
            .agg(m=pl.col("a").mean(), s=pl.col("a").std(), x=pl.col("a").max())
            .collect()
        )
        c = orders["c"].to_numpy()
        out = {}
        for src, name in (("m", "order_value_mean"), ("s", "order_value_std"), ("x", "order_value_max")):
            arr = np.full(n, np.nan)
            arr[c] = orders[src].cast(pl.Float64).fill_null(np.nan).to_numpy()
            out[name] = arr
        return out
    count = win["txn_count_total"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, win["amount_sum_total"] / count, np.nan)
        dev = past.amount - mean[past.cust]
        if past.has_returns:
            dev[~is_p] = 0.0
        np.multiply(dev, dev, out=dev)
        ss = np.bincount(past.cust, weights=dev, minlength=n)
        std = np.where(count > 1, np.sqrt(ss / np.maximum(count - 1, 1)), np.nan)
    del dev
    top = np.maximum.reduceat(np.where(is_p, past.amount, -np.inf), past.starts) if n else np.zeros(0)
    top[np.isneginf(top)] = np.nan
    return {"order_value_mean": mean, "order_value_std": std, "order_value_max": top}


def _quantity_columns(past: Past) -> dict[str, np.ndarray]:
    q = past.extra["quantity"]
    use = (past.amount >= 0) & ~np.isnan(q)
    total = np.bincount(past.cust, weights=np.where(use, q, 0.0), minlength=past.n)
    count = np.bincount(past.cust, weights=use, minlength=past.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return {"quantity_sum": total, "quantity_mean": mean}


def _diversity_columns(past: Past, column: str, n_name: str, share_name: str | None) -> dict[str, np.ndarray]:
    """Distinct values of ``column`` over a customer's purchase rows and the top value's share."""
    n = past.n
    codes = past.extra[column]
    use = (past.amount >= 0) & (codes >= 0)
    k = int(codes.max()) + 1 if len(codes) else 1
    pair = past.cust[use] * k + codes[use]
    pair.sort(kind="stable")  # already in customer order: nearly sorted, fast
    run = np.ones(len(pair), dtype=bool)
    np.not_equal(pair[1:], pair[:-1], out=run[1:])
    run_starts = np.flatnonzero(run)
    run_cust = pair[run_starts] // k
    out = {n_name: np.bincount(run_cust, minlength=n).astype(np.int32)}
    if share_name is not None:
        top = np.zeros(n, dtype=np.int64)
        if len(run_cust):
            seg = np.flatnonzero(np.r_[True, run_cust[1:] != run_cust[:-1]])
            top[run_cust[seg]] = np.maximum.reduceat(np.diff(np.append(run_starts, len(pair))), seg)
        total = np.bincount(past.cust[use], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[share_name] = np.where(total > 0, top / np.maximum(total, 1), np.nan).astype(np.float32)
    return out


def _transaction_columns(past: Past, as_of_day: int, unit: float, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """Every transaction feature, per customer in id order (tenure_days from purchases only)."""
    n = past.n
    days = days_of(past)
    pdays = purchase_days(days, n)
    cols: dict[str, np.ndarray] = rfm_columns(pdays, as_of_day, unit)
    recency_days = as_of_day - pdays.last
    cols["recency_days"] = recency_days
    cols["tenure_days"] = as_of_day - pdays.first
    win = _window_columns(days, as_of_day, windows)
    del days
    cols.update(win)
    cols.update(_trend_columns(win, windows))
    cols.update(_gap_columns(pdays, recency_days))
    cols.update(_order_value_columns(past, win))
    if "quantity" in past.extra:
        cols.update(_quantity_columns(past))
    for column, n_name, share_name in _DIVERSITY:
        if column in past.extra:
            cols.update(_diversity_columns(past, column, n_name, share_name))
    return cols


# --------------------------------------------------------------------------- customers and interactions


@dataclass
class _Customers:
    """The customers table: ids, known signup days and the attribute columns, one row per customer."""

    ids: pl.Series
    in_population: np.ndarray  # signup on or before as_of, or unknown
    signup_day: np.ndarray | None  # float64 day number; NaN when unknown or after as_of
    attributes: pd.DataFrame  # feature columns only, rows aligned with ids


def _is_text(dtype: Any) -> bool:
    return (
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def _customers(customers: pd.DataFrame, as_of_day: int, *, exclude: frozenset[str], pii: frozenset[str]) -> _Customers:
    table = "customers"
    require_columns(customers, ("customer_id",), table)
    ids = pl.from_pandas(customers["customer_id"].reset_index(drop=True)).cast(pl.String).alias("customer_id")
    if ids.null_count():
        row = int(np.flatnonzero(ids.is_null().to_numpy())[0])
        raise DataError("missing customer id", file=source_name(customers, table), column="customer_id",
                        expected="an id on every row", example=example_row(customers, row, pii))
    dup = ids.is_duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{int(dup.sum())} rows share a customer id", file=source_name(customers, table),
                        column="customer_id", expected="one row per customer (crmlab.data.clean merges them)",
                        example=example_row(customers, row, pii))
    in_population = np.ones(len(customers), dtype=bool)
    signup = None
    if "signup_date" in customers.columns:
        s = customers["signup_date"]
        if s.isna().all():
            signup = np.full(len(s), np.nan)
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            if isinstance(s.dtype, pd.DatetimeTZDtype):
                s = s.dt.tz_localize(None)
            signup = pl.from_pandas(s.reset_index(drop=True)).dt.date().cast(pl.Float64).fill_null(np.nan).to_numpy(writable=True)
        else:
            raise DataError(f"has dtype {s.dtype}", file=source_name(customers, table), column="signup_date",
                            expected="datetime64 values (parse dates with crmlab.data.clean first)",
                            example=example_row(customers, 0, pii))
        later = signup > as_of_day
        in_population = ~later
        signup[later] = np.nan  # not yet known at the cut-off
    attr_cols = [
        c for c in customers.columns
        if c not in exclude and str(c).lower() not in pii
        and not pd.api.types.is_datetime64_any_dtype(customers[c].dtype)
        and not pd.api.types.is_timedelta64_dtype(customers[c].dtype)
    ]
    personal = find_personal_columns(customers, columns=attr_cols, near_unique=True)
    if personal:
        log.info("customers: left out of the features as personal data or identifiers: %s",
                 "; ".join(p.note() for p in personal))
        attr_cols = [c for c in attr_cols if str(c) not in {p.column for p in personal}]
    return _Customers(
        ids=ids,
        in_population=in_population,
        signup_day=signup,
        attributes=customers[attr_cols].reset_index(drop=True),
    )


def _interactions(
    interactions: pd.DataFrame, as_of_day: int, windows: Sequence[int], population: pl.Series
) -> tuple[pl.DataFrame, list[str]]:
    """Per customer of the population: interaction counts per window and kind (the kinds its
    customers show on or before as_of), and the last interaction day; with a ``_pos`` column, the
    customer's row in the population."""
    table = "interactions"
    require_columns(interactions, ("customer_id", "ts", "kind"), table)
    plf = to_polars(interactions, ["customer_id", "ts", "kind"], table)
    check_no_nulls(interactions, plf, ("customer_id", "ts"), table)
    day = day_expr(plf, "ts", interactions, table)
    past = (
        plf.lazy()
        .with_columns(_day=day, kind=pl.col("kind").cast(pl.String).fill_null("unknown"))
        .filter(pl.col("_day") <= as_of_day)
        .drop("ts")
        .join(pl.DataFrame({"customer_id": population, "_pos": np.arange(len(population), dtype=np.int64)}).lazy(),
              on="customer_id", how="inner")
        .collect()
    )
    raw_kinds = past["kind"].unique().to_list()
    mapping = {k: snake_case(k) for k in raw_kinds}
    kinds = sorted(set(mapping.values()))
    past = past.with_columns(kind=pl.col("kind").replace_strict(mapping, return_dtype=pl.String))
    in_w = {w: pl.col("_day") > as_of_day - w for w in windows}
    aggs = [in_w[w].sum().cast(pl.Int32).alias(f"interaction_count_{w}d") for w in windows]
    for kind in kinds:
        is_kind = pl.col("kind") == kind
        aggs += [(is_kind & in_w[w]).sum().cast(pl.Int32).alias(f"interaction_{kind}_count_{w}d") for w in windows]
    aggs.append((as_of_day - pl.col("_day").max()).cast(pl.Float64).alias("days_since_last_interaction"))
    return past.group_by("_pos").agg(aggs), [a.meta.output_name() for a in aggs]


def _sentiment_columns(interactions: pd.DataFrame, cut: date, ids: pl.Series, voice: VoiceConfig
                       ) -> dict[str, np.ndarray]:
    """The sentiment features (:mod:`crmlab.features.voice`) of the interactions' texts, aligned to
    ``ids``: none when the table has no text column or ``voice.enabled`` is off."""
    from crmlab.voice.texts import text_column_of, texts_frame

    column = text_column_of(interactions, voice.text_column)
    if column is None or not voice.enabled:
        return {}
    texts = texts_frame(interactions, text_column=column)
    feats = sentiment_features(texts.frame, as_of=cut, recent_days=voice.recent_days,
                               negative_threshold=voice.negative_threshold, language=voice.language)
    pos = pd.Index(feats["customer_id"]).get_indexer(ids.to_numpy())
    out: dict[str, np.ndarray] = {}
    for name in feats.columns[1:]:
        fill = 0 if name == "n_texts" else np.nan
        out[name] = _gather(feats[name].to_numpy(), pos, fill)
    return out


# --------------------------------------------------------------------------- assembly


def _gather(values: np.ndarray, index: np.ndarray | None, fill: float | int) -> np.ndarray:
    """values[index] with ``fill`` where index is -1 (None: identity)."""
    if index is None:
        return values
    if len(values) == 0:
        kind = values.dtype if isinstance(fill, int | np.integer) else np.result_type(values.dtype, np.float64)
        return np.full(len(index), fill, dtype=kind)
    out = values[np.maximum(index, 0)]
    missing = index < 0
    if missing.any():
        if out.dtype.kind in "iu" and not isinstance(fill, int | np.integer):
            out = out.astype(np.float64)
        out[missing] = fill
    return out


def _attribute(series: pd.Series, index: np.ndarray) -> pd.Series:
    """One customer attribute aligned to the output rows (-1: not in the customers table).

    Text becomes pandas ``category`` with the sorted values of the output rows as categories (a
    categorical input keeps its own category order); numbers stay numbers (float when missing).
    """
    name = series.name
    present = index >= 0
    if len(series) == 0:
        series = pd.Series([np.nan], name=name, dtype=series.dtype if not _is_text(series.dtype) else object)
    taken = series.iloc[np.maximum(index, 0)].reset_index(drop=True)
    if not present.all():
        taken = taken.where(pd.Series(present))
    if isinstance(series.dtype, pd.CategoricalDtype):
        return taken.cat.remove_unused_categories().rename(name)
    if _is_text(series.dtype):
        text = taken.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore") if (
            pd.api.types.is_object_dtype(series.dtype)) else taken
        return pd.Series(pd.Categorical(text), name=name)
    if pd.api.types.is_bool_dtype(series.dtype) and taken.isna().any():
        return taken.astype(np.float64).rename(name)
    return taken.rename(name)


_COUNT_PREFIXES = ("txn_count_", "purchase_days_", "return_count_", "n_")
_ZERO_PREFIXES = ("amount_sum_", "return_amount_", "quantity_sum")


def _fill_value(name: str) -> float | int:
    if name.startswith(_COUNT_PREFIXES) or name.startswith("interaction_"):
        return 0
    if name.startswith(_ZERO_PREFIXES):
        return 0.0
    return np.nan


def _population(tx_ids: pl.Series, cu: _Customers) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Customers with a past transaction or in the customers-table population, sorted by id, with
    each one's row in the transaction features and in the customers table (-1: none)."""
    pop = (
        pl.DataFrame({"customer_id": tx_ids, "_tx": np.arange(len(tx_ids), dtype=np.int64)})
        .join(
            pl.DataFrame({"customer_id": cu.ids, "_cu": np.arange(len(cu.ids), dtype=np.int64),
                          "_in": cu.in_population}),
            on="customer_id", how="full", coalesce=True,
        )
        .filter(pl.col("_tx").is_not_null() | pl.col("_in"))
    )
    pop = pop[string_order(pop["customer_id"])]
    return pop["customer_id"], pop["_tx"].fill_null(-1).to_numpy(), pop["_cu"].fill_null(-1).to_numpy()


def build_features(
    transactions: pd.DataFrame | None,
    customers: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
    *,
    as_of: date | datetime | str,
    time_unit: str = "W",
    windows: Sequence[int] = DEFAULT_WINDOWS,
    pii_columns: Iterable[str] = DEFAULT_PII_COLUMNS,
    drop_columns: Iterable[str] = (),
    label_column: str | None = None,
    voice: VoiceConfig | None = None,
    surveys: pd.DataFrame | None = None,
    past: Past | None = None,
) -> pd.DataFrame:
    """One row per customer with every feature as of the end of ``as_of`` (see the module doc).

    ``transactions`` (``customer_id``, ``ts``, ``amount``, optional ``order_id``, ``quantity``,
    ``product_id``, ``category``, ``channel``) may be None when ``customers`` is given. Inputs are
    never modified. Raises :class:`~crmlab.errors.DataError` for a missing column, a missing value
    in a required column or a date column that is not datetime64. ``voice`` (default
    :class:`~crmlab.config.VoiceConfig`) says which interactions column holds texts and how they
    become the sentiment features. ``past``: ``past_transactions(transactions, as_of day)`` when the
    caller already has it (scoring shares it with the lifecycle stages); ``transactions`` is then only
    checked for being there.
    """
    cut = as_of_date(as_of)
    as_of_day = day_number(cut)
    unit = unit_days(time_unit)
    windows = check_windows(windows)
    if transactions is None and customers is None:
        raise ValueError("build_features needs a transactions table, a customers table or both")
    pii = frozenset(str(c).lower() for c in pii_columns)
    exclude = frozenset({"customer_id", "signup_date", *drop_columns, *([label_column] if label_column else [])})

    tx_cols: dict[str, np.ndarray] = {}
    tx_ids = pl.Series("customer_id", [], pl.String)
    if transactions is not None:
        if past is None:
            past = past_transactions(transactions, as_of_day)
        tx_ids = past.ids
        tx_cols = _transaction_columns(past, as_of_day, unit, windows)
        del past

    cu = _customers(customers, as_of_day, exclude=exclude, pii=pii) if customers is not None else None
    if cu is None:
        ids, tx_index, cu_index = tx_ids, None, None  # already in id order
    else:
        ids, tx_index, cu_index = _population(tx_ids, cu)

    columns: dict[str, Any] = {}
    if transactions is not None:
        for name in list(tx_cols):
            columns[name] = _gather(tx_cols.pop(name), tx_index, _fill_value(name))
    if cu is not None and cu.signup_day is not None:
        signup = _gather(cu.signup_day, cu_index, np.nan)
        tenure = as_of_day - signup
        if "tenure_days" in columns:
            columns["tenure_days"] = np.where(np.isnan(signup), columns["tenure_days"], tenure)
        else:
            columns["tenure_days"] = tenure
    elif transactions is None:
        columns["tenure_days"] = np.full(len(ids), np.nan)

    if interactions is not None:
        it, names = _interactions(interactions, as_of_day, windows, ids)
        where = it["_pos"].to_numpy()
        for name in names:
            fill = _fill_value(name)
            arr = np.full(len(ids), fill, dtype=np.int32 if fill == 0 else np.float64)
            arr[where] = it[name].to_numpy()
            columns[name] = arr
        columns.update(_sentiment_columns(interactions, cut, ids, voice or VoiceConfig()))

    if surveys is not None:
        columns.update(survey_columns(surveys, as_of_day, ids))

    if cu is not None:
        clash = [str(c) for c in cu.attributes.columns if str(c) in columns or str(c) == "customer_id"]
        if clash:
            raise DataError(f"customer column(s) {clash} have the name of a built feature",
                            file=source_name(customers, "customers"),
                            expected="other names (rename them, or list them in drop_columns)")
        for name in cu.attributes.columns:
            columns[str(name)] = _attribute(cu.attributes[name], cu_index)
    return finish(ids, columns)


def build_features_from_tables(
    tables: Any,
    *,
    as_of: date | datetime | str | None,
    cfg: ProjectConfig,
    label_column: str | None = None,
    past: Past | None = None,
) -> pd.DataFrame:
    """:func:`build_features` on a :class:`~crmlab.data.io.Tables` with the project's settings.

    ``as_of=None`` takes ``cfg.as_of``, else the last transaction date. ``past``: as in :func:`build_features`.
    """
    if as_of is None:
        as_of = cfg.as_of
    if as_of is None:
        if tables.transactions is None or len(tables.transactions) == 0:
            raise ValueError("as_of is required when there are no transactions to take the last date from")
        as_of = pd.Timestamp(tables.transactions["ts"].max())
    feats = cfg.features
    return build_features(
        tables.transactions,
        tables.customers,
        tables.interactions,
        as_of=as_of,
        time_unit=cfg.time_unit,
        windows=feats.windows,
        pii_columns=feats.pii_columns,
        drop_columns=feats.drop_columns,
        label_column=label_column,
        voice=cfg.voice,
        surveys=getattr(tables, "surveys", None),
        past=past,
    )


def rfm_summary(transactions: pd.DataFrame, *, as_of: date | datetime | str, time_unit: str = "W") -> pd.DataFrame:
    """Frequency, recency, T and monetary value per customer with a purchase on or before ``as_of``.

    lifetimes' convention (``summary_data_from_transaction_data(..., freq="D")`` divided by the
    unit length), with returns (amount < 0) not counted as purchase days; see the module doc.
    Columns ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``; rows sorted by id.
    """
    ids, cols, _ = rfm_arrays(transactions, day_number(as_of_date(as_of)), unit_days(time_unit))
    return finish(ids, cols)


