"""Sales series on a regular period grid: from the transaction log or from an aggregated sales table.

Every model of the forecast pipeline reads one :class:`Panel`: a matrix of series x periods on a
common grid of period starts (days, Monday-Sunday weeks or calendar months), so lags, backtest
folds and recursive forecasts are column slices rather than per-series joins.

Rules (the ones a user would notice):

* A period without transactions is a **zero**, not a missing value. Before a series' first sale the
  series does not exist yet (missing), so a category launched late is not a run of fake zeros.
* Series of an aggregated sales table start **and end** on their own dates (as in Nixtla's
  statsforecast, where each ``unique_id`` has its own dates): after a series' last row with a value
  it is missing, never padded with zeros to the others' end, and every model forecasts it from its
  own last period (:attr:`Panel.ends`). Only a period *inside* a series' own span without a row is
  taken as zero sales (an aggregated table, a ``GROUP BY`` output, leaves out periods without
  sales); a period whose row was rejected for its value is unknown rather than zero and is
  interpolated between its neighbours. Both are counted in the panel's notes and the counts. Series that stopped long before the
  others are handled by :func:`stale_series` and ``forecast.stale_series``.
* Only data on or before the cut-off ``as_of`` is used. The period that holds ``as_of`` usually
  ends after it; that **partial last period** is dropped (``partial_period="drop"``) or kept and
  flagged (``"keep"``): never used silently, since a half-week would look like a collapse in sales.
* An aggregated sales table follows the cleaning discipline of :mod:`crmlab.data.clean`: missing
  columns and duplicated (series, period) pairs are errors that name the file, the column and an
  example row; a row whose period or value does not parse goes to the rejects with its reason
  (and when more than half of a column fails, the mapping is probably wrong: an error instead).
  Rows with a period but no value after the last observed period hold the known future covariates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import TableSource
from crmlab.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SEASON",
    "Panel",
    "SalesTable",
    "default_season_length",
    "future_periods",
    "period_end",
    "period_start",
    "read_sales",
    "stale_series",
    "transaction_panel",
]

PERIOD_FREQ = {"D": "D", "W": "W-SUN", "M": "M"}
DEFAULT_SEASON = {"D": 7, "W": 52, "M": 12}
TOTAL = "total"
MAX_UNPARSEABLE_SHARE = 0.5
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def default_season_length(freq: str, season_length: int | None = None) -> int:
    """The configured season length, else the calendar's: 7 days, 52 weeks, 12 months."""
    return season_length or DEFAULT_SEASON[freq]


def period_start(ts: pd.Series | pd.DatetimeIndex, freq: str) -> pd.Series:
    """The first day of the period (day, Monday-Sunday week, month) holding each timestamp."""
    s = pd.Series(ts)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.dt.to_period(PERIOD_FREQ[freq]).dt.start_time.dt.normalize()


def period_end(start: pd.Timestamp, freq: str) -> pd.Timestamp:
    """The last day of the period that starts on ``start``."""
    return pd.Period(start, freq=PERIOD_FREQ[freq]).end_time.normalize()


def future_periods(last: pd.Timestamp, n: int, freq: str) -> pd.DatetimeIndex:
    """The starts of the ``n`` periods after the period starting on ``last``."""
    p = pd.Period(last, freq=PERIOD_FREQ[freq])
    return pd.period_range(p + 1, periods=n, freq=PERIOD_FREQ[freq]).start_time


