"""How segments are judged: silhouette (on a seeded sample), Calinski-Harabasz and Davies-Bouldin."""

from __future__ import annotations

import numpy as np


def evaluate_segments(z: np.ndarray, labels: np.ndarray, silhouette_rows: np.ndarray) -> dict[str, float]:
    """Silhouette (on the rows ``silhouette_rows``: it is quadratic), Calinski-Harabasz and
    Davies-Bouldin (on all rows) of a partition of the scaled rows ``z``; NaN for a single segment."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    if len(np.unique(labels)) < 2:
        nan = float("nan")
        return {"silhouette": nan, "calinski_harabasz": nan, "davies_bouldin": nan}
    sil_labels = labels[silhouette_rows]
    return {
        "silhouette": float(silhouette_score(z[silhouette_rows], sil_labels)) if len(np.unique(sil_labels)) > 1
        else float("nan"),
        "calinski_harabasz": float(calinski_harabasz_score(z, labels)),
        "davies_bouldin": float(davies_bouldin_score(z, labels)),
    }
