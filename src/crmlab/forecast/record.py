"""The forecast pipeline's record (see :mod:`crmlab.pipelines`): light, it imports nothing heavy."""

from crmlab.pipelines import Pipeline

RECORD = Pipeline(
    name="forecast",
    title="Sales forecast",
    summary="Seasonal naive, naive, ETS, ARIMA, LightGBM and their combination: rolling-origin backtest, the best "
            "ships with intervals (a baseline on series where it did better).",
    trainer="crmlab.forecast.pipeline:train_forecast",
    evaluator="crmlab.forecast.bundle:evaluate_bundle",
    scorer="crmlab.forecast.bundle:score_forecast",
    tuner="crmlab.forecast.tune:tune_forecast",
    primary_metric="mase", higher_is_better=False,
    key_metrics=("rmsse", "wape", "smape", "bias", "coverage_80", "coverage_95"),
    scores_customers=False,
    report_tables={"forecast": ("period", "forecast", "lower", "upper"), "leaderboard": ("model", "mase"),
                   "shipped": ("series_id", "shipped", "because")},
    position=3,
)