@dataclass(frozen=True)
class Panel:
    """Series on a common period grid.

    ``values[i, t]`` is series ``i`` in period ``periods[t]``: a number (zero when nothing was sold)
    or NaN before the series starts and after it ends (its own last period, :attr:`ends`).
    ``covariates[name]`` has ``len(periods) + n_future`` columns: the known-in-advance values of the
    history and of the next ``n_future`` periods. ``target`` names the quantity (``revenue``, or a
    sales table's value column).
    """

    series_ids: tuple[str, ...]
    periods: pd.DatetimeIndex
    values: np.ndarray
    freq: str
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    n_future: int = 0
    notes: tuple[str, ...] = ()
    target: str = "value"

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def starts(self) -> np.ndarray:
        """Per series, the grid index of its first observed period (``n_periods`` when it has none)."""
        obs = ~np.isnan(self.values)
        return np.where(obs.any(axis=1), np.argmax(obs, axis=1), self.values.shape[1])

    @property
    def ends(self) -> np.ndarray:
        """Per series, the grid index just after its last observed period: the column its forecast
        starts at (0 when it has no value)."""
        obs = ~np.isnan(self.values)
        return np.where(obs.any(axis=1), self.values.shape[1] - np.argmax(obs[:, ::-1], axis=1), 0)

    @property
    def lengths(self) -> np.ndarray:
        """Per series, its number of observed periods."""
        return np.sum(~np.isnan(self.values), axis=1)

    def last_periods(self) -> pd.DatetimeIndex:
        """Per series, the start of its last observed period."""
        return self.periods[np.maximum(self.ends - 1, 0)]

    def select(self, keep: np.ndarray) -> Panel:
        """The panel of the series where ``keep`` (a boolean mask) is true."""
        keep = np.asarray(keep, dtype=bool)
        return replace(self, series_ids=tuple(s for s, k in zip(self.series_ids, keep, strict=True) if k),
                       values=self.values[keep], covariates={k: v[keep] for k, v in self.covariates.items()})

    def cut(self, ends: np.ndarray) -> Panel:
        """Each series as known at the end of its own ``ends[i]``-th grid period (values from there on
        missing): a backtest fold of series that end on different dates."""
        width = max(int(np.max(ends)), 1) if len(ends) else 1
        kept = self.values[:, :width].copy()
        kept[np.arange(width)[None, :] >= np.asarray(ends)[:, None]] = np.nan
        return replace(self, periods=self.periods[:width], values=kept,
                       n_future=self.n_future + self.n_periods - width)

    def truncate(self, n: int) -> Panel:
        """The panel as known at the end of its ``n``-th period: a backtest fold's training data.
        Covariates stay whole: they are known in advance by definition."""
        kept = self.values[:, :n]
        return replace(self, periods=self.periods[:n], values=kept, n_future=self.n_future + self.n_periods - n)

    def to_frame(self) -> pd.DataFrame:
        """Long format: ``series_id``, ``period``, ``value`` (periods before a series starts left out)."""
        n, t = self.values.shape
        df = pd.DataFrame({
            "series_id": np.repeat(np.asarray(self.series_ids, dtype=object), t),
            "period": np.tile(self.periods.to_numpy(), n),
            "value": self.values.reshape(-1),
        })
        return df[df["value"].notna()].reset_index(drop=True)


def _check_panel(values: np.ndarray, what: str) -> None:
    if values.shape[1] < 2:
        raise DataError(f"{what}: {values.shape[1]} complete period(s) of history; a forecast needs at least 2",
                        expected="a longer history or a finer forecast.freq")


