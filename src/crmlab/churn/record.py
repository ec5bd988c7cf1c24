"""The churn pipeline's record (see :mod:`crmlab.pipelines`): light, it imports nothing heavy."""

from crmlab.pipelines import Pipeline

RECORD = Pipeline(
    name="churn",
    title="Churn",
    summary="LightGBM against logistic-regression and BG/NBD baselines: validation on the latest snapshot "
    "(or a stratified test split of a contract table), reasons per customer, export.",
    trainer="crmlab.churn.pipeline:train_churn",
    evaluator="crmlab.churn.bundle:evaluate_bundle",
    scorer="crmlab.churn.bundle:score_churn",
    tuner="crmlab.churn.tune:tune_churn",
    primary_metric="roc_auc", higher_is_better=True,
    key_metrics=("pr_auc", "log_loss", "brier", "lift_at_k", "recall_at_k"),
    scores_customers=True,
    report_tables={"leaderboard": ("model",), "calibration": ("predicted", "observed")},
    report_heading="Churn models",
    position=0,
)
