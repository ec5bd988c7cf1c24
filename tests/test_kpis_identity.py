"""The fast KPIs (issue 20, speed part 2) give the same tables as the code they replaced, to the last bit.

The reference is benchmarks/kpis_before.py, src/crmlab/kpis.py as it was before (commit 50d97ee). The
data set has what the new code handles on other paths: several cohorts and periods without any
activity, returns (in a period without purchases, and a customer who only returned), one-time buyers,
rows after the cut-off (a customer who only buys then, first in the file), several rows of a customer
on one day whose amounts add up differently in another order, rows in no particular order; then
the same with order ids (some missing), time-zone-aware timestamps, integer customer ids, a missing
amount, a customers table (acquisition cost and channel) with marketing spend, and segments from a
customers column and from a table.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab import kpis
from crmlab.config import load_config
from crmlab.features.frames import as_of_date, day_number
from crmlab.features.past import past_transactions

from .conftest import load_benchmark

AS_OF = date(2024, 6, 30)


before = load_benchmark("kpis_before", "crmlab_kpis_before")


def _log(seed: int = 7, n_customers: int = 400) -> pd.DataFrame:
    """Random purchases and returns 2023-01 .. 2024-07 with a hole (no activity in 2023-05 and weeks
    around it), plus the hand-placed edge cases, shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    days = pd.date_range("2023-01-01", "2024-07-15", freq="D")
    days = days[(days < "2023-05-01") | (days > "2023-06-10")]  # a month and more without activity
    for c in range(n_customers):
        first = rng.integers(0, len(days) - 1)
        for _ in range(int(rng.integers(1, 8))):  # one-time buyers too
            d = days[min(first + int(rng.integers(0, 200)), len(days) - 1)]
            rows.append((f"c{c:04d}", d + pd.Timedelta(hours=int(rng.integers(0, 24))),
                         round(float(rng.gamma(2.0, 30.0)), 2)))
        if rng.random() < 0.15:  # a return
            rows.append((f"c{c:04d}", days[min(first + 3, len(days) - 1)], -round(float(rng.gamma(2.0, 10.0)), 2)))
    rows += [("late", pd.Timestamp("2024-07-02"), 50.0),  # only after as_of
             ("returner", pd.Timestamp("2024-02-02"), -15.0),  # only a return
             ("c0001", pd.Timestamp("2023-05-15"), -5.0),  # a return in the month without purchases
             *[("tie", pd.Timestamp("2024-03-03 10:00"), a) for a in (0.1, 0.2, 0.3, 1e16, 1.0, -1e16)],
             ("tie", pd.Timestamp("2024-04-20"), 0.7)]
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    order = rng.permutation(len(df))
    order = np.r_[np.flatnonzero(order == df.index[df["customer_id"] == "late"][0]), order]
    df = df.iloc[order].drop_duplicates().reset_index(drop=True)  # 'late' first, then the rest shuffled
    return df.assign(customer_id=df["customer_id"].astype("str"))


def _customers(tx: pd.DataFrame) -> pd.DataFrame:
    ids = pd.unique(tx["customer_id"])
    rng = np.random.default_rng(3)
    return pd.DataFrame({"customer_id": pd.array(ids, dtype="str"),
                         "acquisition_cost": rng.gamma(2.0, 20.0, len(ids)).round(2),
                         "acquisition_channel": rng.choice(["search", "social", "email"], len(ids)),
                         "plan": rng.choice(["basic", "gold", "pro"], len(ids))})


