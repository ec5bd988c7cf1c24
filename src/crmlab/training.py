"""The training skeleton every pipeline shares: the MLflow run and what it always logs, the typed fields
of every result, and the registered pyfunc.

A trainer (``crmlab.<pipeline>.pipeline:train_<pipeline>``) prepares its data, then::

    with training_run(cfg, "clv", tracker=tracker, fingerprint=prepared.fingerprint,
                      cleaning=prepared.cleaning, tags={...}) as tr:
        ... fit, evaluate, export the bundle ...
        result = ClvResult(..., **tr.ids())
        if tr.active:
            log_training(tr.run, result)       # the pipeline's own tables and plots
            register_pyfunc(result, ...)       # the pyfunc over the bundle, registered

The run logs the pipeline's config section, the data fingerprint and the cleaning report; a failure
inside the block marks it FAILED. Results subclass :class:`TrainingResult`, so that the CLI, the demo,
retraining and the tests read ``metrics``, ``bundle_path``, ``run_id``, ``model_uri`` and
``registered_model_version`` the same way for every pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from crmlab.config import CrmlabConfig
    from crmlab.tracking import Run, Tracker

__all__ = ["TrainingResult", "TrainingRun", "register_pyfunc", "training_run"]


@dataclass(kw_only=True)
class TrainingResult:
    """What every training returns, besides its pipeline's own fields.

    ``metrics``: the parent run's metrics (the registry's primary metric among them); ``bundle_path``:
    the exported bundle; ``fingerprint``: the data it was trained on; ``run_id`` and ``tracking_uri``:
    the MLflow run (None when tracking is off); ``model_uri`` and ``registered_model_version``: the
    logged pyfunc and its registered version (None until :func:`register_pyfunc`)."""

    metrics: dict[str, float]
    bundle_path: Path
    fingerprint: dict[str, Any]
    run_id: str | None = None
    tracking_uri: str | None = None
    model_uri: str | None = None
    registered_model_version: int | None = None


@dataclass(frozen=True)
class TrainingRun:
    """The run of one training and its tracker."""

    run: Run
    tracker: Tracker

    @property
    def active(self) -> bool:
        return bool(self.run.active)

    def ids(self) -> dict[str, str | None]:
        """``run_id`` and ``tracking_uri`` for the result (the URI only when something was tracked)."""
        return {"run_id": self.run.run_id, "tracking_uri": self.tracker.uri if self.run.active else None}


@contextmanager
def training_run(cfg: CrmlabConfig, pipeline: str, *, tracker: Tracker | None = None,
                 fingerprint: Mapping[str, Any] | None = None, cleaning: Any = None,
                 tags: Mapping[str, Any] | None = None) -> Iterator[TrainingRun]:
    """Start the pipeline's run (a new tracker on ``cfg``'s store unless one is given) logging its config
    section, the data fingerprint and, when given, the cleaning report (``cleaning.report``)."""
    from crmlab.tracking import Tracker

    project = cfg.project
    tracker = tracker or Tracker(project.tracking, pii_columns=project.features.pii_columns)
    tables = dict(cleaning.tables.items()) if cleaning is not None else None  # their schemas, for the datasets
    with tracker.start_run(pipeline, pipeline=pipeline, config=cfg.section(pipeline), fingerprint=fingerprint,
                           tags=tags, tables=tables) as run:
        if cleaning is not None:
            run.log_dict(cleaning.report.to_dict(), "cleaning_report.json")
        yield TrainingRun(run, tracker)


def register_pyfunc(result: TrainingResult, *, input_example: pd.DataFrame, output_example: pd.DataFrame,
                    registered_model_name: str | None) -> None:
    """Log the result's bundle as a pyfunc in the active run, register it under ``registered_model_name``
    (None: log only) with its description and tags (:func:`crmlab.registry.register_version`) and record
    the model URI and version on the result."""
    from crmlab.pyfunc import log_pyfunc
    from crmlab.registry import register_version
    from crmlab.tracking import quiet_artifact_copies

    with quiet_artifact_copies():  # MLflow copies the bundle into the model it logs under a progress bar
        info = log_pyfunc(result.bundle_path, input_example=input_example, output_example=output_example)
    result.model_uri = getattr(info, "model_uri", None)
    if registered_model_name and result.model_uri:
        version = register_version(registered_model_name, result.model_uri, run_id=result.run_id,
                                   model_id=getattr(info, "model_id", None), metrics=result.metrics,
                                   fingerprint=result.fingerprint, bundle_dir=result.bundle_path)
        result.registered_model_version = int(version)
