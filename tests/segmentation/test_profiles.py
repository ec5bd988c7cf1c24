"""Profiles, names derived from them, the RFM baseline and the migration matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.features import build_features
from crmlab.segmentation import RfmScorer, migration_matrix, name_segments, percentile_profile, profile_segments
from crmlab.segmentation.pipeline import purchasers

from .test_models import AS_OF, FEATURES, simulate_groups


@pytest.fixture(scope="module")
def base_and_truth():
    # as in most customer bases, the lapsed customers are the majority
    tx, truth = simulate_groups((100, 400, 100), seed=2)
    base = purchasers(build_features(tx, as_of=AS_OF))
    return base, truth.reindex(base["customer_id"]).to_numpy()


def test_names_come_from_the_profiles(base_and_truth):
    base, truth = base_and_truth
    names = name_segments(percentile_profile(base, truth, FEATURES, 3))
    assert names[0] == "champions"  # recent, frequent, big spenders
    assert names[1] == "hibernating"  # a single small purchase long ago
    assert names[2] == "new"  # a single purchase, days ago
    # another order of the same groups gets the same names
    perm = np.array([2, 0, 1])  # group g becomes segment perm[g]
    assert name_segments(percentile_profile(base, perm[truth], FEATURES, 3)) == [names[1], names[2], names[0]]


def test_clashing_names_are_told_apart_by_money():
    ranks = pd.DataFrame({"recency_days": [0.1, 0.1, 0.9], "frequency": [0.9, 0.9, 0.1],
                          "monetary_value": [0.9, 0.5, 0.2]})
    assert name_segments(ranks) == ["champions_high_value", "champions_low_value", "hibernating"]


def test_without_rfm_features_the_most_distinctive_features_name_a_segment():
    ranks = pd.DataFrame({"tenure_days": [0.9, 0.2], "txn_count_90d": [0.45, 0.8]})
    assert name_segments(ranks) == ["high_tenure_days_lower_txn_count_90d", "high_txn_count_90d_low_tenure_days"]


def test_profiles_sizes_shares_medians_and_lifts(base_and_truth):
    base, truth = base_and_truth
    prof = profile_segments(base, truth, FEATURES, ["a", "b", "c"], revenue="amount_sum_total")
    assert prof["customers"].tolist() == [100, 400, 100]
    assert prof["share"].sum() == pytest.approx(1.0) and prof["revenue_share"].sum() == pytest.approx(1.0)
    assert prof.loc[0, "revenue_share"] > 0.9  # the champions bring the money
    medians = base.groupby(truth)["recency_days"].median()
    assert prof["recency_days"].tolist() == medians.tolist()
    assert prof["lift_recency_days"].tolist() == pytest.approx((medians / base["recency_days"].median()).tolist())


def test_rfm_scores_match_the_training_quintiles_and_do_not_depend_on_other_rows(base_and_truth):
    base, _ = base_and_truth
    scorer = RfmScorer("amount_sum_total").fit(base)
    scores = scorer.score(base)
    pct = base["frequency"].rank(pct=True, method="average")
    assert (scores["f_score"] == np.clip(np.ceil(pct * 5), 1, 5)).all()
    assert scores["r_score"].between(1, 5).all() and scores["m_score"].between(1, 5).all()
    alone = pd.concat([scorer.score(base.iloc[[i]]) for i in (0, 250, 599)], ignore_index=True)
    pd.testing.assert_frame_equal(alone, scores.iloc[[0, 250, 599]].reset_index(drop=True))
    assert set(scores["segment"]) <= {"champions", "loyal", "potential_loyalists", "new", "promising",
                                      "needs_attention", "about_to_sleep", "cannot_lose", "at_risk", "hibernating",
                                      "other"}
    none = scorer.score(base.head(1).assign(recency_days=np.nan))
    assert none["segment"].item() == "no_purchase" and none["r_score"].item() == 0


def test_migration_matrix_counts_add_up():
    before = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "segment_name": ["new", "new", "loyal", "loyal"]})
    after = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e"],
                          "segment_name": ["loyal", "new", "loyal", "hibernating", "new"]})
    m = migration_matrix(before, after)
    assert m.to_numpy().sum() == 5
    assert m.sum(axis=1).to_dict() == {"new": 2, "loyal": 2, "not_a_customer": 1}
    assert m.sum(axis=0).to_dict() == {"new": 2, "loyal": 2, "hibernating": 1}
    assert m.loc["new", "loyal"] == 1 and m.loc["loyal", "hibernating"] == 1 and m.loc["not_a_customer", "new"] == 1
