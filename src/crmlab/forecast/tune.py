"""Tuning the LightGBM forecaster with the shared Optuna machinery (:mod:`crmlab.tuning`).

The objective is the model's rolling-origin backtest MASE on the same origins as training, so a
tuned model is judged exactly as it will be when ``crmlab train forecast --tuned FILE`` compares it
with the baselines. Each origin is one pruning step: a trial whose running MASE trails the median
of earlier trials at that origin stops early.

The search space is ``forecast.tuning.search_space`` (dotted names inside the forecast section);
a ``lags`` parameter is a comma-separated string (``"1,2,3,4,8,13"``), turned into a list here.
"""

from __future__ import annotations

import math
import contextlib
from collections.abc import Mapping
from typing import Any

import pandas as pd

from crmlab.config import CrmlabConfig
from crmlab.forecast.backtest import Backtest, backtest, fit_windows, leaderboard
from crmlab.forecast.models import make_forecaster
from crmlab.forecast.pipeline import apply_stale_policy, load_panel
from crmlab.forecast.series import default_season_length
from crmlab.tracking import Tracker
from crmlab.tuning import TuningResult, nested_overrides, report, run_study
from crmlab.utils import Step

__all__ = ["tune_forecast", "trial_overrides"]

def trial_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters as a nested override of the forecast section (lag strings as lists)."""
    values = {k: ([int(x) for x in str(v).split(",")] if k == "lags" else v) for k, v in params.items()}
    return nested_overrides("forecast", values)


def tune_forecast(cfg: CrmlabConfig, *, trials: int | None = None, timeout: float | None = None,
                  tracker: Tracker | None = None, step: Step | None = None) -> TuningResult:
    """Run (or resume) the forecast study; the best parameters come back as config overrides."""
    from crmlab.config import with_overrides

    step = step or (lambda text: contextlib.nullcontext())
    fc = cfg.forecast
    with step("Loading the sales series"):
        panel, fingerprint, _ = load_panel(cfg)
    season = default_season_length(fc.freq, fc.season_length)
    panel, _, _ = apply_stale_policy(panel, fc)
    windows = fit_windows(panel, horizon=fc.horizon, origins=fc.origins, origin_step=fc.origin_step,
                          season_length=season)
    origins, horizon = windows.origins, windows.horizon

    def objective(trial: Any, params: dict[str, Any]) -> float:
        tuned = with_overrides(cfg, trial_overrides(params)).forecast
        factory = {"lightgbm": lambda: make_forecaster("lightgbm", freq=tuned.freq, season_length=season,
                                                       lags=tuned.lags, lightgbm=tuned.lightgbm,
                                                       seed=cfg.project.seed)}
        parts: list[pd.DataFrame] = []
        value = math.nan
        for k, origin in enumerate(origins):
            bt = backtest(panel, factory, horizon=horizon, origins=[origin], season_length=season,
                          min_train=windows.min_train)
            if bt.failures:
                return math.nan
            parts.append(bt.errors)
            value = float(leaderboard(Backtest(pd.concat(parts), origins[:k + 1], horizon, season, {}))["mase"].iloc[0])
            report(trial, value, k)
        return value

    return run_study("forecast", objective, fc.tuning, project=cfg.project, direction="minimize", metric="mase",
                     trials=trials, timeout=timeout, tracker=tracker, step=step, to_overrides=trial_overrides,
                     config=cfg.section("forecast"), fingerprint=fingerprint)
