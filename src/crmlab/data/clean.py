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
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmlab.config import CleaningConfig, FeatureConfig, MissingPolicy
from crmlab.data.io import SCHEMAS, Tables
from crmlab.data.parse import (
    DateOrderError,
    as_text,
    bool_mask,
    clean_ids,
    label_aliases,
    maybe_numeric,
    nfkc,
    normalise_label_values,
    normalise_labels,
    parse_dates,
    parse_numbers,
)
from crmlab.data.persons import merge_customers, remap_ids, similar_ids
from crmlab.data.pii import PersonalColumn, find_personal_columns, redact_row
from crmlab.data.cleaning_report import CleanReport, CleanResult, Stage, TableReport
from crmlab.errors import ConfigError, DataError
from crmlab.utils import write_json_atomic, write_table_atomic

__all__ = [
    "CleanReport",
    "CleanResult",
    "TableReport",
    "clean_tables",
    "survey_scales",
    "write_clean_result",
]

log = logging.getLogger(__name__)

DEFAULT_PII_COLUMNS: tuple[str, ...] = tuple(FeatureConfig().pii_columns)

# Which canonical columns get which treatment.
ID_COLUMNS = ("customer_id", "order_id", "product_id")
DATE_COLUMNS = {"transactions": ("ts",), "customers": ("signup_date",), "interactions": ("ts",), "surveys": ("ts",)}
AMOUNT_COLUMNS = {"transactions": ("amount",)}
NUMBER_COLUMNS = {"transactions": ("quantity",), "customers": ("age",), "interactions": ("value",),
                  "surveys": ("score",)}
LABEL_COLUMNS = ("category", "channel", "kind", "gender", "region", "plan")
# Rejected when missing even if cfg.missing does not list them: a row without them is no record.
REQUIRED = {"transactions": ("customer_id", "ts", "amount"), "customers": ("customer_id",),
            "interactions": ("customer_id", "ts"), "surveys": ("customer_id", "ts", "score")}
#: The score range of each survey scale (``project.data.surveys.scale``; auto: either of them).
SURVEY_SCALES = {"nps": (0, 10), "csat": (1, 5), "auto": (0, 10)}
# Dates written in these formats count as already standard (not "reformatted").
ISO_FORMATS = frozenset({"%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"})
# Share of a column's non-missing values that may fail to parse before the whole column is refused.
MAX_UNPARSEABLE_SHARE = 0.5
# Tables at least this long are de-duplicated through row hashes (exact check on hash collisions only).
_HASH_DEDUPE_ROWS = 200_000


DuplicatePolicy = Literal["auto", "drop", "keep"]


# --------------------------------------------------------------------------- report


# --------------------------------------------------------------------------- column parsers


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
        same &= bool_mask(x == y) | (bool_mask(x.isna()) & bool_mask(y.isna()))
    return same


# --------------------------------------------------------------------------- per-table cleaning


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
    n_present = n_bad + int(bool_mask(values.notna()).sum())
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


def derived_min_date(ts: pd.Series, rows: np.ndarray, configured: date | None) -> tuple[date | None, str]:
    """(earliest plausible date, how it was set) for the dates of ``rows``: ``configured`` when given,
    else derived from the bulk of the column's dates (see :class:`~crmlab.config.CleaningConfig`)."""
    if configured is not None:
        return configured, "project.cleaning.min_date"
    ok = bool_mask(ts.notna()) & rows
    if not ok.any():
        return None, ""
    ns = ts[ok].dt.tz_localize(None) if getattr(ts.dt, "tz", None) is not None else ts[ok]
    us = ns.to_numpy().astype("datetime64[us]").astype(np.int64)
    p10, p90 = np.quantile(us, [0.1, 0.9])
    margin = max(_MIN_DATE_SPANS * (p90 - p10), _MIN_DATE_MARGIN / pd.Timedelta(microseconds=1))
    lower = np.datetime64(int(p10 - margin), "us").astype("datetime64[D]").astype(object)
    return lower, "derived from the bulk of the column's dates; set project.cleaning.min_date to choose"


