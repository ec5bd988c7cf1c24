"""Features at a cut-off: hand-checked values, leakage, determinism, CDNOW against lifetimes."""

from __future__ import annotations

import math
import random
import uuid

import numpy as np
import pandas as pd
import pandas.testing as pdt
import polars as pl
import pytest

import crmlab.features.order as order_mod
from crmlab.config import FeatureConfig, ProjectConfig
from crmlab.data.io import Tables, load_cdnow
from crmlab.errors import DataError
from crmlab.features import (
    build_features,
    build_features_from_tables,
    rfm_summary,
    snake_case,
)

AS_OF = "2024-01-31"
WINDOWS = (10, 30)  # (Jan 21, Jan 31] and (Jan 1, Jan 31]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


@pytest.fixture
def tx() -> pd.DataFrame:
    """Three customers in the past (A: three purchase days and a return, B: one purchase on the
    cut-off day, C: a return only) and rows after the cut-off that must change nothing."""
    rows = [
        # customer, ts, amount, order, qty, product, category, channel
        ("A", "2023-12-01 10:00", 10.0, "o1", 1, "p1", "books", "web"),
        ("A", "2023-12-01 15:00", 5.0, "o1", 2, "p2", "music", "web"),
        ("A", "2024-01-11 09:00", 20.0, "o2", 1, "p1", "books", "store"),
        ("A", "2024-01-25 12:00", 30.0, "o3", 3, "p3", "books", "web"),
        ("A", "2024-01-25 18:00", -8.0, "o4", -1, "p3", "books", "web"),
        ("B", "2024-01-31 23:59", 40.0, "o5", 1, "p2", "music", "web"),
        ("C", "2024-01-05 08:00", -12.0, "o6", -1, "p2", "music", "store"),
        # after the cut-off
        ("A", "2024-02-15 10:00", 100.0, "o7", 1, "p9", "games", "app"),
        ("A", "2024-02-15 11:00", -10.0, "o8", -1, "p9", "games", "app"),
        ("A", "2024-02-20 10:00", -5.0, "o9", -1, "p9", "games", "app"),
        ("B", "2024-02-01 00:00", 99.0, "o10", 1, "p9", "games", "app"),
        ("C", "2024-02-05 10:00", -3.0, "o11", -1, "p9", "games", "app"),
        ("D", "2024-02-02 10:00", 50.0, "o12", 1, "p9", "games", "app"),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "order_id", "quantity", "product_id",
                                     "category", "channel"])
    df["ts"] = pd.to_datetime(df["ts"])
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "E", "F"],
            "signup_date": pd.to_datetime(["2023-11-01", None, "2023-12-20", "2024-01-20", "2024-03-01"]),
            "age": [34, 51, 28, 45, 60],
            "plan": ["gold", "basic", "basic", "silver", "gold"],
            "Email": ["a@x.com", "b@x.com", "c@x.com", "e@x.com", "f@x.com"],
            "name": ["Ann", "Bob", "Cy", "Eve", "Fay"],
            "churn": [0, 1, 1, 0, 0],
            "contract_end": pd.to_datetime(["2025-01-01"] * 5),
            "internal_note": ["x", "y", "z", "w", "v"],
        }
    )


@pytest.fixture
def interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "E", "Z"],
            "ts": pd.to_datetime(["2024-01-30", "2024-01-10", "2024-02-10", "2023-12-31", "2024-01-25", "2024-01-30"]),
            "kind": ["Email Open", "support ticket", "complaint", "email open", "Support Ticket", "visit"],
        }
    )


def feats(tx, customers=None, interactions=None, **kw) -> pd.DataFrame:
    kw.setdefault("as_of", AS_OF)
    kw.setdefault("windows", WINDOWS)
    return build_features(tx, customers, interactions, **kw)


def row(df: pd.DataFrame, cid: str) -> pd.Series:
    return df.set_index("customer_id").loc[cid]


# --------------------------------------------------------------------------- hand-checked values


