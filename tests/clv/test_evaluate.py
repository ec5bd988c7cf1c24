from __future__ import annotations

import numpy as np
import pytest

from crmlab.clv.evaluate import conditional_expectation_table, normalised_gini, point_metrics, top_decile_capture


def test_point_metrics_by_hand():
    m = point_metrics(np.array([0, 1, 2, 5]), np.array([0.5, 1.0, 1.0, 4.0]))
    assert m["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["total_pct_error"] == pytest.approx(100 * (6.5 - 8) / 8)
    assert m["spearman"] == pytest.approx(0.9486832980505138)


def test_conditional_expectation_table_groups_7_plus():
    f = np.array([0, 0, 1, 7, 9, 12])
    t = conditional_expectation_table(f, np.array([0, 1, 2, 3, 5, 7]), np.array([0.5, 0.5, 1, 4, 4, 4]))
    assert list(t["label"]) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert t.loc[0, "actual"] == 0.5 and t.loc[0, "customers"] == 2
    assert t.loc[7, "actual"] == pytest.approx(5.0) and t.loc[7, "customers"] == 3
    assert t.loc[3, "customers"] == 0


def test_top_decile_and_gini():
    actual = np.array([100.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert top_decile_capture(actual, actual) == 1.0
    assert top_decile_capture(actual, -actual) == 0.0
    rng = np.random.default_rng(0)
    a = rng.gamma(1.0, 10.0, 5000)
    assert normalised_gini(a, a) == pytest.approx(1.0)
    assert normalised_gini(a, -a) == pytest.approx(-1.0, abs=0.01)
    assert abs(normalised_gini(a, rng.random(5000))) < 0.05
    assert 0.3 < normalised_gini(a, a + rng.normal(0, 10, 5000)) < 0.95
