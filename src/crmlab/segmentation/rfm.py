"""The classic baseline: RFM quintile scores and the named segments marketers know.

Scores are the quintiles of the training customers' percentile ranks (ties share their average
rank), as in :func:`crmlab.kpis.rfm_segments`, on the shared features: recency =
``recency_days`` (fewer days scores higher), frequency = ``frequency`` (repeat purchase days),
monetary = ``amount_sum_total`` (all purchases) when present, else ``monetary_value``. The segment
is the first pattern of :data:`crmlab.kpis.RFM_SEGMENT_MAP` matching "<r><f>".

Training keeps, per score, the largest training value that got it (:class:`RfmScorer`), so a
new customer is scored against the training base, not against the other customers scored with
it: scoring one customer alone or among millions gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmlab.errors import ModelError
from crmlab.rfm import quintile_scores, rfm_segment_names

__all__ = ["MONETARY_COLUMNS", "NO_PURCHASE", "RfmScorer", "monetary_column", "rfm_segment_names", "segment_codes"]

#: The name of customers without a purchase up to the cut-off (no RFM, no cluster).
NO_PURCHASE = "no_purchase"
#: The monetary columns of a features frame, in order of preference.
MONETARY_COLUMNS: tuple[str, ...] = ("amount_sum_total", "monetary_value")


def monetary_column(columns: pd.Index | list[str]) -> str:
    """The monetary column of a features frame (module doc)."""
    for name in MONETARY_COLUMNS:
        if name in columns:
            return name
    raise ModelError(f"features lack a monetary column ({' or '.join(MONETARY_COLUMNS)})")


def segment_codes(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Index of each customer's segment in ``[*rfm_segment_names(), NO_PURCHASE]``: ``r * 6 + f``,
    or 36 (no purchase) where a score is 0."""
    r, f, m = (scores[f"{key}_score"].astype(np.int64) for key in "rfm")
    return np.where((r > 0) & (f > 0) & (m > 0), r * 6 + f, 36)


@dataclass
class RfmScorer:
    """Quintile cut points learnt on the training customers (module doc)."""

    monetary: str = "amount_sum_total"
    upper_: dict[str, np.ndarray] | None = None
    scores_: dict[str, np.ndarray] | None = None

    def fit(self, features: pd.DataFrame) -> RfmScorer:
        """Fit on customers with a purchase (finite recency, frequency and monetary value)."""
        self.upper_, self.scores_ = {}, {}
        for key, values in self._signed(features).items():
            values = values[np.isfinite(values)]
            if len(values) == 0:
                raise ModelError(f"RFM: no customer with a finite {key} value to score against")
            scores = quintile_scores(values)
            order = np.argsort(values, kind="stable")
            v, s = values[order], scores[order]
            last = np.r_[s[1:] != s[:-1], True]  # the largest value of each score
            self.upper_[key], self.scores_[key] = v[last], s[last]
        return self

    def _signed(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        # recency: fewer days is better, so it is scored on -days
        return {
            "r": -features["recency_days"].to_numpy(dtype=np.float64, na_value=np.nan),
            "f": features["frequency"].to_numpy(dtype=np.float64, na_value=np.nan),
            "m": features[self.monetary].to_numpy(dtype=np.float64, na_value=np.nan),
        }

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """``r_score``, ``f_score``, ``m_score`` (1..5, 0 without a purchase) and ``segment``."""
        scores = self.score_arrays(features)
        names = np.array([*rfm_segment_names(), NO_PURCHASE], dtype=object)[segment_codes(scores)]
        return pd.DataFrame({**scores, "segment": names})

    def score_arrays(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """``r_score``, ``f_score``, ``m_score`` as int8 arrays (0 where the value is missing)."""
        if self.upper_ is None or self.scores_ is None:
            raise ModelError("RfmScorer is not fitted: call fit first")
        out: dict[str, np.ndarray] = {}
        for key, values in self._signed(features).items():
            upper, scores = self.upper_[key], self.scores_[key]
            pos = np.minimum(np.searchsorted(upper, values, side="left"), len(upper) - 1)
            out[f"{key}_score"] = np.where(np.isfinite(values), scores[pos], 0).astype(np.int8)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.upper_ is None or self.scores_ is None:
            raise ModelError("RfmScorer is not fitted: call fit first")
        return {**{f"rfm_upper_{k}": v for k, v in self.upper_.items()},
                **{f"rfm_scores_{k}": v for k, v in self.scores_.items()}}

    @classmethod
    def from_arrays(cls, monetary: str, arrays: dict[str, np.ndarray]) -> RfmScorer:
        try:
            return cls(monetary, {k: arrays[f"rfm_upper_{k}"] for k in "rfm"},
                       {k: arrays[f"rfm_scores_{k}"] for k in "rfm"})
        except KeyError as exc:
            raise ModelError(f"segmentation bundle: RFM array {exc} missing; retrain") from None
