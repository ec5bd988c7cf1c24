"""KPIs on a hand-made data set (tests/kpi_data.py), every expected number worked out by hand below."""

from __future__ import annotations

from datetime import date

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.clv.models import UNITS_PER_MONTH
from crmlab.config import CrmlabConfig, load_config
from crmlab.errors import ConfigError, DataError
from crmlab.kpis import (
    acquisition_spend,
    bgnbd_clv,
    cohort_retention,
    compute_kpis,
    funnel_conversion,
    period_kpis,
    read_marketing_spend,
    revenue_by_segment,
    rfm_segments,
)

from . import kpi_data as hand

# Hand computation, months January (1), February (2), March (3) of 2024; as_of 2024-03-31.
#   purchases (amount >= 0):  Jan A100 B200 E60         Feb A50 C80 C40       Mar A30 C60 D120 E90
#   returns:                  Jan B-20
#   active A_p:               Jan {A,B,E}=3             Feb {A,C}=2           Mar {A,C,D,E}=4
#   new (first purchase):     Jan {A,B,E}=3             Feb {C}=1             Mar {D}=1
#   orders:                   3                         3                     4
#   gross sales:              360                       170                   300
#   revenue (net):            340                       170                   300
#   retained A_{p-1} & A_p:   -                         {A}=1 of 3            {A,C}=2 of 2
#   retention / churn:        -                         1/3, 2/3              1, 0
#   cumulative orders >= 2:   none -> 0/3               A2 C2 -> 2/2          A3 C3 E2 (D1) -> 3/4
#   AOV = gross / orders:     120                       170/3 = 56.667        75
#   frequency orders/active:  1                         1.5                   1
#   revenue per active:       340/3 = 113.333           85                    75
#   simple CLV = AOV x f / churn:  -                    56.667 x 1.5 / (2/3) = 127.5    churn 0 -> empty
#   CAC (customers column: mean cost of the new customers)
#                             (30+50+10)/3 = 30         20                    40
#   LTV:CAC (simple/cac):     -                         127.5 / 20 = 6.375    -
#   payback = cac / rev per active (margin 1, months):
#                             30/113.333 = 0.26471      20/85 = 0.23529       40/75 = 0.53333
EXPECTED_BY_MONTH = {
    "period": ["2024-01", "2024-02", "2024-03"],
    "active_customers": [3, 2, 4],
    "new_customers": [3, 1, 1],
    "returning_customers": [0, 1, 3],
    "orders": [3, 3, 4],
    "gross_sales": [360.0, 170.0, 300.0],
    "returns": [-20.0, 0.0, 0.0],
    "revenue": [340.0, 170.0, 300.0],
    "retention_rate": [np.nan, 1 / 3, 1.0],
    "churn_rate": [np.nan, 2 / 3, 0.0],
    "repeat_purchase_rate": [0.0, 1.0, 0.75],
    "aov": [120.0, 170 / 3, 75.0],
    "purchase_frequency": [1.0, 1.5, 1.0],
    "revenue_per_customer": [340 / 3, 85.0, 75.0],
    "simple_clv": [np.nan, 127.5, np.nan],
    "acquisition_spend": [90.0, 20.0, 40.0],
    "cac": [30.0, 20.0, 40.0],
    "ltv_cac": [np.nan, 6.375, np.nan],
    "cac_payback_months": [30 / (340 / 3), 20 / 85, 40 / 75],
}

# Overall (pooled over the months):
#   customers 5 (A..E; F never bought), orders 10, gross 830, revenue 810
#   retention = (1 + 2) / (3 + 2) = 0.6, churn 0.4, lifespan 1 / 0.4 = 2.5 months
#   repeat purchase rate: A3 C3 E2 have 2+ orders, B1 D1 do not -> 3/5 = 0.6
#   AOV = 830 / 10 = 83; frequency = 10 orders / (3+2+4 = 9 active customer-months) = 1.1111
#   revenue per active customer-month = 810 / 9 = 90; revenue per buyer 810 / 5 = 162; orders per customer 2
#   simple CLV = 83 x 10/9 x 2.5 = 230.5556
#   CAC (customers column) = (30+50+20+40+10) / 5 = 30; LTV:CAC = 230.5556 / 30 = 7.6852
#   payback = 30 / 90 = 0.3333 months
EXPECTED_OVERALL = {
    "periods": 3, "active_customers": 5, "new_customers": 5, "active_customers_last_period": 4, "orders": 10,
    "gross_sales": 830, "revenue": 810, "retention_rate": 0.6, "churn_rate": 0.4, "repeat_purchase_rate": 0.6,
    "aov": 83, "purchase_frequency": 10 / 9, "orders_per_customer": 2, "revenue_per_customer": 90,
    "revenue_per_buyer": 162, "expected_lifespan_months": 2.5, "simple_clv": 83 * 10 / 9 * 2.5,
    "acquisition_spend": 150, "cac": 30, "ltv_cac_simple": 83 * 10 / 9 * 2.5 / 30, "cac_payback_months": 1 / 3,
}


