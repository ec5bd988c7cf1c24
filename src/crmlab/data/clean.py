"""Cleaning raw tables into typed, de-duplicated tables, with a rejects file and a report.

:func:`clean_tables` takes the raw tables as :func:`crmlab.data.io.read_table` gives them (canonical
column names; CSV cells are text, Parquet or the embedded CDNOW log may already be typed) and
returns a :class:`CleanResult`: typed clean tables, the rejected rows with one reason each, the map
of merged customer ids and a :class:`CleanReport` of counts. Nothing is lost silently: every input
row ends up in the clean data, in the rejects, among the dropped exact duplicates or (customers
only) merged into another row of the same person, and the report checks that the counts add up.

Steps, per table (the rules in order):

1. **Exact duplicates**: rows whose raw cells are all equal to an earlier row are dropped and counted.
   A transaction table without an ``order_id`` is the exception: there, two identical rows (same
   customer, day and amount) may be two purchases that nothing tells apart, as in the embedded
   CDNOW log (255 such rows, which every published CDNOW statistic counts). They are kept and
   counted as ``identical_rows_kept`` (``exact_duplicates="drop"`` drops them anyway).
2. **Formats**: dates are tried with ``cfg.date_formats``, one vectorised :func:`pandas.to_datetime`
   call per format on the rows still unparsed, after two formats that differ only by the order of day
   and month were narrowed to one per column (the one only some of the column's dates fit, or
   ``cfg.day_first``'s; a column that stays ambiguous or holds both orders is a DataError); amounts lose currency
   symbols and codes (``$ € £ ¥ ￥ 元 USD EUR GBP RMB CNY JPY 人民币``), spaces and thousands separators
   (``"$1,234.50"`` -> 1234.5, ``"1,234.50元"`` -> 1234.5), full-width digits and signs are read as
   ASCII (``"（１２．００）"`` -> -12); ``"-15.00"`` and ``"(15.00)"`` are returns (negative amounts) and stay valid. Labels
   (category, channel, kind, gender, region, plan) are stripped, inner whitespace collapsed,
   lower-cased and then mapped through ``cfg.category_aliases``. Customer ids are stripped.
   Already-typed columns (datetime64, numbers) are taken as they are.
3. **Rejects** (one reason each, the first failing rule wins): a missing value in a column whose
   policy is ``reject`` (by default ``customer_id``, ``ts`` and ``amount``), an unparseable date or
   amount, an amount beyond ``cfg.max_amount`` (or infinite), a date after ``max_date``
   (``cfg.max_date``, else ``today``, else the current date), a date before ``cfg.min_date`` (else one
   derived from the column's bulk, see :func:`_min_date`).
   When more than half of the values of a date or amount column do not parse, the column mapping
   or the date formats are probably wrong: a :class:`~crmlab.errors.DataError` names the file, the
   column, the expected formats and an example row instead of rejecting the whole table.
4. **One person under several ids** (customers, ``cfg.dedupe_customers``): emails are compared
   with all whitespace removed and lower-cased, phones as digits only (the last 10 when longer, at
   least 7); ids that share an email OR a phone are one person, transitively (connected components).
   The canonical id is the one with the earliest ``signup_date`` (ties: the smallest id, numerically
   when both are numbers); the person's rows are merged (first non-missing value per column, canonical
   id first) and ``customer_id`` in transactions and interactions is remapped through the id map.
   Rows of the customers table that share one id are always merged the same way.
5. **Missing values**: ``cfg.missing`` maps ``"table.column"`` to a :class:`~crmlab.config.MissingPolicy`;
   ``median`` and ``mode`` are computed on the clean rows of that table; unlisted columns keep their
   missing values (unlisted ``customer_id``/``ts``/``amount`` are rejected: a row without them is no
   transaction). Unparseable optional numbers (``quantity``, ``age``, ``value``) become missing
   first, and are counted.

A transaction or interaction whose customer id is not in the customers table is kept (the customers
table is optional); the report counts those orphan rows and ids.

Personal data is used for matching only: the columns named in ``pii_columns`` (names, emails, phones)
and every other column that :func:`crmlab.data.pii.find_personal_columns` flags by its name (``E-mail
Address``, ``Mobile Phone``, ``客户姓名``, ``手机号`` ...) or content (e-mail addresses, phone numbers, ID
numbers; in the customers table also near-unique free text). Flagged e-mail and phone columns are
matched on like ``email`` and ``phone`` (step 4). All of them are dropped from the clean tables
(``keep_pii=True`` keeps them), each with a logged note naming the column and the rule (never a
value), and never appear in the report, which holds counts,
column names, formats and reasons without values. The rejects keep each rejected row's original
cells, personal data included, so that the owner of the data can fix and reload them.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmlab.config import CleaningConfig, FeatureConfig, MissingPolicy
from crmlab.data.io import SCHEMAS, Tables
from crmlab.data.pii import PersonalColumn, find_personal_columns, redact_row
from crmlab.errors import ConfigError, DataError
from crmlab.utils import write_json_atomic, write_table_atomic

__all__ = [
    "CleanReport",
    "CleanResult",
    "TableReport",
    "clean_tables",
    "write_clean_result",
]

log = logging.getLogger(__name__)

DEFAULT_PII_COLUMNS: tuple[str, ...] = tuple(FeatureConfig().pii_columns)

# Which canonical columns get which treatment.
ID_COLUMNS = ("customer_id", "order_id", "product_id")
DATE_COLUMNS = {"transactions": ("ts",), "customers": ("signup_date",), "interactions": ("ts",)}
AMOUNT_COLUMNS = {"transactions": ("amount",)}
NUMBER_COLUMNS = {"transactions": ("quantity",), "customers": ("age",), "interactions": ("value",)}
LABEL_COLUMNS = ("category", "channel", "kind", "gender", "region", "plan")
# Rejected when missing even if cfg.missing does not list them: a row without them is no record.
REQUIRED = {"transactions": ("customer_id", "ts", "amount"), "customers": ("customer_id",),
            "interactions": ("customer_id", "ts")}
# Dates written in these formats count as already standard (not "reformatted").
ISO_FORMATS = frozenset({"%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"})
# Share of a column's non-missing values that may fail to parse before the whole column is refused.
MAX_UNPARSEABLE_SHARE = 0.5
# Tables at least this long are de-duplicated through row hashes (exact check on hash collisions only).
_HASH_DEDUPE_ROWS = 200_000

_PLAIN_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"
_CURRENCY = r"[$€£¥元]|人民币|(?i:usd|eur|gbp|rmb|cny|jpy)"

DuplicatePolicy = Literal["auto", "drop", "keep"]


# --------------------------------------------------------------------------- report


@dataclass
class TableReport:
    """Counts for one table; no values from the data, so it is safe to log and track.

    ``input_rows = clean_rows + rejected_rows + exact_duplicates + merged_rows`` always holds
    (``merged_rows`` is non-zero for the customers table only).
    """

    table: str
    source: str | None = None
    input_rows: int = 0
    exact_duplicates: int = 0
    identical_rows_kept: int = 0
    merged_rows: int = 0
    clean_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    imputed: dict[str, dict[str, Any]] = field(default_factory=dict)
    standardised: dict[str, int] = field(default_factory=dict)
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)
    ids_remapped: int = 0
    orphan_rows: int | None = None
    orphan_ids: int | None = None
    dropped_columns: list[str] = field(default_factory=list)
    personal_columns: dict[str, str] = field(default_factory=dict)  # column -> why it is personal (no values)
    notes: list[str] = field(default_factory=list)  # what a user should know: date order chosen, outliers

    @property
    def rejected_rows(self) -> int:
        return int(sum(self.rejected.values()))

    @property
    def invariant_ok(self) -> bool:
        return self.input_rows == self.clean_rows + self.rejected_rows + self.exact_duplicates + self.merged_rows

    def invariant(self) -> str:
        """The invariant, stated with this table's numbers: ``'customers: 105 input = 100 clean + ...: ok'``."""
        merged = f" + {self.merged_rows:,} merged" if self.table == "customers" else ""
        sign = "=" if self.invariant_ok else "!="
        return (
            f"{self.table}: {self.input_rows:,} input {sign} {self.clean_rows:,} clean + {self.rejected_rows:,} rejected"
            f" + {self.exact_duplicates:,} exact duplicates{merged}: {'ok' if self.invariant_ok else 'MISMATCH'}"
        )

    def _add(self, bucket: dict[str, int], key: str, n: int | np.integer) -> None:
        if n:
            bucket[key] = bucket.get(key, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "source": self.source,
            "input_rows": int(self.input_rows),
            "clean_rows": int(self.clean_rows),
            "rejected_rows": self.rejected_rows,
            "exact_duplicates": int(self.exact_duplicates),
            "identical_rows_kept": int(self.identical_rows_kept),
            "merged_rows": int(self.merged_rows),
            "invariant_ok": self.invariant_ok,
            "rejected": {k: int(v) for k, v in sorted(self.rejected.items())},
            "imputed": {k: dict(v) for k, v in sorted(self.imputed.items())},
            "standardised": {k: int(v) for k, v in sorted(self.standardised.items())},
            "date_formats": {c: {f: int(n) for f, n in d.items()} for c, d in sorted(self.date_formats.items())},
            "ids_remapped": int(self.ids_remapped),
            "orphan_rows": self.orphan_rows,
            "orphan_ids": self.orphan_ids,
            "dropped_columns": list(self.dropped_columns),
            "personal_columns": dict(self.personal_columns),
            "notes": list(self.notes),
        }


