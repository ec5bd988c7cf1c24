"""Survey features (crmlab.features.surveys): worked out by hand, and no answer after the cut-off can
change them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlab.features import build_features


def _surveys(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "ts": pd.to_datetime([r[1] for r in rows]),
                         "score": [float(r[2]) for r in rows], "scale": [r[3] for r in rows]})


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


def test_a_contract_table_gets_the_survey_features_of_answers_up_to_its_cut_off():
    from crmlab.churn.data import make_contract_dataset

    rng = np.random.default_rng(0)
    customers = pd.DataFrame({"customer_id": [f"k{i}" for i in range(40)], "plan": rng.choice(["a", "b"], 40),
                              "churn": ["Yes", "No"] * 20})
    surveys = _surveys([("k0", "2024-02-01", 2, "nps"), ("k1", "2024-02-01", 10, "nps"), ("k1", "2024-03-01", 8, "nps")])
    ds = make_contract_dataset(customers, as_of="2024-03-31", surveys=surveys, test_size=0.25, seed=1)
    X = pd.concat([ds.X_train.assign(id=ds.ids_train.to_numpy()), ds.X_valid.assign(id=ds.ids_valid.to_numpy())])
    X = X.set_index("id")
    assert (X.loc["k0", "survey_last_score"], X.loc["k0", "survey_detractor"]) == (2, 1)
    assert (X.loc["k1", "survey_count"], X.loc["k1", "survey_score_trend"]) == (2, -2)
    assert X.loc["k2", "survey_count"] == 0
    # an answer after the cut-off changes nothing
    later = pd.concat([surveys, _surveys([("k2", "2024-04-01", 0, "nps")])], ignore_index=True)
    again = make_contract_dataset(customers, as_of="2024-03-31", surveys=later, test_size=0.25, seed=1)
    pd.testing.assert_frame_equal(again.X_train, ds.X_train)
    pd.testing.assert_frame_equal(again.X_valid, ds.X_valid)
