"""Satisfaction: NPS and CSAT worked out by hand with their intervals, the surveys table cleaned like the
others (bad scores to the rejects), survey features that no future answer can change, the synthetic
surveys tied to churn, and the tables in crmlab kpis and the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crmlab.config import CleaningConfig, load_config
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables
from crmlab.features import build_features
from crmlab.satisfaction import csat_figure, nps_figure, satisfaction_table, wilson_interval

TEN = [10, 10, 9, 9, 9, 8, 7, 6, 3, 0]


def test_nps_of_ten_answers_by_hand():
    # 5 promoters (9-10), 2 passives, 3 detractors (0-6): NPS = 100 (0.5 - 0.3) = 20 points;
    # Var = (0.5 + 0.3 - 0.2^2) / 10 = 0.076, so the 95% margin is 1.959964 x 100 x sqrt(0.076) = 54.03 points
    fig = nps_figure(TEN)
    assert fig["answers"] == 10 and fig["value"] == pytest.approx(20.0)
    assert fig["margin"] == pytest.approx(1.959964 * 100 * math.sqrt(0.076), rel=1e-6)
    assert (round(fig["margin"], 2), round(fig["low"], 2), round(fig["high"], 2)) == (54.03, -34.03, 74.03)
    assert (fig["top_share"], fig["bottom_share"]) == (0.5, 0.3)
    # at 90%, z = 1.644854
    assert nps_figure(TEN, level=0.9)["margin"] == pytest.approx(164.4854 * math.sqrt(0.076), rel=1e-6)
    # every answer a promoter: NPS 100, no spread, and the interval stays within [-100, 100]
    assert nps_figure([9, 10, 10])["low"] == 100.0


def test_csat_by_hand_with_wilson_interval():
    # 5 of 8 answers are 4-5: CSAT 0.625. Wilson at 95%, z^2 = 3.841459:
    # centre (0.625 + 3.841459/16) / (1 + 3.841459/8) = 0.584449,
    # half 1.959964 sqrt(0.625 x 0.375 / 8 + 3.841459 / 256) / 1.480182 = 0.278707
    fig = csat_figure([5, 5, 4, 4, 4, 3, 2, 1])
    assert fig["value"] == 0.625 and fig["bottom_share"] == 0.25
    assert (round(fig["low"], 4), round(fig["high"], 4)) == (0.3057, 0.8632)
    # no satisfied answer of 10: the interval is [0, z^2 / (n + z^2)] = [0, 0.2775], never below 0
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(3.841459 / 13.841459, rel=1e-6)


def _surveys(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "ts": pd.to_datetime([r[1] for r in rows]),
                         "score": [float(r[2]) for r in rows], "scale": [r[3] for r in rows]})


def test_satisfaction_table_by_period_stage_and_segment_with_small_n_notes():
    rows = [(f"c{i}", "2024-01-15", s, "nps") for i, s in enumerate(TEN)]
    rows += [("c0", "2024-02-10", 2, "nps"), ("c1", "2024-02-11", 10, "nps"), ("c0", "2024-06-01", 0, "nps")]
    rows += [("c2", "2024-02-01", 5, "csat"), ("c3", "2024-02-02", 2, "csat")]
    stages = pd.Series({"c0": "lapsed", "c1": "mature"} | {f"c{i}": "growing" for i in range(2, 10)})
    sat = satisfaction_table(_surveys(rows), as_of=pd.Timestamp("2024-03-31").date(), period="M", small_n=100,
                             stages=stages, stage_order=["growing", "mature", "lapsed"])
    by = sat.set_index(["by", "group", "metric"])
    # overall: the ten answers plus 2 and 10 in February (the June answer is after as_of)
    overall = by.loc[("overall", "all", "nps")]
    assert overall["answers"] == 12 and overall["value"] == pytest.approx(100 * (6 - 4) / 12)
    assert by.loc[("period", "2024-01", "nps"), "value"] == pytest.approx(20.0)
    assert by.loc[("period", "2024-01", "nps"), "note"] == "NPS of 10 answers: ±54 points"
    assert by.loc[("period", "2024-02", "csat"), "value"] == 0.5
    # by stage, each customer's latest NPS answer: c0's 2 (lapsed), c1's 10 (mature), 8 others' first answers
    assert by.loc[("lifecycle_stage", "lapsed", "nps"), "value"] == -100.0
    assert by.loc[("lifecycle_stage", "mature", "nps"), "value"] == 100.0
    growing = by.loc[("lifecycle_stage", "growing", "nps")]
    assert growing["answers"] == 8 and growing["value"] == pytest.approx(100 * (3 - 3) / 8)
    assert list(sat.loc[sat["by"] == "lifecycle_stage", "group"].unique()) == ["growing", "mature", "lapsed"]
    assert "segment" not in set(sat["by"])  # no segments given: no rows


def test_bad_survey_rows_go_to_the_rejects_with_a_reason_and_the_counts_add_up():
    raw = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e", "f", "g"],
                        "ts": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "x", "2024-01-06"],
                        "score": ["9", "11", "4.5", "-1", None, "3", "0"],
                        "kind": ["NPS", "nps", "nps", "nps", "nps", "nps", "nps"]})
    result = clean_tables(Tables(surveys=raw), CleaningConfig(), today=pd.Timestamp("2024-12-31").date())
    clean, rejects = result.tables.surveys, result.rejects["surveys"]
    assert clean["customer_id"].tolist() == ["a", "g"] and clean["scale"].tolist() == ["nps", "nps"]
    reasons = dict(zip(rejects["customer_id"], rejects["_reason"], strict=True))
    assert reasons["b"].startswith("score out of range: 11 (expected a whole number 0-10")
    assert reasons["c"].startswith("score out of range: 4.5") and reasons["d"].startswith("score out of range: -1")
    assert reasons["e"] == "missing score" and reasons["f"].startswith("unparseable date in ts")
    report = result.report.tables["surveys"]
    assert report.input_rows == report.clean_rows + report.rejected_rows == 7


def test_a_configured_csat_scale_rejects_scores_above_five_and_auto_decides_per_kind():
    raw = pd.DataFrame({"customer_id": list("abcdef"), "ts": ["2024-01-01"] * 6,
                        "score": ["4", "5", "7", "1", "3", "2"],
                        "kind": ["after_call", "after_call", "after_call", "delivery", "delivery", "csat_q1"]})
    today = pd.Timestamp("2024-12-31").date()
    csat = clean_tables(Tables(surveys=raw), CleaningConfig(), today=today, survey_scale="csat")
    assert csat.rejects["surveys"]["_reason"].tolist() == [
        "score out of range: 7 (expected a whole number 1-5, project.data.surveys.scale csat)"]
    auto = clean_tables(Tables(surveys=raw), CleaningConfig(), today=today)
    scale = dict(zip(auto.tables.surveys["customer_id"], auto.tables.surveys["scale"], strict=True))
    # after_call holds a 7: NPS; delivery only 1-5: CSAT; csat_q1 names its scale
    assert scale == {"a": "nps", "b": "nps", "c": "nps", "d": "csat", "e": "csat", "f": "csat"}
    assert any("kind 'delivery' (2 answers): csat" in n for n in auto.report.tables["surveys"].notes)


def test_survey_features_by_hand_and_a_future_answer_changes_nothing():
    tx = pd.DataFrame({"customer_id": ["a", "b", "c"], "ts": pd.to_datetime(["2024-01-01"] * 3),
                       "amount": [10.0, 20.0, 30.0]})
    surveys = _surveys([("a", "2024-02-01", 9, "nps"), ("a", "2024-03-01", 3, "nps"), ("a", "2024-03-01", 5, "nps"),
                        ("b", "2024-02-15", 5, "csat"), ("zz", "2024-02-15", 0, "nps")])
    as_of = "2024-03-31"
    feats = build_features(tx, as_of=as_of, surveys=surveys).set_index("customer_id")
    a, b, c = feats.loc["a"], feats.loc["b"], feats.loc["c"]
    # a: three answers, the latest (same day, later row) 5; trend 5 - mean(9, 3) = -1; a detractor (0-6)
    assert (a["survey_count"], a["survey_last_score"], a["survey_score_trend"], a["survey_detractor"]) == (3, 5, -1, 1)
    assert a["days_since_last_survey"] == 30
    # b: CSAT 5 is 10 on the 0-10 scale, not a detractor, no trend from one answer
    assert (b["survey_count"], b["survey_last_score"], b["survey_detractor"]) == (1, 10.0, 0)
    assert np.isnan(b["survey_score_trend"])
    assert c["survey_count"] == 0 and np.isnan(c["survey_last_score"]) and np.isnan(c["survey_detractor"])
    assert "zz" not in feats.index  # a respondent without a purchase is not added to the population
    # answers after the cut-off: a detractor for c, a promoter for a, on the next day and a year later
    future = pd.concat([surveys, _surveys([("c", "2024-04-01", 0, "nps"), ("a", "2025-01-01", 10, "nps")])],
                       ignore_index=True)
    pd.testing.assert_frame_equal(build_features(tx, as_of=as_of, surveys=future),
                                  build_features(tx, as_of=as_of, surveys=surveys))
    without = build_features(tx, as_of=as_of)
    assert not any(col.startswith("survey_") for col in without.columns)  # no table, no columns


def test_synthetic_surveys_leave_the_crm_as_it_was_and_detractors_churn_more():
    from crmlab.data.synth import generate_synthetic
    from crmlab.data.synth_surveys import synthetic_surveys

    data = generate_synthetic(1500, 5)
    before = data.transactions.copy()
    surveys = synthetic_surveys(data, seed=5)
    pd.testing.assert_frame_equal(data.transactions, before)
    pd.testing.assert_frame_equal(generate_synthetic(1500, 5).transactions, before)  # a survey stream of its own
    pd.testing.assert_frame_equal(synthetic_surveys(data, seed=5), surveys)  # seeded
    score = pd.to_numeric(surveys["score"], errors="coerce")
    valid = surveys[score.between(0, 10)].assign(score=score)
    last = valid.sort_values("ts").groupby("customer_id")["score"].last()
    dropped = data.truth.set_index("customer_id")["dropout_ts"].notna().reindex(last.index)
    churn_detractors, churn_others = dropped[last <= 6].mean(), dropped[last > 6].mean()
    assert churn_detractors > churn_others + 0.2, (churn_detractors, churn_others)
    assert (score > 10).any() and score.isna().any()  # a few dirty rows for the cleaner


def test_kpis_and_report_show_nps_and_lifecycle(tmp_path):
    from crmlab.data.synth import write_synthetic
    from crmlab.data.synth_surveys import write_synthetic_surveys
    from crmlab.report import write_report

    paths = write_synthetic(tmp_path / "synth", n_customers=300, seed=9)
    surveys = write_synthetic_surveys(tmp_path / "synth", n_customers=300, seed=9)
    cfg = load_config(None, [f"project.data.transactions.path={paths['transactions']}",
                             f"project.data.customers.path={paths['customers']}",
                             f"project.data.surveys.path={surveys}", "project.cleaning.max_date=2024-12-31",
                             "project.tracking.enabled=false", f"project.output.dir={tmp_path / 'out'}",
                             f"project.output.models_dir={tmp_path / 'models'}", "kpis.clv_source=none"])
    result = write_report(cfg, log_run=False)
    k = result.kpis
    sat = k.satisfaction
    overall = sat[(sat["by"] == "overall") & (sat["metric"] == "nps")].iloc[0]
    assert overall["low"] < overall["value"] < overall["high"] and overall["answers"] > 100
    assert {"overall", "period", "lifecycle_stage"} <= set(sat["by"])
    assert (tmp_path / "out" / "kpis" / "satisfaction.csv").is_file()
    assert (tmp_path / "out" / "kpis" / "lifecycle_stages.csv").is_file()
    assert any(line.startswith("NPS ") for line in k.summary())
    html = result.path.read_text()
    assert 'id="satisfaction"' in html and 'id="lifecycle"' in html and 'data-chart="satisfaction.png"' in html
