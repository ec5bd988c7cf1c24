"""The surveys table: cleaned like the other tables (bad scores to the rejects with a reason, the scale
decided per kind), and the synthetic surveys tied to churn."""

from __future__ import annotations

import pandas as pd

from crmlab.config import CleaningConfig
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables


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
