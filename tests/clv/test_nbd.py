"""The NBD purchase model (no dropout) that a small log falls back to, against references: the limit of
lifetimes' BG/NBD as a -> 0, the moment property of its maximum-likelihood fit, simulated data with
known parameters and closed forms worked by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from crmlab.clv import SpendModel, TransactionModel, customer_lifetime_value
from crmlab.clv.purchase import _bgnbd_loglik, _nbd_loglik
from crmlab.clv.shared import Rows as _Rows
from crmlab.data.io import load_cdnow_sample_summary

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter


@pytest.fixture(scope="module")
def rfm():
    df = load_cdnow_sample_summary()
    return tuple(df[c].to_numpy(np.float64) for c in ("frequency", "recency", "T", "monetary_value"))


def test_nbd_likelihood_is_the_bgnbd_limit_as_a_goes_to_zero(rfm):
    f, r, T, _ = rfm
    rows = _Rows.build(f, (r, T), np.ones_like(f))
    nbd, grad = _nbd_loglik(np.array([0.25, 4.4]), rows, grad=True)
    bg, _ = _bgnbd_loglik(np.array([0.25, 4.4, 1e-60, 2.4]), rows, grad=False)
    assert nbd == pytest.approx(bg, abs=1e-6)
    # (a tiny a: the dropout term a (alpha+T)^(r+x) / (alpha+t_x)^(r+x) grows with x)
    # the analytic gradient agrees with central differences
    for k in range(2):
        e = np.zeros(2)
        e[k] = 1e-6
        hi, _ = _nbd_loglik(np.array([0.25, 4.4]) + e, rows, grad=False)
        lo, _ = _nbd_loglik(np.array([0.25, 4.4]) - e, rows, grad=False)
        assert grad[k] == pytest.approx((hi - lo) / 2e-6, rel=1e-5)


def test_nbd_predictions_equal_lifetimes_bgnbd_without_dropout(rfm):
    f, r, T, _ = rfm
    model = TransactionModel("nbd").fit(f, r, T)
    p = model.params_
    bgf = BetaGeoFitter()
    bgf.params_ = __import__("pandas").Series({"r": p["r"], "alpha": p["alpha"], "a": 1e-60, "b": 2.0})
    assert_allclose(model.predict_purchases(39.0, f, r, T),
                    bgf.conditional_expected_number_of_purchases_up_to_time(39.0, f, r, T), rtol=1e-6)
    assert_allclose(model.probability_alive(f, r, T), bgf.conditional_probability_alive(f, r, T), atol=1e-8)
    assert_allclose(model.expected_purchases_new(np.array([10.0, 52.0])),
                    bgf.expected_number_of_purchases_up_to_time(np.array([10.0, 52.0])), rtol=1e-6)
    # on CDNOW, where customers do drop out, BG/NBD fits much better than NBD
    assert TransactionModel().fit(f, r, T).report_["log_likelihood"] > model.report_["log_likelihood"] + 100


def test_nbd_fit_matches_the_sample_mean_when_every_customer_has_the_same_T():
    """The maximum-likelihood NBD reproduces the mean count: r / alpha * T = mean(x) (worked by hand from
    d LL / d alpha = 0: n r / alpha = sum (r + x) / (alpha + T))."""
    rng = np.random.default_rng(1)
    x = rng.negative_binomial(2, 0.3, size=2000).astype(float)
    T = np.full(x.size, 30.0)
    recency = np.where(x > 0, rng.uniform(0, 30, x.size), 0.0)
    p = TransactionModel("nbd").fit(x, recency, T).params_
    assert p["r"] / p["alpha"] * 30.0 == pytest.approx(x.mean(), rel=1e-6)
    # and the count distribution NB(r, alpha / (alpha + T)) it was drawn from: r = 2, alpha / (alpha + 30) = 0.3
    assert p["r"] == pytest.approx(2.0, rel=0.15)
    assert p["alpha"] / (p["alpha"] + 30.0) == pytest.approx(0.3, rel=0.1)


def test_nbd_recovers_simulated_parameters():
    """Gamma(r = 0.8, alpha = 4)-mixed Poisson purchases over ages of 20-52 weeks, nobody dropping out."""
    rng = np.random.default_rng(7)
    n = 6000
    T = rng.uniform(20, 52, n)
    lam = rng.gamma(0.8, 1 / 4.0, n)
    x = rng.poisson(lam * T).astype(float)
    recency = np.array([T_i * rng.uniform(size=int(k)).max() if k else 0.0 for T_i, k in zip(T, x)])
    model = TransactionModel("nbd").fit(x, recency, T)
    assert model.params_["r"] == pytest.approx(0.8, rel=0.1)
    assert model.params_["alpha"] == pytest.approx(4.0, rel=0.15)
    se = model.report_["std_errors"]
    assert abs(model.params_["r"] - 0.8) < 3 * se["r"] and abs(model.params_["alpha"] - 4.0) < 3 * se["alpha"]


def test_nbd_closed_forms_and_clv_by_hand():
    model = TransactionModel.from_dict({"model": "TransactionModel", "version": 1, "kind": "nbd",
                                        "params": {"r": 1.0, "alpha": 2.0}})
    # a customer with x = 2 repeat purchases at age T = 10: posterior rate gamma(3, 12), 3/12 per week
    assert model.predict_purchases(8.0, [2.0], [7.0], [10.0])[0] == pytest.approx(2.0)
    assert model.probability_alive([2.0, 0.0], [7.0, 0.0], [10.0, 4.0]).tolist() == [1.0, 1.0]
    assert model.expected_purchases_new(6.0) == pytest.approx(3.0)  # r t / alpha
    spend = SpendModel.from_dict({"model": "SpendModel", "version": 1, "kind": "mean", "params": {"mean": 50.0}})
    assert spend.conditional_expected_spend([0.0, 3.0], [0.0, 500.0]).tolist() == [50.0, 50.0]
    # CLV over 2 months of W units: each month 30.4375 / 7 weeks of 0.25 purchases a week at 50, discounted
    month = 30.4375 / 7
    expected = 50.0 * sum(0.25 * month / 1.01**i for i in (1, 2))
    clv = customer_lifetime_value(model, spend, [2.0], [7.0], [10.0], [80.0], horizon_months=2,
                                  discount_rate_monthly=0.01, time_unit="W")
    assert clv[0] == pytest.approx(expected)
    # pickle-free round trip
    assert TransactionModel.from_dict(model.to_dict()).params_ == model.params_
    assert SpendModel.from_dict(spend.to_dict()).kind == "mean"