TX_COLUMNS = [
    "customer_id",
    "frequency", "recency", "T", "monetary_value", "recency_days", "tenure_days",
    "txn_count_10d", "txn_count_30d", "txn_count_total",
    "amount_sum_10d", "amount_sum_30d", "amount_sum_total",
    "purchase_days_10d", "purchase_days_30d", "purchase_days_total",
    "return_count_10d", "return_count_30d", "return_count_total",
    "return_amount_10d", "return_amount_30d", "return_amount_total",
    "txn_trend_10d_30d", "amount_trend_10d_30d",
    "gap_mean_days", "gap_std_days", "overdue_ratio",
    "order_value_mean", "order_value_std", "order_value_max",
    "quantity_sum", "quantity_mean",
    "n_categories", "top_category_share", "n_channels", "top_channel_share", "n_products",
]

NAN = float("nan")
# Worked out by hand; as_of 2024-01-31, weeks. A: purchase days Dec 1 (10+5), Jan 11 (20),
# Jan 25 (30, and a return of 8 the same day: day total 22); B: Jan 31 (40); C: a return of 12.
EXPECTED = {
    "A": {
        "frequency": 2, "recency": 55 / 7, "T": 61 / 7, "monetary_value": (20 + 22) / 2,
        "recency_days": 6, "tenure_days": 61,
        "txn_count_10d": 1, "txn_count_30d": 2, "txn_count_total": 4,
        "amount_sum_10d": 30, "amount_sum_30d": 50, "amount_sum_total": 65,
        "purchase_days_10d": 1, "purchase_days_30d": 2, "purchase_days_total": 3,
        "return_count_10d": 1, "return_count_30d": 1, "return_count_total": 1,
        "return_amount_10d": 8, "return_amount_30d": 8, "return_amount_total": 8,
        "txn_trend_10d_30d": (1 / 10) / (2 / 30), "amount_trend_10d_30d": (30 / 10) / (50 / 30),
        "gap_mean_days": 27.5, "gap_std_days": math.sqrt(2 * 13.5**2), "overdue_ratio": 6 / 27.5,
        # orders o1 = 15, o2 = 20, o3 = 30 (the return o4 is not an order value)
        "order_value_mean": 65 / 3, "order_value_std": float(np.std([15, 20, 30], ddof=1)), "order_value_max": 30,
        "quantity_sum": 7, "quantity_mean": 7 / 4,
        "n_categories": 2, "top_category_share": 0.75, "n_channels": 2, "top_channel_share": 0.75, "n_products": 3,
    },
    "B": {
        "frequency": 0, "recency": 0, "T": 0, "monetary_value": 0, "recency_days": 0, "tenure_days": 0,
        "txn_count_10d": 1, "txn_count_30d": 1, "txn_count_total": 1,
        "amount_sum_10d": 40, "amount_sum_30d": 40, "amount_sum_total": 40,
        "purchase_days_10d": 1, "purchase_days_30d": 1, "purchase_days_total": 1,
        "return_count_10d": 0, "return_count_30d": 0, "return_count_total": 0,
        "return_amount_10d": 0, "return_amount_30d": 0, "return_amount_total": 0,
        "txn_trend_10d_30d": 3.0, "amount_trend_10d_30d": 3.0,
        "gap_mean_days": NAN, "gap_std_days": NAN, "overdue_ratio": NAN,
        "order_value_mean": 40, "order_value_std": NAN, "order_value_max": 40,
        "quantity_sum": 1, "quantity_mean": 1,
        "n_categories": 1, "top_category_share": 1.0, "n_channels": 1, "top_channel_share": 1.0, "n_products": 1,
    },
    "C": {
        "frequency": NAN, "recency": NAN, "T": NAN, "monetary_value": NAN, "recency_days": NAN, "tenure_days": NAN,
        "txn_count_10d": 0, "txn_count_30d": 0, "txn_count_total": 0,
        "amount_sum_10d": 0, "amount_sum_30d": 0, "amount_sum_total": 0,
        "purchase_days_10d": 0, "purchase_days_30d": 0, "purchase_days_total": 0,
        "return_count_10d": 0, "return_count_30d": 1, "return_count_total": 1,
        "return_amount_10d": 0, "return_amount_30d": 12, "return_amount_total": 12,
        "txn_trend_10d_30d": NAN, "amount_trend_10d_30d": NAN,
        "gap_mean_days": NAN, "gap_std_days": NAN, "overdue_ratio": NAN,
        "order_value_mean": NAN, "order_value_std": NAN, "order_value_max": NAN,
        "quantity_sum": 0, "quantity_mean": NAN,
        "n_categories": 0, "top_category_share": NAN, "n_channels": 0, "top_channel_share": NAN, "n_products": 0,
    },
}