def _cfg(*sets: str) -> CrmlabConfig:
    return load_config(None, ["kpis.clv_source=none", *sets])


def test_kpis_by_month_match_the_hand_computation():
    result = compute_kpis(_cfg(), hand.transactions(), as_of=hand.AS_OF, customers=hand.customers())
    got = result.by_period
    assert result.cac_source == "customers.acquisition_cost"
    for col, expected in EXPECTED_BY_MONTH.items():
        if col == "period":
            assert got[col].tolist() == expected
        else:
            np.testing.assert_allclose(got[col].to_numpy(dtype=float), expected, rtol=1e-12, err_msg=col)
    assert got["complete"].all()


def test_overall_kpis_match_the_hand_computation():
    result = compute_kpis(_cfg(), hand.transactions(), as_of=hand.AS_OF, customers=hand.customers())
    for metric, expected in EXPECTED_OVERALL.items():
        assert result.value(metric) == pytest.approx(expected, rel=1e-12), metric
    assert "bgnbd_clv_mean" not in set(result.overall["metric"])  # clv_source=none
    assert result.overall["definition"].str.len().gt(5).all()


def test_rows_after_the_cut_off_change_nothing():
    tx = hand.transactions()
    a = compute_kpis(_cfg(), tx, as_of=hand.AS_OF, customers=hand.customers())
    tx.loc[tx["ts"] > pd.Timestamp(hand.AS_OF), "amount"] = -5000.0
    more = pd.DataFrame({"customer_id": ["Z"], "ts": [pd.Timestamp("2024-04-01")], "amount": [10.0]})
    b = compute_kpis(_cfg(), pd.concat([tx, more]), as_of=hand.AS_OF, customers=hand.customers())
    pd.testing.assert_frame_equal(a.by_period, b.by_period)
    pd.testing.assert_frame_equal(a.overall, b.overall)


def test_cac_from_marketing_spend_by_month_and_channel(tmp_path):
    pd.DataFrame(hand.MARKETING_SPEND).to_csv(tmp_path / "spend.csv", index=False)
    from crmlab.config import TableSource

    spend = read_marketing_spend(TableSource(path=tmp_path / "spend.csv"))
    result = compute_kpis(_cfg(), hand.transactions(), as_of=hand.AS_OF, customers=hand.customers(),
                          marketing_spend=spend)
    assert result.cac_source == "marketing_spend"
    # spend Jan 60+30 = 90, Feb 40, Mar 50+30 = 80 (April's 500 is after as_of); new customers 3, 1, 1
    np.testing.assert_allclose(result.by_period["acquisition_spend"], [90, 40, 80])
    np.testing.assert_allclose(result.by_period["cac"], [30, 40, 80])
    # overall 210 / 5 = 42; LTV:CAC 230.5556 / 42; payback 42 / 90 months
    assert result.value("cac") == pytest.approx(42.0)
    assert result.value("ltv_cac_simple") == pytest.approx(83 * 10 / 9 * 2.5 / 42)
    assert result.value("cac_payback_months") == pytest.approx(42 / 90)
    # by channel: search 60+40+30 = 130 over A, C, E (3) = 43.333; social 30+50 = 80 over B, D (2) = 40
    ch = result.cac_by_channel.set_index("channel")
    assert ch.loc["search", "cac"] == pytest.approx(130 / 3)
    assert ch.loc["social", "cac"] == pytest.approx(40.0)
    assert ch["new_customers"].tolist() == [3, 2]