def transaction_panel(
    transactions: pd.DataFrame,
    *,
    target: str,
    freq: str,
    as_of: date,
    group_by: str | None = None,
    partial_period: str = "drop",
) -> Panel:
    """Sales per period from a clean transaction log: ``revenue`` (net amount), ``orders`` (distinct
    ``order_id``, else rows with a positive amount) or ``active_customers`` (distinct buyers), in
    total or one series per value of ``group_by``; only transactions on or before ``as_of``."""
    if group_by is not None and group_by not in transactions.columns:
        raise ConfigError(f"forecast.group_by={group_by!r} is not a transactions column; "
                          f"columns: {sorted(map(str, transactions.columns))}")
    ts = transactions["ts"]
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    keep = (ts < pd.Timestamp(as_of) + pd.Timedelta(days=1)).to_numpy()
    tx = transactions.loc[keep]
    if tx.empty:
        raise DataError(f"no transaction on or before the cut-off project.as_of={as_of}", column="ts")
    key = tx[group_by].astype("string").fillna("unknown").to_numpy() if group_by else np.full(len(tx), TOTAL)
    df = pd.DataFrame({"series_id": key, "period": period_start(ts[keep], freq).to_numpy()})
    if target == "revenue":
        df["x"] = tx["amount"].to_numpy(dtype=np.float64)
        agg = df.groupby(["series_id", "period"])["x"].sum()
    elif target == "orders":
        if "order_id" in tx.columns and tx["order_id"].notna().any():
            df["x"] = tx["order_id"].to_numpy()
            agg = df.groupby(["series_id", "period"])["x"].nunique().astype(np.float64)
        else:
            df["x"] = (tx["amount"].to_numpy(dtype=np.float64) > 0).astype(np.float64)
            agg = df.groupby(["series_id", "period"])["x"].sum()
    elif target == "active_customers":
        df["x"] = tx["customer_id"].to_numpy()
        agg = df.groupby(["series_id", "period"])["x"].nunique().astype(np.float64)
    else:
        raise ConfigError(f"forecast.target={target!r}: choose revenue, orders or active_customers")
    last = period_start(pd.Series([pd.Timestamp(as_of)]), freq).iloc[0]
    grid = pd.period_range(agg.index.get_level_values("period").min(), last, freq=PERIOD_FREQ[freq]).start_time
    wide = agg.unstack("period").reindex(columns=grid)
    values = wide.to_numpy(dtype=np.float64)
    started = np.cumsum(~np.isnan(values), axis=1) > 0
    values = np.where(started, np.nan_to_num(values, nan=0.0), np.nan)
    notes: list[str] = []
    first = pd.Timestamp(ts[keep].min()).normalize()
    if first > grid[0]:
        notes.append(f"the first period starts on {grid[0].date()}, before the first transaction ({first.date()}): "
                     "it may be partial")
    end = period_end(grid[-1], freq)
    if end > pd.Timestamp(as_of):
        what = f"the last period {grid[-1].date()}..{end.date()} ends after the cut-off {as_of}"
        if partial_period == "drop":
            values, grid = values[:, :-1], grid[:-1]
            notes.append(f"{what}: dropped as partial")
        else:
            notes.append(f"{what}: kept although partial (forecast.partial_period=keep)")
    _check_panel(values, "the transaction log")
    ids = tuple(str(i) for i in wide.index)
    return Panel(ids, pd.DatetimeIndex(grid), values, freq, notes=tuple(notes), target=target)


# --------------------------------------------------------------------------- aggregated sales table


@dataclass
class SalesTable:
    """A validated sales table: the panel, the rejected rows (with ``reason``) and row counts."""

    panel: Panel
    rejects: pd.DataFrame
    counts: dict[str, int]


def _example(raw: pd.DataFrame, mask: np.ndarray) -> dict[str, Any] | None:
    rows = np.flatnonzero(mask)
    return raw.iloc[int(rows[0])].to_dict() if rows.size else None


def _numbers(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values, unparseable) of a column of numbers: currency symbols, spaces and thousands
    separators are removed; true/false and yes/no read as 1/0; missing stays NaN (not unparseable)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_numeric_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return v, np.isinf(v)
    text = s.astype("string").str.strip()
    low = text.str.lower()
    cleaned = text.str.replace(r"[$€£,\s]", "", regex=True)
    v = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    v = np.where(low.isin(list(_TRUE)).fillna(False).to_numpy(), 1.0, v)
    v = np.where(low.isin(list(_FALSE)).fillna(False).to_numpy(), 0.0, v)
    missing = text.isna().to_numpy() | (text == "").fillna(True).to_numpy()
    bad = np.isnan(v) & ~missing
    return v, bad


def _refuse_column(name: str, column: str, bad: np.ndarray, raw: pd.DataFrame, expected: str) -> None:
    present = int(len(bad))
    if present and bad.sum() > MAX_UNPARSEABLE_SHARE * present:
        raise DataError(f"{int(bad.sum()):,} of {present:,} values do not parse (is the column mapping right?)",
                        file=name, column=column, expected=expected, example=_example(raw, bad))