def test_every_feature_group_on_a_hand_example(tx):
    out = feats(tx)
    assert list(out.columns) == TX_COLUMNS
    assert out["customer_id"].tolist() == ["A", "B", "C"]  # D buys only after the cut-off
    for cid, expected in EXPECTED.items():
        got = row(out, cid)
        for col, value in expected.items():
            assert got[col] == pytest.approx(value, rel=1e-6, nan_ok=True), (cid, col)


def test_dtypes_counts_are_integers_and_rfm_float64(tx):
    out = feats(tx)
    assert out["customer_id"].dtype == "str"
    for col in ("txn_count_10d", "purchase_days_total", "return_count_30d", "n_categories", "n_products"):
        assert out[col].dtype == np.int32, col
    for col in ("frequency", "recency", "T", "monetary_value", "amount_sum_30d", "recency_days"):
        assert out[col].dtype == np.float64, col
    assert isinstance(out.index, pd.RangeIndex)


def test_past_rows_made_by_the_caller_give_the_same_features(tx):
    """Scoring puts a chunk's past rows in order once and hands them to the features and the lifecycle
    stages: the features are those built from the transactions themselves."""
    from crmlab.features.frames import day_number
    from crmlab.features.past import past_transactions

    past = past_transactions(tx, day_number(pd.Timestamp(AS_OF).date()))
    pdt.assert_frame_equal(feats(tx, past=past), feats(tx))


def test_order_values_per_row_without_order_id(tx):
    got = row(feats(tx.drop(columns=["order_id"])), "A")
    assert got["order_value_mean"] == pytest.approx(65 / 4)
    assert got["order_value_std"] == pytest.approx(np.std([10, 5, 20, 30], ddof=1))
    assert got["order_value_max"] == 30


def test_optional_columns_only_where_present(tx):
    out = feats(tx[["customer_id", "ts", "amount"]])
    assert list(out.columns) == [c for c in TX_COLUMNS if not c.startswith(("order_value", "quantity", "n_", "top_"))] + [
        "order_value_mean", "order_value_std", "order_value_max"]
    out = feats(tx.drop(columns=["channel", "product_id"]))
    assert "n_categories" in out and "n_channels" not in out and "n_products" not in out


def test_time_units_divide_days(tx):
    days = row(feats(tx, time_unit="D"), "A")
    months = row(feats(tx, time_unit="M"), "A")
    assert (days["recency"], days["T"]) == (55, 61)
    assert months["T"] == pytest.approx(61 / 30.4375)


def test_cut_off_is_the_whole_as_of_day(tx):
    late = pd.DataFrame({"customer_id": ["A", "A"], "ts": pd.to_datetime(["2024-01-31 23:59:59.999", "2024-02-01 00:00:00.000"]),
                         "amount": [1.0, 1000.0]})
    out = feats(pd.concat([tx, late], ignore_index=True))
    assert row(out, "A")["txn_count_total"] == 5
    assert row(out, "A")["recency_days"] == 0
    # a datetime as_of means its date
    pdt.assert_frame_equal(feats(tx, as_of=pd.Timestamp("2024-01-31 08:00")), feats(tx))


