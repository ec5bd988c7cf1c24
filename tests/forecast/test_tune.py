"""Tuning the LightGBM forecaster through the shared Optuna study: real SQLite study, real MLflow store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlflow

from crmlab.cli import main
from crmlab.config import load_config
from crmlab.errors import DataError
from crmlab.tuning import load_overrides
from crmlab.forecast.tune import trial_overrides, tune_forecast
from crmlab.pipelines import get as pipeline_record
from crmlab.config import with_overrides


def _sales(tmp_path) -> list[str]:
    rng = np.random.default_rng(5)
    t = np.arange(40)
    sales = 100 + 30 * np.sin(2 * np.pi * t / 4) + rng.normal(0, 3, 40)
    months = pd.period_range("2020-01", periods=40, freq="M").strftime("%Y-%m")
    path = tmp_path / "sales.csv"
    pd.DataFrame({"period": months, "value": sales.round(2)}).to_csv(path, index=False)
    space = ("[{name: lags, type: categorical, choices: ['1', '1,2,3,4']}, "
             "{name: lightgbm.num_boost_round, type: int, low: 20, high: 80}]")
    return [f"project.data.sales.path={path}", "forecast.freq=M", "forecast.horizon=4", "forecast.origins=3",
            "forecast.season_length=4", f"forecast.tuning.search_space={space}", "forecast.tuning.pruner=none",
            f"project.output.dir={tmp_path / 'out'}", f"project.output.models_dir={tmp_path / 'models'}",
            f"project.tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"project.tracking.artifact_dir={tmp_path / 'art'}"]


def test_lag_strings_become_lists():
    assert trial_overrides({"lags": "1,2,13", "lightgbm.num_leaves": 7}) == {
        "forecast": {"lags": [1, 2, 13], "lightgbm": {"num_leaves": 7}}}


@pytest.mark.slow
def test_tuning_minimises_backtest_mase_and_its_file_trains(tmp_path, capsys):
    assert pipeline_record("forecast").tuner == "crmlab.forecast.tune:tune_forecast"
    sets = _sales(tmp_path)
    cfg = load_config(None, sets)
    res = tune_forecast(cfg, trials=4)
    assert res.metric == "mase" and res.direction == "minimize" and res.n_complete == 4
    assert min(h["mase"] for h in res.history) == res.best_value
    # a season of 4 is in the lags 1..4, not in lag 1 alone: the tuner finds that
    assert res.overrides["forecast"]["lags"] == [1, 2, 3, 4]
    assert with_overrides(cfg, res.overrides).forecast.lags == [1, 2, 3, 4]
    args = [a for s in [*sets, "forecast.models=[seasonal_naive,lightgbm]"] for a in ("--set", s)]
    assert main(["train", "forecast", "--tuned", str(res.best_file), *args]) == 0
    assert "lightgbm" in capsys.readouterr().out


def _season_then(tmp_path, flip: bool, tracking=None) -> list[str]:
    """72 months of a season of 4 (+-40, +-20) plus N(0, 2) noise; with ``flip`` the season turns
    upside down from month 66, where the backtest's (judging) origins start: the tuning origins,
    whose folds end before month 66, only know the old season. The search space holds one value,
    300 boosting rounds, against a default of 2 (a model that barely leaves the local level)."""
    rng = np.random.default_rng(0)
    season = 40 * np.tile([1.0, -1.0, 0.5, -0.5], 18)
    if flip:
        season[66:] = -season[66:]
    y = 100 + season + rng.normal(0, 2, 72)
    path = tmp_path / "sales.csv"
    months = pd.period_range("2018-01", periods=72, freq="M").strftime("%Y-%m")
    pd.DataFrame({"period": months, "value": y.round(2)}).to_csv(path, index=False)
    space = "[{name: lightgbm.num_boost_round, type: categorical, choices: [300]}]"
    track = ([f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}"]
             if tracking else ["project.tracking.enabled=false"])
    return [f"project.data.sales.path={path}", "forecast.freq=M", "forecast.horizon=4", "forecast.origins=3",
            "forecast.origin_step=1", "forecast.season_length=4", "forecast.lags=[1,2,3,4]",
            "forecast.lightgbm={num_boost_round: 2}", f"forecast.tuning.search_space={space}",
            "forecast.tuning.pruner=none", f"project.output.dir={tmp_path / 'out'}",
            f"project.output.models_dir={tmp_path / 'models'}", *track]


def test_tuning_origins_end_before_the_backtest_origins_start():
    from crmlab.forecast.backtest import Windows
    from crmlab.forecast.tune import tuning_origins

    # backtest origins 66, 67, 68 with a horizon of 4: a tuning fold forecasting from 62 ends at 65
    assert tuning_origins(Windows(4, [66, 67, 68], 1, 4), 3) == [60, 61, 62]
    assert tuning_origins(Windows(4, [10, 12], 2, 4), 3) == [4, 6]  # 2 would train on fewer than 4 periods
    with pytest.raises(DataError, match=r"nested tuning needs a fold before the backtest's origins.*\(8\)"):
        tuning_origins(Windows(4, [7, 8], 1, 4), 3)


def test_nested_tuning_keeps_the_defaults_when_the_tuned_gain_does_not_carry_over(tmp_path, tracking, capsys):
    sets = _season_then(tmp_path, flip=True, tracking=tracking)
    cfg = load_config(None, sets)
    res = tune_forecast(cfg, trials=1)
    v = res.verdict
    extra = v.details
    # 300 rounds win by far where the study looked, and lose where the season has turned
    assert extra["tuned_mase_on_tuning_origins"] < extra["default_mase_on_tuning_origins"] / 5
    assert v.tuned > v.default and not v.keep_tuned and v.kept == "defaults"
    assert res.best_params == {"lightgbm.num_boost_round": 300} and res.overrides == {}
    assert extra["tuning_origins"] == ["2023-01-01", "2023-02-01", "2023-03-01"]
    assert extra["judging_origins"] == ["2023-07-01", "2023-08-01", "2023-09-01"]
    assert with_overrides(cfg, load_overrides(res.best_file, cfg)) == cfg  # the file changes nothing
    assert "kept the defaults" in " ".join(res.summary())
    run = mlflow.MlflowClient(tracking_uri=res.tracking_uri).get_run(res.run_id)
    assert run.data.tags["crmlab.tuning_kept"] == "defaults"
    assert run.data.tags["crmlab.tuning_kept_because"].startswith("the tuned parameters did not beat the defaults")
    assert run.data.metrics["judged_tuned_mase"] == pytest.approx(v.tuned)
    assert run.data.metrics["judged_default_mase"] == pytest.approx(v.default)
    import optuna

    study = optuna.load_study(study_name="forecast", storage=res.storage)
    assert study.user_attrs["verdict_trial_0"]["kept"] == "defaults"
    # the CLI says so plainly
    assert main(["tune", "forecast", "--trials", "1", *[a for s in sets for a in ("--set", s)]]) == 0
    assert "kept the defaults" in capsys.readouterr().out


def test_nested_tuning_keeps_parameters_that_are_better_on_later_origins_too(tmp_path):
    cfg = load_config(None, _season_then(tmp_path, flip=False))
    res = tune_forecast(cfg, trials=1)
    assert res.verdict.keep_tuned and res.verdict.tuned < res.verdict.default
    assert res.overrides == {"forecast": {"lightgbm": {"num_boost_round": 300}}}
    assert with_overrides(cfg, load_overrides(res.best_file, cfg)).forecast.lightgbm == {"num_boost_round": 300}
