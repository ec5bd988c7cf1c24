"""The cross-sell pipeline's record (see :mod:`crmlab.pipelines`): light, it imports nothing heavy."""

from crmlab.pipelines import Pipeline

RECORD = Pipeline(
    name="crosssell",
    title="Cross-sell",
    summary="Product affinity (association rules) and item-item recommendations of items not yet bought, "
            "against the popularity baseline on a time holdout.",
    trainer="crmlab.crosssell.pipeline:train_crosssell",
    evaluator="crmlab.crosssell.bundle:evaluate_bundle",
    scorer="crmlab.crosssell.bundle:score_crosssell",
    score_inputs="crmlab.crosssell.bundle:add_purchased_items",
    primary_metric="hit_rate", higher_is_better=True,
    key_metrics=("map", "recall", "coverage", "popularity_hit_rate"),
    scores_customers=True,
    report_tables={"leaderboard": ("model", "k", "hit_rate", "map"),
                   "rules": ("antecedent", "consequent", "support", "confidence", "lift")},
    report_heading="Cross-sell: product affinity and next products",
    position=4,
)