def test_without_costs_cac_is_empty_and_explicit_source_needs_its_table():
    result = compute_kpis(_cfg(), hand.transactions(), as_of=hand.AS_OF)
    assert result.cac_source == "none" and np.isnan(result.value("cac"))
    with pytest.raises(ConfigError, match="marketing_spend"):
        acquisition_spend(_cfg("kpis.cac_source=marketing_spend").kpis, hand.transactions(), as_of=hand.AS_OF,
                          period="M", customers=hand.customers())


def test_bad_marketing_spend_names_file_column_and_row(tmp_path):
    from crmlab.config import TableSource

    bad = pd.DataFrame({"period": ["2024-01", "2024-02"], "spend": ["100", "lots"]})
    bad.to_csv(tmp_path / "spend.csv", index=False)
    with pytest.raises(DataError) as err:
        read_marketing_spend(TableSource(path=tmp_path / "spend.csv"))
    msg = str(err.value)
    assert "spend.csv" in msg and "'spend'" in msg and "lots" in msg


def test_cohort_matrix_matches_the_hand_computation():
    # January cohort {A, B, E}: month 0 all 3; February only A (1/3); March A and E (2/3)
    # February cohort {C}: C buys in March too (1); March cohort {D}: month 0 only
    got = cohort_retention(hand.transactions(), as_of=hand.AS_OF, period="M")
    assert got["cohort"].tolist() == ["2024-01", "2024-02", "2024-03"]
    assert got["customers"].tolist() == [3, 1, 1]
    expected = np.array([[1, 1 / 3, 2 / 3], [1, 1, np.nan], [1, np.nan, np.nan]])
    np.testing.assert_allclose(got[["0", "1", "2"]].to_numpy(dtype=float), expected)


def test_quarter_and_week_periods():
    q = period_kpis(hand.transactions(), as_of=hand.AS_OF, period="Q")
    # one quarter: all 5 buyers active and new, 10 orders, no previous quarter to retain from
    assert q["period"].tolist() == ["2024Q1"]
    assert q[["active_customers", "new_customers", "orders"]].iloc[0].tolist() == [5, 5, 10]
    assert np.isnan(q["retention_rate"].iloc[0])
    w = period_kpis(hand.transactions(), as_of=hand.AS_OF, period="W", spend=None)
    # weeks Monday-Sunday from the week of 2024-01-05 to that of 2024-03-31; every purchase in exactly one
    assert w["start"].iloc[0] == pd.Timestamp("2024-01-01") and w["end"].iloc[-1] == pd.Timestamp("2024-03-31")
    assert w["period"].iloc[0] == "2024-W01" and w["period"].iloc[-1] == "2024-W13"  # ISO weeks
    # a cut-off inside a month: that month is the last period and flagged partial
    m = period_kpis(hand.transactions(), as_of=date(2024, 3, 20), period="M")
    assert m["complete"].tolist() == [True, True, False] and m["orders"].iloc[-1] == 3  # A30 C60 D120
    assert w["orders"].sum() == 10 and w["gross_sales"].sum() == 830
    assert w["cac_payback_months"].isna().all()


def test_rows_of_one_order_count_once():
    tx = hand.transactions()
    tx["order_id"] = [f"o{i}" for i in range(len(tx))]
    tx.loc[tx.index[1], "order_id"] = None  # a purchase row without an order id is an order of its own
    split = tx.iloc[[0]].assign(amount=20.0)  # A's first order has a second row of 20 on the same order id
    k = period_kpis(pd.concat([tx, split]), as_of=hand.AS_OF, period="M")
    # January: still 3 orders, gross 360 + 20 = 380, AOV 380/3
    assert k["orders"].tolist() == [3, 3, 4]
    assert k["aov"].iloc[0] == pytest.approx(380 / 3)