def read_sales(source: TableSource, *, freq: str, covariates: list[str] | tuple[str, ...] = (),
               as_of: date | None = None, target: str | None = None) -> SalesTable:
    """Read and validate an aggregated sales table (module doc) into a :class:`Panel`.

    ``period`` is a date (or a month such as ``1997-01``) and is mapped to the start of its period
    of ``freq``; ``value`` is a number; ``series_id`` is optional (one series ``total``). Each series
    spans its own first to last period with a value; a period inside that span without a row is a
    zero (counted in the notes). The panel's ``target`` is ``target``, else the name of the table's
    value column (its mapped name, e.g. ``units``), never a made-up "revenue".
    """
    from crmlab.data.io import read_table, source_name

    raw = read_table(source, "sales").reset_index(drop=True)
    name = source_name(source)
    for cov in covariates:
        if cov not in raw.columns:
            raise DataError(f"covariate {cov!r} (forecast.covariates) is not a column of the sales table",
                            file=name, column=cov, expected=f"one of {list(raw.columns)}",
                            example=_example(raw, np.ones(len(raw), dtype=bool)))
    n = len(raw)
    reason = np.full(n, "", dtype=object)
    when = pd.to_datetime(raw["period"].astype("string"), errors="coerce", format="mixed")
    period_missing = raw["period"].isna().to_numpy()
    bad_period = when.isna().to_numpy() & ~period_missing
    _refuse_column(name, "period", bad_period, raw, "dates such as 2024-01-01 or months such as 2024-01")
    reason[period_missing] = "period missing"
    reason[bad_period & (reason == "")] = "period is not a date"
    value, bad_value = _numbers(raw["value"])
    _refuse_column(name, "value", bad_value, raw, "numbers such as 1250.50")
    reason[bad_value & (reason == "")] = "value is not a number"
    ids = (raw["series_id"].astype("string").str.strip() if "series_id" in raw.columns
           else pd.Series([TOTAL] * n, dtype="string"))
    reason[ids.isna().to_numpy() & (reason == "")] = "series_id missing"
    cov_values: dict[str, np.ndarray] = {}
    for cov in covariates:
        v, bad = _numbers(raw[cov])
        if bad.any():
            raise DataError("a known-in-advance covariate must be a number or true/false", file=name, column=cov,
                            expected="numbers or true/false", example=_example(raw, bad))
        cov_values[cov] = v
    ok = reason == ""
    start = period_start(pd.Series(when), freq).to_numpy()
    frame = pd.DataFrame({"series_id": ids.to_numpy(dtype=object), "period": start, "value": value,
                          **cov_values})[ok]
    dup = frame.duplicated(["series_id", "period"], keep=False).to_numpy()
    if dup.any():
        rows = frame.index.to_numpy()[dup]
        raise DataError(f"{int(dup.sum())} rows share a (series_id, period) after mapping periods to freq="
                        f"{freq!r}; each series needs one row per period", file=name, column="period",
                        expected="one row per series and period (aggregate them first, or choose a coarser freq)",
                        example=raw.iloc[int(rows[0])].to_dict())
    has_value = frame["value"].notna()
    if as_of is not None:
        has_value &= frame["period"] <= pd.Timestamp(as_of)
    observed = frame[has_value]
    if observed.empty:
        raise DataError("no row with a value" + (f" on or before the cut-off {as_of}" if as_of else ""),
                        file=name, column="value", expected="numbers such as 1250.50")
    last = observed["period"].max()
    # A row without a value is a future row (covariates only) after its series' last observed
    # period; inside the series' span, a missing value is no sales figure at all: rejected.
    own_last = frame["series_id"].map(observed.groupby("series_id")["period"].max())
    gap = (~has_value & (frame["period"] <= own_last)).to_numpy()
    reason[frame.index.to_numpy()[gap]] = "value missing"
    future = frame[~has_value & ~gap]
    grid = pd.period_range(observed["period"].min(), last, freq=PERIOD_FREQ[freq]).start_time
    wide = observed.pivot(index="series_id", columns="period", values="value").reindex(columns=grid)
    values = wide.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    inside = (np.cumsum(present, axis=1) > 0) & (np.cumsum(present[:, ::-1], axis=1)[:, ::-1] > 0)
    # A period whose row was rejected for its value is unknown, not zero: interpolated between its
    # neighbours. A period without any row is a zero (aggregated tables leave out empty periods).
    lost = np.isin(reason, ["value missing", "value is not a number"]) & ~period_missing & ~bad_period
    unknown = np.zeros_like(present)
    if lost.any():
        cells = pd.DataFrame({"series_id": ids.to_numpy(dtype=object)[lost], "period": start[lost]})
        row = pd.Index(wide.index).get_indexer(cells["series_id"])
        col = pd.DatetimeIndex(grid).get_indexer(pd.DatetimeIndex(cells["period"]))
        ok_cell = (row >= 0) & (col >= 0)
        unknown[row[ok_cell], col[ok_cell]] = True
        unknown &= inside & ~present
    holes = inside & ~present & ~unknown
    values = np.where(inside, np.where(holes, 0.0, values), np.nan)
    if unknown.any():
        values = pd.DataFrame(values).interpolate(axis=1, limit_area="inside").to_numpy(dtype=np.float64)
    _check_panel(values, name)
    notes: list[str] = []
    for mask, what in ((holes, "had no row and count as 0 sales (an aggregated table leaves out periods "
                                "without sales)"),
                       (unknown, "had their row rejected (see the rejects file): unknown, not zero, so "
                                 "interpolated between their neighbours")):
        if mask.any():
            per = mask.sum(axis=1)
            listed = ", ".join(f"{sid} ({int(k)})" for sid, k in zip(wide.index, per, strict=True) if k)
            notes.append(f"{int(mask.sum())} period(s) inside a series' own span {what}: {listed}")
    ends = np.where(present.any(axis=1), values.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    if len(set(ends.tolist())) > 1:
        lasts = [f"{sid} {grid[e - 1].date()}" for sid, e in zip(wide.index, ends, strict=True)]
        notes.append("the series end on different dates; each is backtested and forecast from its own last "
                     "period (none is padded with zeros): " + ", ".join(lasts[:10])
                     + (f" (+{len(lasts) - 10} more)" if len(lasts) > 10 else ""))
    for note in notes:
        logger.info("%s: %s", name, note)
    n_future = 0
    if len(future) and covariates:
        n_future = max(0, len(pd.period_range(last, future["period"].max(), freq=PERIOD_FREQ[freq])) - 1)
    full_grid = grid.append(future_periods(last, n_future, freq))
    known = pd.concat([observed, future])
    panel_covs: dict[str, np.ndarray] = {}
    for cov in covariates:
        hole = known[cov].isna().to_numpy()
        if hole.any():
            raise DataError(f"covariate {cov!r} is missing in a row with a period", file=name, column=cov,
                            expected="a value in every row (a period without a row counts as 0)",
                            example=raw.iloc[int(known.index[hole][0])].to_dict())
        m = known.pivot(index="series_id", columns="period", values=cov).reindex(index=wide.index, columns=full_grid)
        panel_covs[cov] = np.nan_to_num(m.to_numpy(dtype=np.float64), nan=0.0)
    rejected = reason != ""
    rejects = raw[rejected].assign(reason=reason[rejected])
    counts = {"input_rows": n, "clean_rows": int(len(observed)), "future_rows": int(len(future)),
              "rejected_rows": int(rejected.sum()), "zero_filled_periods": int(holes.sum()),
              "interpolated_periods": int(unknown.sum())}
    panel = Panel(tuple(str(i) for i in wide.index), pd.DatetimeIndex(grid), values, freq, panel_covs, n_future,
                  notes=tuple(notes), target=target or source.columns.get("value", "value"))
    return SalesTable(panel, rejects.reset_index(drop=True), counts)



def stale_series(panel: Panel, after: int) -> np.ndarray:
    """A mask of the series whose last period lies more than ``after`` periods before the latest
    series' last period (for ``after = forecast.horizon``: series whose whole forecast would lie in
    the already observed past of the others)."""
    ends = panel.ends
    return ends < ends.max() - after
