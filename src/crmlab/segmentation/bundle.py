"""The segmentation bundle: the scaler, centres, names and RFM scorer as JSON and arrays, and the scorer batch scoring and the pyfunc call."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from crmlab.errors import ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.segmentation.evaluate import evaluate_segments
from crmlab.segmentation.models import SegmentationModel
from crmlab.segmentation.result import SegmentationResult
from crmlab.utils import ids_unique

OUTPUT_COLUMNS: list[str] = ["customer_id", "segment_id", "segment_name", "segment_rfm", "segment_rfm_score"]


def shipped_because(k: int, chosen_by: str, metrics: dict[str, float]) -> str:
    """Why a K-means partition ships: how k was chosen, its stability and what it beat (the RFM grid's silhouette)."""
    parts = [f"k={k} chosen by {chosen_by}"]
    if np.isfinite(metrics.get("stability_ari", np.nan)):
        parts.append(f"stable across bootstrap refits (ARI {metrics['stability_ari']:.3f})")
    if np.isfinite(metrics.get("silhouette", np.nan)):
        parts.append(f"silhouette {metrics['silhouette']:.3f}")
    return "; ".join(parts)


def export_bundle(path: str | Path, model: SegmentationModel, profiles: pd.DataFrame, *, as_of: date, k: int,
                  chosen_by: str, algorithm: str, metrics: dict[str, float], config_digest: str,
                  sweep: pd.DataFrame | None, fallback: str | None = None) -> Path:
    """Write the model to a bundle folder: JSON parameters, the scaler, centres and RFM cut points as
    arrays, the profiles (``report_profiles.csv``, read by the HTML report), the sweep, a manifest."""
    params, arrays = model.to_bundle()
    because = fallback or shipped_because(k, chosen_by, metrics)
    manifest = {
        "features": model.features,
        "input_columns": model.input_columns,
        "output_columns": OUTPUT_COLUMNS,
        "transform": model.scaler.transform,
        "k": int(k),
        "chosen_by": chosen_by,
        "algorithm": algorithm,
        "kind": model.kind,
        "fallback": fallback,
        "model": f"{algorithm} k={k}" if model.kind == "kmeans" else model.kind,
        "shipped_because": because,
        "segment_names": model.names if model.kind != "rfm" else profiles["name"].tolist(),
        "training_window": {"as_of": as_of.isoformat()},
        "n_customers": int(profiles["customers"].sum()),
        "metrics": {key: (float(v) if np.isfinite(v) else None) for key, v in metrics.items()},
        "config_hash": config_digest,
    }
    report = profiles[[c for c in profiles.columns if not c.startswith("lift_")]]
    texts = {"report_profiles.csv": report.to_csv(index=False)}
    if sweep is not None:
        texts["sweep.csv"] = sweep.to_csv(index=False)
    return write_bundle(path, pipeline="segmentation", params=params, manifest=manifest, arrays=arrays, texts=texts)


def score_segmentation(features: pd.DataFrame, bundle: Bundle | str | Path) -> pd.DataFrame:
    """Assign customers to segments with an exported bundle: one row per input row, in order, with
    ``customer_id``, ``segment_id`` (-1: no purchase), ``segment_name``, ``segment_rfm`` (the RFM
    segment) and ``segment_rfm_score`` (100 r + 10 f + m, 0 without a purchase).

    The input is a features frame of :func:`crmlab.features.build_features` (other columns are
    ignored). Each row is scored against the training base alone, so a row's segment never
    depends on the other rows.
    """
    model = SegmentationModel.from_bundle(as_bundle(bundle, "segmentation"))
    if not isinstance(features, pd.DataFrame):
        raise ModelError(f"score_segmentation needs a pandas DataFrame, got {type(features).__name__}")
    missing = [c for c in model.input_columns if c not in features.columns]
    if missing:
        raise ModelError(f"segmentation scoring input: missing column(s) {missing} of a features frame "
                         f"({', '.join(model.input_columns)}); got columns {sorted(map(str, features.columns))[:12]}")
    if not ids_unique(features["customer_id"]):
        dup = features["customer_id"].duplicated()
        raise ModelError(f"segmentation scoring input: customer_id must be unique; {int(dup.sum())} repeated, e.g. "
                         f"{features['customer_id'][dup].iloc[0]!r}")
    return model.score(features)


def evaluate_bundle(bundle: Bundle | str | Path, result: SegmentationResult) -> dict[str, float]:
    """The metrics of another exported model (the registry's champion, say) on the customers of
    ``result``: its assignment of the training customers, with silhouette on the same sample as
    ``result.metrics`` and Calinski-Harabasz and Davies-Bouldin on all of them, each measured in
    that model's own scaled space (a partition is judged in the geometry it was made for)."""
    model = SegmentationModel.from_bundle(as_bundle(bundle, "segmentation"))
    base = result.features
    missing = [c for c in model.features if c not in base.columns]
    if missing:
        raise ModelError(f"{Path(getattr(bundle, 'path', bundle))}: clusters on {missing}, which the new run's "
                         "features lack; compare models on the same features")
    z = model.scaler.transform_rows(base[model.features].to_numpy(dtype=np.float64, na_value=np.nan))
    labels = model.assign(base)
    return {**evaluate_segments(z, labels, result.silhouette_rows), "k": float(len(np.unique(labels)))}
