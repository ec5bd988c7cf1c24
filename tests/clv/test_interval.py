"""Per-customer CLV intervals (delta method): a hand-worked gradient, nominal coverage of the true
expected value on data simulated from known BG/NBD parameters, and widths that shrink with the data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from crmlab.clv.interval import clv_bounds, purchase_log_variance, purchase_paths, spend_log_variance
from crmlab.clv.models import SpendModel, TransactionModel
from crmlab.clv.result import ClvSettings
from crmlab.errors import ModelError

from .test_models import simulate_bgnbd

TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005a's CDNOW estimates
UPM = 30.4375 / 7.0
Z80 = norm.ppf(0.9)


def _nbd(cov) -> TransactionModel:
    model = TransactionModel("nbd")
    model.params_ = {"r": 0.5, "alpha": 10.0}
    model.report_ = {"log_param_cov": cov}
    return model


def test_nbd_variance_by_hand():
    # NBD: E[X(t)] = (r + x) / (alpha + T) t, so d log CLV / d log r = r / (r + x) = 0.5 / 2.5 = 0.2 and
    # d log CLV / d log alpha = -alpha / (alpha + T) = -10 / 30 for x = 2, T = 20; with the covariance
    # below, var = 0.2^2 0.04 + 2 (0.2)(-1/3)(0.01) + (1/3)^2 0.09 = 0.0102667
    model = _nbd([[0.04, 0.01], [0.01, 0.09]])
    x, tx, T = np.array([2.0]), np.array([15.0]), np.array([20.0])
    var = purchase_log_variance(model, x, tx, T, ClvSettings(), UPM)
    assert var[0] == pytest.approx(0.04 * 0.04 - 2 * 0.2 * 0.01 / 3 + 0.09 / 9, rel=1e-6)
    # a blend half LightGBM, which predicts the same: half the purchases move with the parameters
    E, _ = purchase_paths("nbd", model.params_, x, tx, T, horizon_months=12, units_per_month=UPM,
                          discount_rate_monthly=0.01)
    blend = purchase_log_variance(model, x, tx, T, ClvSettings(), UPM, weight=0.5, challenger=E)
    assert blend[0] == pytest.approx(0.25 * var[0], rel=1e-6)
    # the interval: CLV exp(-+z sd), z = 1.2816 for 80%
    low, high = clv_bounds(np.array([100.0]), var, np.zeros(1), 0.8)
    assert (low[0], high[0]) == pytest.approx((100 * np.exp(-Z80 * np.sqrt(var[0])), 100 * np.exp(Z80 * np.sqrt(var[0]))))
    with pytest.raises(ModelError, match="between 0 and 1"):
        clv_bounds(np.array([1.0]), var, np.zeros(1), 1.5)


def test_mean_spend_variance_and_an_old_bundle_without_covariance():
    spend = SpendModel(kind="mean").fit(np.array([1.0, 2, 3, 0]), np.array([10.0, 20, 30, 0]))
    # var(log mean) = var(spend) / (n mean^2) = (200 / 3) / (3 * 400)
    assert spend_log_variance(spend, np.array([0.0, 1]), np.array([0.0, 5]))[0] == pytest.approx(200 / 3 / 1200)
    model = _nbd(None)
    model.report_ = {}
    assert np.isnan(purchase_log_variance(model, np.array([1.0]), np.array([1.0]), np.array([2.0]), ClvSettings(), UPM)).all()


def test_intervals_cover_the_true_expected_value_at_the_nominal_rate():
    """200 customer bases of 2,000 simulated from known BG/NBD parameters: the 80% intervals of the
    parameters and of the discounted 12-month purchases of five probe customers (computed with the
    true parameters) cover the truth about 80% of the time."""
    probes = np.array([[0, 0, 40], [1, 5, 40], [3, 30, 40], [6, 38, 40], [2, 4, 40]], dtype=float)
    x, tx, T = probes.T
    kw = {"horizon_months": 12, "units_per_month": UPM, "discount_rate_monthly": 0.01}
    _, truth = purchase_paths("bgnbd", TRUE, x, tx, T, **kw)
    params_in, clv_in = [], []
    for rep in range(200):
        f, r, age = simulate_bgnbd(2000, *TRUE.values(), np.random.default_rng(100 + rep), t_range=(20.0, 60.0))
        model = TransactionModel("bgnbd").fit(f, r, age)
        se = np.sqrt(np.diag(np.array(model.report_["log_param_cov"])))
        params_in.append(np.abs(np.log([model.params_[k] / v for k, v in TRUE.items()])) < Z80 * se)
        _, fitted = purchase_paths("bgnbd", model.params_, x, tx, T, **kw)
        low, high = clv_bounds(fitted, purchase_log_variance(model, x, tx, T, ClvSettings(), UPM), np.zeros(5), 0.8)
        clv_in.append((low < truth) & (truth < high))
    assert 0.74 < np.mean(params_in) < 0.86
    assert 0.74 < np.mean(clv_in) < 0.86
    assert np.all(np.mean(clv_in, axis=0) > 0.7)  # every probe, not only on average


def test_intervals_shrink_as_the_customer_base_grows():
    rng = np.random.default_rng(7)
    probes = (np.array([0.0, 2, 5]), np.array([0.0, 10, 35]), np.array([40.0, 40, 40]))
    widths = {}
    for n in (1000, 16000):
        f, r, age = simulate_bgnbd(n, *TRUE.values(), rng, t_range=(20.0, 60.0))
        model = TransactionModel("bgnbd").fit(f, r, age)
        widths[n] = np.sqrt(purchase_log_variance(model, *probes, ClvSettings(), UPM))
    ratio = widths[1000] / widths[16000]
    assert np.all((2.5 < ratio) & (ratio < 6.5))  # about sqrt(16) = 4