@dataclass
class CleanReport:
    """What cleaning did, per table: counts and reasons only, never personal data."""

    tables: dict[str, TableReport] = field(default_factory=dict)
    max_date: date | None = None
    ids_merged: int = 0
    persons_merged: int = 0
    similar_id_groups: int = 0  # groups of ids that differ only by leading zeros, '.0', notation or case
    similar_ids: int = 0
    similar_ids_merged: int = 0
    seconds: float = 0.0

    @property
    def invariant_ok(self) -> bool:
        return all(t.invariant_ok for t in self.tables.values())

    def check_invariant(self, *, strict: bool = True) -> list[str]:
        """State the invariant for every table (one line each); with ``strict``, raise when a count is off.

        input rows = clean rows + rejected rows + dropped exact duplicates (+ merged rows, customers).
        """
        lines = [t.invariant() for t in self.tables.values()]
        if strict and not self.invariant_ok:
            # The cleaner lost or invented rows: a bug in crmlab, not in the data.
            raise RuntimeError("cleaning counts do not add up: " + "; ".join(lines))
        return lines

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per table, for a rich/console table."""
        return [
            {
                "table": name,
                "input": t.input_rows,
                "clean": t.clean_rows,
                "rejected": t.rejected_rows,
                "exact duplicates": t.exact_duplicates,
                "merged": t.merged_rows,
                "imputed": int(sum(v["count"] for v in t.imputed.values())),
                "standardised": int(sum(t.standardised.values())),
                "ids remapped": t.ids_remapped,
                "check": "ok" if t.invariant_ok else "MISMATCH",
            }
            for name, t in self.tables.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (only ints, floats, strings, lists and dicts)."""
        return {
            "max_date": self.max_date.isoformat() if self.max_date else None,
            "ids_merged": int(self.ids_merged),
            "persons_merged": int(self.persons_merged),
            "similar_id_groups": int(self.similar_id_groups),
            "similar_ids": int(self.similar_ids),
            "similar_ids_merged": int(self.similar_ids_merged),
            "invariant_ok": self.invariant_ok,
            "seconds": round(float(self.seconds), 3),
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }

    def to_text(self) -> str:
        """A short human-readable summary, one fact per line."""
        lines = self.check_invariant(strict=False)
        for name, t in self.tables.items():
            for reason, n in sorted(t.rejected.items()):
                lines.append(f"{name}: rejected {n:,} row(s): {reason}")
            if t.identical_rows_kept:
                lines.append(f"{name}: kept {t.identical_rows_kept:,} identical row(s) (no order_id to tell "
                             "repeat purchases from repeated rows)")
            for col, imp in sorted(t.imputed.items()):
                value = f" ({imp['value']!r})" if "value" in imp else ""
                lines.append(f"{name}: filled {imp['count']:,} missing {col} by {imp['strategy']}{value}")
            for rule, n in sorted(t.standardised.items()):
                lines.append(f"{name}: standardised {n:,} value(s): {rule}")
            if t.ids_remapped:
                lines.append(f"{name}: {t.ids_remapped:,} row(s) moved from a duplicate customer id to its person")
            if t.orphan_rows:
                lines.append(f"{name}: {t.orphan_rows:,} row(s) of {t.orphan_ids:,} customer id(s) "
                             "not in the customers table (kept)")
            if t.dropped_columns:
                lines.append(f"{name}: personal data columns not kept in the clean table: {', '.join(t.dropped_columns)}")
            lines.extend(f"{name}: note: {n}" for n in t.notes)
        if self.persons_merged:
            lines.append(f"customers: {self.ids_merged:,} duplicate id(s) merged into {self.persons_merged:,} person(s)")
        if self.similar_id_groups:
            done = (f"{self.similar_ids_merged:,} merged" if self.similar_ids_merged
                    else "kept apart (project.cleaning.merge_similar_ids: true merges them)")
            lines.append(f"customer ids: {self.similar_ids:,} ids in {self.similar_id_groups:,} group(s) differ only by "
                         f"leading zeros, a '.0' suffix, scientific notation or case: {done}")
        return "\n".join(lines)


@dataclass
class CleanResult:
    """Clean typed tables, rejected rows (raw cells + ``_row`` + ``_reason``), the id map and the report."""

    tables: Tables
    rejects: dict[str, pd.DataFrame]
    id_map: pd.DataFrame
    report: CleanReport


# --------------------------------------------------------------------------- column parsers


def _is_text_dtype(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype) or dtype == object


def _text_of(s: pd.Series) -> pd.Series:
    """The column as text (``str`` dtype, missing = NaN); whole floats lose their ``.0``."""
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = vals[np.isfinite(vals)]
        if np.array_equal(finite, np.round(finite)):
            s = s.astype("Int64")
    return s if isinstance(s.dtype, pd.StringDtype) and s.dtype.na_value is np.nan else s.astype("str")


def _as_text(s: pd.Series) -> pd.Series:
    """Text (``str`` dtype) with surrounding whitespace stripped and empty cells missing."""
    stripped = _text_of(s).str.strip()
    return stripped.mask(stripped == "")


def _distinct(s: pd.Series) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """(codes, distinct raw texts, rows per distinct text): parsers work once per distinct value.

    ``codes`` is -1 for missing cells. Dates and amounts repeat a lot, so this is much faster than
    parsing every row, and never slower by more than the factorisation.
    """
    codes, uniques = pd.factorize(_text_of(s), use_na_sentinel=True)
    distinct = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    weights = np.bincount(codes[codes >= 0], minlength=len(distinct))
    return codes, distinct, weights


def _expand(codes: np.ndarray, values: np.ndarray, fill: Any) -> np.ndarray:
    """Per-row values from per-distinct-value ``values`` (``fill`` where the cell is missing)."""
    out = np.full(codes.size, fill, dtype=values.dtype)
    has = codes >= 0
    out[has] = values[codes[has]]
    return out


def _bool(values: pd.Series) -> np.ndarray:
    """A writable numpy bool array; missing counts as False."""
    out = values.to_numpy(dtype=bool, na_value=False)
    return out if out.flags.writeable else out.copy()


def _clean_ids(s: pd.Series, col: str, report: TableReport) -> pd.Series:
    if isinstance(s.dtype, pd.StringDtype) or s.dtype == object:
        text = _as_text(s)
        report._add(report.standardised, f"{col}: surrounding spaces removed",
                    int((_bool(text.notna()) & _bool(text != s)).sum()))
        return text
    return _as_text(s)