def test_revenue_by_segment_from_a_customers_column():
    result = compute_kpis(_cfg("kpis.segment_column=plan"), hand.transactions(), as_of=hand.AS_OF,
                          customers=hand.customers())
    seg = result.segments.set_index("segment")
    # gold: A (100+50+30 = 180, 3 orders) + C (80+40+60 = 180, 3 orders); basic: B (200-20 = 180, 1 order),
    # D (120, 1), E (60+90 = 150, 2); F (gold) never bought and is not counted
    assert seg.loc["gold", ["customers", "orders", "revenue"]].tolist() == [2, 6, 360.0]
    assert seg.loc["basic", ["customers", "orders", "revenue"]].tolist() == [3, 4, 450.0]
    assert seg.loc["basic", "revenue_share"] == pytest.approx(450 / 810)
    assert seg.loc["gold", "revenue_per_customer"] == pytest.approx(180.0)
    assert seg.loc["basic", "aov"] == pytest.approx((200 + 120 + 150) / 4)
    assert result.segment_source == "customers.plan"
    assert result.segments["segment"].tolist() == ["basic", "gold"]  # by revenue, largest first


def test_revenue_by_segment_from_a_segment_table_leaves_others_unassigned(tmp_path):
    pd.DataFrame({"customer_id": ["A", "B"], "segment_name": ["vip", "vip"]}).to_csv(tmp_path / "s.csv", index=False)
    result = compute_kpis(_cfg(f"kpis.segment_table={tmp_path / 's.csv'}"), hand.transactions(), as_of=hand.AS_OF)
    seg = result.segments.set_index("segment")
    assert seg.loc["vip", "revenue"] == 360.0 and seg.loc["unassigned", "revenue"] == 450.0
    assert seg["customers"].sum() == 5
    # a given mapping (what the segmentation pipeline will pass) overrides the config
    given = revenue_by_segment(hand.transactions(), pd.Series({"D": "x"}), as_of=hand.AS_OF).set_index("segment")
    assert given.loc["x", "revenue"] == 120.0


def test_rfm_segments_by_hand():
    # recency days to 2024-03-31 (last purchase): A 16, B 71 (the return on 01-25 is not a purchase), C 30, D 21,
    # E 3 -> ranks (fewer days = better) B1 C2 D3 A4 E5 -> scores 1..5.
    # orders: A3 B1 C3 D1 E2 -> average ranks B,D 1.5, E 3, A,C 4.5 -> pct 0.3, 0.6, 0.9 -> ceil(5 pct) = 2, 3, 5
    seg = rfm_segments(hand.transactions(), as_of=hand.AS_OF).set_index("customer_id")
    assert seg["r_score"].to_dict() == {"A": 4, "B": 1, "C": 2, "D": 3, "E": 5}
    assert seg["f_score"].to_dict() == {"A": 5, "B": 2, "C": 5, "D": 2, "E": 3}
    # "45" loyal, "12" hibernating, "25" cannot_lose, "32" about_to_sleep, "53" potential_loyalists
    assert seg["segment"].to_dict() == {"A": "loyal", "B": "hibernating", "C": "cannot_lose",
                                        "D": "about_to_sleep", "E": "potential_loyalists"}


def test_funnel_conversion_by_hand():
    leads = pd.DataFrame(hand.LEADS)
    # furthest stage: L1 won, L2 opportunity, L3 qualified, L4 lead, L5 lost (= lead), L6 qualified (case),
    # L7 opportunity (history), L8 qualified then lost -> reached: lead 8, qualified 6, opportunity 3, won 1
    f = funnel_conversion(leads, ["lead", "qualified", "opportunity", "won"], ["lost"])
    assert f["leads"].tolist() == [8, 6, 3, 1]
    np.testing.assert_allclose(f["conversion_from_previous"], [np.nan, 6 / 8, 3 / 6, 1 / 3])
    np.testing.assert_allclose(f["conversion_from_first"], [1, 0.75, 0.375, 0.125])


def test_unknown_funnel_stage_is_named():
    leads = pd.DataFrame({"lead_id": ["L1", "L2"], "stage": ["lead", "negotiation"]})
    leads.attrs["source"] = "leads.csv"
    with pytest.raises(DataError, match=r"leads\.csv: column 'stage': unknown stage 'negotiation'.*L2"):
        funnel_conversion(leads, ["lead", "won"], ["lost"])


