"""Churn: who will stop buying or cancel? Training sets, models, metrics and reasons.

The pipeline wiring (config, MLflow, export, CLI) lives elsewhere; these modules are its core.
"""

from crmlab.churn.data import ChurnDataset, make_contract_dataset, make_snapshot_dataset, parse_churn_labels
from crmlab.churn.models import CalibratedChurn, LightGBMChurn, LogisticChurn, PAliveChurn

__all__ = [
    "CalibratedChurn",
    "ChurnDataset",
    "LightGBMChurn",
    "LogisticChurn",
    "PAliveChurn",
    "make_contract_dataset",
    "make_snapshot_dataset",
    "parse_churn_labels",
]