def _nfkc(text: pd.Series) -> pd.Series:
    """Full-width forms as their ASCII twins (``２０２４／３／４`` -> ``2024/3/4``, ``￥`` -> ``¥``,
    ``（１２．００）`` -> ``(12.00)``); only values with a non-ASCII character are touched."""
    wide = _bool(text.str.contains(r"[^\x00-\x7f]", regex=True))
    if not wide.any():
        return text
    out = text.copy()
    out[wide] = [unicodedata.normalize("NFKC", v) for v in text[wide].tolist()]
    return out


def _swapped(fmt: str) -> str:
    """``fmt`` with numeric day and month exchanged: ``%d/%m/%Y`` <-> ``%m/%d/%Y``."""
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _day_first(fmt: str) -> bool | None:
    """True for a format with the day before the month and the year after both (``%d/%m/%Y``), False for
    its month-first twin, None when the year comes first (``%Y-%m-%d``): day_first does not apply."""
    d, m = fmt.find("%d"), fmt.find("%m")
    year = max(fmt.find("%Y"), fmt.find("%y"))
    if d < 0 or m < 0 or 0 <= year < max(d, m):
        return None
    return d < m


class DateOrderError(ValueError):
    """A date column whose day/month order cannot be decided, or that mixes both orders."""

    def __init__(self, problem: str, expected: str, value: str) -> None:
        super().__init__(problem)
        self.problem, self.expected, self.value = problem, expected, value


def _reading(d: Any) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"


def _choose_formats(text: pd.Series, formats: Sequence[str], day_first: bool | str) -> tuple[list[str], list[str]]:
    """(formats to use, notes): of two formats that differ only by the order of day and month, keep the one
    the column's own dates choose (see :class:`~crmlab.config.CleaningConfig`), or ``day_first``'s.

    ``text`` holds the column's distinct present values. Raises :class:`DateOrderError` when the column
    mixes both orders or no date decides (and ``day_first`` is ``"auto"`` or does not apply)."""
    formats = list(dict.fromkeys(formats))
    drop: set[str] = set()
    notes: list[str] = []
    for f in formats:
        g = _swapped(f)
        if g == f or g not in formats or f in drop or g in drop or formats.index(g) < formats.index(f):
            continue
        order = _day_first(f)
        if day_first != "auto" and order is not None:
            drop.add(g if order == day_first else f)
            continue
        cand = text
        for c in set(re.sub(r"%.", "", f)):  # a value without the format's separators is neither
            cand = cand[_bool(cand.str.contains(c, regex=False))]
        if cand.empty:
            continue
        a = pd.to_datetime(cand, format=f, errors="coerce")
        b = pd.to_datetime(cand, format=g, errors="coerce")
        only_f, only_g = _bool(a.notna() & b.isna()), _bool(b.notna() & a.isna())
        both = _bool(a.notna() & b.notna() & (a != b))
        if only_f.any() and only_g.any():
            vf, vg = cand[only_f].iloc[0], cand[only_g].iloc[0]
            raise DateOrderError(
                f"the column mixes dates of two orders: {int(only_f.sum()):,} as {f} (e.g. {vf!r}) and "
                f"{int(only_g.sum()):,} as {g} (e.g. {vg!r}), so the dates that could be either are undecidable",
                "one day/month order per column: fix the export, or keep only one of the two formats in "
                "project.cleaning.date_formats and let the other dates be rejected", vg)
        if only_f.any() or only_g.any():
            keep, lose, mask = (f, g, only_f) if only_f.any() else (g, f, only_g)
            drop.add(lose)
            example = cand[mask].iloc[0]
            if both.any():
                notes.append(f"dates read as {keep}, not {lose}: {int(mask.sum()):,} distinct date(s) such as "
                             f"{example!r} can only be {keep}")
            continue
        if both.any():
            v = cand[both].iloc[0]
            da, db = a[both].iloc[0], b[both].iloc[0]
            hint = ("project.cleaning.day_first: true or false" if order is not None
                    else f"only one of {f} and {g} in project.cleaning.date_formats")
            raise DateOrderError(
                f"{int(both.sum()):,} distinct date(s) such as {v!r} read as {_reading(da)} ({f}) or {_reading(db)} "
                f"({g}), and no date in the column can only be one of them",
                f"{hint} to say which order the file uses", v)
    return [f for f in formats if f not in drop], notes


