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
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from crmlab.config import FeatureConfig, ProjectConfig
from crmlab.data.pii import REDACTED, find_personal_columns, redact_row
from crmlab.errors import DataError

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

TIME_UNITS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 30.4375}
"""Length of each ``time_unit`` in days (a month is 365.25 / 12 days)."""

DEFAULT_WINDOWS: tuple[int, ...] = tuple(FeatureConfig().windows)
DEFAULT_PII_COLUMNS: tuple[str, ...] = tuple(FeatureConfig().pii_columns)
RFM_COLUMNS: tuple[str, ...] = ("frequency", "recency", "T", "monetary_value")

_EPOCH = date(1970, 1, 1)
_TX_OPTIONAL = ("order_id", "quantity", "product_id", "category", "channel")
# (input column, distinct-count feature, top-share feature or None)
_DIVERSITY = (
    ("category", "n_categories", "top_category_share"),
    ("channel", "n_channels", "top_channel_share"),
    ("product_id", "n_products", None),
)
# Seeds of the (key hash, check hash) pairs tried before falling back to exact codes.
_HASH_SEEDS = ((0x5EED_0001, 0x5EED_1001), (0x5EED_0002, 0x5EED_1002), (0x5EED_0003, 0x5EED_1003))
# How many high bits of the key hash are used; lowered only by tests to force collisions.
_HASH_KEEP_BITS = 64


# --------------------------------------------------------------------------- small helpers


def as_of_date(value: Any) -> date:
    """The cut-off as a calendar date (a datetime is cut to its date; text is parsed)."""
    if value is None:
        raise ValueError("as_of is required: the cut-off date, e.g. as_of='1997-09-30'")
    if isinstance(value, datetime):  # pd.Timestamp included
        if pd.isna(value):
            raise ValueError(f"as_of must be a date, got {value!r}")
        return value.date()
    if isinstance(value, date):
        return value
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"as_of must be a date such as '1997-09-30', got {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"as_of must be a date, got {value!r}")
    return ts.date()


def _day_number(d: date) -> int:
    return (d - _EPOCH).days