def test_trend_is_nan_when_the_longer_window_is_empty():
    old = pd.DataFrame({"customer_id": ["X"], "ts": pd.to_datetime(["2023-06-01"]), "amount": [5.0]})
    got = row(feats(old), "X")
    assert math.isnan(got["txn_trend_10d_30d"]) and math.isnan(got["amount_trend_10d_30d"])
    assert got["txn_count_total"] == 1 and got["txn_count_30d"] == 0


def test_gap_std_is_zero_for_regular_buyers():
    days = pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"])
    regular = pd.DataFrame({"customer_id": "R", "ts": days, "amount": 10.0})
    got = row(feats(regular), "R")
    assert (got["gap_mean_days"], got["gap_std_days"]) == (7, 0)
    assert got["overdue_ratio"] == pytest.approx(9 / 7)


# --------------------------------------------------------------------------- customers and interactions


def test_customers_attributes_population_and_tenure(tx, customers):
    out = feats(tx, customers, label_column="churn", drop_columns=["internal_note"])
    # E signed up before the cut-off without buying; F signs up after it and never bought
    assert out["customer_id"].tolist() == ["A", "B", "C", "E"]
    assert list(out.columns) == TX_COLUMNS + ["age", "plan"]
    assert out["plan"].dtype == "category"
    assert list(out["plan"].cat.categories) == ["basic", "gold", "silver"]
    assert out["age"].tolist() == [34, 51, 28, 45]
    tenure = out.set_index("customer_id")["tenure_days"]
    assert tenure.to_dict() == {"A": 91, "B": 0, "C": 42, "E": 11}  # signup when known, else first purchase
    e = row(out, "E")
    assert e["txn_count_total"] == 0 and e["amount_sum_30d"] == 0 and e["n_categories"] == 0
    assert math.isnan(e["frequency"]) and math.isnan(e["recency_days"]) and math.isnan(e["gap_mean_days"])


def test_pii_signup_label_dates_and_dropped_columns_never_become_features(tx, customers):
    out = feats(tx, customers, label_column="churn", drop_columns=["internal_note"])
    for col in ("Email", "name", "signup_date", "churn", "contract_end", "internal_note"):
        assert col not in out.columns
    cells = set(out.astype(str).to_numpy().ravel())
    assert not {"a@x.com", "Ann", "Bob"} & cells
    custom = feats(tx, customers, pii_columns=["PLAN"], label_column="churn")
    assert "plan" not in custom and "internal_note" in custom


def test_customers_table_only(customers, interactions):
    out = build_features(None, customers, interactions, as_of=AS_OF, windows=WINDOWS, label_column="churn")
    assert out["customer_id"].tolist() == ["A", "B", "C", "E"]
    assert list(out.columns) == [
        "customer_id", "tenure_days",
        "interaction_count_10d", "interaction_count_30d",
        "interaction_email_open_count_10d", "interaction_email_open_count_30d",
        "interaction_support_ticket_count_10d", "interaction_support_ticket_count_30d",
        "days_since_last_interaction", "age", "plan", "internal_note",
    ]
    assert row(out, "A")["tenure_days"] == 91 and math.isnan(row(out, "B")["tenure_days"])
    assert out["plan"].tolist() == ["gold", "basic", "basic", "silver"]


def test_interaction_features(tx, interactions):
    out = feats(tx, interactions=interactions).set_index("customer_id")
    # "Email Open" and "email open" are one kind; "complaint" is only seen after the cut-off
    names = [c for c in out.columns if c.startswith("interaction_") or c.startswith("days_since")]
    assert names == [
        "interaction_count_10d", "interaction_count_30d",
        "interaction_email_open_count_10d", "interaction_email_open_count_30d",
        "interaction_support_ticket_count_10d", "interaction_support_ticket_count_30d",
        "days_since_last_interaction",
    ]
    assert out.loc["A", names].tolist() == [1, 2, 1, 1, 0, 1, 1]
    assert out.loc["B", names].tolist() == [0, 0, 0, 0, 0, 0, 31]  # Dec 31 is outside (Jan 1, Jan 31]
    assert out.loc["C", names[:-1]].tolist() == [0] * 6 and math.isnan(out.loc["C", names[-1]])
    assert "Z" not in out.index  # interactions alone do not make a customer
    assert out["interaction_count_10d"].dtype == np.int32


