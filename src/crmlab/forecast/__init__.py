"""Sales forecasting: series from transactions or a sales table, statistical baselines and a global
LightGBM model, rolling-origin backtests, conformal intervals (see :mod:`crmlab.forecast.pipeline`)."""

from crmlab.forecast.pipeline import ForecastResult, evaluate_bundle, forecast_bundle, score_forecast, train_forecast

__all__ = ["ForecastResult", "evaluate_bundle", "forecast_bundle", "score_forecast", "train_forecast"]
