"""The forecasters on series with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from crmlab.forecast.backtest import backtest, leaderboard, origin_indices
from crmlab.forecast.models import SeasonalNaive, forecaster_from_dict, make_forecaster

from .helpers import panel, seasonal_trend

MODELS = ("seasonal_naive", "ets", "arima", "lightgbm")


def _factories(season: int) -> dict:
    f = {n: (lambda n=n: make_forecaster(n, freq="M", season_length=season)) for n in MODELS}
    f["naive"] = lambda: SeasonalNaive(1)
    return f


@pytest.fixture(scope="module")
def seasonal_board():
    p = panel([seasonal_trend(48, season=4, seed=1)])
    bt = backtest(p, _factories(4), horizon=8, origins=origin_indices(48, 8, 3, 4), season_length=4)
    return leaderboard(bt).set_index("model")["mase"]


def test_models_beat_naive_on_seasonality_with_trend(seasonal_board):
    mase = seasonal_board
    for model in MODELS:
        assert mase[model] < mase["naive"], mase.to_dict()
    # the statistical models capture the trend as well: they beat seasonal naive too
    assert mase["ets"] < mase["seasonal_naive"] and mase["arima"] < mase["seasonal_naive"]


def test_seasonal_naive_recovers_the_season():
    y = np.tile([10.0, 50.0, 30.0, 0.0], 5)
    fc = SeasonalNaive(4).fit(panel([y])).predict(6)
    np.testing.assert_array_equal(fc[0], [10, 50, 30, 0, 10, 50])


def test_short_series_fall_back_to_naive_and_say_so():
    p = panel([[np.nan, np.nan, 4.0, 6.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    snaive = SeasonalNaive(12).fit(p)
    assert set(snaive.fallbacks_) == {"s0", "s1"} and "season_length=12" in snaive.fallbacks_["s0"]
    np.testing.assert_array_equal(snaive.predict(2), [[5, 5], [5, 5]])
    ets = make_forecaster("ets", freq="M", season_length=12).fit(p)
    assert "naive forecast" in ets.fallbacks_["s0"]


def test_no_negative_forecasts_on_falling_sales_with_zero_runs():
    y = np.concatenate([np.linspace(100, 5, 30), np.zeros(8), [3.0, 0.0, 1.0, 0.0]])
    p = panel([y, y[::-1]])
    for name in MODELS:
        fc = make_forecaster(name, freq="M", season_length=12).fit(p).predict(24)
        assert (fc >= 0).all(), name


@pytest.mark.parametrize("name", MODELS)
def test_fitted_state_reloads_to_the_same_forecast(name):
    p = panel([seasonal_trend(40, season=4, seed=3), seasonal_trend(40, season=4, seed=4, slope=0.5)])
    model = make_forecaster(name, freq="M", season_length=4).fit(p)
    text = model.model_text() if name == "lightgbm" else None
    again = forecaster_from_dict(model.to_dict(), p, text)
    np.testing.assert_allclose(again.predict(6), model.predict(6), rtol=1e-10)


def test_lightgbm_uses_known_covariates():
    rng = np.random.default_rng(0)
    promo = (rng.random((1, 64)) < 0.3).astype(float)
    promo[0, 60:] = [1, 0, 1, 0]
    y = 100 + 80 * promo[0, :60] + rng.normal(0, 2, 60)
    p = panel([y], covariates={"promo": promo}, n_future=4)
    model = make_forecaster("lightgbm", freq="M", season_length=12).fit(p)
    fc = model.predict(4)[0]
    on, off = fc[promo[0, 60:] == 1], fc[promo[0, 60:] == 0]
    assert "promo" in model.to_dict()["features"]
    assert on.min() > off.max() + 40
    with pytest.raises(Exception, match="known for 4 future"):
        model.predict(5)


def test_naive_repeats_the_last_value():
    fc = make_forecaster("naive", freq="W", season_length=52).fit(panel([[3.0, 9.0, 4.0]])).predict(3)
    np.testing.assert_array_equal(fc, [[4.0, 4.0, 4.0]])


def test_a_combination_is_the_weighted_mean_and_reloads_from_its_members_states():
    from crmlab.forecast.models import Combination

    p = panel([seasonal_trend(40, season=4, seed=3), seasonal_trend(40, season=4, seed=4, slope=0.5)])
    members = {n: make_forecaster(n, freq="M", season_length=4, lightgbm={"num_boost_round": 30})
               for n in ("ets", "lightgbm")}
    combo = Combination(members, {"ets": 0.25, "lightgbm": 0.75}, "inverse_mase").fit(p)
    expected = 0.25 * members["ets"].predict(5) + 0.75 * members["lightgbm"].predict(5)
    np.testing.assert_allclose(combo.predict(5), expected, rtol=1e-12)
    state = combo.to_dict()
    assert state["weights"] == {"ets": 0.25, "lightgbm": 0.75} and set(state["members"]) == {"ets", "lightgbm"}
    again = forecaster_from_dict(state, p, combo.model_text())
    np.testing.assert_allclose(again.predict(5), combo.predict(5), rtol=1e-10)
    assert again.weighting == "inverse_mase"
