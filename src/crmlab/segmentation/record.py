"""The segmentation pipeline's record (see :mod:`crmlab.pipelines`): light, it imports nothing heavy."""

from crmlab.pipelines import Pipeline

RECORD = Pipeline(
    name="segmentation",
    title="Segmentation",
    summary="K-means segments on scaled behavioural features: k sweep, profiles, names, stability, export.",
    trainer="crmlab.segmentation.pipeline:train_segmentation",
    evaluator="crmlab.segmentation.bundle:evaluate_bundle",
    scorer="crmlab.segmentation.bundle:score_segmentation",
    primary_metric="silhouette", higher_is_better=True,
    key_metrics=("k", "calinski_harabasz", "davies_bouldin", "stability_ari"),
    scores_customers=True,
    report_tables={"profiles": ("segment", "customers")},
    report_heading="Segment profiles",
    position=2,
)