def test_snake_case():
    assert [snake_case(k) for k in ("Email Open", "emailOpen", "support-ticket!", "  ", "NPS survey")] == [
        "email_open", "email_open", "support_ticket", "unknown", "nps_survey"]


# --------------------------------------------------------------------------- leakage, purity, determinism


def test_future_rows_change_nothing(tx, customers, interactions):
    base = feats(tx, customers, interactions, label_column="churn")
    past = tx[tx["ts"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)]
    pdt.assert_frame_equal(feats(past, customers, interactions, label_column="churn"), base)  # deleted
    changed = tx.copy()
    future = changed["ts"] > pd.Timestamp("2024-02-01")
    changed.loc[future, "amount"] *= -7
    changed.loc[future, "category"] = "new-category"
    changed.loc[future, "ts"] += pd.Timedelta(days=40)
    extra = pd.DataFrame({"customer_id": ["A", "B", "Q"], "ts": pd.to_datetime(["2024-02-01", "2030-01-01", "2024-02-01"]),
                          "amount": [1e6, -5.0, 3.0], "order_id": ["o1", "z", "q"], "quantity": [9, 9, 9],
                          "product_id": ["p1", "z", "q"], "category": ["x", "y", "z"], "channel": ["c", "d", "e"]})
    changed = pd.concat([changed, extra], ignore_index=True)
    more_interactions = pd.concat([interactions, pd.DataFrame(
        {"customer_id": ["A", "C"], "ts": pd.to_datetime(["2024-02-01", "2024-05-01"]), "kind": ["refund", "Email Open"]})],
        ignore_index=True)
    pdt.assert_frame_equal(feats(changed, customers, more_interactions, label_column="churn"), base)


def test_inputs_are_not_mutated(tx, customers, interactions):
    copies = [tx.copy(deep=True), customers.copy(deep=True), interactions.copy(deep=True)]
    feats(tx, customers, interactions, label_column="churn")
    rfm_summary(tx, as_of=AS_OF)
    for before, after in zip(copies, (tx, customers, interactions), strict=True):
        pdt.assert_frame_equal(after, before)


def test_same_columns_whatever_the_data(tx):
    other = pd.DataFrame({"customer_id": ["zz", "yy"], "ts": pd.to_datetime(["2020-01-01", "2024-01-01"]),
                          "amount": [1.0, 2.0], "order_id": ["a", "b"], "quantity": [1, 1], "product_id": ["p", "q"],
                          "category": ["c", "c"], "channel": ["w", "w"]})
    assert list(feats(other).columns) == list(feats(tx).columns) == TX_COLUMNS
    assert list(build_features(tx, as_of=AS_OF).columns) == list(build_features(other, as_of=AS_OF).columns)
    default = build_features(tx, as_of=AS_OF).columns
    assert "amount_sum_90d" in default and "amount_trend_180d_365d" in default


def test_nothing_in_the_past_gives_an_empty_frame_with_the_columns(tx):
    out = feats(tx, as_of="2000-01-01")
    assert len(out) == 0 and list(out.columns) == TX_COLUMNS


# --------------------------------------------------------------------------- errors


def test_missing_column_null_and_untyped_dates_are_named(tx):
    with pytest.raises(DataError, match="'amount'"):
        feats(tx.drop(columns=["amount"]))
    bad = tx.copy()
    bad.loc[2, "customer_id"] = None
    with pytest.raises(DataError, match="column 'customer_id'.*missing value.*example row"):
        feats(bad)
    text = tx.assign(ts=tx["ts"].dt.strftime("%Y-%m-%d"))
    with pytest.raises(DataError, match="column 'ts'.*datetime64"):
        feats(text)
    with pytest.raises(ValueError, match="time_unit"):
        feats(tx, time_unit="Y")
    with pytest.raises(ValueError, match="windows"):
        feats(tx, windows=(0, 30))


