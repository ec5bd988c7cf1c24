"""Churn training sets: label parsing, named errors, time-ordered snapshots."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.churn.data import MIN_ROWS, make_contract_dataset, make_snapshot_dataset, parse_churn_labels
from crmlab.errors import DataError


def test_labels_in_every_spelling_parse_to_0_1():
    raw = pd.Series(["Yes", "no", " TRUE ", "False", "y", "N", "churned", "Active", "1", "0", 1, 0, True, False, 1.0])
    assert parse_churn_labels(raw).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]


def test_unexpected_label_names_column_values_and_row():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "Churn": ["Yes", "maybe", None]})
    with pytest.raises(DataError) as err:
        parse_churn_labels(frame["Churn"], column="Churn", frame=frame)
    msg = str(err.value)
    assert "column 'Churn'" in msg and "'maybe'" in msg and "(missing)" in msg
    assert "customer_id: 'b'" in msg  # the first bad row


def _contract(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["monthly", "yearly", "two_year"], n)
    charges = rng.gamma(4, 20, n)
    tenure = rng.integers(1, 72, n)
    logit = -1 + 2.5 * (plan == "monthly") - 0.05 * tenure + 0.015 * charges
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({
        "customer_id": [f"K{i:04d}" for i in range(n)],
        "plan": pd.Series(plan, dtype="str"),
        "monthly_charges": charges,
        "tenure_months": tenure.astype(float),
        "Churn": np.where(churn, "Yes", "No"),
    })


def test_contract_table_split_is_stratified_and_leaves_label_out():
    ds = make_contract_dataset(_contract(), label_column="Churn", seed=1)
    assert "Churn" not in ds.X_train.columns and "customer_id" not in ds.X_train.columns
    assert len(ds.y_train) + len(ds.y_valid) == 200 and len(ds.y_valid) == 50
    assert abs(ds.y_train.mean() - ds.y_valid.mean()) < 0.03
    assert isinstance(ds.X_train["plan"].dtype, pd.CategoricalDtype)
    assert set(ds.ids_train).isdisjoint(ds.ids_valid)


def test_single_class_is_a_named_error():
    table = _contract().assign(Churn="No")
    with pytest.raises(DataError, match="same label 0"):
        make_contract_dataset(table, label_column="Churn")


def test_too_few_rows_says_how_many_and_the_minimum():
    with pytest.raises(DataError, match=f"only 8 labelled row\\(s\\); at least {MIN_ROWS}"):
        make_contract_dataset(_contract(8), label_column="Churn")


def test_missing_label_column_is_named():
    with pytest.raises(DataError, match="no churn label column 'churn'"):
        make_contract_dataset(_contract())


def _transactions() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(120):
        first = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        gap = int(rng.integers(10, 120))
        stop = first + pd.Timedelta(days=int(rng.integers(30, 700)))
        t = first
        while t <= stop:
            rows.append((f"c{i:03d}", t, 10.0))
            t += pd.Timedelta(days=gap)
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])


def test_snapshots_are_time_ordered_and_training_labels_end_at_the_validation_cutoff():
    tx = _transactions()
    ds = make_snapshot_dataset(tx, as_of="2024-06-30", horizon_days=120, n_snapshots=3, step_days=60)
    assert ds.info["train_snapshots"] == ["2024-01-02", "2024-03-02"]  # 2024-06-30 - 120 days, then 60 earlier
    assert sorted(set(ds.snapshot_train)) == [date(2024, 1, 2), date(2024, 3, 2)]
    assert pd.Timestamp(max(ds.snapshot_train)) + pd.Timedelta(days=120) <= pd.Timestamp("2024-06-30")
    # a purchase after the validation cut-off changes validation labels only
    churned = ds.ids_valid[ds.y_valid == 1]
    assert len(churned) >= 4
    late = pd.DataFrame({"customer_id": churned[:2], "ts": pd.Timestamp("2024-07-05"), "amount": 5.0})
    ds2 = make_snapshot_dataset(pd.concat([tx, late], ignore_index=True), as_of="2024-06-30", horizon_days=120,
                                n_snapshots=3, step_days=60)
    pd.testing.assert_frame_equal(ds.X_train, ds2.X_train)
    assert ds.y_train.tolist() == ds2.y_train.tolist()
    assert ds2.y_valid.sum() == ds.y_valid.sum() - 2


def test_snapshot_before_any_purchase_is_a_named_error():
    with pytest.raises(DataError, match="no customer has a purchase"):
        make_snapshot_dataset(_transactions(), as_of="2023-03-01", horizon_days=120, n_snapshots=2, step_days=30)
