"""Series from the transaction log and from an aggregated sales table."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.config import TableSource
from crmlab.errors import DataError
from crmlab.forecast.series import read_sales, transaction_panel


def _tx(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "category"]).assign(
        ts=lambda d: pd.to_datetime(d["ts"]))


TX = _tx([
    ("a", "2024-01-01", 10.0, "x"),   # week of Mon 2024-01-01
    ("b", "2024-01-03", 5.0, "x"),
    ("a", "2024-01-15", 7.0, "x"),    # week of 2024-01-15; the week of 2024-01-08 has no sale
    ("c", "2024-01-16", 4.0, "y"),    # category y starts late
    ("c", "2024-01-22", -2.0, "x"),   # a return
    ("a", "2024-01-23", 3.0, "x"),
])


def test_empty_periods_are_zeros_and_late_series_start_missing():
    p = transaction_panel(TX, target="revenue", freq="W", as_of=date(2024, 1, 28), group_by="category")
    assert p.series_ids == ("x", "y")
    assert [d.date().isoformat() for d in p.periods] == ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    np.testing.assert_array_equal(p.values[0], [15.0, 0.0, 7.0, 1.0])
    assert np.isnan(p.values[1, :2]).all() and p.values[1, 2:].tolist() == [4.0, 0.0]


def test_targets_orders_and_active_customers():
    orders = transaction_panel(TX, target="orders", freq="W", as_of=date(2024, 1, 28))
    active = transaction_panel(TX, target="active_customers", freq="W", as_of=date(2024, 1, 28))
    assert orders.values[0].tolist() == [2.0, 0.0, 2.0, 1.0]  # the return is no order
    assert active.values[0].tolist() == [2.0, 0.0, 2.0, 2.0]


def test_partial_last_period_is_dropped_or_flagged():
    dropped = transaction_panel(TX, target="revenue", freq="W", as_of=date(2024, 1, 23))
    assert dropped.periods[-1] == pd.Timestamp("2024-01-15")
    assert "dropped as partial" in dropped.notes[0]
    kept = transaction_panel(TX, target="revenue", freq="W", as_of=date(2024, 1, 23), partial_period="keep")
    assert kept.periods[-1] == pd.Timestamp("2024-01-22") and "kept although partial" in kept.notes[0]


def test_a_transaction_after_the_cut_off_changes_no_backtest_fold():
    full = transaction_panel(TX, target="revenue", freq="W", as_of=date(2024, 1, 28), group_by="category")
    leaked = pd.concat([TX, _tx([("z", "2024-01-29", 1e6, "x"), ("z", "2024-01-20", 0.0, "y")]).iloc[:1]])
    again = transaction_panel(leaked, target="revenue", freq="W", as_of=date(2024, 1, 28), group_by="category")
    np.testing.assert_array_equal(again.values, full.values)
    # a fold's training series is exactly the series as it was known at the end of the fold
    fold = full.truncate(2)
    at_the_time = transaction_panel(leaked, target="revenue", freq="W", as_of=date(2024, 1, 14), group_by="category")
    np.testing.assert_array_equal(fold.values[:1], at_the_time.values)


def _write(tmp_path, text: str):
    path = tmp_path / "sales.csv"
    path.write_text(text)
    return path


def test_sales_table_with_a_covariate_and_future_rows(tmp_path):
    path = _write(tmp_path, "store,month,sales,promo\n"
                  "A,2024-01,100,0\nA,2024-02,120,1\nA,2024-04,90,no\nB,2024-02,$1,000,yes\n"
                  "A,2024-05,,1\nB,2024-05,,0\nB,2024-06,,1\n")
    path.write_text(path.read_text().replace("$1,000", '"$1,000"'))
    src = TableSource(path=path, columns={"series_id": "store", "period": "month", "value": "sales"})
    t = read_sales(src, freq="M", covariates=["promo"])
    p = t.panel
    assert p.series_ids == ("A", "B") and p.n_periods == 4 and p.n_future == 2
    np.testing.assert_array_equal(p.values[0], [100, 120, 0, 90])  # March had no row: zero
    # B's last value is in February: it ends there, it is not padded with zeros to A's end
    assert np.isnan(p.values[1, [0, 2, 3]]).all() and p.values[1, 1] == 1000
    assert p.ends.tolist() == [4, 2] and p.target == "sales"
    np.testing.assert_array_equal(p.covariates["promo"][0], [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(p.covariates["promo"][1, 1:], [1, 0, 0, 0, 1])
    assert t.counts == {"input_rows": 7, "clean_rows": 4, "future_rows": 3, "rejected_rows": 0,
                        "zero_filled_periods": 1, "interpolated_periods": 0}


def test_sales_table_rejects_unparseable_rows_and_counts_add_up(tmp_path):
    path = _write(tmp_path, "period,value\n2024-01-01,10\n2024-02-01,abc\n2024-03-01,12\nnot a date,5\n"
                  "2024-04-01,13\n2024-05-01,\n2024-06-01,14\n")
    t = read_sales(TableSource(path=path), freq="M")
    assert t.rejects["reason"].tolist() == ["value is not a number", "period is not a date", "value missing"]
    assert t.rejects["value"].tolist()[0] == "abc"
    assert t.counts["clean_rows"] + t.counts["rejected_rows"] + t.counts["future_rows"] == t.counts["input_rows"]
    # a rejected value is unknown, not zero: interpolated between its neighbours, and said so
    np.testing.assert_array_equal(t.panel.values[0], [10, 11, 12, 13, 13.5, 14])
    assert t.counts["interpolated_periods"] == 2 and t.counts["zero_filled_periods"] == 0
    assert any("2 period(s)" in n and "interpolated" in n for n in t.panel.notes)


@pytest.mark.parametrize("text, column, problem", [
    ("series_id,period\nA,2024-01-01\n", "value", "required column 'value' is missing"),
    ("series_id,period,value\nA,2024-01-03,1\nA,2024-01-20,2\nA,2024-02-01,3\n", "period", "share a (series_id, period)"),
    ("period,value\n2024-01-01,one\n2024-02-01,two\n2024-03-01,3\n", "value", "do not parse"),
])
def test_bad_sales_table_names_file_column_and_row(tmp_path, text, column, problem):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_sales(TableSource(path=path), freq="M")
    msg = str(err.value)
    assert str(path) in msg and f"column {column!r}" in msg and problem in msg and "example row" in msg


def test_unknown_covariate_is_named(tmp_path):
    path = _write(tmp_path, "period,value\n2024-01-01,1\n2024-02-01,2\n")
    with pytest.raises(DataError, match="covariate 'holiday'"):
        read_sales(TableSource(path=path), freq="M", covariates=["holiday"])


def test_a_first_period_that_starts_before_the_data_is_flagged():
    p = transaction_panel(TX.iloc[1:], target="revenue", freq="W", as_of=date(2024, 1, 28))
    assert p.periods[0] == pd.Timestamp("2024-01-01")
    assert "before the first transaction (2024-01-03): it may be partial" in p.notes[0]
