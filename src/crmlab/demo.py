"""The main job (``crmlab demo``): the whole flow on the embedded CDNOW data, tracked in MLflow.

Clean the data (rejects file and report), build the shared features, train every pipeline
(each evaluated on its own time-based holdout, exported to ``models/`` and registered; a pipeline whose
data are missing, such as cross-sell without a product column, is skipped with a note), score the
whole customer base into one table, and write the KPI report. Each step is the same library call a
user's own job would make; the demo only strings them together and prints where things went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any

from crmlab.config import CrmlabConfig
from crmlab.errors import NotApplicable
from crmlab.features import build_features_from_tables
from crmlab.pipelines import customer_models, training_order
from crmlab.pipelines import get as pipeline_record
from crmlab.tracking import Tracker
from crmlab.utils import write_table_atomic
from crmlab.workflow import prepare_data

__all__ = ["CDNOW_CLV_WINDOW", "DEMO_PIPELINES", "demo_config", "run_demo"]

log = logging.getLogger(__name__)

#: Every pipeline, in training order (CLV first, so the report and the KPIs can use its bundle).
DEMO_PIPELINES: tuple[str, ...] = training_order()

#: The CLV split of Fader, Hardie and Lee (2005a) on the embedded CDNOW log: the cohort's first purchases
#: in the 12 weeks from 1997-01-01, 39 weeks of calibration to 1997-09-30, then a 39-week holdout. The
#: demo applies it to the embedded log only; the shipped configs derive every window from the data.
CDNOW_CLV_WINDOW: dict[str, Any] = {
    "calibration_start": date(1997, 1, 1), "calibration_end": date(1997, 9, 30), "holdout_weeks": 39,
}


def demo_config(cfg: CrmlabConfig) -> CrmlabConfig:
    """``cfg`` with the paper's CLV split (:data:`CDNOW_CLV_WINDOW`) when the data are the embedded CDNOW
    log (no table of the user's own is configured) and the CLV window is left to auto; else ``cfg``."""
    from crmlab.data.io import uses_demo_data

    clv = cfg.clv
    if not uses_demo_data(cfg.project.data):
        return cfg
    if any(getattr(clv, k) not in (None, "auto") for k in CDNOW_CLV_WINDOW):
        return cfg
    return cfg.model_copy(update={"clv": clv.model_copy(update=CDNOW_CLV_WINDOW)})


def run_demo(cfg: CrmlabConfig, *, step: Callable[[str], AbstractContextManager[Any]], out: Any,
             pipelines: Sequence[str] = DEMO_PIPELINES, report: bool = True) -> dict[str, Any]:
    """Run the main job and return what it wrote, so callers (and tests) can check it."""
    from crmlab.scoring import write_scores

    cfg = demo_config(cfg)
    project = cfg.project
    out_dir = Path(project.output.dir)
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project, out_dir=out_dir / "clean")
    with step(f"Building customer features at {prepared.as_of}"):
        feats = build_features_from_tables(prepared.tables, as_of=prepared.as_of, cfg=project)
    features_path = write_table_atomic(feats, out_dir / "features.parquet")

    tracker = Tracker(project.tracking, pii_columns=project.features.pii_columns)
    with tracker.start_run("demo", pipeline="demo", config=cfg.section("project"),
                           fingerprint=prepared.fingerprint) as run:
        run.log_dict(prepared.cleaning.report.to_dict(), "cleaning_report.json")
        run.log_metrics({"customers": len(feats), "features": feats.shape[1] - 1})
        run.log_table(feats.describe().T.reset_index(names="feature"), "features/summary.csv")
    out.print(f"customers: {len(feats):,}; features per customer: {feats.shape[1] - 1}", highlight=False)

    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for pipeline in pipelines:
        trainer = pipeline_record(pipeline).load("trainer")
        if hasattr(out, "rule"):
            out.rule(pipeline)
        try:
            results[pipeline] = trainer(cfg, tracker=tracker, step=step)
        except NotApplicable as exc:  # the data lack what it needs (cross-sell on CDNOW: no product column)
            skipped[pipeline] = str(exc)
            out.print(f"note: {pipeline} skipped: {exc}", markup=False, highlight=False, soft_wrap=True)
            continue
        for line in results[pipeline].summary():
            out.print(line, markup=False, highlight=False, soft_wrap=True)

    written: dict[str, Any] = {"features": features_path, "run_id": run.run_id, "as_of": prepared.as_of,
                               "results": results, "skipped": skipped}
    scorable = [p for p in pipelines if p in customer_models() and p in results]
    if scorable:
        with step(f"Scoring {len(feats):,} customers with {', '.join(scorable)}"):
            written["scores"] = write_scores(cfg, out_dir / "scores.parquet", pipelines=scorable,
                                             tables=prepared.tables, as_of=prepared.as_of)
    if report:
        from crmlab.report import write_report

        written["report"] = write_report(cfg, tracker=tracker, step=step)

    if hasattr(out, "rule"):
        out.rule("outputs")
    lines = [f"features:  {features_path}", f"cleaning:  {out_dir / 'clean'} (rejects and report)"]
    if "scores" in written:
        s = written["scores"]
        lines.append(f"scores:    {s['path']} ({s['rows']:,} customers x {', '.join(scorable)})")
    lines.append(f"models:    {project.output.models_dir}/<pipeline>/ (manifest.json, no pickles)")
    if "report" in written:
        lines.append(f"report:    {written['report'].path}")
    if run.active:
        lines.append(f"MLflow:    mlflow ui --backend-store-uri {tracker.uri}")
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    return written