def test_duplicate_customers_are_an_error(tx, customers):
    with pytest.raises(DataError, match="share a customer id"):
        feats(tx, pd.concat([customers, customers.iloc[:1]]))


def test_from_tables_uses_the_project_settings(tx, customers):
    cfg = ProjectConfig(time_unit="D", features=FeatureConfig(windows=[30, 10], drop_columns=["internal_note"]))
    tables = Tables(transactions=tx, customers=customers)
    out = build_features_from_tables(tables, as_of=AS_OF, cfg=cfg, label_column="churn")
    pdt.assert_frame_equal(out, feats(tx, customers, time_unit="D", drop_columns=["internal_note"], label_column="churn"))
    # as_of=None: the config's, else the last transaction date
    last = build_features_from_tables(Tables(transactions=tx), as_of=None, cfg=cfg)
    assert last["customer_id"].tolist() == ["A", "B", "C", "D"]


# --------------------------------------------------------------------------- the fast paths against a plain reference


def reference(tx: pd.DataFrame, as_of: str, windows, unit: float) -> pd.DataFrame:
    """Feature definitions written the slow, obvious way (pandas, a loop over customers)."""
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    past = tx[tx["ts"] < end].copy()
    past["day"] = past["ts"].dt.normalize()
    asof = pd.Timestamp(as_of)
    out = []
    for cid, g in past.groupby("customer_id"):
        p = g[g["amount"] >= 0]
        r = g[g["amount"] < 0]
        pdays = sorted(p["day"].unique())
        rec = {"customer_id": cid}
        if pdays:
            totals = g.groupby("day")["amount"].sum()
            rec["frequency"] = len(pdays) - 1
            rec["recency"] = (pdays[-1] - pdays[0]).days / unit
            rec["T"] = (asof - pdays[0]).days / unit
            rec["monetary_value"] = float(np.mean([totals[d] for d in pdays[1:]])) if len(pdays) > 1 else 0.0
            rec["recency_days"] = (asof - pdays[-1]).days
            gaps = np.diff([d.value for d in pdays]) / 86_400e9
            rec["gap_mean_days"] = gaps.mean() if len(gaps) else np.nan
            rec["gap_std_days"] = gaps.std(ddof=1) if len(gaps) > 1 else np.nan
        for w in windows:
            lo = asof - pd.Timedelta(days=w)
            pw, rw = p[p["day"] > lo], r[r["day"] > lo]
            rec[f"txn_count_{w}d"] = len(pw)
            rec[f"amount_sum_{w}d"] = pw["amount"].sum()
            rec[f"purchase_days_{w}d"] = pw["day"].nunique()
            rec[f"return_count_{w}d"] = len(rw)
            rec[f"return_amount_{w}d"] = -rw["amount"].sum()
        rec["txn_count_total"] = len(p)
        rec["amount_sum_total"] = p["amount"].sum()
        rec["order_value_std"] = p["amount"].std(ddof=1) if len(p) > 1 else np.nan
        rec["order_value_max"] = p["amount"].max() if len(p) else np.nan
        rec["n_categories"] = p["category"].nunique()
        rec["top_category_share"] = p["category"].value_counts().max() / len(p) if len(p) else np.nan
        out.append(rec)
    return pd.DataFrame(out).sort_values("customer_id", ignore_index=True)


def random_log(rng: np.random.Generator, ids: list[str], n_rows: int) -> pd.DataFrame:
    days = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 150, n_rows), unit="D")
    secs = pd.to_timedelta(rng.integers(0, 86_400, n_rows), unit="s")
    amount = np.round(rng.gamma(2.0, 20.0, n_rows), 2)
    amount[rng.random(n_rows) < 0.15] *= -1
    return pd.DataFrame({
        "customer_id": pd.Series(rng.choice(np.array(ids, dtype=object), n_rows), dtype="str"),
        "ts": days + secs,
        "amount": amount,
        "category": rng.choice(["a", "b", "c"], n_rows),
    })