def snake_case(text: Any) -> str:
    """``'Email Open'`` / ``'emailOpen'`` / ``'e-mail  open!'`` -> ``'email_open'`` / ``'e_mail_open'``."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(text))
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()
    return s or "unknown"


def _unit_days(time_unit: str) -> float:
    try:
        return TIME_UNITS[time_unit]
    except KeyError:
        raise ValueError(f"time_unit={time_unit!r} should be one of {sorted(TIME_UNITS)}") from None


def _check_windows(windows: Iterable[int]) -> tuple[int, ...]:
    ws = tuple(windows)
    if not ws or any(isinstance(w, bool) or int(w) != w or w <= 0 for w in ws):
        raise ValueError(f"windows={ws!r} should be positive whole numbers of days, e.g. (30, 90, 180, 365)")
    return tuple(sorted({int(w) for w in ws}))


def _source(df: pd.DataFrame, table: str) -> str:
    return str(df.attrs.get("source") or f"{table} table")


def _example(df: pd.DataFrame, row: int, pii: Iterable[str] = DEFAULT_PII_COLUMNS) -> dict[str, Any]:
    """One row for an error message, without its personal data."""
    hidden = {str(c).lower() for c in (*pii, *DEFAULT_PII_COLUMNS)}
    cells = {str(k): v for k, v in df.iloc[row].items() if str(k).lower() not in hidden}
    return {k: v for k, v in redact_row(cells).items() if v is not REDACTED}


def _require(df: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"the {table} table should be a pandas DataFrame, got {type(df).__name__}")
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"required column {col!r} is missing",
                file=_source(df, table),
                column=col,
                expected=f"the {table} table to have columns {list(columns)}; found {list(df.columns)}",
            )


def _to_polars(df: pd.DataFrame, columns: Sequence[str], table: str) -> pl.DataFrame:
    """Selected columns as polars, ``customer_id`` as text and the date column checked."""
    sub = df[list(columns)]
    zoned = [c for c in columns if isinstance(sub[c].dtype, pd.DatetimeTZDtype)]
    if zoned:  # local wall-clock time: its date is the local calendar date
        sub = sub.assign(**{c: sub[c].dt.tz_localize(None) for c in zoned})
    try:
        out = pl.from_pandas(sub)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a data problem
        raise DataError(f"cannot convert columns {list(columns)} ({exc})", file=_source(df, table)) from None
    if out.schema["customer_id"] != pl.String:
        out = out.with_columns(pl.col("customer_id").cast(pl.String))
    return out


def _check_no_nulls(pdf: pd.DataFrame, plf: pl.DataFrame, columns: Sequence[str], table: str) -> None:
    counts = plf.select(pl.col(c).null_count() for c in columns).row(0)
    for col, n in zip(columns, counts, strict=True):
        if n:
            row = int(plf.select(pl.arg_where(pl.col(col).is_null()).first()).item())
            raise DataError(
                f"{n} missing value(s)",
                file=_source(pdf, table),
                column=col,
                expected="clean data without missing values here (run crmlab.data.clean first)",
                example=_example(pdf, row),
            )


def _day_expr(plf: pl.DataFrame, col: str, pdf: pd.DataFrame, table: str) -> pl.Expr:
    """Day number (days since 1970-01-01) of a datetime or date column, as an Int32 expression."""
    dtype = plf.schema[col]
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date().cast(pl.Int32)
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Int32)
    raise DataError(
        f"has dtype {pdf[col].dtype}",
        file=_source(pdf, table),
        column=col,
        expected="datetime64 values (parse dates with crmlab.data.clean first)",
        example=_example(pdf, 0) if len(pdf) else None,
    )


def _dense_codes(s: pl.Series) -> np.ndarray:
    """Small dense integer codes (0..k-1) of any column; -1 for missing values."""
    if s.dtype in (pl.Categorical, pl.Enum) or s.dtype == pl.String:
        phys = (s if s.dtype != pl.String else s.cast(pl.Categorical)).to_physical()
    elif s.dtype.is_integer():
        phys = s
    else:
        phys = s.cast(pl.String).cast(pl.Categorical).to_physical()
    null = phys.is_null().to_numpy()
    values = phys.fill_null(0).to_numpy()
    lo, hi = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    if lo >= 0 and hi < 50_000_000:
        present = np.bincount(values[~null], minlength=hi + 1) > 0
        codes = (np.cumsum(present) - 1)[values]
    else:  # wide integer range: rank instead of a lookup table
        codes = phys.rank("dense").fill_null(1).to_numpy().astype(np.int64) - 1
    codes = codes.astype(np.int64, copy=False)
    codes[null] = -1
    return codes


# --------------------------------------------------------------------------- past transactions


def _byte_matrix(s: pl.Series) -> np.ndarray | None:
    """Text values as a (width, n) uint8 matrix (row j: the j-th byte of every value), shorter
    values padded with NUL bytes.

    None when that would not keep the byte-wise order: values of different lengths that are not
    all ASCII, values holding NUL bytes, empty or very long values."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    lo, hi = pc.min_max(pc.binary_length(arr)).values()
    lo, hi = lo.as_py(), hi.as_py()
    if n == 0 or not lo or hi > 64 or pc.any(pc.match_substring(arr, "\x00")).as_py():
        return None
    if lo != hi:
        if not pc.all(pc.string_is_ascii(arr)).as_py():
            return None
        arr = pc.utf8_rpad(arr, hi, "\x00")  # ASCII: one byte per character
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + n * hi]
    return np.ascontiguousarray(data.reshape(n, hi).T)


