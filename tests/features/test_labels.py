"""Targets after the cut-off: churn labels, calibration/holdout split, snapshot dates."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from crmlab.data.io import load_cdnow
from crmlab.features import build_features, calibration_holdout_split, churn_label, rfm_summary, snapshot_dates


@pytest.fixture
def tx() -> pd.DataFrame:
    rows = [
        ("A", "2023-12-01 10:00", 10.0),
        ("A", "2023-12-01 15:00", 5.0),
        ("A", "2024-01-11 09:00", 20.0),
        ("A", "2024-01-25 12:00", 30.0),
        ("A", "2024-01-25 18:00", -8.0),
        ("B", "2024-01-31 23:59", 40.0),
        ("C", "2024-01-05 08:00", -12.0),
        # after 2024-01-31
        ("A", "2024-02-15 10:00", 100.0),
        ("A", "2024-02-15 11:00", -10.0),  # same-day return: the day's total is 90
        ("A", "2024-02-20 10:00", -5.0),  # a return alone is not a purchase day
        ("B", "2024-02-01 00:00", 99.0),
        ("C", "2024-02-05 10:00", -3.0),
        ("D", "2024-02-02 10:00", 50.0),
        ("E", "2024-03-05 10:00", 7.0),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    df["ts"] = pd.to_datetime(df["ts"])
    return df


def test_churn_label_hand_example(tx):
    ids = ["A", "B", "C"]
    # (Jan 31, Feb 20]: A buys on Feb 15, B on Feb 1; C only returns something
    y = churn_label(tx, ids, as_of="2024-01-31", horizon_days=20)
    assert y.name == "churn" and y.index.name == "customer_id"
    assert y.to_dict() == {"A": 0, "B": 0, "C": 1}
    # (Jan 31, Feb 10]: A's purchase is outside the horizon
    assert churn_label(tx, ids, as_of="2024-01-31", horizon_days=10).to_dict() == {"A": 1, "B": 0, "C": 1}
    # the order of the population is kept
    assert churn_label(tx, ["C", "A"], as_of="2024-01-31", horizon_days=20).index.tolist() == ["C", "A"]


def test_churn_label_looks_only_after_the_cut_off(tx):
    y = churn_label(tx, ["A", "B"], as_of="2024-01-31", horizon_days=10)
    past_changed = tx.copy()
    past_changed.loc[past_changed["ts"] <= "2024-01-31 23:59", "amount"] = 1.0
    pdt.assert_series_equal(churn_label(past_changed, ["A", "B"], as_of="2024-01-31", horizon_days=10), y)


def test_churn_label_warns_when_censored(tx, caplog):
    with caplog.at_level(logging.WARNING, logger="crmlab.features.labels"):
        churn_label(tx, ["A"], as_of="2024-03-01", horizon_days=30)
    assert "censored" in caplog.text
    with pytest.raises(ValueError, match="horizon_days"):
        churn_label(tx, ["A"], as_of="2024-01-31", horizon_days=0)


def test_labels_align_with_the_feature_rows(tx):
    feats = build_features(tx, as_of="2024-01-31", windows=(30,))
    y = churn_label(tx, feats["customer_id"], as_of="2024-01-31", horizon_days=20)
    assert y.index.tolist() == feats["customer_id"].tolist()


def test_calibration_holdout_split_hand_example(tx):
    out = calibration_holdout_split(tx, calibration_end="2024-01-31", holdout_end="2024-02-29", time_unit="W")
    assert list(out.columns) == [
        "customer_id", "frequency_cal", "recency_cal", "T_cal", "monetary_value_cal",
        "frequency_holdout", "monetary_value_holdout", "amount_sum_holdout", "duration_holdout",
    ]
    # cohort: first purchase on or before Jan 31 (C never bought, D and E buy later)
    assert out["customer_id"].tolist() == ["A", "B"]
    a, b = out.set_index("customer_id").loc["A"], out.set_index("customer_id").loc["B"]
    assert (a["frequency_cal"], a["recency_cal"], a["T_cal"], a["monetary_value_cal"]) == pytest.approx(
        (2, 55 / 7, 61 / 7, 21.0))
    # A in the holdout: one purchase day (Feb 15: 100 - 10 = 90) and a lone return of 5 on Feb 20
    assert (a["frequency_holdout"], a["monetary_value_holdout"], a["amount_sum_holdout"]) == (1, 90, 85)
    assert (b["frequency_holdout"], b["monetary_value_holdout"], b["amount_sum_holdout"]) == (1, 99, 99)
    assert out["duration_holdout"].eq(29 / 7).all()
    # calibration columns are rfm_summary at calibration_end
    rfm = rfm_summary(tx, as_of="2024-01-31", time_unit="W")
    np.testing.assert_array_equal(out["T_cal"], rfm["T"])


def test_calibration_start_selects_the_cohort(tx):
    out = calibration_holdout_split(tx, calibration_start="2023-12-15", calibration_end="2024-01-31",
                                    holdout_end="2024-03-31", time_unit="D")
    assert out["customer_id"].tolist() == ["B"]  # A's first purchase (Dec 1) is before the start
    assert out["duration_holdout"].iloc[0] == 60
    with pytest.raises(ValueError, match="holdout_end"):
        calibration_holdout_split(tx, calibration_end="2024-01-31", holdout_end="2024-01-31")


def test_calibration_holdout_on_cdnow_matches_lifetimes():
    from lifetimes.utils import calibration_and_holdout_data

    cdnow = load_cdnow()
    ours = calibration_holdout_split(cdnow, calibration_end="1997-09-30", holdout_end="1998-06-30", time_unit="W")
    theirs = calibration_and_holdout_data(
        cdnow.assign(ts=cdnow["ts"].astype("datetime64[ns]")), "customer_id", "ts",
        calibration_period_end="1997-09-30", observation_period_end="1998-06-30", freq="D",
        monetary_value_col="amount",
    ).reset_index()
    assert len(ours) == 23_570
    assert ours["customer_id"].tolist() == theirs["customer_id"].tolist()
    for col in ("frequency_cal", "recency_cal", "T_cal", "duration_holdout"):
        scale = 1 if col == "frequency_cal" else 7
        np.testing.assert_array_equal(ours[col], theirs[col] / scale, err_msg=col)
    np.testing.assert_array_equal(ours["frequency_holdout"], theirs["frequency_holdout"])
    np.testing.assert_allclose(ours["monetary_value_cal"], theirs["monetary_value_cal"], rtol=1e-12)
    assert ours["duration_holdout"].iloc[0] == pytest.approx(273 / 7)
    # holdout spend: the sum of the holdout rows of each customer
    late = cdnow[(cdnow["ts"] > "1997-09-30") & (cdnow["ts"] < "1998-07-01")]
    spend = late.groupby("customer_id")["amount"].sum().reindex(ours["customer_id"], fill_value=0.0)
    np.testing.assert_allclose(ours["amount_sum_holdout"], spend.to_numpy(), rtol=1e-12)


def test_snapshot_dates():
    assert snapshot_dates("2024-01-31", 3, 7) == [date(2024, 1, 17), date(2024, 1, 24), date(2024, 1, 31)]
    assert snapshot_dates(date(2024, 1, 31), 1, 91) == [date(2024, 1, 31)]
    with pytest.raises(ValueError, match="n="):
        snapshot_dates("2024-01-31", 0, 7)
    with pytest.raises(ValueError, match="step_days"):
        snapshot_dates("2024-01-31", 2, -1)