def _same(old, new) -> None:
    a, b = old.tables(), new.tables()
    assert list(a) == list(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    assert old.segment_source == new.segment_source and old.cac_source == new.cac_source
    assert old.notes == new.notes


def _both(tx, sets=(), **tables):
    cfg = load_config(None, ["kpis.clv_source=none", *sets])
    return (before.compute_kpis(cfg, tx, as_of=AS_OF, **tables), kpis.compute_kpis(cfg, tx, as_of=AS_OF, **tables))


@pytest.mark.parametrize("period", ["M", "W", "Q"])
def test_every_table_is_the_one_computed_before(period):
    old, new = _both(_log(), [f"kpis.period={period}", f"kpis.cohort_period={'W' if period == 'Q' else period}"])
    _same(old, new)
    assert new.lifecycle is not None and new.value("active_customers") > 300
    if period != "Q":
        assert (new.by_period["active_customers"] == 0).any()  # the hole is there


def test_rfm_segments_and_a_regridded_log_are_the_ones_computed_before():
    tx = _log(seed=11)
    pd.testing.assert_frame_equal(before.rfm_segments(tx, as_of=AS_OF), kpis.rfm_segments(tx, as_of=AS_OF),
                                  check_exact=True)
    weekly = kpis.PurchaseLog.from_transactions(tx, as_of=AS_OF, period="W")
    for period in ("M", "Q"):
        pd.testing.assert_frame_equal(before.period_kpis(tx, as_of=AS_OF, period=period),
                                      kpis.period_kpis(weekly, as_of=AS_OF, period=period), check_exact=True)
        pd.testing.assert_frame_equal(before.cohort_retention(tx, as_of=AS_OF, period=period),
                                      kpis.cohort_retention(weekly, as_of=AS_OF, period=period), check_exact=True)


def test_the_log_sorted_by_customer_is_what_the_lifecycle_stages_read():
    """PurchaseLog.past stands in for past_transactions: the same purchase rows in the same order."""
    tx = _log(seed=5)
    got = kpis.PurchaseLog.from_transactions(tx, as_of=AS_OF).past()
    ref = past_transactions(tx, day_number(as_of_date(AS_OF)))
    purchase = ref.amount >= 0
    assert got.ids.to_list() == ref.ids.gather(np.unique(ref.cust[purchase])).to_list()
    np.testing.assert_array_equal(got.day, ref.day[purchase])
    np.testing.assert_array_equal(got.amount, ref.amount[purchase])
    _, dense = np.unique(ref.cust[purchase], return_inverse=True)
    np.testing.assert_array_equal(got.cust, dense)


def test_order_ids_time_zones_and_integer_ids_give_the_tables_computed_before():
    tx = _log(seed=3)
    rng = np.random.default_rng(0)
    oid = pd.Series([f"o{int(i)}" for i in rng.integers(0, 900, len(tx))], dtype="str")
    with_orders = tx.assign(order_id=oid.where(rng.random(len(tx)) > 0.1))  # some rows without an order id
    _same(*_both(with_orders))
    _same(*_both(tx.assign(ts=tx["ts"].dt.tz_localize("Europe/Paris"))))
    codes = pd.factorize(tx["customer_id"])[0] * 7 + 1001  # integer ids: the lifecycle sorts them as text
    _same(*_both(tx.assign(customer_id=codes)))


def test_a_missing_amount_gives_the_same_note_and_tables_as_before():
    tx = _log(seed=4)
    tx.loc[5, "amount"] = np.nan
    old, new = _both(tx)
    _same(old, new)
    assert new.lifecycle is None and any("lifecycle" in n for n in new.notes)


def test_costs_spend_channels_and_segments_give_the_tables_computed_before(tmp_path):
    tx = _log(seed=9)
    customers = _customers(tx)
    _same(*_both(tx, ["kpis.segment_column=plan"], customers=customers))
    months = pd.period_range("2023-01", "2024-07", freq="M").astype(str)
    spend = pd.DataFrame({"period": pd.to_datetime(np.repeat(months, 2)),
                          "channel": np.tile(["search", "social"], len(months)),
                          "spend": np.arange(2 * len(months), dtype=float) * 10.0})
    _same(*_both(tx, customers=customers, marketing_spend=spend))
    table = tmp_path / "segments.csv"
    customers[["customer_id", "plan"]].rename(columns={"plan": "segment_name"}).iloc[::2].to_csv(table, index=False)
    _same(*_both(tx, [f"kpis.segment_table={table}"], customers=customers))


def test_positions_and_reindex_by_hash_join_are_pandas_ones():
    """The polars join that maps millions of text ids (kpis._positions) answers as Index.get_indexer."""
    rng = np.random.default_rng(1)
    index = pd.Index([f"id{i}" for i in rng.permutation(30_000)], dtype="str")
    keys = pd.Index([f"id{i}" for i in rng.integers(0, 40_000, 25_000)], dtype="str")  # some unknown, repeats
    np.testing.assert_array_equal(kpis._positions(index, keys), index.get_indexer(keys))
    values = pd.Series(rng.random(len(index)), index=index)
    pd.testing.assert_series_equal(kpis._reindex(values, keys), values.reindex(keys))
    labels = pd.Series(rng.choice(["a", "b"], len(index)), index=index, dtype="string")
    pd.testing.assert_series_equal(kpis._reindex(labels, keys), labels.reindex(keys))


@pytest.mark.parametrize("ascending", [True, False])
def test_quintiles_by_counting_are_the_ranked_ones(ascending):
    from crmlab.rfm import quintile_scores

    rng = np.random.default_rng(2)
    for values in (rng.integers(0, 40, 5_000), rng.geometric(0.3, 7_001), np.zeros(10, dtype=np.int64),
                   np.array([3])):
        np.testing.assert_array_equal(kpis._count_quintiles(values, ascending=ascending),
                                      quintile_scores(values, ascending=ascending))


def test_lifecycle_stages_from_the_log_are_those_from_the_transactions():
    """Every customer's lifecycle inputs and stage, from the log's purchase rows (no returns: every day a
    purchase day) and from the transactions (returns, days of returns only), to the last bit."""
    from crmlab.lifecycle import lifecycle_stages

    tx = _log(seed=8)
    cfg = load_config(None, []).lifecycle
    past = kpis.PurchaseLog.from_transactions(tx, as_of=AS_OF).past()
    pd.testing.assert_frame_equal(lifecycle_stages(tx, as_of=AS_OF, cfg=cfg),
                                  lifecycle_stages(None, as_of=AS_OF, cfg=cfg, past=past), check_exact=True)
