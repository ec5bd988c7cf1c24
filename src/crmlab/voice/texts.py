"""Customer texts from any table: one frame of ``customer_id``, ``ts``, ``text``, empty texts counted.

The interactions table's text column is one source; a surveys table's comments or a ticket export
are others. :func:`texts_frame` takes any of them (column names overridable) and returns the texts
that can be scored, with the number of empty ones that were skipped. A column that is not text (or
is missing) is a one-line :class:`~crmlab.errors.DataError` naming the file and the column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmlab.errors import DataError

__all__ = ["DEFAULT_TEXT_COLUMN", "Texts", "text_column_of", "texts_frame"]

log = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMN = "text"


@dataclass(frozen=True)
class Texts:
    """``frame``: ``customer_id`` (text), ``ts`` (datetime64), ``text`` (non-blank str), in the input's
    row order; ``n_empty``: rows skipped for a missing or blank text (or a missing id or date); ``source``: the table's name."""

    frame: pd.DataFrame
    n_empty: int
    source: str

    @property
    def note(self) -> str:
        return f"{self.source}: {len(self.frame):,} texts, {self.n_empty:,} empty skipped"


def _source(table: pd.DataFrame, name: str) -> str:
    return str(table.attrs.get("source") or f"{name} table")


def text_column_of(table: pd.DataFrame | None, configured: str | None) -> str | None:
    """The text column to use: ``configured`` (which must exist), else ``'text'`` when the table has
    it, else None (no texts)."""
    if table is None:
        return None
    if configured is not None:
        return configured
    return DEFAULT_TEXT_COLUMN if DEFAULT_TEXT_COLUMN in table.columns else None


def _check_text(values: pd.Series, *, file: str, column: str) -> None:
    dtype = values.dtype
    if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
            or pd.api.types.is_timedelta64_dtype(dtype)):
        raise DataError(f"holds {dtype} values, not text", file=file, column=column,
                        expected="free text (comments, ticket texts); set project.voice.text_column to the text column")
    if pd.api.types.is_object_dtype(dtype):
        present = values.dropna()
        not_str = int((~present.map(lambda v: isinstance(v, str))).sum()) if len(present) else 0
        if not_str * 2 > len(present):
            raise DataError(f"{not_str:,} of {len(present):,} values are not text", file=file, column=column,
                            expected="free text (comments, ticket texts); set project.voice.text_column to the text "
                            "column")


def texts_frame(
    table: pd.DataFrame,
    *,
    text_column: str = DEFAULT_TEXT_COLUMN,
    id_column: str = "customer_id",
    ts_column: str = "ts",
    table_name: str = "interactions",
) -> Texts:
    """The scorable texts of ``table`` as (``customer_id``, ``ts``, ``text``); never modifies it.

    Missing and blank texts are skipped and counted (``Texts.n_empty``, logged). Raises
    :class:`~crmlab.errors.DataError` when a column is missing, the text column is not text or
    ``ts`` is not datetime64."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"the {table_name} table should be a pandas DataFrame, got {type(table).__name__}")
    file = _source(table, table_name)
    for col in (id_column, ts_column, text_column):
        if col not in table.columns:
            raise DataError(f"no column {col!r}", file=file, column=col,
                            expected=f"the texts' table to have {id_column!r}, {ts_column!r} and {text_column!r}; "
                            f"found {list(map(str, table.columns))[:12]}")
    values = table[text_column]
    _check_text(values, file=file, column=text_column)
    ts = table[ts_column]
    if not pd.api.types.is_datetime64_any_dtype(ts.dtype):
        raise DataError(f"has dtype {ts.dtype}", file=file, column=ts_column,
                        expected="datetime64 values (parse dates with crmlab.data.clean first)")
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    text = values.astype("str") if not pd.api.types.is_string_dtype(values.dtype) else values
    ok = ((values.notna() & (text.str.strip().str.len() > 0)).to_numpy(dtype=bool, na_value=False)
          & ts.notna().to_numpy() & table[id_column].notna().to_numpy())
    n_empty = int((~ok).sum())  # a text without a customer or a date cannot be placed either
    frame = pd.DataFrame({
        "customer_id": table[id_column].to_numpy()[ok].astype(str),
        "ts": ts.to_numpy()[ok],
        "text": np.asarray(text.to_numpy()[ok], dtype=object),
    })
    out = Texts(frame=frame, n_empty=n_empty, source=file)
    if n_empty:
        log.info("%s: %d empty text(s) in column %r skipped", file, n_empty, text_column)
    return out
