"""Parsing raw columns into typed ones: ids, dates (one day/month order per column), numbers (currency marks, thousands separators, decimal commas, accounting negatives) and labels (NFKC, aliases)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CleaningConfig
from crmlab.data.cleaning_report import TableReport

_PLAIN_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"


_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"


_CURRENCY = r"[$€£¥元]|人民币|(?i:usd|eur|gbp|rmb|cny|jpy)"


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


def as_text(s: pd.Series) -> pd.Series:
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


def bool_mask(values: pd.Series) -> np.ndarray:
    """A writable numpy bool array; missing counts as False."""
    out = values.to_numpy(dtype=bool, na_value=False)
    return out if out.flags.writeable else out.copy()


def clean_ids(s: pd.Series, col: str, report: TableReport) -> pd.Series:
    if isinstance(s.dtype, pd.StringDtype) or s.dtype == object:
        text = as_text(s)
        report._add(report.standardised, f"{col}: surrounding spaces removed",
                    int((bool_mask(text.notna()) & bool_mask(text != s)).sum()))
        return text
    return as_text(s)


def nfkc(text: pd.Series) -> pd.Series:
    """Full-width forms as their ASCII twins (``２０２４／３／４`` -> ``2024/3/4``, ``￥`` -> ``¥``,
    ``（１２．００）`` -> ``(12.00)``); only values with a non-ASCII character are touched."""
    wide = bool_mask(text.str.contains(r"[^\x00-\x7f]", regex=True))
    if not wide.any():
        return text
    out = text.copy()
    out[wide] = [unicodedata.normalize("NFKC", v) for v in text[wide].tolist()]
    return out


def _swapped(fmt: str) -> str:
    """``fmt`` with numeric day and month exchanged: ``%d/%m/%Y`` <-> ``%m/%d/%Y``."""
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def day_first_of(fmt: str) -> bool | None:
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
        order = day_first_of(f)
        if day_first != "auto" and order is not None:
            drop.add(g if order == day_first else f)
            continue
        cand = text
        for c in set(re.sub(r"%.", "", f)):  # a value without the format's separators is neither
            cand = cand[bool_mask(cand.str.contains(c, regex=False))]
        if cand.empty:
            continue
        a = pd.to_datetime(cand, format=f, errors="coerce")
        b = pd.to_datetime(cand, format=g, errors="coerce")
        only_f, only_g = bool_mask(a.notna() & b.isna()), bool_mask(b.notna() & a.isna())
        both = bool_mask(a.notna() & b.notna() & (a != b))
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


def parse_dates(s: pd.Series, formats: Sequence[str], day_first: bool | str = "auto"
                 ) -> tuple[pd.Series, np.ndarray, dict[str, int], list[str]]:
    """(dates, unparseable mask, rows parsed per format, notes). Typed datetime columns pass through.

    The formats are first narrowed per column by :func:`_choose_formats` (never two orders of day and
    month); each remaining format is then one vectorised :func:`pandas.to_datetime` call on the values
    still unparsed.
    """
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s, np.zeros(len(s), dtype=bool), {}, []
    codes, distinct, weights = _distinct(s)
    text = nfkc(as_text(distinct))
    todo = bool_mask(text.notna())
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
        ok = bool_mask(parsed.notna())
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
    has = bool_mask(text.str.contains(",", regex=False))
    if not has.any():
        return None
    t = nfkc(text)
    if not bool_mask(t[has].str.contains(_ONLY_COMMA, regex=True)).any():
        return None
    dots = bool_mask(t.str.contains(".", regex=False))
    if dots.any() and bool_mask(t[dots].str.contains(_ONLY_POINT, regex=True)).any():
        return None
    return has


def _number_values(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Parse distinct texts as numbers: (values, unparseable, {rule: applied}) per value.

    The decimal mark is decided for the whole column: a comma when some value can only be read with a
    decimal comma (``12,50``, ``1.234,5``, ``7,0 €``) and none only with a decimal point (``12.50``,
    ``1,234.5``); then ``.`` between digit groups is a thousands separator (``1.234,50`` -> 1234.5)."""
    n = len(raw)
    text = as_text(raw)
    present = bool_mask(text.notna())
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
    plain = bool_mask(text.str.fullmatch(_PLAIN_NUMBER))
    if plain.any():
        values[plain] = text[plain].to_numpy(dtype=np.float64)
    rest = present & ~plain
    if rest.any():
        pos = np.flatnonzero(rest)
        t = nfkc(text.iloc[pos])
        paren = bool_mask(t.str.startswith("(") & t.str.endswith(")"))
        t = t.where(~paren, t.str.slice(1, -1))
        currency = bool_mask(t.str.contains(_CURRENCY, regex=True))
        t = t.str.replace(_CURRENCY, "", regex=True).str.replace(r"\s+", "", regex=True)
        thousands = bool_mask(t.str.fullmatch(_THOUSANDS))
        t = t.where(~thousands, t.str.replace(",", "", regex=False))
        ok = bool_mask(t.str.fullmatch(_PLAIN_NUMBER))
        v = np.full(pos.size, np.nan)
        v[ok] = t[ok].to_numpy(dtype=np.float64)
        v[paren & ok] = -np.abs(v[paren & ok])
        values[pos] = v
        bad[pos] = ~ok
        for rule, mask in zip(("parenthesised negative", "currency symbol or code removed",
                               "thousands separator removed"), (paren, currency, thousands), strict=True):
            rules[rule][pos] = mask & ok
    rules["decimal comma read as a point"] &= ~bad
    rules["surrounding spaces removed"] = present & ~bad & bool_mask(raw != stripped)
    return values, bad, rules


