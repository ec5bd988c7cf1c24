"""Churn windows derived from the data's span: the horizon, the validation cut-off and the snapshots."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.churn.data import HORIZON_LADDER, resolve_windows
from crmlab.cli import main
from crmlab.errors import DataError

from ..conftest import REPO


def _windows(first: str, last: str, horizon="auto", n="auto", step="auto", as_of: str | None = None):
    f, la = date.fromisoformat(first), date.fromisoformat(last)
    return resolve_windows(horizon, n, step, first=f, last=la, as_of=date.fromisoformat(as_of) if as_of else la)


def test_auto_horizon_is_the_longest_that_fits_the_span():
    # 545 days (CDNOW's span): 182 days, validation at last - 182, training 182 and 273 days before it
    w = _windows("1997-01-01", "1998-06-30")
    assert (w.horizon_days, w.validation_as_of, w.n_snapshots, w.step_days) == (182, date(1997, 12, 30), 3, 91)
    # one year: 182 days would need 30 + 91 + 2 x 182 = 485 days for two training snapshots; 91 fits
    w = _windows("2011-01-06", "2011-12-30")
    assert (w.horizon_days, w.validation_as_of, w.n_snapshots, w.step_days) == (91, date(2011, 9, 30), 3, 91)
    assert w.note == ("churn horizon 91 days (auto): the data span 358 days (2011-01-06 to 2011-12-30); "
                      "a 182-day horizon needs 485 days for 2 training snapshot(s)")
    # 104 days: no horizon fits two training snapshots; 30 days fits one (30 + 2 x 30 = 90 <= 104)
    w = _windows("2011-01-01", "2011-04-15")
    assert (w.horizon_days, w.n_snapshots, w.step_days) == (30, 2, 30)
    assert "1 training snapshot(s) instead of 2" in w.note
    assert HORIZON_LADDER == (182, 91, 60, 30)


def test_too_short_a_span_or_explicit_values_that_cannot_fit_are_named_errors():
    with pytest.raises(DataError, match=r"span 59 days \(2011-01-01 to 2011-03-01\).*30 days, needs 90 days"):
        _windows("2011-01-01", "2011-03-01")
    with pytest.raises(DataError, match="span 358 days.*churn.horizon_days=182 with one training snapshot.*needs 394 days"):
        _windows("2011-01-06", "2011-12-30", horizon=182)
    with pytest.raises(DataError, match=r"horizon_days=91 with 2 training snapshot\(s\) \(churn.n_snapshots=3\).*303 days"):
        _windows("2011-01-06", "2011-10-30", horizon=91, n=3, step=91)
    # explicit values that fit are kept as they are
    w = _windows("1997-01-01", "1998-06-30", horizon=120, n=2, step=30, as_of="1997-09-30")
    assert (w.horizon_days, w.validation_as_of, w.n_snapshots, w.step_days, w.note) == (
        120, date(1997, 9, 30), 2, 30, "")


def _one_year_log(n: int = 800, seed: int = 4) -> pd.DataFrame:
    """A shop's first year: customers arrive through the year, buy at gamma-distributed rates and stop
    (BG/NBD-like dropout after each purchase)."""
    rng = np.random.default_rng(seed)
    start, days = pd.Timestamp("2011-01-01"), 365
    rows = []
    for i in range(n):
        t = float(rng.uniform(0, 300))
        rate, p_drop = rng.gamma(1.5, 1 / 60), rng.beta(1, 4)
        while t < days:
            rows.append((f"C{i:05d}", (start + pd.Timedelta(days=int(t))).date().isoformat(),
                         round(float(rng.lognormal(3.5, 0.6)), 2)))
            if rng.random() < p_drop:
                break
            t += rng.exponential(1 / rate)
    return pd.DataFrame(rows, columns=["cust", "date", "total"])


@pytest.mark.slow
def test_shipped_config_trains_churn_on_a_one_year_log(tmp_path, capsys):
    """With the shipped churn.yaml (182 days x 3 snapshots used to leave no training snapshot inside a
    year) and only a column mapping, churn trains on a 91-day horizon and says why."""
    path = tmp_path / "orders.csv"
    _one_year_log().to_csv(path, index=False)
    code = main(["-c", str(REPO / "configs"), "--set", f"project.data.transactions.path={path}",
                 "--set", "project.data.transactions.columns={customer_id: cust, ts: date, amount: total}",
                 "train", "churn"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    assert "churn = no purchase in 91 days" in captured.out
    assert "churn horizon 91 days (auto): the data span" in captured.out


def test_a_cut_off_after_the_last_purchase_is_silence_only_within_the_bases_longest_quiet_gap():
    """Data exported a few days after the last purchase: those days are observed days without a
    purchase when the base has been that quiet before (here: purchase days every 5 days, so up to
    5 days); a cut-off further out is missing data, a named error (issue 15: no empty holdout)."""
    from crmlab.churn.pipeline import churn_windows, quiet_tolerance
    from crmlab.config import ChurnConfig

    days = pd.date_range("2011-01-01", "2011-12-27", freq="5D")  # last purchase day 2011-12-27
    tx = pd.DataFrame({"customer_id": np.arange(len(days)) % 7, "ts": days, "amount": 1.0})
    assert quiet_tolerance(tx["ts"]).days == 5
    w = churn_windows(ChurnConfig(), tx, date(2011, 12, 31))  # 4 days after: silence
    assert (w.horizon_days, w.validation_as_of) == (91, date(2011, 10, 1))  # labels end on the cut-off itself
    with pytest.raises(DataError, match=r"project\.as_of=2012-01-05 is after the last transaction \(2011-12-27\)"):
        churn_windows(ChurnConfig(), tx, date(2012, 1, 5))  # 9 days after: longer than the base was ever quiet
