"""The main job (``crmlab demo``): the whole flow on the embedded CDNOW data, tracked in MLflow."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from crmlab.config import CrmlabConfig
from crmlab.features import build_features_from_tables
from crmlab.tracking import Tracker
from crmlab.utils import write_table_atomic
from crmlab.workflow import prepare_data

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def run_demo(cfg: CrmlabConfig, *, step: Callable[[str], AbstractContextManager[Any]], out: Any) -> dict[str, Any]:
    """Clean the configured data, build the shared features and log everything to MLflow.

    Returns what was written, so callers (and tests) can check it.
    """
    project = cfg.project
    out_dir = Path(project.output.dir)
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project, out_dir=out_dir / "clean")
    with step(f"Building customer features at {prepared.as_of}"):
        feats = build_features_from_tables(prepared.tables, as_of=prepared.as_of, cfg=project)
    features_path = write_table_atomic(feats, out_dir / "features.parquet")

    tracker = Tracker(project.tracking, pii_columns=project.features.pii_columns)
    with step("Logging the run to MLflow"):
        with tracker.start_run(
            "demo", pipeline="demo", config=cfg.section("project"), fingerprint=prepared.fingerprint
        ) as run:
            run.log_dict(prepared.cleaning.report.to_dict(), "cleaning_report.json")
            run.log_metrics({"customers": len(feats), "features": feats.shape[1] - 1})
            summary = feats.describe().T.reset_index(names="feature")
            run.log_table(summary, "features/summary.csv")
    out.print(f"customers: {len(feats):,}; features per customer: {feats.shape[1] - 1}")
    out.print(f"features:  {features_path}")
    out.print(f"cleaning:  {out_dir / 'clean'}")
    if run.active:
        out.print(f"MLflow run {run.run_id}: mlflow ui --backend-store-uri {tracker.uri}")
    return {"features": features_path, "run_id": run.run_id, "as_of": prepared.as_of}
