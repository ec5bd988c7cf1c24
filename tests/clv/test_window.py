"""The CLV calibration/holdout window comes from the user's data, not from CDNOW's dates."""

from __future__ import annotations

import logging
from datetime import date

import pandas as pd
import pytest

from crmlab.clv.pipeline import resolve_window
from crmlab.config import ClvConfig, load_config
from crmlab.demo import CDNOW_CLV_WINDOW, demo_config
from crmlab.errors import ConfigError, DataError

from ..conftest import REPO
from .b2b import b2b_orders


@pytest.fixture(scope="module")
def one_year():
    raw = b2b_orders(30, seed=7)
    return pd.DataFrame({"customer_id": raw["Account"], "ts": pd.to_datetime(raw["Order Date"]),
                         "amount": raw["Net Amount"]})


def test_shipped_config_fits_a_one_year_log(one_year, caplog):
    """The shipped clv.yaml on a 2011 log (it used to say calibration_end 1997-09-30 is before the
    first transaction): the holdout ends on as_of and is shortened to a third of the span."""
    first, as_of = one_year["ts"].min().date(), one_year["ts"].max().date()
    assert (str(first), str(as_of)) == ("2011-01-06", "2011-12-29")
    with caplog.at_level(logging.INFO, logger="crmlab.clv.pipeline"):
        w = resolve_window(load_config(REPO / "configs").clv, one_year, as_of, "W")
    span = (as_of - first).days  # 357 days: a third is 119 days, 17 whole weeks
    assert span // 3 // 7 == 17
    assert (w.holdout_weeks, w.holdout_end, w.calibration_end) == (17, as_of, date(2011, 9, 1))
    assert w.calibration_start is None and w.first_date == first  # the cohort starts at the first purchase
    assert w.notes == ("holdout shortened from 39 to 17 weeks: the data span 51 weeks (2011-01-06 to 2011-12-29) "
                       "and calibration keeps two thirds",)
    assert "holdout shortened from 39 to 17 weeks" in caplog.text
    # a long enough history keeps the 39 weeks, with no note
    long = pd.concat([one_year, one_year.assign(ts=one_year["ts"] - pd.Timedelta(days=728))])
    w = resolve_window(ClvConfig(), long, as_of, "W")
    assert (w.holdout_weeks, w.notes, w.calibration_end) == (39, (), date(2011, 3, 31))


def test_explicit_values_win_or_fail_clearly(one_year):
    as_of = date(2011, 12, 29)
    w = resolve_window(ClvConfig(holdout_weeks=30), one_year, as_of, "W")
    assert (w.holdout_weeks, w.calibration_end, w.notes) == (30, date(2011, 6, 2), ())
    w = resolve_window(ClvConfig(calibration_end=date(2011, 10, 1)), one_year, as_of, "W")
    # an auto holdout after an explicit calibration end: the 12 whole weeks left before as_of
    assert (w.holdout_weeks, w.holdout_end) == (12, date(2011, 12, 24))
    assert "shortened from 39 to 12 weeks: clv.calibration_end=2011-10-01" in w.notes[0]
    with pytest.raises(ConfigError, match="clv.holdout_weeks=52 puts the calibration end.*2010-12-30.*first transaction.*span 357 days"):
        resolve_window(ClvConfig(holdout_weeks=52), one_year, as_of, "W")
    with pytest.raises(ConfigError, match="clv.calibration_end=1997-09-30 is on or before the first transaction"):
        resolve_window(ClvConfig(calibration_end=date(1997, 9, 30)), one_year, as_of, "W")
    with pytest.raises(DataError, match="span 11 days.*at least 21 days"):
        resolve_window(ClvConfig(), one_year, date(2011, 1, 17), "W")


def test_the_demo_keeps_the_papers_split_on_cdnow_only(tmp_path):
    shipped = load_config(REPO / "configs")
    cdnow = demo_config(shipped).clv  # no transactions path: the embedded CDNOW log
    assert {k: getattr(cdnow, k) for k in CDNOW_CLV_WINDOW} == {
        "calibration_start": date(1997, 1, 1), "calibration_end": date(1997, 9, 30), "holdout_weeks": 39}
    own = load_config(REPO / "configs", [f"project.data.transactions.path={tmp_path / 'orders.csv'}"])
    assert demo_config(own).clv == own.clv  # the user's data: windows stay auto
    chosen = load_config(REPO / "configs", ["clv.holdout_weeks=20"])
    assert demo_config(chosen).clv.holdout_weeks == 20 and demo_config(chosen).clv.calibration_end == "auto"
