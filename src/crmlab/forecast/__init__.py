"""Sales forecasting: series from transactions or a sales table, statistical baselines and a global
LightGBM model, rolling-origin backtests, conformal intervals (see :mod:`crmlab.forecast.pipeline`)."""

from crmlab.forecast.bundle import evaluate_bundle, forecast_bundle, score_forecast
from crmlab.forecast.pipeline import train_forecast
from crmlab.forecast.result import ForecastResult

__all__ = ["ForecastResult", "evaluate_bundle", "forecast_bundle", "score_forecast", "train_forecast"]