def _first_stage(name: str, raw: pd.DataFrame, cfg: CleaningConfig, *, source: str | None, max_date: date,
                 pii: frozenset[str], duplicates: DuplicatePolicy, survey_scale: str = "auto") -> Stage:
    """One table through the per-table steps: personal columns found, exact duplicates dropped, every
    column parsed, and the rows that break a rule rejected with their reason."""
    raw = raw.reset_index(drop=True)
    report = TableReport(table=name, source=source, input_rows=len(raw))
    pii, match = _find_personal(name, raw, pii, report)
    kept = _drop_exact_duplicates(name, raw, duplicates, report)
    work, unparseable = _parse_columns(name, raw, kept, cfg, source=source, pii=pii, report=report)
    rules = _Rejects(len(work))
    _reject_rows(rules, name, raw, kept, work, unparseable, cfg, source=source, pii=pii, max_date=max_date)
    if name == "surveys":
        _reject_scores(rules, work, survey_scale)
    work, rejects = rules.split(raw, work, report)
    return Stage(name=name, raw=raw, work=work, rejects=rejects, report=report, pii=pii, match=match)


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
    aliases = label_aliases(cfg)
    cols: dict[str, pd.Series] = {}
    unparseable: dict[str, tuple[str, np.ndarray]] = {}  # col -> (what, mask)
    for col in kept.columns:
        s = kept[col]
        if str(col).lower() in pii:
            cols[col] = s
        elif col in ID_COLUMNS:
            cols[col] = clean_ids(s, col, report)
        elif col in DATE_COLUMNS[name]:
            cols[col], bad = _parse_date_column(name, col, raw, kept, cfg, source=source, pii=pii, report=report)
            unparseable[col] = ("date", bad)
        elif col in AMOUNT_COLUMNS.get(name, ()):
            values, bad = parse_numbers(s, col, report)
            _check_column(name, col, raw, values, bad, source=source, what="amounts",
                          expected="numbers such as 12.50, $1,234.50, USD 45.00, ¥1,234.50, 1,234.50元, -15.00 or (15.00)", pii=pii)
            cols[col] = values
            unparseable[col] = ("amount", bad)
        elif col in NUMBER_COLUMNS[name]:
            values, bad = parse_numbers(s, col, report)
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
            cols[col] = normalise_labels(s, col, aliases, report)
        else:
            cols[col] = maybe_numeric(s, col, report)
    return pd.DataFrame(cols, index=kept.index), unparseable


def _parse_date_column(name: str, col: str, raw: pd.DataFrame, kept: pd.DataFrame, cfg: CleaningConfig, *,
                       source: str | None, pii: frozenset[str], report: TableReport) -> tuple[pd.Series, np.ndarray]:
    """One date column parsed with one day/month order (see :func:`parse_dates`), its notes reported."""
    s = kept[col]
    try:
        values, bad, counts, notes = parse_dates(s, cfg.date_formats, cfg.day_first)
    except DateOrderError as exc:
        row = int(np.flatnonzero(bool_mask(nfkc(as_text(s)) == exc.value))[0])
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
        if col in work.columns and len(work) and not bool_mask(work[col].notna()).any():
            raise DataError(f"the required column {col!r} is empty in every row", file=source or f"the {name} table",
                            column=col, expected=f"a {col} in each {name} row",
                            example=_example(raw, int(work.index[0]), pii))
    order = [c for c in (*REQUIRED[name], *DATE_COLUMNS[name], *AMOUNT_COLUMNS.get(name, ())) if c in work.columns]
    order += [c for c in work.columns if c not in order]
    for col in order:
        policy = _policy(cfg, name, col)
        if policy is not None and policy.strategy == "reject":
            missing = ~bool_mask(work[col].notna())
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
        rules.flag(bool_mask(ts >= limit), label, lambda pos, ts=ts, label=label: [
            f"{label}: {d} > {max_date.isoformat()}" for d in ts.iloc[pos].dt.strftime("%Y-%m-%d").tolist()])
        lower, how = derived_min_date(ts, ~rules.taken, cfg.min_date)
        if lower is None:
            continue
        limit = pd.Timestamp(lower).tz_localize(tz) if tz is not None else pd.Timestamp(lower)
        label = "date implausibly early" + ("" if col == "ts" else f" in {col}")
        rules.flag(bool_mask(ts < limit), label, lambda pos, ts=ts, label=label, lower=lower, how=how: [
            f"{label}: {d} < {lower.isoformat()} ({how})" for d in ts.iloc[pos].dt.strftime("%Y-%m-%d").tolist()])


