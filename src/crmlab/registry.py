"""The MLflow model registry as crmlab uses it: one registered model per pipeline, a ``champion`` alias.

* Every training registers a version of ``crmlab-<pipeline>`` (see :func:`crmlab.pyfunc.log_pyfunc`);
  the first version of a model becomes the champion by itself, later ones only when promoted.
* :func:`promote` moves the alias (``crmlab promote churn 4``); the retraining job calls it when a
  challenger beats the champion.
* :func:`champion_bundle` downloads the champion's bundle, the folder that scoring loads, so batch
  scoring from the registry runs the same code as scoring from ``models/``.
* :func:`recent_runs` is the leaderboard behind ``crmlab compare``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crmlab import pipelines
from crmlab.config import PIPELINES, TrackingConfig
from crmlab.errors import ConfigError, ModelError
from crmlab.tracking import absolute_uri, open_store

__all__ = [
    "CHAMPION",
    "MANIFEST_TAG",
    "ChampionInfo",
    "champion_bundle",
    "check_evaluation",
    "get_champion",
    "model_name",
    "promote",
    "recent_runs",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"



def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check_evaluation(pipeline: str, metrics: Mapping[str, Any], *, what: str = "") -> None:
    """Refuse a model whose primary metric (its record's, :mod:`crmlab.pipelines`) is missing or not a finite
    number: its evaluation had no data (an empty holdout) or failed, so nothing says it works. Each
    pipeline calls this after evaluating and before exporting; :func:`promote` and the first-version
    champion rule check the registered version's logged metric the same way, so such a model is
    never exported, nor made champion."""
    metric = pipelines.get(pipeline).primary_metric
    value = metrics.get(metric)
    if pipeline == "segmentation" and metrics.get("k") == 1:
        return  # one segment of everyone (segmentation.fallback=single): chosen, not fitted; no silhouette
    if not _finite(value):
        shown = "missing" if value is None else f"{value}"
        raise ModelError(
            f"{pipeline}{' ' + what if what else ''}: the evaluation gave no usable {metric} ({shown}), so "
            "nothing says the model works; it is not exported or made champion. Check that the evaluation "
            "window holds data (project.as_of on or before the last transaction)"
        )


def _version_metrics(client: Any, name: str, version: str) -> dict[str, float]:
    run_id = client.get_model_version(name, version).run_id
    return dict(client.get_run(run_id).data.metrics) if run_id else {}


def model_name(pipeline: str) -> str:
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
    return f"crmlab-{pipeline}"


def _client(tracking: TrackingConfig) -> Any:
    import mlflow

    uri = absolute_uri(tracking.uri)
    open_store(tracking.uri)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass(frozen=True)
class ChampionInfo:
    pipeline: str
    name: str
    version: str
    run_id: str | None


def get_champion(tracking: TrackingConfig, pipeline: str) -> ChampionInfo | None:
    """The version the ``champion`` alias points at, or None when the model has none (or no versions)."""
    from mlflow.exceptions import MlflowException

    name = model_name(pipeline)
    client = _client(tracking)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return ChampionInfo(pipeline, name, str(mv.version), mv.run_id)


def promote(tracking: TrackingConfig, pipeline: str, version: str | int, *, reason: str | None = None) -> ChampionInfo:
    """Point the ``champion`` alias of ``crmlab-<pipeline>`` at ``version``; the previous champion
    and the reason are written as tags on the new version."""
    from mlflow.exceptions import MlflowException

    name = model_name(pipeline)
    client = _client(tracking)
    version = str(version)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        try:
            known = sorted((str(m.version) for m in client.search_model_versions(f"name = '{name}'")), key=int)
        except MlflowException:
            known = []
        hint = f"versions: {', '.join(known)}" if known else f"no version of {name} is registered; train it first"
        raise ModelError(f"{name} has no version {version} ({hint})") from None
    check_evaluation(pipeline, _version_metrics(client, name, version), what=f"({name} version {version})")
    previous = get_champion(tracking, pipeline)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "crmlab.promoted_from", previous.version if previous else "none")
    if reason:
        client.set_model_version_tag(name, version, "crmlab.promotion_reason", reason[:5000])
    return ChampionInfo(pipeline, name, version, mv.run_id)


def ensure_champion(name: str, version: str | int) -> None:
    """Make ``version`` the champion of ``name`` if it has none yet (the first registered version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        pipeline = name.removeprefix("crmlab-")
        if pipeline in pipelines.names():
            try:
                check_evaluation(pipeline, _version_metrics(client, name, str(version)),
                                 what=f"({name} version {version})")
            except ModelError as exc:
                log.warning("not making it the champion: %s", exc)
                return
        client.set_registered_model_alias(name, CHAMPION, str(version))
        log.info("%s version %s is the first, so it is the champion", name, version)


#: Model version tag holding the SHA-256 of the bundle's manifest.json at registration.
MANIFEST_TAG = "crmlab.manifest_sha256"


def champion_bundle(tracking: TrackingConfig, pipeline: str, dst: str | Path) -> tuple[Path, ChampionInfo]:
    """Download the champion's exported bundle (the folder inside its pyfunc model) under ``dst``."""
    import mlflow

    info = get_champion(tracking, pipeline)
    if info is None:
        raise ModelError(
            f"{model_name(pipeline)} has no '{CHAMPION}' version in the registry at {tracking.uri}; "
            f"run `crmlab train {pipeline}` (or `crmlab promote {pipeline} VERSION`), or score from models/"
        )
    _client(tracking)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{info.name}@{CHAMPION}",
                                                         dst_path=str(dst)))
    except Exception as exc:  # MLflow raises many kinds (a missing artifact, an unreachable store)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{info.name} version {info.version} (the champion): cannot download its files: "
                         f"{reason}") from None
    # the pyfunc's "bundle" artifact is stored under artifacts/<folder name of the exported bundle>
    found = sorted(p.parent for p in (local / "artifacts").glob("*/manifest.json"))
    if len(found) != 1:
        raise ModelError(f"{info.name} version {info.version}: the registered model holds no crmlab bundle")
    from crmlab.export import manifest_sha256

    recorded = _client(tracking).get_model_version(info.name, info.version).tags.get(MANIFEST_TAG)
    if recorded is not None and recorded != manifest_sha256(found[0]):
        raise ModelError(f"{found[0] / 'manifest.json'}: differs from the manifest {info.name} version {info.version} "
                         f"was registered with (tag {MANIFEST_TAG}); the artifact store was modified: retrain or "
                         "restore it")
    return found[0], info