def parse_numbers(s: pd.Series, col: str, report: TableReport | None) -> tuple[pd.Series, np.ndarray]:
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


def label_aliases(cfg: CleaningConfig) -> dict[str, str]:
    """``cfg.category_aliases`` with its spellings normalised like the values they are matched with."""
    return {" ".join(k.split()).lower(): v for k, v in cfg.category_aliases.items()}


def normalise_label_values(values: Iterable[str], aliases: Mapping[str, str]) -> list[str | float]:
    out: list[str | float] = []
    for v in values:
        norm = " ".join(str(v).split()).lower()
        norm = aliases.get(norm, norm)
        out.append(norm if norm != "" else np.nan)
    return out


def normalise_labels(s: pd.Series, col: str, aliases: Mapping[str, str], report: TableReport) -> pd.Series:
    """Strip, collapse inner whitespace, lower-case, then apply aliases; done once per distinct value."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    uniq = [str(u) for u in uniques]
    plain = [" ".join(u.split()).lower() for u in uniq]
    final = normalise_label_values(uniq, aliases)
    valid = codes >= 0
    if len(uniq):
        respelt = np.array([p != u for p, u in zip(plain, uniq, strict=True)])
        aliased = np.array([isinstance(f, str) and f != p for f, p in zip(final, plain, strict=True)])
        report._add(report.standardised, f"{col}: case/spacing normalised", respelt[codes[valid]].sum())
        report._add(report.standardised, f"{col}: alias applied", aliased[codes[valid]].sum())
    mapped = np.array(final + [np.nan], dtype=object)[np.where(valid, codes, len(final))]
    return pd.Series(mapped, index=s.index, dtype="str")


def maybe_numeric(s: pd.Series, col: str | None = None, report: TableReport | None = None) -> pd.Series:
    """Text columns whose every value is a plain number (and none has a leading zero, like a zip code)
    become float64, and so do those whose every value is an amount written with a currency or a
    thousands separator (``¥1,234.50``, ``59.00元``: counted in the report); anything else is kept."""
    if not _is_text_dtype(s.dtype):
        return s
    text = as_text(s)
    present = text.dropna()
    if present.empty:
        return s
    if bool_mask(present.str.match(r"[+-]?0\d")).any():
        return s
    if bool_mask(present.str.fullmatch(_PLAIN_NUMBER)).all():
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
