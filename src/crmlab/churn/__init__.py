"""Churn: who will stop buying or cancel? Training sets, models, metrics and reasons.

The pipeline wiring (config, MLflow, export, CLI) lives elsewhere; these modules are its core.
"""

from crmlab.pipelines import lazy_exports

_EXPORTS = {
    "ChurnDataset": "crmlab.churn.data",
    "make_contract_dataset": "crmlab.churn.data",
    "make_snapshot_dataset": "crmlab.churn.data",
    "parse_churn_labels": "crmlab.churn.data",
    "CalibratedChurn": "crmlab.churn.models",
    "LightGBMChurn": "crmlab.churn.models",
    "LogisticChurn": "crmlab.churn.models",
    "PAliveChurn": "crmlab.churn.models",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
