"""The one feature module: customer features and labels at an explicit cut-off date (``as_of``).

Every pipeline (churn, CLV, segmentation, forecast) calls these for training and for scoring.
"""

from crmlab.features.build import (
    DEFAULT_PII_COLUMNS,
    DEFAULT_WINDOWS,
    RFM_COLUMNS,
    TIME_UNITS,
    as_of_date,
    build_features,
    build_features_from_tables,
    rfm_summary,
    snake_case,
)
from crmlab.features.labels import calibration_holdout_split, churn_label, snapshot_dates

__all__ = [
    "DEFAULT_PII_COLUMNS",
    "DEFAULT_WINDOWS",
    "RFM_COLUMNS",
    "TIME_UNITS",
    "as_of_date",
    "build_features",
    "build_features_from_tables",
    "calibration_holdout_split",
    "churn_label",
    "rfm_summary",
    "snake_case",
    "snapshot_dates",
]