def _reject_scores(rules: _Rejects, work: pd.DataFrame, scale: str) -> None:
    """Survey scores that are not whole numbers within the scale's range (module doc, surveys)."""
    if "score" not in work.columns:
        return
    lo, hi = SURVEY_SCALES[scale]
    v = work["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(v)
    bad = present & ((v < lo) | (v > hi) | (np.round(v) != v))
    rules.flag(bad, "score out of range", lambda pos: [
        f"score out of range: {x:g} (expected a whole number {lo}-{hi}, project.data.surveys.scale {scale})"
        for x in v[pos]])


def survey_scales(surveys: pd.DataFrame, scale: str) -> tuple[np.ndarray, list[str]]:
    """The scale (``nps`` or ``csat``) of each clean survey row and notes on how ``auto`` decided.

    A configured scale applies to every row. ``auto``: a row whose ``kind`` holds ``nps`` or ``csat``
    takes that scale; the other rows are decided per kind (the whole table without a ``kind``): csat
    when every score of the group is within 1-5, else nps (a 0 or a score above 5 only fits 0-10)."""
    n = len(surveys)
    if scale != "auto":
        return np.full(n, scale, dtype=object), []
    kind = (surveys["kind"].astype("string").fillna("") if "kind" in surveys.columns
            else pd.Series([""] * n, dtype="string", index=surveys.index))
    score = surveys["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty(n, dtype=object)
    named_nps = kind.str.contains("nps", regex=False).to_numpy(dtype=bool)
    named_csat = kind.str.contains("csat", regex=False).to_numpy(dtype=bool) & ~named_nps
    out[named_nps], out[named_csat] = "nps", "csat"
    notes = []
    rest = ~(named_nps | named_csat)
    if rest.any():
        groups = kind.to_numpy(dtype=object)
        for group in pd.unique(groups[rest]):
            rows = rest & (groups == group)
            s = score[rows]
            decided = "csat" if ((s >= 1) & (s <= 5)).all() else "nps"
            out[rows] = decided
            label = f"kind {group!r}" if group else "all rows"
            why = "every score is 1-5" if decided == "csat" else "scores of 0 or above 5"
            notes.append(f"survey scale of {label} ({int(rows.sum()):,} answers): {decided} ({why}; "
                         "set project.data.surveys.scale to choose)")
    return out, notes


# --------------------------------------------------------------------------- persons


#: A customer is noted as an outlier when it holds at least this share of the rows or of the spend ...
_OUTLIER_SHARE = 0.05
#: ... and at least this many times the median customer's.
_OUTLIER_TIMES = 100


def _note_outliers(stage: Stage) -> None:
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
        at = int(np.argmax(per.to_numpy()))  # the first largest, as idxmax; by position: a label lookup
        top, value = per.index[at], float(per.iloc[at])  # hashes every customer id (1 s on 3.4M ids)
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
        return normalise_label_values([str(policy.value)], aliases)[0]
    return str(policy.value)


def _impute(stage: Stage, cfg: CleaningConfig, pii: frozenset[str]) -> None:
    aliases = label_aliases(cfg)
    work = stage.work
    for col in list(work.columns):
        key = f"{stage.name}.{col}"
        policy = cfg.missing.get(key)
        if policy is None or policy.strategy in ("keep", "reject"):
            continue
        s = work[col]
        missing = ~bool_mask(s.notna())
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
    survey_scale: str = "auto",
) -> CleanResult:
    """Clean the raw tables: typed columns, rejects with reasons, merged duplicate customers, a report.

    ``pii_columns`` are used for matching persons only (email, phone) and, unless ``keep_pii``, left
    out of the clean tables; they never reach the report. ``today`` fixes the date after which rows
    are "in the future" when ``cfg.max_date`` is empty (default: the current date).
    ``exact_duplicates``: ``"auto"`` drops rows repeating an earlier row cell for cell, except in a
    transaction table without ``order_id`` (identical same-day purchases are real there); ``"drop"``
    and ``"keep"`` apply to every table. ``survey_scale`` (``project.data.surveys.scale``: auto, nps,
    csat) bounds the survey scores; the clean surveys get a ``scale`` column (:func:`survey_scales`).
    The input frames are never modified.
    """
    started = time.perf_counter()
    max_date = cfg.max_date or today or date.today()
    pii = frozenset(str(c).lower() for c in pii_columns)
    report = CleanReport(max_date=max_date)
    stages: dict[str, Stage] = {}
    for name, df in tables.items():
        source = tables.sources.get(name) or df.attrs.get("source")
        stages[name] = _first_stage(name, df, cfg, source=source, max_date=max_date, pii=pii,
                                    duplicates=exact_duplicates, survey_scale=survey_scale)

    similar = similar_ids(stages, cfg, report)
    id_map = pd.DataFrame({"source_id": pd.Series([], dtype="str"), "customer_id": pd.Series([], dtype="str")})
    customers = stages.get("customers")
    if customers is not None:
        id_map = merge_customers(customers, cfg)
        report.ids_merged = len(id_map)
        report.persons_merged = int(id_map["customer_id"].nunique())
        known = customers.work["customer_id"]
        for name in ("transactions", "interactions", "surveys"):
            if name in stages:
                remap_ids(stages[name], id_map)
                ids = stages[name].work["customer_id"]
                orphan = ~bool_mask(ids.isin(known))
                stages[name].report.orphan_rows = int(orphan.sum())
                stages[name].report.orphan_ids = int(ids[orphan].nunique())

    if len(similar):
        person = pd.Series(id_map["customer_id"].to_numpy(), index=id_map["source_id"].to_numpy())
        final = similar["customer_id"].map(person.astype("str")).astype("str").where(
            bool_mask(similar["customer_id"].isin(person.index)), similar["customer_id"])
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
        if name == "surveys":
            scales, notes = survey_scales(clean, survey_scale)
            clean["scale"] = pd.Series(scales, dtype="str") if len(clean) else pd.Series([], dtype="str")
            for note in notes:
                stage.report.notes.append(note)
                log.info("surveys: %s", note)
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
