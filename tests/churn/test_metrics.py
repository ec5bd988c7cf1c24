"""Metrics and thresholds against small examples worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from crmlab.churn import metrics as m

# 10 customers, scores descending; churners at ranks 1, 2, 4, 7
Y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_lift_and_recall_at_top_k():
    # top 10% = 1 customer, a churner: rate 1 / overall 0.4 = 2.5; recall 1/4
    assert m.lift_at(Y, S, 10) == pytest.approx(2.5)
    assert m.recall_at(Y, S, 10) == pytest.approx(0.25)
    # top 30% = 3 customers, 2 churners: lift (2/3)/0.4, recall 2/4
    assert m.lift_at(Y, S, 30) == pytest.approx((2 / 3) / 0.4)
    assert m.recall_at(Y, S, 30) == pytest.approx(0.5)


def test_classification_metrics_by_hand():
    out = m.classification_metrics(Y, S)
    # pairs (churner, non-churner) ranked right: 6 + 6 + 5 + 3 = 20 of 24
    assert out["roc_auc"] == pytest.approx(20 / 24)
    # average precision: precision at each churner = 1, 1, 3/4, 4/7
    assert out["pr_auc"] == pytest.approx((1 + 1 + 0.75 + 4 / 7) / 4)
    assert out["brier"] == pytest.approx(np.mean((S - Y) ** 2))
    assert out["log_loss"] == pytest.approx(-np.mean(Y * np.log(S) + (1 - Y) * np.log(1 - S)))


def test_best_f1_threshold_by_hand():
    # calling the top 4 churn: precision 3/4, recall 3/4, F1 0.75; top 2: 2/3 F1 (P 1, R .5); top 7: 8/11
    threshold, f1 = m.best_f1_threshold(Y, S)
    assert threshold == pytest.approx(0.6) and f1 == pytest.approx(0.75)


def test_capacity_threshold_is_the_lowest_score_in_the_top_k():
    assert m.capacity_threshold(S, 20) == pytest.approx(0.8)
    assert m.top_k_mask(S, 25).sum() == 3  # ceil(2.5)


def test_expected_profit_formula():
    # p * save_rate * value - cost: 0.5 * 0.4 * 100 - 10 = 10; 0.1 * 0.4 * 100 - 10 = -6
    p, value = np.array([0.5, 0.1, 0.3]), np.array([100.0, 100.0, 50.0])
    got = m.expected_profit(p, value, offer_cost=10, save_rate=0.4)
    assert got == pytest.approx([10.0, -6.0, -4.0])
    assert m.profit_targets(p, value, offer_cost=10, save_rate=0.4).tolist() == [True, False, False]
    # on outcomes: target the first two; one churner saved with rate 0.4 -> 0.4 * 100 - 2 * 10 = 20
    assert m.realised_profit([1, 0, 1], [True, True, False], value, offer_cost=10, save_rate=0.4) == pytest.approx(20)


def test_risk_tiers_edges_go_up():
    tiers = m.risk_tiers([0.1, 0.3, 0.59, 0.6, 0.95])
    assert list(tiers) == ["low", "medium", "medium", "high", "high"]
    assert tiers.ordered


def test_calibration_table_counts_and_rates():
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.8, 0.8, 0.9, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    table = m.calibration_table(y, p, n_bins=2, strategy="uniform")
    assert table["n"].tolist() == [4, 4]
    assert table["observed_rate"].tolist() == pytest.approx([0.25, 0.75])
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.85])
    assert table["n"].sum() == len(y)


# --------------------------------------------------------------------------- DeLong


def test_delong_variance_of_a_four_row_example_worked_by_hand():
    # churners score 0.9 and 0.4, non-churners 0.5 and 0.1: AUC 3/4. Structural components:
    # churners beat 2/2 and 1/2 non-churners (V10 = 1, 0.5), non-churners are beaten by 1/2 and 2/2
    # churners (V01 = 0.5, 1). Var(AUC) = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2 = 0.125.
    # Against a constant score (AUC 1/2, components all 1/2, no variance) the difference's
    # variance is that of the first AUC alone.
    y, a = np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])
    out = m.compare_auc(y, a, np.full(4, 0.3))
    assert out["auc_a"] == pytest.approx(0.75) and out["auc_b"] == pytest.approx(0.5)
    assert out["diff"] == pytest.approx(0.25)
    assert out["se"] == pytest.approx(np.sqrt(0.125))
    assert out["low"] == pytest.approx(0.25 - 1.959964 * np.sqrt(0.125), abs=1e-6)
    same = m.compare_auc(y, a, a)
    assert same["diff"] == 0 and same["se"] == 0 and same["p_value"] == 1


def _two_scores(rng, n, signal_a, signal_b):
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(size=n)  # both models see a common part, so their AUCs are correlated
    a = signal_a * y + shared + 0.7 * rng.normal(size=n)
    b = signal_b * y + shared + 0.7 * rng.normal(size=n)
    return y, a, b


def test_delong_standard_error_matches_a_paired_bootstrap():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y, a, b = _two_scores(rng, 3000, 1.0, 0.8)
    out = m.compare_auc(y, a, b)
    boot = []
    for _ in range(400):
        i = rng.integers(0, y.size, y.size)
        boot.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert out["se"] == pytest.approx(np.std(boot), rel=0.15)
    assert out["diff"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert out["low"] > 0 and out["p_value"] < 0.01  # the stronger signal is found


def test_delong_test_holds_its_level_when_two_models_are_equally_good():
    rng = np.random.default_rng(11)
    p = np.array([m.compare_auc(*_two_scores(rng, 400, 0.8, 0.8))["p_value"] for _ in range(400)])
    # under "no difference" p is uniform: ~5% below 0.05 (binomial sd 1.1% over 400 runs)
    assert 0.02 < np.mean(p < 0.05) < 0.09
    assert 0.4 < np.mean(p) < 0.6


def test_compare_auc_rejects_a_single_class():
    with pytest.raises(ValueError, match="both classes"):
        m.compare_auc(np.ones(5), np.arange(5.0), np.arange(5.0))