def recent_runs(tracking: TrackingConfig, pipeline: str, *, last: int = 10,
                metrics: list[str] | None = None) -> pd.DataFrame:
    """The latest ``last`` training runs of a pipeline (parent runs only), newest first, with their
    metrics side by side, the registered version each produced and which one is the champion."""
    import mlflow

    model_name(pipeline)
    client = _client(tracking)
    exp = client.get_experiment_by_name(tracking.experiment)
    if exp is None:
        return pd.DataFrame()
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`crmlab.pipeline` = '{pipeline}'",
        order_by=["attributes.start_time DESC"],
        max_results=max(last * 5, 50),
    )
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][:last]
    versions: dict[str, str] = {}
    champion = get_champion(tracking, pipeline)
    try:
        for mv in client.search_model_versions(f"name = '{model_name(pipeline)}'"):
            versions[mv.run_id] = str(mv.version)
    except mlflow.exceptions.MlflowException:
        pass
    record = pipelines.get(pipeline)
    primary = record.primary_metric
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.info.run_id,
            "started": pd.Timestamp(r.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M:%S"),
            "status": r.info.status,
            "version": versions.get(r.info.run_id, ""),
        }
        row["champion"] = bool(champion and row["version"] == champion.version)
        row.update(r.data.metrics)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    fixed = ["run_id", "started", "status", "version", "champion"]
    key = [m for m in record.key_metrics if m in df.columns and m != primary]
    chosen = metrics or [primary, *key, *sorted(c for c in df.columns if c not in (*fixed, primary, *key))]
    missing = [m for m in chosen if m not in df.columns]
    if metrics and missing:
        raise ConfigError(f"no {pipeline} run logged metric(s) {missing}; logged: {sorted(set(df.columns) - set(fixed))}")
    return df[fixed + [m for m in chosen if m in df.columns]]
