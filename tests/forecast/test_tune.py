"""Tuning the LightGBM forecaster through the shared Optuna study: real SQLite study, real MLflow store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.config import load_config
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
