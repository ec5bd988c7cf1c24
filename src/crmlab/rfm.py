"""RFM scores and named RFM segments, once, below both the KPIs (:func:`crmlab.kpis.rfm_segments`) and
the segmentation pipeline (:class:`crmlab.segmentation.rfm.RfmScorer`).

Scores are quintiles (1..5) of the percentile rank, ties sharing their average rank; a segment is
named by the first pattern of :data:`RFM_SEGMENT_MAP` that matches "<recency score><frequency score>".
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RFM_SEGMENT_MAP", "quintile_scores", "rfm_segment_names"]

#: The usual RFM segment map on (recency score, frequency score), scores 1..5 (5 = most recent / most
#: orders): the first pattern that matches names the segment.
RFM_SEGMENT_MAP: list[tuple[str, str]] = [
    ("champions", "5[4-5]"),
    ("loyal", "[3-4][4-5]"),
    ("potential_loyalists", "[4-5][2-3]"),
    ("new", "51"),
    ("promising", "41"),
    ("needs_attention", "33"),
    ("about_to_sleep", "3[1-2]"),
    ("cannot_lose", "[1-2]5"),
    ("at_risk", "[1-2][3-4]"),
    ("hibernating", "[1-2][1-2]"),
]


def quintile_scores(values: Any, *, ascending: bool = True) -> np.ndarray:
    """Scores 1..5 (int8): the quintile of each value's percentile rank (ties share their average
    rank); ``ascending=False`` gives the smallest values the highest score (recency in days)."""
    pct = pd.Series(values).rank(pct=True, method="average", ascending=ascending).to_numpy()
    return np.clip(np.ceil(pct * 5), 1, 5).astype(np.int8)


def rfm_segment_names() -> np.ndarray:
    """Segment name of each "<r><f>" as a 6 x 6 lookup table flattened (index r * 6 + f; 0 = no score,
    named "other")."""
    return np.array([next((name for name, pattern in RFM_SEGMENT_MAP if re.fullmatch(pattern, f"{r}{f}")), "other")
                     for r in range(6) for f in range(6)], dtype=object)
