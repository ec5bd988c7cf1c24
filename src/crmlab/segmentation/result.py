"""What one segmentation training returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from crmlab.segmentation.models import SegmentationModel
from crmlab.training import TrainingResult


@dataclass(kw_only=True)
class SegmentationResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check): ``features`` are the
    purchasers' features the model was fitted on, ``labels`` their segments, ``silhouette_rows`` the
    rows the silhouette is measured on, ``rfm_vs_kmeans`` the crosstab of RFM and shipped segments."""

    as_of: date
    k: int
    chosen_by: str
    algorithm: str
    sweep: pd.DataFrame | None
    profiles: pd.DataFrame
    ranks: pd.DataFrame
    model: SegmentationModel
    scores: pd.DataFrame
    features: pd.DataFrame
    labels: np.ndarray
    silhouette_rows: np.ndarray
    rfm_vs_kmeans: pd.DataFrame
    fallback: str | None = None

    def summary(self) -> list[str]:
        """A few lines for the CLI: k and why, the quality and stability figures, the segments."""
        m = self.metrics
        if self.fallback is not None:
            sil = (f"silhouette {m['silhouette']:.3f}" if np.isfinite(m.get("silhouette", np.nan))
                   else "no silhouette (one segment)")
            lines = [f"note: no K-means shipped: {self.fallback}",
                     f"shipped: {self.algorithm} ({self.k} segment(s) in use) on {int(m['n_customers']):,} customers "
                     f"at {self.as_of}: {sil}"]
        else:
            lines = [
                f"k={self.k} ({self.chosen_by}), {self.algorithm} on {int(m['n_customers']):,} customers at "
                f"{self.as_of}: silhouette {m['silhouette']:.3f}, Calinski-Harabasz {m['calinski_harabasz']:,.0f}, "
                f"Davies-Bouldin {m['davies_bouldin']:.3f}",
                f"stability: ARI {m['stability_ari_seeds']:.3f} across seeds, {m['stability_ari_bootstrap']:.3f} "
                "across bootstrap samples: stable",
            ]
        revenue = "revenue_share" in self.profiles.columns
        for row in self.profiles.itertuples():
            lines.append(f"  {row.segment}: {row.name:<28} {row.customers:>9,} customers ({row.share:.1%})"
                         + (f", {row.revenue_share:.1%} of revenue" if revenue else ""))
        lines.append(f"bundle: {self.bundle_path}")
        return lines