ID_STYLES = {
    "numeric": lambda i: f"{i:06d}",
    "varying-length": lambda i: f"C{i}" * (1 + i % 3),
    "uuid": lambda i: str(uuid.UUID(int=random.Random(i).getrandbits(128))),
    "unicode": lambda i: f"klant-{i}-é" if i % 2 else f"client-{i}-ø",
}


@pytest.mark.parametrize("style", sorted(ID_STYLES))
@pytest.mark.parametrize("presorted", [False, True])
def test_fast_paths_match_the_reference(style, presorted, monkeypatch):
    """Input sorted by id takes one pass; numeric and short ASCII ids become exact integer keys;
    long or non-ASCII ids go through the hashed key: all must give the reference values."""
    rng = np.random.default_rng(7)
    ids = [ID_STYLES[style](i) for i in range(60)]
    log = random_log(rng, ids, 700)
    if presorted:
        log = log.sort_values(["customer_id", "ts"], ignore_index=True)
    hashed = []
    real = order_mod._hash_order
    monkeypatch.setattr(order_mod, "_hash_order", lambda *a: hashed.append(1) or real(*a))
    as_of, windows = "2023-04-15", (7, 30, 90)
    got = build_features(log, as_of=as_of, windows=windows, time_unit="W")
    assert bool(hashed) == (not presorted and style in ("uuid", "unicode"))
    want = reference(log, as_of, windows, 7.0)
    assert got["customer_id"].tolist() == want["customer_id"].tolist() == sorted(set(want["customer_id"]))
    for col in want.columns[1:]:
        np.testing.assert_allclose(got[col].to_numpy(np.float64), want[col].to_numpy(np.float64),
                                   rtol=1e-6, atol=1e-9, err_msg=col)


def test_key_collisions_fall_back_to_exact_codes(monkeypatch):
    rng = np.random.default_rng(11)
    ids = [ID_STYLES["uuid"](i) for i in range(200)]
    log = random_log(rng, ids, 2000)
    base = build_features(log, as_of="2023-04-15")
    monkeypatch.setattr(order_mod, "_HASH_KEEP_BITS", 12)  # a few prefix bits: every seed collides
    pdt.assert_frame_equal(build_features(log, as_of="2023-04-15"), base)


# --------------------------------------------------------------------------- CDNOW


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow()


def test_rfm_equals_lifetimes_on_cdnow(cdnow):
    from lifetimes.utils import summary_data_from_transaction_data

    ours = rfm_summary(cdnow, as_of="1997-09-30", time_unit="W")
    theirs = summary_data_from_transaction_data(
        cdnow.assign(ts=cdnow["ts"].astype("datetime64[ns]")), "customer_id", "ts",
        monetary_value_col="amount", observation_period_end="1997-09-30", freq="D",
    )
    theirs = theirs.reset_index().rename(columns={"index": "customer_id"})
    theirs["recency"] /= 7
    theirs["T"] /= 7
    assert ours["customer_id"].tolist() == theirs["customer_id"].tolist()
    for col in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-12)


def test_cdnow_pins(cdnow):
    rfm = rfm_summary(cdnow, as_of="1997-09-30", time_unit="W").set_index("customer_id")
    # Every CDNOW customer made a first purchase in the first 12 weeks (1997-01-01..1997-03-25):
    # the 23,570-customer cohort of Fader, Hardie and Lee (2005).
    assert len(rfm) == 23_570
    first_day = pd.Timestamp("1997-09-30") - pd.to_timedelta((rfm["T"] * 7).round(), unit="D")
    assert first_day.between("1997-01-01", "1997-03-25").all()
    first = cdnow.groupby("customer_id")["ts"].min()
    assert (first == "1997-01-01").sum() > 0
    assert rfm.loc[first[first == "1997-01-01"].index, "T"].eq(272 / 7).all()
    assert rfm.loc["00001", "T"] == pytest.approx(38.857, abs=5e-4)
    # hand-checked: 00003 buys on 1997-01-02, 1997-03-30 (2 rows) and 1997-04-02
    assert cdnow[cdnow["customer_id"] == "00003"]["ts"].dt.date.astype(str).tolist()[:4] == [
        "1997-01-02", "1997-03-30", "1997-04-02", "1997-11-15"]
    got = rfm.loc["00003"]
    assert (got["frequency"], got["recency"], got["T"]) == (2, 90 / 7, 271 / 7)
    feats_ = build_features(cdnow, as_of="1997-09-30").set_index("customer_id")
    pdt.assert_frame_equal(feats_[["frequency", "recency", "T", "monetary_value"]], rfm)


