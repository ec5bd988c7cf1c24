"""Small shared pieces of the feature module: the cut-off as a day number, time units, and the checks
that turn a bad input table into an error naming its file, column and an example row."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import polars as pl

from crmlab.config import FeatureConfig
from crmlab.data.pii import REDACTED, redact_row
from crmlab.errors import DataError

TIME_UNITS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 30.4375}
"""Length of each ``time_unit`` in days (a month is 365.25 / 12 days)."""

DEFAULT_PII_COLUMNS: tuple[str, ...] = tuple(FeatureConfig().pii_columns)

EPOCH = date(1970, 1, 1)


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


def day_number(d: date) -> int:
    return (d - EPOCH).days


def snake_case(text: Any) -> str:
    """``'Email Open'`` / ``'emailOpen'`` / ``'e-mail  open!'`` -> ``'email_open'`` / ``'e_mail_open'``."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(text))
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()
    return s or "unknown"


def unit_days(time_unit: str) -> float:
    try:
        return TIME_UNITS[time_unit]
    except KeyError:
        raise ValueError(f"time_unit={time_unit!r} should be one of {sorted(TIME_UNITS)}") from None


def check_windows(windows: Iterable[int]) -> tuple[int, ...]:
    ws = tuple(windows)
    if not ws or any(isinstance(w, bool) or int(w) != w or w <= 0 for w in ws):
        raise ValueError(f"windows={ws!r} should be positive whole numbers of days, e.g. (30, 90, 180, 365)")
    return tuple(sorted({int(w) for w in ws}))


def source_name(df: pd.DataFrame, table: str) -> str:
    return str(df.attrs.get("source") or f"{table} table")


def example_row(df: pd.DataFrame, row: int, pii: Iterable[str] = DEFAULT_PII_COLUMNS) -> dict[str, Any]:
    """One row for an error message, without its personal data."""
    hidden = {str(c).lower() for c in (*pii, *DEFAULT_PII_COLUMNS)}
    cells = {str(k): v for k, v in df.iloc[row].items() if str(k).lower() not in hidden}
    return {k: v for k, v in redact_row(cells).items() if v is not REDACTED}


def require_columns(df: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"the {table} table should be a pandas DataFrame, got {type(df).__name__}")
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"required column {col!r} is missing",
                file=source_name(df, table),
                column=col,
                expected=f"the {table} table to have columns {list(columns)}; found {list(df.columns)}",
            )


def to_polars(df: pd.DataFrame, columns: Sequence[str], table: str) -> pl.DataFrame:
    """Selected columns as polars, ``customer_id`` as text and the date column checked."""
    sub = df[list(columns)]
    zoned = [c for c in columns if isinstance(sub[c].dtype, pd.DatetimeTZDtype)]
    if zoned:  # local wall-clock time: its date is the local calendar date
        sub = sub.assign(**{c: sub[c].dt.tz_localize(None) for c in zoned})
    try:
        out = pl.from_pandas(sub)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a data problem
        raise DataError(f"cannot convert columns {list(columns)} ({exc})", file=source_name(df, table)) from None
    if out.schema["customer_id"] != pl.String:
        out = out.with_columns(pl.col("customer_id").cast(pl.String))
    return out


def check_no_nulls(pdf: pd.DataFrame, plf: pl.DataFrame, columns: Sequence[str], table: str) -> None:
    counts = plf.select(pl.col(c).null_count() for c in columns).row(0)
    for col, n in zip(columns, counts, strict=True):
        if n:
            row = int(plf.select(pl.arg_where(pl.col(col).is_null()).first()).item())
            raise DataError(
                f"{n} missing value(s)",
                file=source_name(pdf, table),
                column=col,
                expected="clean data without missing values here (run crmlab.data.clean first)",
                example=example_row(pdf, row),
            )


def day_expr(plf: pl.DataFrame, col: str, pdf: pd.DataFrame, table: str) -> pl.Expr:
    """Day number (days since 1970-01-01) of a datetime or date column, as an Int32 expression."""
    dtype = plf.schema[col]
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date().cast(pl.Int32)
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Int32)
    raise DataError(
        f"has dtype {pdf[col].dtype}",
        file=source_name(pdf, table),
        column=col,
        expected="datetime64 values (parse dates with crmlab.data.clean first)",
        example=example_row(pdf, 0) if len(pdf) else None,
    )
