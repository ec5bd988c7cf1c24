"""Rolling origins, selection with the accuracy gate, conformal intervals and their coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.errors import DataError
from crmlab.forecast.backtest import (
    backtest,
    conformal_quantiles,
    fit_windows,
    interval_coverage,
    leaderboard,
    origin_indices,
    select_model,
)
from crmlab.forecast.models import SeasonalNaive

from .helpers import panel


def test_origins_step_back_from_the_end():
    assert origin_indices(30, 6, 3, 2) == [20, 22, 24]
    assert origin_indices(12, 6, 5, 1) == [4, 5, 6]  # origins with fewer than 4 periods are left out
    with pytest.raises(DataError, match="too few for a backtest of forecast.horizon=13"):
        origin_indices(15, 13, 3, 1)


def test_a_fold_never_sees_its_own_future():
    class Spy(SeasonalNaive):
        seen: list[int] = []

        def fit(self, p):
            Spy.seen.append(p.n_periods)
            assert p.values.shape[1] == p.n_periods
            return super().fit(p)

    p = panel([np.arange(20.0)])
    bt = backtest(p, {"spy": lambda: Spy(1)}, horizon=3, origins=[10, 14, 17], season_length=1)
    assert Spy.seen == [10, 14, 17]
    first = bt.errors[bt.errors["origin"] == 10]
    assert first["actual"].tolist() == [10, 11, 12] and first["forecast"].tolist() == [9, 9, 9]


def test_selection_gate_names_models_worse_than_seasonal_naive():
    board = pd.DataFrame({"model": ["ets", "seasonal_naive", "lightgbm"], "mase": [0.8, 1.0, 1.3]})
    best, notes = select_model(board)
    assert best == "ets" and notes == ["not better than seasonal naive on the backtest (never shipped): lightgbm"]


def test_conformal_quantiles_per_step_with_the_finite_sample_correction():
    # 39 errors at step 1 (|e| = 1..39), scale 1: the 80% quantile is the ceil(40 * 0.8) = 32nd, 95% the 38th
    errors = pd.DataFrame({"step": 1, "actual": np.arange(1.0, 40.0), "forecast": 0.0, "scale": 1.0})
    q = conformal_quantiles(errors, 1)
    assert q[80][0] == 32.0 and q[95][0] == 38.0


def test_interval_coverage_is_near_nominal_on_simulated_data():
    rng = np.random.default_rng(0)
    p = panel(50 + rng.normal(0, 5, (5, 120)))
    bt = backtest(p, {"naive": lambda: SeasonalNaive(1)}, horizon=4, origins=origin_indices(120, 4, 40, 2),
                  season_length=1)
    cov = interval_coverage(bt.errors, 4)
    assert 0.74 <= cov["coverage_80"] <= 0.86 and 0.91 <= cov["coverage_95"] <= 0.985, cov
    board = leaderboard(bt, by_series=True)
    assert sorted(board["series_id"]) == ["s0", "s1", "s2", "s3", "s4"]


def test_late_starts_long_zero_runs_and_short_series_all_work():
    from crmlab.forecast.models import make_forecaster

    rng = np.random.default_rng(1)
    n = 40
    late = np.concatenate([np.full(25, np.nan), rng.poisson(20, 15).astype(float)])
    zeros = np.where(np.arange(n) % 10 < 7, 0.0, rng.poisson(30, n).astype(float))
    steady = rng.poisson(50, n).astype(float)
    p = panel([late, zeros, steady], freq="W")
    f = {m: (lambda m=m: make_forecaster(m, freq="W", season_length=52))
         for m in ("seasonal_naive", "ets", "arima", "lightgbm")}
    bt = backtest(p, f, horizon=4, origins=origin_indices(n, 4, 3, 4), season_length=52)
    assert bt.failures == {}
    board = leaderboard(bt, by_series=True)
    assert len(board) == 12 and np.isfinite(board["mase"]).all()
    assert (bt.errors["forecast"] >= 0).all()
    # the late series has no forecast at the origin before its start, and is judged from then on
    first = bt.errors[(bt.errors["series_id"] == "s0")]["origin"].min()
    assert first > 25


def test_windows_shrink_to_a_40_week_series_with_a_note():
    p = panel([100 + np.arange(40.0)], freq="W", ids=["shop"])
    w = fit_windows(p, horizon=13, origins=8, origin_step=None, season_length=52)
    # 8 origins 3 weeks apart would leave the oldest fold 13 + 21 = 34 weeks from the end, 6 to train on
    assert (w.horizon, w.step, w.min_train, w.origins) == (13, 3, 13, [15, 18, 21, 24, 27])
    assert any("forecast.origins=8 shrunk to 5" in n and "40 periods" in n for n in w.notes)
    assert any("season_length=52" in n and "shorter than two seasons (104 periods)" in n for n in w.notes)
    bt = backtest(p, {"naive": lambda: SeasonalNaive(52)}, horizon=w.horizon, origins=w.origins, season_length=52,
                  min_train=w.min_train)
    assert sorted(bt.errors["origin"].unique()) == w.origins and bt.errors["period"].max() == p.periods[-1]


def test_windows_shrink_the_horizon_or_name_a_series_too_short():
    w = fit_windows(panel([np.arange(20.0)], freq="W"), horizon=13, origins=8, origin_step=None, season_length=52)
    assert w.horizon == 10 and w.origins == [10] and "forecast.horizon=13 shrunk to 10" in w.notes[0]
    with pytest.raises(DataError, match=r"series 'tiny' has 4 period\(s\) of history.*needs at least 5"):
        fit_windows(panel([[1.0, 2.0, 3.0, 4.0]], ids=["tiny"]), horizon=3, origins=2, origin_step=None,
                    season_length=12)


def test_a_series_too_short_for_any_fold_is_named_and_sits_the_backtest_out():
    long = 100 + np.arange(36.0)
    short = np.r_[np.full(30, np.nan), [5.0, 6, 7, 8, 9, 10]]
    p = panel([long, short], ids=["long", "new"])
    w = fit_windows(p, horizon=3, origins=3, origin_step=2, season_length=12)
    assert any("new (6 periods)" in n and "untested" in n for n in w.notes)
    bt = backtest(p, {"naive": lambda: SeasonalNaive(12)}, horizon=w.horizon, origins=w.origins, season_length=12,
                  min_train=w.min_train)
    assert set(bt.errors["series_id"]) == {"long"}


def _two_biased_models() -> "object":
    """One series, origins 10 and 12, two steps each, scale 1: 'ets' forecasts the actual + 2 and
    'lightgbm' the actual - 1 (opposite biases, errors of different size)."""
    from crmlab.forecast.backtest import Backtest

    rows = []
    for model, bias in (("ets", 2.0), ("lightgbm", -1.0)):
        for origin in (10, 12):
            for step in (1, 2):
                actual = 100.0 + origin + step
                rows.append({"model": model, "series_id": "s", "origin": origin, "period": origin + step,
                             "step": step, "actual": actual, "forecast": actual + bias, "scale": 1.0, "scale2": 1.0})
    return Backtest(pd.DataFrame(rows), [10, 12], 2, 1, {})


def test_the_equal_combination_of_opposite_biases_beats_both_members():
    from crmlab.forecast.backtest import add_combination

    bt, weights = add_combination(_two_biased_models(), ["ets", "arima", "lightgbm"])  # arima is not there
    assert weights == {"ets": 0.5, "lightgbm": 0.5}
    mase = leaderboard(bt).set_index("model")["mase"]
    # the mean forecast errs by (2 - 1) / 2 = 0.5 everywhere
    assert mase.to_dict() == {"combination": 0.5, "lightgbm": 1.0, "ets": 2.0}


def test_inverse_mase_weights_use_only_errors_known_before_each_origin():
    from crmlab.forecast.backtest import add_combination

    bt, weights = add_combination(_two_biased_models(), ["ets", "lightgbm"], weighting="inverse_mase")
    combo = bt.errors[bt.errors["model"] == "combination"].set_index(["origin", "step"])["forecast"]
    actual = bt.errors[bt.errors["model"] == "ets"].set_index(["origin", "step"])["actual"]
    # origin 10: nothing known yet, equal weights, error 0.5; origin 12: the two errors of origin 10
    # (periods 11 and 12) give MASE 2 and 1, weights 1/3 and 2/3, and 2/3 - 2/3 = 0
    assert (combo - actual).round(12).to_dict() == {(10, 1): 0.5, (10, 2): 0.5, (12, 1): 0.0, (12, 2): 0.0}
    assert weights == pytest.approx({"ets": 1 / 3, "lightgbm": 2 / 3})
    assert leaderboard(bt).set_index("model")["mase"]["combination"] == pytest.approx(0.25)


def test_a_combination_needs_two_members_that_forecast():
    from crmlab.forecast.backtest import add_combination

    bt = _two_biased_models()
    bt.failures["lightgbm"] = "boom"
    same, weights = add_combination(bt, ["ets", "lightgbm"])
    assert same is bt and weights == {}


def test_fallback_ships_a_baseline_only_where_it_beat_the_winner_at_most_origins():
    from crmlab.forecast.backtest import Backtest, choose_per_series, shipping_table

    # absolute errors at origins 10, 11, 12, 13 (one step each, scale 1), so each is that origin's MASE
    errs = {"a": {"lightgbm": [0.6] * 4, "seasonal_naive": [0.9] * 4, "naive": [1.2] * 4},
            "b": {"lightgbm": [1.1] * 4, "seasonal_naive": [0.1, 0.1, 0.1, 2.5], "naive": [0.8] * 4},
            "c": {"lightgbm": [1.0] * 4, "seasonal_naive": [0.1, 1.2, 1.2, 1.2], "naive": [1.5] * 4}}
    rows = [{"model": m, "series_id": sid, "origin": 10 + k, "period": 11 + k, "step": 1, "actual": 0.0,
             "forecast": e, "scale": 1.0, "scale2": 1.0}
            for sid, models in errs.items() for m, es in models.items() for k, e in enumerate(es)]
    bt = Backtest(pd.DataFrame(rows), [10, 11, 12, 13], 1, 1, {})
    by_series = leaderboard(bt, by_series=True)
    choice = choose_per_series(by_series, "lightgbm", "fallback", bt.errors)
    # b: seasonal naive's MASE 0.7 < 1.1 and less error at 3 of 4 origins; c: MASE 0.925 < 1.0, but
    # from one good origin only (1 of 4): lightgbm stays
    assert choice == {"a": "lightgbm", "b": "seasonal_naive", "c": "lightgbm"}
    assert set(choose_per_series(by_series, "lightgbm", "overall").values()) == {"lightgbm"}
    table = shipping_table(by_series, choice, "lightgbm", "fallback", ["a", "b", "c", "new"], bt.errors)
    table = table.set_index("series_id")
    assert table.loc["a", "beat"] == "seasonal_naive 0.900, naive 1.200"
    assert table.loc["b", "beat"] == "naive 0.800, lightgbm 1.100"
    assert table.loc["b", "because"] == ("a baseline did better here: seasonal_naive backtest MASE 0.700 < "
                                         "lightgbm 1.100 (the overall winner) and erred less at 3 of 4 origins")
    assert table.loc["c", "because"].startswith("the overall winner; no baseline did better")
    assert table.loc["new", "shipped"] == "lightgbm" and table.loc["new", "because"].startswith("untested")


def _one_step_errors(errs: dict[str, list[float]]):
    from crmlab.forecast.backtest import Backtest

    rows = [{"model": m, "series_id": "s", "origin": 10 + k, "period": 11 + k, "step": 1, "actual": 0.0,
             "forecast": e, "scale": 1.0, "scale2": 1.0} for m, es in errs.items() for k, e in enumerate(es)]
    return Backtest(pd.DataFrame(rows), [10, 11, 12], 1, 1, {})


def test_the_fallback_rule_replayed_on_earlier_errors_only():
    from crmlab.forecast.backtest import choose_per_series, replay_fallback
    from crmlab.forecast.pipeline import _replay_gate

    # a baseline better at every origin: at origin 11 the rule knows origin 10's error (0.5 < 1), at 12
    # both earlier ones; it ships seasonal naive twice, MASE 0.5 against 1.0 for lightgbm
    steady = _one_step_errors({"lightgbm": [1.0, 1.0, 1.0], "seasonal_naive": [0.5, 0.5, 0.5]})
    assert replay_fallback(steady.errors, "lightgbm") == (0.5, 1.0, 2)
    # better on the whole backtest (MASE 0.8 < 1, 2 of 3 origins), but chosen at origin 11 from origin
    # 10 alone it errs 2.0, and at 12 (mean 1.1 so far) the winner stays: 1.5 against 1.0
    lucky = _one_step_errors({"lightgbm": [1.0, 1.0, 1.0], "seasonal_naive": [0.2, 2.0, 0.2]})
    choice = choose_per_series(leaderboard(lucky, by_series=True), "lightgbm", "fallback", lucky.errors)
    assert choice == {"s": "seasonal_naive"}
    assert replay_fallback(lucky.errors, "lightgbm") == (1.5, 1.0, 2)
    vetoed, why = _replay_gate(lucky, choice, "lightgbm", "fallback")
    assert vetoed == {"s": "seasonal_naive"} and "(MASE 1.500 vs 1.000 for lightgbm everywhere, at 2 origins)" in why
    assert _replay_gate(steady, {"s": "seasonal_naive"}, "lightgbm", "fallback") == ({}, "")