def test_random_future_perturbation_of_cdnow_changes_nothing(cdnow):
    as_of = "1997-09-30"
    base = build_features(cdnow, as_of=as_of)
    rng = np.random.default_rng(2024)
    future = cdnow["ts"] > pd.Timestamp(as_of)
    perturbed = cdnow[~future | (rng.random(len(cdnow)) < 0.5)].copy()  # delete half the future rows
    fut = perturbed["ts"] > pd.Timestamp(as_of)
    perturbed.loc[fut, "amount"] = rng.normal(0, 50, fut.sum())  # change the rest, returns included
    perturbed.loc[fut, "quantity"] = rng.integers(-3, 9, fut.sum())
    added = perturbed[fut].sample(2000, replace=True, random_state=1).reset_index(drop=True)
    added["ts"] = pd.Timestamp("1997-10-01") + pd.to_timedelta(rng.integers(0, 400, len(added)), unit="D")
    added.loc[added.index[:100], "customer_id"] = [f"new{i}" for i in range(100)]
    perturbed = pd.concat([perturbed, added]).sample(frac=1.0, random_state=5)
    pdt.assert_frame_equal(build_features(perturbed, as_of=as_of), base)


def test_rows_without_order_id_are_orders_of_their_own(tx):
    some = tx.copy()
    some.loc[some["order_id"].isin(["o1", "o2"]), "order_id"] = None  # A: rows 10, 5, 20 lose their order
    got = row(feats(some), "A")
    assert got["order_value_mean"] == pytest.approx(65 / 4) and got["order_value_max"] == 30


def test_output_is_an_ordinary_writable_frame(tx):
    out = feats(tx)
    out.loc[0, "amount_sum_30d"] = -1.0
    out["txn_count_10d"] += 1
    assert out.loc[0, "amount_sum_30d"] == -1.0 and out["amount_sum_10d"].iloc[0] == 30


def test_time_zone_aware_timestamps_use_their_local_date(tx):
    local = tx.assign(ts=tx["ts"].dt.tz_localize("America/New_York"))
    pdt.assert_frame_equal(feats(local), feats(tx))


def test_error_examples_leave_out_personal_data(tx, customers):
    with pytest.raises(DataError, match="share a customer id") as err:
        feats(tx, pd.concat([customers, customers.iloc[:1]]))
    assert "a@x.com" not in str(err.value) and "Ann" not in str(err.value) and "gold" in str(err.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_sort_on_packed_words_matches_python(seed):
    rng = random.Random(seed)
    alphabet = "".join(chr(c) for c in range(32, 127))
    prefixes = ["", "customer-", "customer-0000", "X"]
    values = {rng.choice(prefixes) + "".join(rng.choices(alphabet, k=rng.randint(1, 30))) for _ in range(3000)}
    values |= {"customer-", "customer-0", "customer-00", "a", "ab", "abc"}  # prefixes of each other
    s = pl.Series(sorted(values, key=lambda _: rng.random()))
    order = order_mod.string_order(s)
    assert s.gather(order).to_list() == sorted(values)
    keys = order_mod._id_keys(pl.Series(["b7", "a10", "a9", "a10", "b"]), 64)
    assert keys is not None and list(np.argsort(keys, kind="stable")) == [1, 3, 2, 4, 0] and keys[1] == keys[3]


def test_customer_columns_named_like_features_are_an_error(tx, customers):
    with pytest.raises(DataError, match=r"\['frequency'\].*drop_columns"):
        feats(tx, customers.rename(columns={"age": "frequency"}), label_column="churn")
