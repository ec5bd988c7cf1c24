"""Sales forecasting: series from transactions or a sales table, statistical baselines and a global
LightGBM model, rolling-origin backtests, conformal intervals (see :mod:`crmlab.forecast.pipeline`)."""

from crmlab.pipelines import lazy_exports

_EXPORTS = {
    "evaluate_bundle": "crmlab.forecast.bundle",
    "forecast_bundle": "crmlab.forecast.bundle",
    "score_forecast": "crmlab.forecast.bundle",
    "train_forecast": "crmlab.forecast.pipeline",
    "ForecastResult": "crmlab.forecast.result",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
