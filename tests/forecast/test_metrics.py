"""Accuracy metrics pinned on a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crmlab.forecast.metrics import point_metrics, scale_lag, scales


def test_metrics_on_a_worked_example():
    # training 1, 2, 3, 4: naive differences all 1 -> MAE scale 1, MSE scale 1
    s, s2 = scales(np.array([np.nan, 1.0, 2.0, 3.0, 4.0]), season_length=12)
    assert (s, s2) == (1.0, 1.0)
    # actual 5, 6; forecast 4, 8: errors -1, +2
    m = point_metrics(np.array([5.0, 6.0]), np.array([4.0, 8.0]), np.ones(2), np.ones(2))
    assert m["mase"] == pytest.approx(1.5)
    assert m["rmsse"] == pytest.approx(math.sqrt(2.5))
    assert m["smape"] == pytest.approx((200 / 9 + 400 / 14) / 2)  # 25.397
    assert m["wape"] == pytest.approx(3 / 11)
    assert m["bias"] == pytest.approx(1 / 11)
    assert m["rmse"] == pytest.approx(math.sqrt(2.5))


def test_mase_averages_scaled_errors_per_series_and_origin():
    # series A: scale 2, |e| = 2 -> 1; series B: scale 10, |e| = 5 -> 0.5; MASE = mean = 0.75
    m = point_metrics(np.array([10.0, 100.0]), np.array([12.0, 95.0]), np.array([2.0, 10.0]),
                      np.array([4.0, 100.0]), group=np.array(["A", "B"]))
    assert m["mase"] == pytest.approx(0.75)
    assert m["rmsse"] == pytest.approx(0.75)


def test_seasonal_scale_needs_two_seasons():
    y = np.array([1.0, 5.0, 1.0, 5.0, 2.0, 6.0, 2.0, 6.0])
    assert scale_lag(len(y), 4) == 4 and scale_lag(7, 4) == 1
    assert scales(y, 4) == (1.0, 1.0)  # y[t] - y[t-4] = 1 everywhere
    flat = scales(np.array([3.0, 3.0, 3.0]), 1)
    assert flat == (3.0, 9.0)  # a flat history falls back to its level