def _digits(matrix: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """Byte positions that vary, each with a lookup table from byte to dense digit and its radix.

    Reading the columns of ``matrix`` as mixed-radix numbers over these digits keeps their byte-wise
    order: positions where every value has the same byte are skipped, and each position's digits
    are the byte values seen there, in order."""
    out = []
    for j in range(matrix.shape[0]):
        present = np.bincount(matrix[j], minlength=256) > 0
        radix = int(present.sum())
        if radix > 1:
            out.append((j, (np.cumsum(present) - 1).astype(np.uint64), radix))
    return out


def _pack(matrix: np.ndarray, digits: Sequence[tuple[int, np.ndarray, int]]) -> np.ndarray:
    key = np.zeros(matrix.shape[1], dtype=np.uint64)
    for j, lut, radix in digits:
        key *= np.uint64(radix)
        key += lut[matrix[j]]
    return key


def _id_keys(ids: pl.Series, bits: int) -> np.ndarray | None:
    """Integer keys below ``2**bits`` that sort like the text ids (equal ids, equal keys), or None.

    The ids' bytes are read as a mixed-radix number (see :func:`_digits`). Numeric or code-like
    ids (``'00017'``, ``'C-10294'``) fit easily; long random ids (UUIDs) do not, which a sample
    of the ids usually shows at once."""
    sample = _byte_matrix(ids.head(50_000))
    if sample is None or math.prod(radix for _, _, radix in _digits(sample)) > 2**bits:
        return None
    matrix = _byte_matrix(ids)
    if matrix is None:
        return None
    digits = _digits(matrix)
    if math.prod(radix for _, _, radix in digits) > 2**bits:
        return None
    return _pack(matrix, digits)


def _string_order(s: pl.Series) -> np.ndarray:
    """Permutation that sorts distinct text values byte-wise (UTF-8 order, as polars, pyarrow and
    Python sort text). The values are packed into 64-bit words (see :func:`_digits`), sorted on
    the first word and, where that ties, on all of them: several times faster than a string sort."""
    n = len(s)
    matrix = _byte_matrix(s) if n > 1 else None
    if matrix is None:
        return s.arg_sort().to_numpy()
    words, group, size = [], [], 1
    for digit in _digits(matrix):
        if size * digit[2] > 2**64:
            words.append(_pack(matrix, group))
            group, size = [], 1
        group.append(digit)
        size *= digit[2]
    words.append(_pack(matrix, group))
    perm = pl.Series(words[0]).arg_sort().to_numpy()
    if len(words) == 1:
        return perm
    first = words[0][perm]
    tie = np.flatnonzero(first[1:] == first[:-1])
    if len(tie):
        pos = np.union1d(tie, tie + 1)  # rows of runs that share their first word
        sub = perm[pos]
        perm = perm.copy()
        perm[pos] = sub[np.lexsort([w[sub] for w in reversed(words)])]  # the last key is the primary one
    return perm


def _hash_order(ids: pl.Series, offset: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows sorted by (hash of the customer id, day): the permutation and the new-customer flags.

    None when two customer ids share a key prefix for every seed tried (astronomically rare)."""
    new = np.ones(len(offset), dtype=bool)
    shift = np.uint64(bits)
    for key_seed, check_seed in _HASH_SEEDS:
        h = ids.hash(key_seed).to_numpy()
        if _HASH_KEEP_BITS < 64:
            h = h >> np.uint64(64 - _HASH_KEEP_BITS)
        key = ((h >> shift) << shift) | offset
        del h
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        del key
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        del prefix
        # An independent hash must be constant within each customer segment.
        check = ids.hash(check_seed).to_numpy()[perm]
        same = ~new[1:]
        if not np.any(check[1:][same] != check[:-1][same]):
            return perm, new
        log.debug("customer-id key collision with seed %#x; trying the next seed", key_seed)
    return None


def _customer_day_order(ids: pl.Series, day: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, pl.Series]:
    """Order rows by (customer id, day), customers sorted by id.

    Returns the row permutation (None: already in order), the new-customer flag of each ordered
    row and the customer ids in order. Input already sorted by customer id costs one pass; other
    input is sorted on a 64-bit key that packs a hash of the id with the day number (checked for
    collisions, with exact codes as the last resort), then the customers are put in id order.
    """
    n = len(day)
    d_min = int(day.min())
    bits = max(1, (int(day.max()) - d_min).bit_length())
    offset = (day - d_min).astype(np.uint64)
    shift = np.uint64(bits)
    new = np.ones(n, dtype=bool)
    if ids.is_sorted():
        new[1:] = (ids.slice(1) != ids.slice(0, n - 1)).to_numpy()
        if not np.any((day[1:] < day[:-1]) & ~new[1:]):
            return None, new, ids.filter(pl.Series(new))
        codes = (np.cumsum(new) - 1).astype(np.uint64)
        perm = pl.Series((codes << shift) | offset).arg_sort().to_numpy()
        return perm, new, ids.filter(pl.Series(new))  # customers keep their places
    id_key = _id_keys(ids, 64 - bits)
    if id_key is not None:  # exact keys in id order: one sort gives the final order
        key = (id_key << shift) | offset
        del id_key
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        del key
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        return perm, new, ids.gather(perm[new])
    hashed = _hash_order(ids, offset, bits)
    if hashed is None:  # exact fallback: dense codes in id order (slower on unsorted input)
        codes = ids.rank("dense").to_numpy().astype(np.uint64)
        key = (codes << shift) | offset
        perm = pl.Series(key).arg_sort().to_numpy()
        prefix = key[perm] >> shift
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        return perm, new, ids.gather(perm[new])
    perm_h, new_h = hashed
    starts_h = np.flatnonzero(new_h)
    del new_h
    first_ids = ids.gather(perm_h[starts_h])
    order = _string_order(first_ids)
    lens = np.diff(np.append(starts_h, n))[order]
    starts = np.zeros(len(order), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    # row i of the result is row (i - starts[c] + starts_h[order[c]]) of the hash order
    perm = perm_h[np.repeat(starts_h[order] - starts, lens) + np.arange(n)]
    del perm_h
    new[:] = False
    new[starts] = True
    return perm, new, first_ids.gather(order)


@dataclass
class _Past:
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


def _past_transactions(transactions: pd.DataFrame, as_of_day: int, after_day: int | None = None) -> _Past:
    """Rows dated on or before ``as_of_day`` (and after ``after_day`` when given), sorted."""
    table = "transactions"
    _require(transactions, ("customer_id", "ts", "amount"), table)
    optional = [c for c in _TX_OPTIONAL if c in transactions.columns]
    plf = _to_polars(transactions, ["customer_id", "ts", "amount", *optional], table)
    _check_no_nulls(transactions, plf, ("customer_id", "ts", "amount"), table)
    if not plf.schema["amount"].is_numeric():
        raise DataError(
            f"has dtype {transactions['amount'].dtype}",
            file=_source(transactions, table),
            column="amount",
            expected="numbers (negative for returns)",
            example=_example(transactions, 0),
        )
    # Filter first: nothing after the cut-off goes any further.
    keep = pl.col("_day") <= as_of_day
    if after_day is not None:
        keep = keep & (pl.col("_day") > after_day)
    day_expr = _day_expr(plf, "ts", transactions, table)
    past = plf.lazy().with_columns(_day=day_expr).filter(keep).drop("ts").collect()
    del plf
    day = past["_day"].to_numpy()
    if past.height == 0:
        perm, new, ids = None, np.zeros(0, dtype=bool), past["customer_id"]
    else:
        perm, new, ids = _customer_day_order(past["customer_id"], day)
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
            extra[col] = ordered(_dense_codes(past[col]))
    return _Past(
        ids=ids.alias("customer_id"),
        starts=np.flatnonzero(new),
        cust=np.cumsum(new, dtype=np.int64) - 1,
        day=ordered(day),
        amount=ordered(amount),
        has_returns=bool((amount < 0).any()),
        extra=extra,
    )


@dataclass
class _Days:
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


def _days(past: _Past) -> _Days:
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
    return _Days(
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
class _PurchaseDays:
    """Per customer: purchase-day count, first and last purchase day, repeat-day spend, gaps."""

    n_days: np.ndarray  # int64
    first: np.ndarray  # float64 day number, NaN without purchase
    last: np.ndarray
    repeat_sum: np.ndarray  # sum of the day totals of repeat purchase days
    gap_sq_sum: np.ndarray  # int64, sum of squared gaps between consecutive purchase days


def _purchase_days(days: _Days, n: int) -> _PurchaseDays:
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
    pdays = _PurchaseDays(
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


def _rfm_columns(pdays: _PurchaseDays, as_of_day: int, unit: float) -> dict[str, np.ndarray]:
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


def _window_columns(days: _Days, as_of_day: int, windows: Sequence[int]) -> dict[str, np.ndarray]:
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


def _gap_columns(pdays: _PurchaseDays, recency_days: np.ndarray) -> dict[str, np.ndarray]:
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


def _order_value_columns(past: _Past, win: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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


def _quantity_columns(past: _Past) -> dict[str, np.ndarray]:
    q = past.extra["quantity"]
    use = (past.amount >= 0) & ~np.isnan(q)
    total = np.bincount(past.cust, weights=np.where(use, q, 0.0), minlength=past.n)
    count = np.bincount(past.cust, weights=use, minlength=past.n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return {"quantity_sum": total, "quantity_mean": mean}


def _diversity_columns(past: _Past, column: str, n_name: str, share_name: str | None) -> dict[str, np.ndarray]:
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


def _transaction_columns(past: _Past, as_of_day: int, unit: float, windows: Sequence[int]) -> dict[str, np.ndarray]:
    """Every transaction feature, per customer in id order (tenure_days from purchases only)."""
    n = past.n
    days = _days(past)
    pdays = _purchase_days(days, n)
    cols: dict[str, np.ndarray] = _rfm_columns(pdays, as_of_day, unit)
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
    _require(customers, ("customer_id",), table)
    ids = pl.from_pandas(customers["customer_id"].reset_index(drop=True)).cast(pl.String).alias("customer_id")
    if ids.null_count():
        row = int(np.flatnonzero(ids.is_null().to_numpy())[0])
        raise DataError("missing customer id", file=_source(customers, table), column="customer_id",
                        expected="an id on every row", example=_example(customers, row, pii))
    dup = ids.is_duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{int(dup.sum())} rows share a customer id", file=_source(customers, table),
                        column="customer_id", expected="one row per customer (crmlab.data.clean merges them)",
                        example=_example(customers, row, pii))
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
            raise DataError(f"has dtype {s.dtype}", file=_source(customers, table), column="signup_date",
                            expected="datetime64 values (parse dates with crmlab.data.clean first)",
                            example=_example(customers, 0, pii))
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
    _require(interactions, ("customer_id", "ts", "kind"), table)
    plf = _to_polars(interactions, ["customer_id", "ts", "kind"], table)
    _check_no_nulls(interactions, plf, ("customer_id", "ts"), table)
    day = _day_expr(plf, "ts", interactions, table)
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


def _finish(ids: pl.Series, columns: dict[str, Any]) -> pd.DataFrame:
    """A pandas frame with customer_id first, rows as given; arrays are not copied."""
    data = {"customer_id": ids.to_pandas().astype("str")}
    data.update(columns)
    return pd.DataFrame(data, copy=False)


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
    pop = pop[_string_order(pop["customer_id"])]
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
) -> pd.DataFrame:
    """One row per customer with every feature as of the end of ``as_of`` (see the module doc).

    ``transactions`` (``customer_id``, ``ts``, ``amount``, optional ``order_id``, ``quantity``,
    ``product_id``, ``category``, ``channel``) may be None when ``customers`` is given. Inputs are
    never modified. Raises :class:`~crmlab.errors.DataError` for a missing column, a missing value
    in a required column or a date column that is not datetime64.
    """
    cut = as_of_date(as_of)
    as_of_day = _day_number(cut)
    unit = _unit_days(time_unit)
    windows = _check_windows(windows)
    if transactions is None and customers is None:
        raise ValueError("build_features needs a transactions table, a customers table or both")
    pii = frozenset(str(c).lower() for c in pii_columns)
    exclude = frozenset({"customer_id", "signup_date", *drop_columns, *([label_column] if label_column else [])})

    tx_cols: dict[str, np.ndarray] = {}
    tx_ids = pl.Series("customer_id", [], pl.String)
    if transactions is not None:
        past = _past_transactions(transactions, as_of_day)
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

    if cu is not None:
        clash = [str(c) for c in cu.attributes.columns if str(c) in columns or str(c) == "customer_id"]
        if clash:
            raise DataError(f"customer column(s) {clash} have the name of a built feature",
                            file=_source(customers, "customers"),
                            expected="other names (rename them, or list them in drop_columns)")
        for name in cu.attributes.columns:
            columns[str(name)] = _attribute(cu.attributes[name], cu_index)
    return _finish(ids, columns)


def build_features_from_tables(
    tables: Any,
    *,
    as_of: date | datetime | str | None,
    cfg: ProjectConfig,
    label_column: str | None = None,
) -> pd.DataFrame:
    """:func:`build_features` on a :class:`~crmlab.data.io.Tables` with the project's settings.

    ``as_of=None`` takes ``cfg.as_of``, else the last transaction date.
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
    )


def rfm_summary(transactions: pd.DataFrame, *, as_of: date | datetime | str, time_unit: str = "W") -> pd.DataFrame:
    """Frequency, recency, T and monetary value per customer with a purchase on or before ``as_of``.

    lifetimes' convention (``summary_data_from_transaction_data(..., freq="D")`` divided by the
    unit length), with returns (amount < 0) not counted as purchase days; see the module doc.
    Columns ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``; rows sorted by id.
    """
    ids, cols, _ = _rfm(transactions, _day_number(as_of_date(as_of)), _unit_days(time_unit))
    return _finish(ids, cols)


def _rfm(transactions: pd.DataFrame, as_of_day: int, unit: float) -> tuple[pl.Series, dict[str, np.ndarray], np.ndarray]:
    """RFM of the customers with a purchase on or before as_of, sorted by id, and their first purchase day."""
    past = _past_transactions(transactions, as_of_day)
    pdays = _purchase_days(_days(past), past.n)
    cols = _rfm_columns(pdays, as_of_day, unit)
    buyers = pdays.n_days > 0
    if buyers.all():
        return past.ids, cols, pdays.first
    return past.ids.filter(pl.Series(buyers)), {k: v[buyers] for k, v in cols.items()}, pdays.first[buyers]