def _parse_dates(s: pd.Series, formats: Sequence[str], day_first: bool | str = "auto"
                 ) -> tuple[pd.Series, np.ndarray, dict[str, int], list[str]]:
    """(dates, unparseable mask, rows parsed per format, notes). Typed datetime columns pass through.

    The formats are first narrowed per column by :func:`_choose_formats` (never two orders of day and
    month); each remaining format is then one vectorised :func:`pandas.to_datetime` call on the values
    still unparsed.
    """
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s, np.zeros(len(s), dtype=bool), {}, []
    codes, distinct, weights = _distinct(s)
    text = _nfkc(_as_text(distinct))
    todo = _bool(text.notna())
    formats, notes = _choose_formats(text[todo], formats, day_first)
    parsed_u = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    fmt_u = np.full(len(text), -1, dtype=np.int64)
    for i, fmt in enumerate(formats):
        if not todo.any():
            break
        pos = np.flatnonzero(todo)
        parsed = pd.to_datetime(text.iloc[pos], format=fmt, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        ok = _bool(parsed.notna())
        if ok.any():
            parsed_u[pos[ok]] = parsed.to_numpy()[ok].astype("datetime64[us]")
            fmt_u[pos[ok]] = i
            todo[pos[ok]] = False
    per_format = np.bincount(fmt_u[fmt_u >= 0], weights=weights[fmt_u >= 0], minlength=len(formats))
    counts = {fmt: int(n) for fmt, n in zip(formats, per_format, strict=False) if n}
    values = pd.Series(_expand(codes, parsed_u, np.datetime64("NaT")), index=s.index)
    return values, _expand(codes, todo, False), counts, notes


_ONLY_COMMA = r"\d,(?:\d{1,2}|\d{4,})\D*$|\d\.\d{3},\d"  # 12,50  1.234,5: a decimal comma
_ONLY_POINT = r"\d\.(?:\d{1,2}|\d{4,})\D*$|\d,\d{3}\.\d"  # 12.50  1,234.5: a decimal point


def _decimal_comma(text: pd.Series) -> np.ndarray | None:
    """The values written with a decimal comma when the column uses one (see :func:`_number_values`),
    else None."""
    has = _bool(text.str.contains(",", regex=False))
    if not has.any():
        return None
    t = _nfkc(text)
    if not _bool(t[has].str.contains(_ONLY_COMMA, regex=True)).any():
        return None
    dots = _bool(t.str.contains(".", regex=False))
    if dots.any() and _bool(t[dots].str.contains(_ONLY_POINT, regex=True)).any():
        return None
    return has


def _number_values(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Parse distinct texts as numbers: (values, unparseable, {rule: applied}) per value.

    The decimal mark is decided for the whole column: a comma when some value can only be read with a
    decimal comma (``12,50``, ``1.234,5``, ``7,0 €``) and none only with a decimal point (``12.50``,
    ``1,234.5``); then ``.`` between digit groups is a thousands separator (``1.234,50`` -> 1234.5)."""
    n = len(raw)
    text = _as_text(raw)
    present = _bool(text.notna())
    values = np.full(n, np.nan)
    bad = np.zeros(n, dtype=bool)
    rules = {k: np.zeros(n, dtype=bool) for k in (
        "parenthesised negative", "currency symbol or code removed", "thousands separator removed",
        "decimal comma read as a point")}
    stripped = text
    comma = _decimal_comma(text)
    if comma is not None:
        rules["decimal comma read as a point"] = comma
        text = text.str.replace(r"(?<=\d)\.(?=\d{3}(?!\d))", "", regex=True).str.replace(",", ".", regex=False)
    plain = _bool(text.str.fullmatch(_PLAIN_NUMBER))
    if plain.any():
        values[plain] = text[plain].to_numpy(dtype=np.float64)
    rest = present & ~plain
    if rest.any():
        pos = np.flatnonzero(rest)
        t = _nfkc(text.iloc[pos])
        paren = _bool(t.str.startswith("(") & t.str.endswith(")"))
        t = t.where(~paren, t.str.slice(1, -1))
        currency = _bool(t.str.contains(_CURRENCY, regex=True))
        t = t.str.replace(_CURRENCY, "", regex=True).str.replace(r"\s+", "", regex=True)
        thousands = _bool(t.str.fullmatch(_THOUSANDS))
        t = t.where(~thousands, t.str.replace(",", "", regex=False))
        ok = _bool(t.str.fullmatch(_PLAIN_NUMBER))
        v = np.full(pos.size, np.nan)
        v[ok] = t[ok].to_numpy(dtype=np.float64)
        v[paren & ok] = -np.abs(v[paren & ok])
        values[pos] = v
        bad[pos] = ~ok
        for rule, mask in zip(("parenthesised negative", "currency symbol or code removed",
                               "thousands separator removed"), (paren, currency, thousands), strict=True):
            rules[rule][pos] = mask & ok
    rules["decimal comma read as a point"] &= ~bad
    rules["surrounding spaces removed"] = present & ~bad & _bool(raw != stripped)
    return values, bad, rules


def _parse_numbers(s: pd.Series, col: str, report: TableReport | None) -> tuple[pd.Series, np.ndarray]:
    """(float64 values, unparseable mask). Strips currency symbols/codes, spaces and thousands separators;
    ``(15.00)`` is -15. Typed numeric columns pass through (infinities count as unparseable)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(vals)
        if bad.any():
            vals = vals.copy()
            vals[bad] = np.nan
        return pd.Series(vals, index=s.index), bad
    codes, distinct, weights = _distinct(s)
    values_u, bad_u, rules = _number_values(distinct)
    if report is not None:
        for rule, mask in rules.items():
            report._add(report.standardised, f"{col}: {rule}", int(weights[mask].sum()))
    return pd.Series(_expand(codes, values_u, np.nan), index=s.index), _expand(codes, bad_u, False)


def _aliases(cfg: CleaningConfig) -> dict[str, str]:
    """``cfg.category_aliases`` with its spellings normalised like the values they are matched with."""
    return {" ".join(k.split()).lower(): v for k, v in cfg.category_aliases.items()}


def _normalise_label_values(values: Iterable[str], aliases: Mapping[str, str]) -> list[str | float]:
    out: list[str | float] = []
    for v in values:
        norm = " ".join(str(v).split()).lower()
        norm = aliases.get(norm, norm)
        out.append(norm if norm != "" else np.nan)
    return out


def _normalise_labels(s: pd.Series, col: str, aliases: Mapping[str, str], report: TableReport) -> pd.Series:
    """Strip, collapse inner whitespace, lower-case, then apply aliases; done once per distinct value."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    uniq = [str(u) for u in uniques]
    plain = [" ".join(u.split()).lower() for u in uniq]
    final = _normalise_label_values(uniq, aliases)
    valid = codes >= 0
    if len(uniq):
        respelt = np.array([p != u for p, u in zip(plain, uniq, strict=True)])
        aliased = np.array([isinstance(f, str) and f != p for f, p in zip(final, plain, strict=True)])
        report._add(report.standardised, f"{col}: case/spacing normalised", respelt[codes[valid]].sum())
        report._add(report.standardised, f"{col}: alias applied", aliased[codes[valid]].sum())
    mapped = np.array(final + [np.nan], dtype=object)[np.where(valid, codes, len(final))]
    return pd.Series(mapped, index=s.index, dtype="str")


def _maybe_numeric(s: pd.Series, col: str | None = None, report: TableReport | None = None) -> pd.Series:
    """Text columns whose every value is a plain number (and none has a leading zero, like a zip code)
    become float64, and so do those whose every value is an amount written with a currency or a
    thousands separator (``¥1,234.50``, ``59.00元``: counted in the report); anything else is kept."""
    if not _is_text_dtype(s.dtype):
        return s
    text = _as_text(s)
    present = text.dropna()
    if present.empty:
        return s
    if _bool(present.str.match(r"[+-]?0\d")).any():
        return s
    if _bool(present.str.fullmatch(_PLAIN_NUMBER)).all():
        return pd.Series(text.to_numpy(dtype=np.float64, na_value=np.nan), index=s.index)
    codes, distinct, weights = _distinct(s)
    values_u, bad_u, rules = _number_values(distinct)
    money = rules["currency symbol or code removed"] | rules["thousands separator removed"]
    if bad_u.any() or not money.any():
        return s
    if report is not None and col is not None:
        for rule, mask in rules.items():
            report._add(report.standardised, f"{col}: {rule}", int(weights[mask].sum()))
    return pd.Series(_expand(codes, values_u, np.nan), index=s.index)


# --------------------------------------------------------------------------- exact duplicates


def _exact_duplicates(df: pd.DataFrame) -> np.ndarray:
    """Rows equal, cell for cell, to an earlier row (``DataFrame.duplicated(keep='first')``).

    Long tables hash their rows first (polars, multi-threaded) and compare cells exactly only among
    rows whose hashes collide, which keeps ten million rows within a couple of seconds.
    """
    n = len(df)
    if n == 0 or df.shape[1] == 0:
        return np.zeros(n, dtype=bool)
    if n < _HASH_DEDUPE_ROWS:
        return df.duplicated(keep="first").to_numpy()
    try:
        import polars as pl

        frame = df.set_axis([f"c{i}" for i in range(df.shape[1])], axis=1)
        objects = [c for c in frame.columns if frame[c].dtype == object]
        if objects:
            frame = frame.astype(dict.fromkeys(objects, "str"))
        hashes = pl.from_pandas(frame, rechunk=False).hash_rows(seed=0).to_numpy()
    except Exception:  # noqa: BLE001 - any column polars cannot take: fall back to the exact pandas path
        return df.duplicated(keep="first").to_numpy()
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    out = np.zeros(n, dtype=bool)
    if repeated.size == 0:
        return out
    repeated = repeated[np.r_[True, repeated[1:] != repeated[:-1]]]  # sorted already: unique in one pass
    # rows whose hash is a repeated one: prefilter by the top 24 bits (a cheap gather), then binary search
    bucket = np.zeros(1 << 24, dtype=bool)
    bucket[repeated >> np.uint64(40)] = True
    maybe = np.flatnonzero(bucket[hashes >> np.uint64(40)])
    if maybe.size > n // 8:  # many repeats: sorting every row is cheaper than looking each one up
        candidates = np.arange(n)
    else:
        at = np.minimum(np.searchsorted(repeated, hashes[maybe]), repeated.size - 1)
        candidates = maybe[repeated[at] == hashes[maybe]]
    # group candidates by hash and compare every row, cell by cell, with the first row of its group
    rows = candidates[pl.Series(hashes[candidates]).arg_sort().to_numpy()]
    sorted_hashes = hashes[rows]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, rows.size])
    same = _same_as_group_head(df, rows, np.repeat(starts, sizes))
    group_same = np.logical_and.reduceat(same, starts)
    earliest = np.repeat(np.minimum.reduceat(rows, starts), sizes)
    out[rows[np.repeat(group_same, sizes) & (rows != earliest)]] = True
    if not group_same.all():
        # a real hash collision: settle those groups exactly
        clash = np.sort(rows[np.repeat(~group_same, sizes)])
        out[clash] = df.iloc[clash].duplicated(keep="first").to_numpy()
    return out


def _same_as_group_head(df: pd.DataFrame, rows: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Whether row ``rows[k]`` of ``df`` holds the same cells as row ``rows[head[k]]`` (missing equals missing).

    ``head`` is non-decreasing, so the second gather runs over memory in order.
    """
    same = np.ones(rows.size, dtype=bool)
    for col in range(df.shape[1]):
        x = df.iloc[:, col].iloc[rows].reset_index(drop=True)
        y = x.iloc[head].reset_index(drop=True)
        same &= _bool(x == y) | (_bool(x.isna()) & _bool(y.isna()))
    return same


# --------------------------------------------------------------------------- per-table cleaning


@dataclass
class _Stage:
    """A table between the steps: typed columns of the surviving rows (index = input row number)."""

    name: str
    raw: pd.DataFrame
    work: pd.DataFrame
    rejects: pd.DataFrame
    report: TableReport
    pii: frozenset[str] = frozenset()  # lower-cased names of this table's personal columns
    match: dict[str, list[str]] = field(default_factory=dict)  # 'email'/'phone' -> columns to match persons on


def _policy(cfg: CleaningConfig, table: str, col: str) -> MissingPolicy | None:
    policy = cfg.missing.get(f"{table}.{col}")
    if policy is None and col in REQUIRED[table]:
        return MissingPolicy(strategy="reject")
    return policy


def _example(raw: pd.DataFrame, row: int, pii: frozenset[str]) -> dict[str, Any]:
    return redact_row(raw.iloc[row].to_dict(), pii)


def _check_column(name: str, col: str, raw: pd.DataFrame, values: pd.Series, bad: np.ndarray, *,
                  source: str | None, expected: str, what: str, pii: frozenset[str]) -> None:
    n_bad = int(bad.sum())
    n_present = n_bad + int(_bool(values.notna()).sum())
    if n_bad and n_bad > MAX_UNPARSEABLE_SHARE * n_present:
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{n_bad:,} of {n_present:,} values ({n_bad / n_present:.0%}) are not {what}: "
            "probably a wrong column mapping or format",
            file=source or f"the {name} table",
            column=col,
            expected=expected,
            example=_example(raw, int(values.index[first]), pii),
        )


def _personal_columns(name: str, raw: pd.DataFrame, pii: frozenset[str]) -> list[PersonalColumn]:
    """Columns of ``raw`` holding personal data beyond the configured ``pii`` names: every column but the
    canonical ones of the table, by name and content (near-unique text too in the customers table)."""
    schema = SCHEMAS[name]
    canonical = {*schema.required, *schema.optional, *ID_COLUMNS, *DATE_COLUMNS[name], *AMOUNT_COLUMNS.get(name, ()),
                 *NUMBER_COLUMNS[name], *LABEL_COLUMNS} - {"name", "email", "phone"}
    candidates = [c for c in raw.columns if c not in canonical and str(c).lower() not in pii]
    return find_personal_columns(raw, columns=candidates, near_unique=name == "customers")


#: The automatic earliest plausible date: the 10th percentile minus this many times the 10th-90th
#: percentile span, and at least ``_MIN_DATE_MARGIN`` before it.
_MIN_DATE_SPANS = 10
_MIN_DATE_MARGIN = pd.Timedelta(days=5 * 365)


def _min_date(ts: pd.Series, rows: np.ndarray, configured: date | None) -> tuple[date | None, str]:
    """(earliest plausible date, how it was set) for the dates of ``rows``: ``configured`` when given,
    else derived from the bulk of the column's dates (see :class:`~crmlab.config.CleaningConfig`)."""
    if configured is not None:
        return configured, "project.cleaning.min_date"
    ok = _bool(ts.notna()) & rows
    if not ok.any():
        return None, ""
    ns = ts[ok].dt.tz_localize(None) if getattr(ts.dt, "tz", None) is not None else ts[ok]
    us = ns.to_numpy().astype("datetime64[us]").astype(np.int64)
    p10, p90 = np.quantile(us, [0.1, 0.9])
    margin = max(_MIN_DATE_SPANS * (p90 - p10), _MIN_DATE_MARGIN / pd.Timedelta(microseconds=1))
    lower = np.datetime64(int(p10 - margin), "us").astype("datetime64[D]").astype(object)
    return lower, "derived from the bulk of the column's dates; set project.cleaning.min_date to choose"


def _first_stage(name: str, raw: pd.DataFrame, cfg: CleaningConfig, *, source: str | None, max_date: date,
                 pii: frozenset[str], duplicates: DuplicatePolicy) -> _Stage:
    """One table through the per-table steps: personal columns found, exact duplicates dropped, every
    column parsed, and the rows that break a rule rejected with their reason."""
    raw = raw.reset_index(drop=True)
    report = TableReport(table=name, source=source, input_rows=len(raw))
    pii, match = _find_personal(name, raw, pii, report)
    kept = _drop_exact_duplicates(name, raw, duplicates, report)
    work, unparseable = _parse_columns(name, raw, kept, cfg, source=source, pii=pii, report=report)
    rules = _Rejects(len(work))
    _reject_rows(rules, name, raw, kept, work, unparseable, cfg, source=source, pii=pii, max_date=max_date)
    work, rejects = rules.split(raw, work, report)
    return _Stage(name=name, raw=raw, work=work, rejects=rejects, report=report, pii=pii, match=match)


def _find_personal(name: str, raw: pd.DataFrame, pii: frozenset[str], report: TableReport
                   ) -> tuple[frozenset[str], dict[str, list[str]]]:
    """Personal data under the file's own headers: never parsed, never a feature, matched on if it can be.
    Returns the table's personal column names (lower case) and the columns to match persons on."""
    found = _personal_columns(name, raw, pii)
    for p in found:
        report.personal_columns[p.column] = p.reason
    if found:
        log.info("%s: personal data or identifiers, used for matching only and left out of the clean table and "
                 "the features: %s (a column that is not personal: give it another name with "
                 "project.data.%s.columns)", name, "; ".join(p.note() for p in found), name)
    pii = pii | {p.column.lower() for p in found}
    match = {key: [c for c in raw.columns if str(c).lower() == key] for key in ("email", "phone")}
    for p in found:
        if p.kind in match:
            match[p.kind].append(p.column)
    return pii, match


def _drop_exact_duplicates(name: str, raw: pd.DataFrame, duplicates: DuplicatePolicy, report: TableReport
                           ) -> pd.DataFrame:
    """``raw`` without its exact duplicate rows (unless identical rows are kept: ``duplicates``)."""
    dup = _exact_duplicates(raw)
    keep_identical = duplicates == "keep" or (
        duplicates == "auto" and name == "transactions" and "order_id" not in raw.columns
    )
    if keep_identical:
        report.identical_rows_kept = int(dup.sum())
        dup = np.zeros(len(raw), dtype=bool)
    report.exact_duplicates = int(dup.sum())
    return raw if not dup.any() else raw.loc[~dup]


def _parse_columns(name: str, raw: pd.DataFrame, kept: pd.DataFrame, cfg: CleaningConfig, *, source: str | None,
                   pii: frozenset[str], report: TableReport) -> tuple[pd.DataFrame, dict[str, tuple[str, np.ndarray]]]:
    """Every column of ``kept`` parsed by its kind (ids, dates, amounts, numbers, labels; personal columns
    untouched), and per column whose bad values reject their rows: (what, mask of those values)."""
    aliases = _aliases(cfg)
    cols: dict[str, pd.Series] = {}
    unparseable: dict[str, tuple[str, np.ndarray]] = {}  # col -> (what, mask)
    for col in kept.columns:
        s = kept[col]
        if str(col).lower() in pii:
            cols[col] = s
        elif col in ID_COLUMNS:
            cols[col] = _clean_ids(s, col, report)
        elif col in DATE_COLUMNS[name]:
            cols[col], bad = _parse_date_column(name, col, raw, kept, cfg, source=source, pii=pii, report=report)
            unparseable[col] = ("date", bad)
        elif col in AMOUNT_COLUMNS.get(name, ()):
            values, bad = _parse_numbers(s, col, report)
            _check_column(name, col, raw, values, bad, source=source, what="amounts",
                          expected="numbers such as 12.50, $1,234.50, USD 45.00, ¥1,234.50, 1,234.50元, -15.00 or (15.00)", pii=pii)
            cols[col] = values
            unparseable[col] = ("amount", bad)
        elif col in NUMBER_COLUMNS[name]:
            values, bad = _parse_numbers(s, col, report)
            if col == "value" and bad.sum() > MAX_UNPARSEABLE_SHARE * (bad.sum() + values.notna().sum()):
                cols[col] = s  # free text, not a number: keep it as it is
                continue
            policy = _policy(cfg, name, col)
            if policy is not None and policy.strategy == "reject":
                unparseable[col] = ("number", bad)
            else:
                report._add(report.standardised, f"{col}: unparseable number set missing", bad.sum())
            cols[col] = values
        elif col in LABEL_COLUMNS:
            cols[col] = _normalise_labels(s, col, aliases, report)
        else:
            cols[col] = _maybe_numeric(s, col, report)
    return pd.DataFrame(cols, index=kept.index), unparseable


def _parse_date_column(name: str, col: str, raw: pd.DataFrame, kept: pd.DataFrame, cfg: CleaningConfig, *,
                       source: str | None, pii: frozenset[str], report: TableReport) -> tuple[pd.Series, np.ndarray]:
    """One date column parsed with one day/month order (see :func:`_parse_dates`), its notes reported."""
    s = kept[col]
    try:
        values, bad, counts, notes = _parse_dates(s, cfg.date_formats, cfg.day_first)
    except DateOrderError as exc:
        row = int(np.flatnonzero(_bool(_nfkc(_as_text(s)) == exc.value))[0])
        raise DataError(exc.problem, file=source or f"the {name} table", column=col, expected=exc.expected,
                        example=_example(raw, int(kept.index[row]), pii)) from None
    for note in notes:
        report.notes.append(f"{col}: {note}")
        log.info("%s.%s: %s", name, col, note)
    _check_column(name, col, raw, values, bad, source=source, what="dates in any expected format",
                  expected=f"dates in one of the formats {list(cfg.date_formats)} "
                  "(project.cleaning.date_formats)", pii=pii)
    if counts:
        report.date_formats[col] = counts
        report._add(report.standardised, f"{col}: dates reformatted",
                    sum(n for f, n in counts.items() if f not in ISO_FORMATS))
    return values, bad


class _Rejects:
    """The rows of one table rejected so far, each with its reason: the first failing rule wins."""

    def __init__(self, n: int) -> None:
        self.taken = np.zeros(n, dtype=bool)
        self.parts: list[tuple[np.ndarray, str, list[str]]] = []  # (positions, kind, reasons)

    def flag(self, mask: np.ndarray, what: str, reasons: Any) -> None:
        """Reject the rows of ``mask`` not rejected yet; ``reasons(pos)`` gives their reasons (or one string)."""
        pos = np.flatnonzero(mask & ~self.taken)
        if pos.size:
            self.taken[pos] = True
            why = [reasons] * pos.size if isinstance(reasons, str) else reasons(pos)
            self.parts.append((pos, what, why))

    def split(self, raw: pd.DataFrame, work: pd.DataFrame, report: TableReport) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(the rows kept, the rejects: the raw rows with ``_row`` and ``_reason``), counted in ``report``."""
        if self.parts:
            pos = np.concatenate([p for p, _, _ in self.parts])
            why = [r for _, _, rs in self.parts for r in rs]
            for _, what, rs in self.parts:
                report._add(report.rejected, what, len(rs))
            by_row = np.argsort(pos, kind="stable")
            pos, why = pos[by_row], [why[i] for i in by_row]
        else:
            pos, why = np.empty(0, dtype=np.int64), []
        rows = work.index.to_numpy()[pos]
        rejects = raw.iloc[rows].copy()
        rejects["_row"] = rows.astype(np.int64)
        rejects["_reason"] = pd.Series(why, index=rejects.index, dtype="str")
        rejects = rejects.reset_index(drop=True)
        if self.taken.any():
            work = work.loc[~self.taken]
        return work, rejects


def _reject_rows(rules: _Rejects, name: str, raw: pd.DataFrame, kept: pd.DataFrame, work: pd.DataFrame,
                 unparseable: Mapping[str, tuple[str, np.ndarray]], cfg: CleaningConfig, *, source: str | None,
                 pii: frozenset[str], max_date: date) -> None:
    """Apply the rules in order: missing required values, unparseable values, amounts out of range,
    dates after the data's last day or implausibly early."""
    for col in REQUIRED[name]:
        if col in work.columns and len(work) and not _bool(work[col].notna()).any():
            raise DataError(f"the required column {col!r} is empty in every row", file=source or f"the {name} table",
                            column=col, expected=f"a {col} in each {name} row",
                            example=_example(raw, int(work.index[0]), pii))
    order = [c for c in (*REQUIRED[name], *DATE_COLUMNS[name], *AMOUNT_COLUMNS.get(name, ())) if c in work.columns]
    order += [c for c in work.columns if c not in order]
    for col in order:
        policy = _policy(cfg, name, col)
        if policy is not None and policy.strategy == "reject":
            missing = ~_bool(work[col].notna())
            if col in unparseable:
                missing &= ~unparseable[col][1]
            rules.flag(missing, f"missing {col}", f"missing {col}")
    for what in ("date", "amount", "number"):
        for col, (w, bad) in unparseable.items():
            if w != what:
                continue
            label = "unparseable amount" if col == "amount" else f"unparseable {what} in {col}"
            rules.flag(bad, label, lambda pos, col=col, label=label: [
                f"{label}: {v!r}" for v in kept[col].iloc[pos].tolist()])
    for col in AMOUNT_COLUMNS.get(name, ()):
        if col not in work.columns:
            continue
        v = work[col].to_numpy(dtype=np.float64, na_value=np.nan)
        label = "amount out of range" if col == "amount" else f"{col} out of range"
        rules.flag(np.isinf(v) | (np.abs(np.nan_to_num(v)) > cfg.max_amount), label, lambda pos, v=v, label=label: [
            f"{label}: {x:g} (beyond project.cleaning.max_amount {cfg.max_amount:g})" for x in v[pos]])
    cutoff = pd.Timestamp(max_date) + pd.Timedelta(days=1)
    for col in DATE_COLUMNS[name]:
        if col not in work.columns:
            continue
        ts = work[col]
        tz = getattr(ts.dt, "tz", None)
        limit = cutoff.tz_localize(tz) if tz is not None else cutoff
        label = "date in the future of the data" + ("" if col == "ts" else f" in {col}")
        rules.flag(_bool(ts >= limit), label, lambda pos, ts=ts, label=label: [
            f"{label}: {d} > {max_date.isoformat()}" for d in ts.iloc[pos].dt.strftime("%Y-%m-%d").tolist()])
        lower, how = _min_date(ts, ~rules.taken, cfg.min_date)
        if lower is None:
            continue
        limit = pd.Timestamp(lower).tz_localize(tz) if tz is not None else pd.Timestamp(lower)
        label = "date implausibly early" + ("" if col == "ts" else f" in {col}")
        rules.flag(_bool(ts < limit), label, lambda pos, ts=ts, label=label, lower=lower, how=how: [
            f"{label}: {d} < {lower.isoformat()} ({how})" for d in ts.iloc[pos].dt.strftime("%Y-%m-%d").tolist()])


# --------------------------------------------------------------------------- persons


def _email_key(s: pd.Series) -> pd.Series:
    text = _as_text(s).str.replace(r"\s+", "", regex=True).str.lower()
    return text.where(_bool(text.str.contains("@", regex=False)))


def _phone_key(s: pd.Series) -> pd.Series:
    digits = _as_text(s).str.replace(r"\D+", "", regex=True)
    digits = digits.where(_bool(digits.str.len() >= 7))
    return digits.str.slice(-10)


def _merge_customers(stage: _Stage, cfg: CleaningConfig) -> pd.DataFrame:
    """Merge rows of one person (shared id, email or phone) into one; return the id map."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    df = stage.work
    empty_map = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    if df.empty:
        return empty_map
    id_codes, ids = pd.factorize(df["customer_id"])
    n_ids = len(ids)
    src, dst = [np.arange(n_ids)], [np.arange(n_ids)]
    offset = n_ids
    if cfg.dedupe_customers:
        for key in dict.fromkeys(cfg.match_on):
            cols = [c for c in stage.match.get(key, ()) if c in df.columns]
            if not cols:
                continue
            # every e-mail (phone) column of the table is one pool of keys: a shared value links two ids
            k = pd.concat([_email_key(df[c]) if key == "email" else _phone_key(df[c]) for c in cols],
                          ignore_index=True)
            rows = np.tile(id_codes, len(cols))
            has = _bool(k.notna())
            codes, uniques = pd.factorize(k[has])
            src.append(rows[has])
            dst.append(codes + offset)
            offset += len(uniques)
    a, b = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    comp = labels[:n_ids]
    if len(np.unique(comp)) == len(df):
        return empty_map  # every row its own person: nothing to merge

    signup = (df["signup_date"].groupby(id_codes).min().reindex(range(n_ids)).to_numpy()
              if "signup_date" in df.columns else np.full(n_ids, np.datetime64("NaT"), dtype="datetime64[us]"))
    idf = pd.DataFrame({
        "comp": comp,
        "signup": signup,
        "num": pd.to_numeric(pd.Series(np.asarray(ids, dtype=object)), errors="coerce").to_numpy(),
        "id": pd.Series(np.asarray(ids, dtype=object), dtype="str"),
    })
    idf = idf.sort_values(["comp", "signup", "num", "id"], na_position="last", kind="stable")
    rank = np.empty(n_ids, dtype=np.int64)
    rank[idf.index.to_numpy()] = np.arange(n_ids)
    canonical_of_comp = idf.drop_duplicates("comp").set_index("comp")["id"]
    canonical = canonical_of_comp.reindex(comp).to_numpy(dtype=object)

    rows = df.assign(_person=comp[id_codes], _rank=rank[id_codes], _row=df.index.to_numpy())
    rows = rows.sort_values(["_rank", "_row"], kind="stable")
    merged = rows.groupby("_person", sort=False).first()
    merged["customer_id"] = canonical_of_comp.reindex(merged.index).to_numpy(dtype=object)
    merged = merged.sort_values("_row", kind="stable")
    merged.index = pd.Index(merged["_row"].to_numpy())
    merged = merged.drop(columns=["_rank", "_row"])[list(df.columns)]
    for col in df.columns:  # groupby.first can loosen dtypes: restore them
        if merged[col].dtype != df[col].dtype:
            merged[col] = merged[col].astype(df[col].dtype)

    stage.report.merged_rows = len(df) - len(merged)
    stage.work = merged
    source = pd.Series(np.asarray(ids, dtype=object), dtype="str")
    target = pd.Series(canonical, dtype="str")
    moved = _bool(source != target)
    id_map = pd.DataFrame({"source_id": source[moved].to_numpy(), "customer_id": target[moved].to_numpy()})
    id_map = id_map.astype("str").sort_values(["customer_id", "source_id"], ignore_index=True)
    return id_map


def _remap_ids(stage: _Stage, id_map: pd.DataFrame) -> None:
    if id_map.empty or "customer_id" not in stage.work.columns:
        return
    s = stage.work["customer_id"]
    hit = _bool(s.isin(id_map["source_id"]))
    if not hit.any():
        return
    mapping = pd.Series(id_map["customer_id"].to_numpy(), index=id_map["source_id"].to_numpy())
    out = s.copy()
    out.iloc[np.flatnonzero(hit)] = mapping.reindex(s.iloc[np.flatnonzero(hit)].to_numpy()).to_numpy()
    stage.work = stage.work.assign(customer_id=out)
    stage.report.ids_remapped += int(hit.sum())


_SCI = r"[+-]?\d+(?:\.\d+)?[eE][+-]?\d+"


def _id_key(ids: pd.Series) -> pd.Series:
    """What a customer id may have been before a spreadsheet or a float touched it: lower case, a number in
    scientific notation written out (``1.23E+02`` -> ``123``), no ``.0`` suffix, no leading zeros."""
    key = ids.str.lower()
    sci = _bool(key.str.fullmatch(_SCI))
    if sci.any():
        vals = key[sci].astype("float64")
        whole = np.isfinite(vals.to_numpy()) & (vals.to_numpy() == np.round(vals.to_numpy())) & (vals.abs() < 1e15)
        key.loc[vals.index[whole]] = vals[whole].astype("int64").astype("str")
    key = key.str.replace(r"^([+-]?\d+)\.0+$", r"\1", regex=True)
    return key.str.replace(r"^0+(?=\d)", "", regex=True)


def _similar_ids(stages: Mapping[str, _Stage], cfg: CleaningConfig, report: CleanReport) -> pd.DataFrame:
    """Report customer ids that differ only by leading zeros, a ``.0`` suffix, scientific notation or case;
    with ``cfg.merge_similar_ids`` remap each group to its id with the most rows (ties: the id already in
    its plain form, such as ``123`` or ``c123``, then the first in sort order) in every table. Returns the map (source_id -> customer_id), empty unless merging."""
    empty = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    ids = [st.work["customer_id"].dropna() for st in stages.values() if "customer_id" in st.work.columns]
    if not ids:
        return empty
    counts = pd.concat(ids, ignore_index=True).astype("str").value_counts()
    distinct = pd.Series(counts.index.astype("str"), dtype="str")
    key = _id_key(distinct)
    dup = _bool(key.duplicated(keep=False))
    if not dup.any():
        return empty
    groups = pd.DataFrame({"id": distinct[dup].to_numpy(), "key": key[dup].to_numpy(),
                           "rows": counts.to_numpy()[dup]})
    groups["plain"] = groups["id"] == groups["key"]  # ties go to the id already in its plain form
    groups = groups.sort_values(["key", "rows", "plain", "id"], ascending=[True, False, False, True], kind="stable")
    head = groups.groupby("key", sort=False)["id"].transform("first")
    n_groups, n_ids = groups["key"].nunique(), len(groups)
    example = groups[groups["key"] == groups["key"].iloc[0]]["id"].tolist()[:4]
    report.similar_id_groups, report.similar_ids = int(n_groups), int(n_ids)
    if not cfg.merge_similar_ids:
        log.warning("customer ids: %d group(s) of ids that differ only by leading zeros, a '.0' suffix, scientific "
                    "notation or letter case (%d ids, e.g. %s) are kept apart; set project.cleaning."
                    "merge_similar_ids: true if each group is one customer", n_groups, n_ids, example)
        return empty
    moved = groups[groups["id"] != head]
    id_map = pd.DataFrame({"source_id": moved["id"].astype("str").to_numpy(),
                           "customer_id": head[moved.index].astype("str").to_numpy()})
    for st in stages.values():
        if "customer_id" in st.work.columns:
            _remap_ids(st, id_map)
    report.similar_ids_merged = len(id_map)
    log.info("customer ids: merged %d id(s) into %d that differ from them only by leading zeros, a '.0' suffix, "
             "scientific notation or case (e.g. %s -> %s; project.cleaning.merge_similar_ids)",
             len(id_map), n_groups, id_map["source_id"].iloc[0], id_map["customer_id"].iloc[0])
    return id_map


#: A customer is noted as an outlier when it holds at least this share of the rows or of the spend ...
_OUTLIER_SHARE = 0.05
#: ... and at least this many times the median customer's.
_OUTLIER_TIMES = 100


def _note_outliers(stage: _Stage) -> None:
    """Note (never drop) customers with an extreme share of the rows or spend: a test account, a
    placeholder id or a wholesaler that will dominate sums, CLV and KPIs."""
    work = stage.work
    if len(work) == 0 or "customer_id" not in work.columns:
        return
    by = work.groupby("customer_id", sort=False, observed=True)
    for what, per in (("rows", by.size()), ("spend", by["amount"].sum() if "amount" in work.columns else None)):
        if per is None or len(per) < 10:
            continue
        per = per.clip(lower=0)
        total, median = float(per.sum()), float(per.median())
        top = per.idxmax()
        value = float(per[top])
        if total <= 0 or value < _OUTLIER_SHARE * total or value < _OUTLIER_TIMES * max(median, 1e-9):
            continue
        note = (f"one customer ({top}) holds {value / total:.0%} of the {what} ({value:,.0f} vs a median of "
                f"{median:,.1f} per customer); check that it is a real customer, not a test, placeholder or "
                "wholesale account, before reading sums, CLV and KPIs")
        stage.report.notes.append(note)
        log.warning("%s: %s", stage.name, note)


# --------------------------------------------------------------------------- missing values


def _fill_value(policy: MissingPolicy, key: str, s: pd.Series, aliases: Mapping[str, str]) -> Any:
    present = s.dropna()
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if policy.strategy == "median":
        if not numeric and not pd.api.types.is_datetime64_any_dtype(s.dtype):
            raise ConfigError(f"project.cleaning.missing.{key}: strategy 'median' needs a numeric column, "
                              f"but it holds {s.dtype} values; use 'mode' or 'constant'")
        return present.median() if len(present) else None
    if policy.strategy == "mode":
        return present.mode().iloc[0] if len(present) else None
    # constant
    if policy.value is None:
        raise ConfigError(f"project.cleaning.missing.{key}: strategy 'constant' needs a value")
    if numeric:
        try:
            return float(policy.value)
        except (TypeError, ValueError):
            raise ConfigError(f"project.cleaning.missing.{key}: value {policy.value!r} is not a number, "
                              f"but the column holds numbers") from None
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        value = pd.to_datetime(policy.value, errors="coerce")
        if pd.isna(value):
            raise ConfigError(f"project.cleaning.missing.{key}: value {policy.value!r} is not a date")
        return value
    key_col = key.split(".", 1)[1]
    if key_col in LABEL_COLUMNS:
        return _normalise_label_values([str(policy.value)], aliases)[0]
    return str(policy.value)


def _impute(stage: _Stage, cfg: CleaningConfig, pii: frozenset[str]) -> None:
    aliases = _aliases(cfg)
    work = stage.work
    for col in list(work.columns):
        key = f"{stage.name}.{col}"
        policy = cfg.missing.get(key)
        if policy is None or policy.strategy in ("keep", "reject"):
            continue
        s = work[col]
        missing = ~_bool(s.notna())
        if not missing.any():
            continue
        value = _fill_value(policy, key, s, aliases)
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            log.warning("%s: no values to compute the %s of %s from; left missing", stage.name, policy.strategy, col)
            continue
        work = work.assign(**{col: s.fillna(value)})
        entry: dict[str, Any] = {"strategy": policy.strategy, "count": int(missing.sum())}
        if str(col).lower() not in pii:
            entry["value"] = value.isoformat() if isinstance(value, pd.Timestamp) else (
                float(value) if isinstance(value, (int, float, np.number)) else str(value))
        stage.report.imputed[col] = entry
    stage.work = work


# --------------------------------------------------------------------------- public API


def clean_tables(
    tables: Tables,
    cfg: CleaningConfig,
    *,
    pii_columns: Sequence[str] = DEFAULT_PII_COLUMNS,
    today: date | None = None,
    keep_pii: bool = False,
    exact_duplicates: DuplicatePolicy = "auto",
) -> CleanResult:
    """Clean the raw tables: typed columns, rejects with reasons, merged duplicate customers, a report.

    ``pii_columns`` are used for matching persons only (email, phone) and, unless ``keep_pii``, left
    out of the clean tables; they never reach the report. ``today`` fixes the date after which rows
    are "in the future" when ``cfg.max_date`` is empty (default: the current date).
    ``exact_duplicates``: ``"auto"`` drops rows repeating an earlier row cell for cell, except in a
    transaction table without ``order_id`` (identical same-day purchases are real there); ``"drop"``
    and ``"keep"`` apply to every table. The input frames are never modified.
    """
    started = time.perf_counter()
    max_date = cfg.max_date or today or date.today()
    pii = frozenset(str(c).lower() for c in pii_columns)
    report = CleanReport(max_date=max_date)
    stages: dict[str, _Stage] = {}
    for name, df in tables.items():
        source = tables.sources.get(name) or df.attrs.get("source")
        stages[name] = _first_stage(name, df, cfg, source=source, max_date=max_date, pii=pii,
                                    duplicates=exact_duplicates)

    similar = _similar_ids(stages, cfg, report)
    id_map = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    customers = stages.get("customers")
    if customers is not None:
        id_map = _merge_customers(customers, cfg)
        report.ids_merged = len(id_map)
        report.persons_merged = int(id_map["customer_id"].nunique())
        known = customers.work["customer_id"]
        for name in ("transactions", "interactions"):
            if name in stages:
                _remap_ids(stages[name], id_map)
                ids = stages[name].work["customer_id"]
                orphan = ~_bool(ids.isin(known))
                stages[name].report.orphan_rows = int(orphan.sum())
                stages[name].report.orphan_ids = int(ids[orphan].nunique())

    if len(similar):
        person = pd.Series(id_map["customer_id"].to_numpy(), index=id_map["source_id"].to_numpy())
        final = similar["customer_id"].map(person.astype("str")).astype("str").where(
            _bool(similar["customer_id"].isin(person.index)), similar["customer_id"])
        id_map = pd.concat([similar.assign(customer_id=final.astype("str")), id_map], ignore_index=True)
    if "transactions" in stages:
        _note_outliers(stages["transactions"])

    out = Tables(sources=dict(tables.sources))
    rejects: dict[str, pd.DataFrame] = {}
    for name, stage in stages.items():
        _impute(stage, cfg, stage.pii)
        clean = stage.work
        if not keep_pii:
            dropped = [c for c in clean.columns if str(c).lower() in stage.pii]
            stage.report.dropped_columns = dropped
            clean = clean.drop(columns=dropped)
        clean = clean.reset_index(drop=True)
        if "customer_id" in clean.columns and not isinstance(clean["customer_id"].dtype, pd.StringDtype):
            clean["customer_id"] = clean["customer_id"].astype("str")
        if "source" in stage.raw.attrs:
            clean.attrs["source"] = stage.raw.attrs["source"]
        stage.report.clean_rows = len(clean)
        setattr(out, name, clean)
        rejects[name] = stage.rejects
        report.tables[name] = stage.report
    report.seconds = time.perf_counter() - started
    report.check_invariant(strict=True)
    log.info("cleaned %s in %.2fs", ", ".join(f"{n}: {t.clean_rows:,} rows" for n, t in report.tables.items()),
             report.seconds)
    return CleanResult(tables=out, rejects=rejects, id_map=id_map, report=report)


def write_clean_result(result: CleanResult, out_dir: str | Path) -> dict[str, Path]:
    """Write the clean tables (``<table>.parquet``), ``rejects_<table>.csv`` (header-only when nothing was
    rejected), ``id_map.csv`` and ``cleaning_report.json`` atomically; return their paths by name."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, df in result.tables.items():
        paths[name] = write_table_atomic(df, out / f"{name}.parquet")
    for name, rej in result.rejects.items():
        paths[f"rejects_{name}"] = write_table_atomic(rej, out / f"rejects_{name}.csv")
    paths["id_map"] = write_table_atomic(result.id_map, out / "id_map.csv")
    paths["report"] = write_json_atomic(result.report.to_dict(), out / "cleaning_report.json")
    return paths
