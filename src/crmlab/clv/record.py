"""The clv pipeline's record (see :mod:`crmlab.pipelines`): light, it imports nothing heavy."""

from crmlab.pipelines import Pipeline

RECORD = Pipeline(
    name="clv",
    title="CLV: BG/NBD + Gamma-Gamma",
    summary="BG/NBD (or Pareto/NBD, MBG/NBD) + Gamma-Gamma: holdout evaluation, LightGBM challengers of purchases "
            "and spend, export.",
    trainer="crmlab.clv.pipeline:train_clv",
    evaluator="crmlab.clv.bundle:evaluate_bundle",
    scorer="crmlab.clv.bundle:score_clv",
    primary_metric="purchases_mae", higher_is_better=False,
    key_metrics=("purchases_total_pct_error", "purchases_spearman", "spend_mae", "spend_gini",
                 "spend_top_decile_share"),
    scores_customers=True,
    report_tables={"purchase_leaderboard": ("model", "mae", "total_pct_error"),
                   "conditional_expectations": ("label", "customers", "actual")},
    train_first=True,
    position=1,
)
