"""Tuning the LightGBM forecaster with the shared Optuna machinery (:mod:`crmlab.tuning`), nested.

A study that chooses parameters by the backtest MASE of the very origins that then judge them
overfits them: the winning trial of many is partly the one that got lucky there, and on weeks
nobody has seen yet it can do worse than the defaults. So the tuning is nested:

* **tuning origins** (:func:`tuning_origins`): as many origins as the backtest has
  (``forecast.origins``, same step), placed so that each fold's forecast window ends before the
  first period the training backtest forecasts. The objective is LightGBM's MASE there; each origin
  is one pruning step (a trial whose running MASE trails the median of earlier trials at that
  origin stops early).
* **judging origins**: the training backtest's own origins (what ``crmlab train forecast`` compares
  the models on). The best trial's parameters and the defaults are both backtested there; the tuned
  parameters come back as overrides only when their MASE is lower, otherwise the defaults are kept
  and the result, ``forecast_best.yaml``, the terminal and the MLflow run say so with both figures
  (:class:`crmlab.tuning.Verdict`).

The search space is ``forecast.tuning.search_space`` (dotted names inside the forecast section);
a ``lags`` parameter is a comma-separated string (``"1,2,3,4,8,13"``), turned into a list here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from crmlab.config import CrmlabConfig, ForecastConfig
from crmlab.errors import DataError
from crmlab.forecast.backtest import Backtest, Windows, backtest, fit_windows, leaderboard
from crmlab.forecast.models import make_forecaster
from crmlab.forecast.pipeline import apply_stale_policy, load_panel
from crmlab.forecast.series import Panel, default_season_length
from crmlab.tracking import Tracker
from crmlab.tuning import TuningResult, Verdict, nested_overrides, report, run_study
from crmlab.utils import Step

__all__ = ["judge_tuned", "trial_overrides", "tune_forecast", "tuning_origins"]


def trial_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters as a nested override of the forecast section (lag strings as lists)."""
    values = {k: ([int(x) for x in str(v).split(",")] if k == "lags" else v) for k, v in params.items()}
    return nested_overrides("forecast", values)


def tuning_origins(windows: Windows, count: int) -> list[int]:
    """Up to ``count`` origins ``windows.step`` apart whose forecast windows end before the first
    judging origin (``windows.origins[0]``), oldest first; each fold trains on at least
    ``windows.min_train`` periods. A clear error when the history holds none."""
    first, h = windows.origins[0], windows.horizon
    out = sorted(o for o in (first - h - k * windows.step for k in range(count)) if o >= windows.min_train)
    if not out:
        raise DataError(
            f"nested tuning needs a fold before the backtest's origins: the first backtest origin leaves {first} "
            f"periods of history, and a tuning fold needs {windows.min_train} to train on and {h} to forecast "
            f"({windows.min_train + h})", expected="more history, or fewer forecast.origins or a shorter "
            "forecast.horizon")
    return out


def _lightgbm_mase(panel: Panel, fc: ForecastConfig, *, windows: Windows, origins: list[int], season: int,
                   seed: int) -> float:
    factory = {"lightgbm": lambda: make_forecaster("lightgbm", freq=fc.freq, season_length=season, lags=fc.lags,
                                                   lightgbm=fc.lightgbm, seed=seed)}
    bt = backtest(panel, factory, horizon=windows.horizon, origins=origins, season_length=season,
                  min_train=windows.min_train)
    if bt.failures:
        raise DataError(f"LightGBM failed on the judging origins: {bt.failures['lightgbm']}")
    return float(leaderboard(bt)["mase"].iloc[0])


def judge_tuned(panel: Panel, default: ForecastConfig, tuned: ForecastConfig, *, windows: Windows, season: int,
                seed: int, tuned_on: list[int]) -> Verdict:
    """Backtest LightGBM with the defaults and with the tuned settings on the judging origins
    (``windows.origins``) and keep the tuned ones only when their MASE is strictly lower there. Both
    are also backtested on the tuning origins ``tuned_on``, so the verdict shows the gain the study
    saw next to the one that carried over."""
    def mase(fc: ForecastConfig, origins: list[int]) -> float:
        return _lightgbm_mase(panel, fc, windows=windows, origins=origins, season=season, seed=seed)

    d, t = mase(default, windows.origins), mase(tuned, windows.origins)
    d0, t0 = mase(default, tuned_on), mase(tuned, tuned_on)
    seen = f"on the {len(tuned_on)} tuning origins MASE {t0:.4f} vs defaults {d0:.4f}"
    where = f"the {len(windows.origins)} backtest origins after them"
    because = (f"the tuned parameters beat the defaults on {where}: MASE {t:.4f} < {d:.4f} ({seen})" if t < d else
               f"the tuned parameters did not beat the defaults on {where}: MASE {t:.4f} >= {d:.4f} ({seen})")
    periods = panel.periods
    return Verdict("mase", t, d, t < d, because, {
        "tuned_mase_on_tuning_origins": t0, "default_mase_on_tuning_origins": d0,
        "tuning_origins": [str(periods[o].date()) for o in tuned_on],
        "judging_origins": [str(periods[o].date()) for o in windows.origins]})


def tune_forecast(cfg: CrmlabConfig, *, trials: int | None = None, timeout: float | None = None,
                  tracker: Tracker | None = None, step: Step | None = None) -> TuningResult:
    """Run (or resume) the nested forecast study (module doc): tuned parameters come back as config
    overrides only when they beat the defaults on the training backtest's origins."""
    from crmlab.config import with_overrides

    step = step or (lambda text: contextlib.nullcontext())
    fc = cfg.forecast
    with step("Loading the sales series"):
        panel, fingerprint, _ = load_panel(cfg)
    season = default_season_length(fc.freq, fc.season_length)
    panel, _, _ = apply_stale_policy(panel, fc)
    windows = fit_windows(panel, horizon=fc.horizon, origins=fc.origins, origin_step=fc.origin_step,
                          season_length=season)
    origins, horizon = tuning_origins(windows, fc.origins), windows.horizon
    seed = cfg.project.seed

    def objective(trial: Any, params: dict[str, Any]) -> float:
        tuned = with_overrides(cfg, trial_overrides(params)).forecast
        factory: dict[str, Callable[[], Any]] = {
            "lightgbm": lambda: make_forecaster("lightgbm", freq=tuned.freq, season_length=season, lags=tuned.lags,
                                                lightgbm=tuned.lightgbm, seed=seed)}
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

    def judge(best: dict[str, Any]) -> Verdict:
        tuned = with_overrides(cfg, trial_overrides(best)).forecast
        return judge_tuned(panel, fc, tuned, windows=windows, season=season, seed=seed, tuned_on=origins)

    return run_study("forecast", objective, fc.tuning, project=cfg.project, direction="minimize", metric="mase",
                     trials=trials, timeout=timeout, tracker=tracker, step=step, to_overrides=trial_overrides,
                     config=cfg.section("forecast"), fingerprint=fingerprint, judge=judge)