def test_bgnbd_clv_from_a_bundle_equals_the_fit_and_the_new_customer_value(tmp_path):
    from crmlab.clv.pipeline import ClvSettings, ClvWindow, export_bundle, fit_models
    from crmlab.data.io import load_cdnow
    from crmlab.features import rfm_summary

    tx = load_cdnow()
    tx = tx[tx["customer_id"].astype(int) % 10 == 0]  # 2,357 customers
    as_of = date(1998, 6, 30)
    cfg = load_config(None, [f"project.output.models_dir={tmp_path / 'models'}", "kpis.clv_source=fit"])
    fitted = bgnbd_clv(cfg, tx, as_of=as_of)
    # export the same models as a bundle; 'auto' must then score with it and give the same numbers
    settings = ClvSettings.from_config(cfg.clv, cfg.project)
    models = fit_models(rfm_summary(tx, as_of=as_of, time_unit="W"), cfg.clv)
    window = ClvWindow(date(1997, 1, 1), as_of, as_of, None, date(1997, 9, 30), date(1998, 6, 30), "W")
    export_bundle(tmp_path / "models" / "clv", models, settings, window, metrics={}, config_digest="x")
    from_bundle = bgnbd_clv(load_config(None, [f"project.output.models_dir={tmp_path / 'models'}"]), tx, as_of=as_of)
    assert from_bundle.source.startswith("bundle") and fitted.source.startswith("bgnbd")
    np.testing.assert_allclose(from_bundle.scores["clv"], fitted.scores["clv"], rtol=1e-9)
    assert len(fitted.scores) == tx["customer_id"].nunique()
    # a new customer's value, by the unconditional E[X(t)] of BG/NBD instead of the conditional at T = 0:
    # mean spend p v / (q - 1) x sum over months i of (E[X(i)] - E[X(i-1)]) / 1.01^i
    months = np.arange(0, 13) * UNITS_PER_MONTH["W"]
    ex = models.transaction.expected_purchases_new(months)
    by_hand = models.spend.population_mean_spend * np.sum(np.diff(ex) / 1.01 ** np.arange(1, 13))
    assert fitted.new_customer == pytest.approx(by_hand, rel=1e-6)
    k = compute_kpis(cfg, tx, as_of=as_of)
    assert k.value("bgnbd_clv_new_customer") == pytest.approx(k.value("aov") + by_hand, rel=1e-6)
    assert k.value("bgnbd_clv_mean") == pytest.approx(fitted.scores["clv"].mean())


def test_kpis_command_writes_tables_and_logs_a_run(tmp_path, tracking, capsys):
    sets = hand.write_hand_data(tmp_path / "data")
    sets += [f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
             "project.tracking.experiment=test", "kpis.clv_source=none", "project.cleaning.max_date=2030-01-01"]
    args = [a for s in sets for a in ("--set", s)]
    code = main([*args, "kpis", "--out", str(tmp_path / "k"), "--period", "M", "--format", "parquet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "5 customers, 10 orders" in out and "funnel lead -> won: 8 leads, 12.5% converted" in out
    names = {p.name for p in (tmp_path / "k").iterdir()}
    assert names == {"kpis_by_period.parquet", "kpis_overall.parquet", "cohort_retention.parquet",
                     "revenue_by_segment.parquet", "cac_by_channel.parquet", "funnel.parquet",
                     "lifecycle_stages.parquet"}
    bp = pd.read_parquet(tmp_path / "k" / "kpis_by_period.parquet")
    np.testing.assert_allclose(bp["cac"], [30, 40, 80])  # the spend table wins over the customers column
    runs = mlflow.search_runs(experiment_names=["test"], filter_string="tags.`crmlab.pipeline` = 'kpis'")
    assert len(runs) == 1
    assert runs["metrics.kpi_active_customers"].iloc[0] == 5
    assert runs["metrics.kpi_retention_rate"].iloc[0] == pytest.approx(0.6)


def test_a_purchase_log_built_once_gives_the_same_tables_in_any_period():
    from crmlab.kpis import PurchaseLog

    tx = hand.transactions()
    weekly = PurchaseLog.from_transactions(tx, as_of=hand.AS_OF, period="W")
    pd.testing.assert_frame_equal(cohort_retention(weekly, as_of=hand.AS_OF, period="M"),
                                  cohort_retention(tx, as_of=hand.AS_OF, period="M"))
    pd.testing.assert_frame_equal(period_kpis(weekly, as_of=hand.AS_OF, period="Q"),
                                  period_kpis(tx, as_of=hand.AS_OF, period="Q"))
    with pytest.raises(ValueError, match="as_of"):
        period_kpis(weekly, as_of=date(2024, 2, 29))
