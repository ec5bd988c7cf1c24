"""The CLV windows: calibration and holdout resolved from the data and project.as_of (never from the demo's dates), and the split of the transaction log at them."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import pandas as pd

from crmlab.clv.result import FEATURES, INPUT_COLUMNS, ClvWindow
from crmlab.config import ClvConfig
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.features import calibration_holdout_split

log = logging.getLogger(__name__)


def local_days(ts: pd.Series) -> pd.Series:
    """Calendar day of each timestamp (local date of time-zone-aware ones), as datetime64 midnight."""
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    return ts.dt.normalize()


#: Holdout length when ``clv.holdout_weeks`` is auto and the data are long enough (FHL 2005a's split).
DEFAULT_HOLDOUT_WEEKS = 39


#: An auto holdout is at most this share of the data's span, so calibration keeps the rest.
MAX_HOLDOUT_SHARE = 1 / 3


def _is_auto(value: Any) -> bool:
    return value is None or value == "auto"


def resolve_window(clv: ClvConfig, transactions: pd.DataFrame, as_of: date, time_unit: str) -> ClvWindow:
    """The calibration and holdout dates, derived from the data unless the config fixes them.

    * ``calibration_end`` auto: ``as_of - holdout``; the holdout ends on ``as_of`` (nothing after
      the cut-off is used).
    * ``holdout_weeks`` auto: 39 weeks, or a third of the span from the first transaction to
      ``as_of`` when that is shorter (to the weeks between an explicit ``calibration_end`` and
      ``as_of`` when those are fewer); the window's ``notes`` say so.
    * ``calibration_start`` auto: no lower bound (the cohort starts with the first transaction).

    Explicit values win, and fail with a ConfigError when they cannot fit in the data."""
    if transactions is None or transactions.empty:
        raise DataError("the CLV pipeline needs a transactions table with rows", column="ts")
    days = local_days(transactions["ts"])
    past = days[days <= pd.Timestamp(as_of)]
    if past.empty:
        raise DataError(f"no transaction on or before the cut-off project.as_of={as_of}", column="ts")
    first, last = past.min().date(), past.max().date()
    span_days = (as_of - first).days
    notes: list[str] = []
    explicit_end = None if _is_auto(clv.calibration_end) else clv.calibration_end
    if _is_auto(clv.holdout_weeks):
        room = span_days if explicit_end is None else (as_of - explicit_end).days
        allowed = int(room * MAX_HOLDOUT_SHARE // 7) if explicit_end is None else room // 7
        weeks = min(DEFAULT_HOLDOUT_WEEKS, allowed)
        if weeks < 1:
            if explicit_end is None:
                raise DataError(
                    f"the data span {span_days} days ({first} to project.as_of={as_of}): a CLV calibration and "
                    f"holdout need at least 21 days (a week of holdout after two weeks of calibration)", column="ts")
            raise ConfigError(f"clv.calibration_end={explicit_end} leaves {room} days before project.as_of={as_of}: "
                              "no room for a holdout of a week; set an earlier clv.calibration_end or leave it auto")
        if weeks < DEFAULT_HOLDOUT_WEEKS:
            why = (f"the data span {span_days / 7:.0f} weeks ({first} to {as_of}) and calibration keeps two thirds"
                   if explicit_end is None else f"clv.calibration_end={explicit_end} is {room / 7:.0f} weeks before "
                   f"project.as_of={as_of}")
            notes.append(f"holdout shortened from {DEFAULT_HOLDOUT_WEEKS} to {weeks} weeks: {why}")
            log.info("CLV %s", notes[-1])
    else:
        weeks = int(clv.holdout_weeks)
    holdout = timedelta(days=7 * weeks)
    cal_end = explicit_end or as_of - holdout
    hold_end = cal_end + holdout
    if hold_end > as_of:
        raise ConfigError(
            f"clv.calibration_end={cal_end} plus clv.holdout_weeks={weeks} ends on {hold_end}, after the "
            f"cut-off project.as_of={as_of}: the holdout would need data after the cut-off; set an earlier "
            "clv.calibration_end (or leave it auto for as_of minus the holdout) or fewer clv.holdout_weeks"
        )
    if cal_end <= first:
        what = (f"clv.calibration_end={cal_end}" if explicit_end is not None else
                f"clv.holdout_weeks={weeks} puts the calibration end (project.as_of={as_of} minus the holdout) on {cal_end}, which")
        raise ConfigError(
            f"{what} is on or before the first transaction ({first}): no history to calibrate on; "
            + ("set a later clv.calibration_end or leave it auto" if explicit_end is not None else
               f"the data span {span_days} days: set fewer clv.holdout_weeks (or leave it auto)")
        )
    if last <= cal_end:  # nothing happened in the holdout: every metric would compare with zeros
        raise DataError(
            f"the CLV holdout {cal_end} -> {hold_end} holds no transaction: the last one is on {last}, "
            f"{(as_of - last).days} days before the cut-off project.as_of={as_of}; a model evaluated on no data "
            f"is not exported; set project.as_of on or before {last} (or leave it auto: the last transaction)",
            column="ts")
    if last < as_of:
        notes.append(f"the holdout's last {(as_of - last).days} days (after the last transaction, {last}, up to "
                     f"project.as_of={as_of}) hold no data: customers look inactive there")
        log.warning("CLV %s", notes[-1])
    cal_start = None if _is_auto(clv.calibration_start) else clv.calibration_start
    if cal_start is not None and cal_start > cal_end:
        raise ConfigError(f"clv.calibration_start={cal_start} is after clv.calibration_end={cal_end}")
    return ClvWindow(first, last, as_of, cal_start, cal_end, hold_end, time_unit, weeks, tuple(notes))


def split_calibration_holdout(transactions: pd.DataFrame, window: ClvWindow) -> pd.DataFrame:
    """Calibration RFM (``*_cal``) and holdout outcomes (``*_holdout``) of the cohort, one row per
    customer (:func:`crmlab.features.calibration_holdout_split`)."""
    split = calibration_holdout_split(
        transactions,
        calibration_end=window.calibration_end,
        holdout_end=window.holdout_end,
        calibration_start=window.calibration_start,
        time_unit=window.time_unit,
    )
    if split.empty:
        since = f" since clv.calibration_start={window.calibration_start}" if window.calibration_start else ""
        raise ModelError(f"no customer made a first purchase{since} on or before clv.calibration_end="
                         f"{window.calibration_end}: nothing to calibrate on")
    return split


def calibration_rfm(split: pd.DataFrame) -> pd.DataFrame:
    """The calibration columns of a split under the model's names (frequency, recency, T, monetary_value)."""
    return split[["customer_id", *(f"{c}_cal" for c in FEATURES)]].set_axis(INPUT_COLUMNS, axis=1)
