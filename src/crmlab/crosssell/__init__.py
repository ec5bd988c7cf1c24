"""Cross-sell: product affinity (association rules with support, confidence and lift) and item-item
recommendations of the items each customer has not bought, judged against the popularity baseline on a
time holdout."""

from crmlab.pipelines import lazy_exports

_EXPORTS = {
    "Baskets": "crmlab.crosssell.baskets",
    "basket_matrix": "crmlab.crosssell.baskets",
    "CoOccurrence": "crmlab.crosssell.models",
    "Recommender": "crmlab.crosssell.models",
    "association_rules": "crmlab.crosssell.models",
    "count_cooccurrence": "crmlab.crosssell.models",
    "compare_paired": "crmlab.crosssell.evaluate",
    "per_customer_metrics": "crmlab.crosssell.evaluate",
    "summarise": "crmlab.crosssell.evaluate",
    "score_crosssell": "crmlab.crosssell.bundle",
    "train_crosssell": "crmlab.crosssell.pipeline",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
