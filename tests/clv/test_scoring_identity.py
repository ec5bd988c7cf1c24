"""``score_rfm`` computes every purchase-model score once per distinct history and the spend
interval once per group of customers that share it: its numbers must be those of the public
methods called one by one (probability_alive, predict_purchases, conditional_expected_spend,
customer_lifetime_value, and central differences of shifted models for the interval), bit for bit."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from crmlab.clv import SpendModel, TransactionModel, customer_lifetime_value
from crmlab.clv.interval import STEP, clv_bounds, purchase_log_variance
from crmlab.clv.models import UNITS_PER_MONTH, score_rfm
from crmlab.clv.result import ClvModels, ClvSettings
from crmlab.data.io import load_cdnow
from crmlab.features import rfm_summary


@pytest.fixture(scope="module")
def rfm() -> pd.DataFrame:
    base = rfm_summary(load_cdnow(), as_of="1998-06-30", time_unit="W")
    rng = np.random.default_rng(3)
    big = pd.concat([base] * 3, ignore_index=True)
    big["customer_id"] = np.arange(len(big)).astype(str)
    big["recency"] = np.where(big["frequency"] > 0, big["recency"] * rng.uniform(0.5, 1.0, len(big)), 0.0)
    repeat = np.flatnonzero(big["frequency"].to_numpy() > 0)
    big.loc[repeat[::11], "monetary_value"] = 0.0  # repeat customers without a positive spend
    big.loc[repeat[5::13], "monetary_value"] = -4.0
    big.loc[[7, 19], ["frequency", "recency", "T", "monetary_value"]] = np.nan  # no purchase: missing scores
    return big


def _spend_log_variance_reference(model: SpendModel, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The interval's spend variance as it was computed before: shifted copies of the model."""
    cov = np.asarray(model.report_["log_param_cov"])
    grad = np.empty((x.size, 3))
    shifted = copy.copy(model)
    for j, name in enumerate(("p", "q", "v")):
        values = []
        for sign in (1.0, -1.0):
            shifted.params_ = {**model.params_, name: model.params_[name] * np.exp(sign * STEP)}
            with np.errstate(divide="ignore", invalid="ignore"):
                values.append(np.log(shifted.conditional_expected_spend(x, m)))
        grad[:, j] = (values[0] - values[1]) / (2 * STEP)
    return np.einsum("ij,jk,ik->i", np.nan_to_num(grad), cov, np.nan_to_num(grad))


@pytest.mark.parametrize("rule", ["exclude", "floor"])
def test_score_rfm_equals_the_methods_one_by_one(rfm, rule):
    ok = rfm["frequency"].notna().to_numpy()
    x, tx, T, m = (rfm[c].to_numpy()[ok] for c in ("frequency", "recency", "T", "monetary_value"))
    tm = TransactionModel("bgnbd").fit(x, tx, T)
    sm = SpendModel(spend_rule=rule).fit(x, m)
    settings = ClvSettings(horizon_months=12, discount_rate_monthly=0.01, margin=0.3, time_unit="W", interval=0.8)
    scores = score_rfm(ClvModels(tm, sm), rfm, settings)
    assert scores["p_alive"].isna().to_numpy().tolist() == (~ok).tolist()
    got = scores[ok]
    upm = UNITS_PER_MONTH["W"]
    clv = customer_lifetime_value(tm, sm, x, tx, T, m, horizon_months=12, discount_rate_monthly=0.01, margin=0.3)
    low, high = clv_bounds(clv, purchase_log_variance(tm, x, tx, T, settings, upm),
                           _spend_log_variance_reference(sm, x, m), 0.8)
    expected = {"p_alive": tm.probability_alive(x, tx, T),
                "expected_purchases": tm.predict_purchases(settings.horizon_units, x, tx, T),
                "expected_spend": sm.conditional_expected_spend(x, m), "clv": clv, "clv_low": low, "clv_high": high}
    for col, values in expected.items():
        np.testing.assert_array_equal(got[col].to_numpy(), values, err_msg=col)
    assert (got["clv_low"] < got["clv"]).all() and (got["clv"] < got["clv_high"]).all()
