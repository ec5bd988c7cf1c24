"""The MLflow model registry as crmlab uses it: one registered model per pipeline, a ``champion`` alias.

* Every training registers a version of ``crmlab-<pipeline>`` (:func:`register_version`, from the
  pyfunc :func:`crmlab.pyfunc.log_pyfunc` logged), with a description and tags that say what it is
  without opening its run: the pipeline, the model shipped, the primary metric and its value, the
  data fingerprint and the manifest's checksum. The first version of a model becomes the champion
  by itself, later ones only when promoted.
* :func:`promote` moves the alias (``crmlab promote churn 4``); the retraining job calls it when a
  challenger beats the champion.
* :func:`champion_bundle` gives the champion's bundle, the folder that scoring loads, so batch
  scoring from the registry runs the same code as scoring from ``models/``: read where it lies in a
  local artifact store, downloaded (the bundle only, not the whole model) from a remote one.
* :func:`recent_runs` is the leaderboard behind ``crmlab compare``: the runs ranked by the primary
  metric, the parameters in which they differ, the champion marked.
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
    "PARAM_PREFIX",
    "ChampionInfo",
    "champion_bundle",
    "check_evaluation",
    "get_champion",
    "model_name",
    "promote",
    "recent_runs",
    "register_version",
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


def _shipped(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """The bundle's model kind and what it ships (they differ when a challenger or a blend predicts)."""
    model = manifest.get("model")
    model = model if isinstance(model, str) else ""
    shipped = manifest.get("shipped_purchases") or manifest.get("shipped")
    return model, shipped if isinstance(shipped, str) and shipped else model


def version_tags(metrics: Mapping[str, Any], fingerprint: Mapping[str, Any],
                 bundle_dir: str | Path) -> tuple[dict[str, str], str]:
    """The tags and the description of a registered version of the bundle ``bundle_dir`` trained on the
    data ``fingerprint`` (:func:`crmlab.tracking.data_fingerprint`) with ``metrics``: its pipeline, the model (``crmlab.model``)
    and what it ships (``crmlab.shipped``), the primary metric (``crmlab.primary_metric``, its value in
    ``crmlab.primary_metric_value``), per table of the data fingerprint its hash and row count
    (``crmlab.data.<table>.sha256``, ``.rows``), the cut-off (``crmlab.data.as_of``) and the manifest's
    checksum (:data:`MANIFEST_TAG`)."""
    import json

    from crmlab.export import MANIFEST, manifest_sha256

    manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text(encoding="utf-8"))
    pipeline = str(manifest["pipeline"])
    record = pipelines.get(pipeline)
    metric = record.primary_metric
    model, shipped = _shipped(manifest)
    value = metrics.get(metric)
    tags = {"crmlab.pipeline": pipeline, "crmlab.model": model, "crmlab.shipped": shipped,
            "crmlab.primary_metric": metric, MANIFEST_TAG: manifest_sha256(bundle_dir)}
    if _finite(value):
        tags["crmlab.primary_metric_value"] = f"{float(value):.6g}"
    tables = {n: i for n, i in fingerprint.items() if isinstance(i, Mapping) and "sha256" in i}
    for name, info in tables.items():
        tags[f"crmlab.data.{name}.sha256"] = str(info["sha256"])
        tags[f"crmlab.data.{name}.rows"] = str(info.get("rows", ""))
    if fingerprint.get("as_of"):
        tags["crmlab.data.as_of"] = str(fingerprint["as_of"])
    data = "; ".join(
        f"{name} ({int(info.get('rows', 0)):,} rows"
        + (f", {int(info['customers']):,} customers" if "customers" in info else "")
        + (f", {info['date_min']} to {info['date_max']}" if info.get("date_min") else "")
        + f", sha256 {info['sha256']})" for name, info in tables.items())
    what = shipped if shipped == model or not model else f"{model} (expected purchases: {shipped})"
    direction = "higher" if record.higher_is_better else "lower"
    description = (f"crmlab {pipeline} model: {what or 'see the bundle manifest'}. "
                   f"{metric} = {tags.get('crmlab.primary_metric_value', 'not measured')} ({direction} is better). "
                   f"Trained on {data or 'no tracked table'}"
                   + (f" at as_of {fingerprint['as_of']}" if fingerprint.get("as_of") else "") + ".")
    return tags, description


def register_version(name: str, model_uri: str, *, run_id: str | None, model_id: str | None,
                     metrics: Mapping[str, Any], fingerprint: Mapping[str, Any], bundle_dir: str | Path) -> str:
    """Register the logged model ``model_uri`` as a new version of ``name`` with its description and tags
    (:func:`version_tags`), make it champion when it is the first (:func:`ensure_champion`) and return
    its version. Nothing is downloaded or copied: the version points at the logged model's files."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    tags, description = version_tags(metrics, fingerprint, bundle_dir)
    pipeline = tags["crmlab.pipeline"]
    client = mlflow.MlflowClient()
    try:
        client.create_registered_model(name, description=f"crmlab's {pipeline} models; the '{CHAMPION}' alias "
                                       "is the one `crmlab score` uses")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    mv = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, description=description,
                                     model_id=model_id)
    version = str(mv.version)
    if model_id:  # the logged model lists its registered versions (as mlflow.register_model does)
        try:
            known = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
            listed = [*(json.loads(known) if known else []), {"name": name, "version": version}]
            client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(listed)})
        except MlflowException as exc:
            log.warning("%s version %s: the logged model %s does not list it: %s", name, version, model_id, exc)
    log.info("registered %s version %s", name, version)
    ensure_champion(name, version)
    return version


def _local_folder(uri: str) -> Path | None:
    """The folder of this machine an artifact URI names (``file:`` or a bare path), or None (a remote store)."""
    from urllib.parse import urlparse

    from mlflow.utils.file_utils import local_file_uri_to_path

    scheme = urlparse(uri).scheme
    if scheme == "file":
        return Path(local_file_uri_to_path(uri))
    if scheme == "" or (len(scheme) == 1 and Path(uri).is_absolute()):  # a path (a Windows drive letter too)
        return Path(uri)
    return None


def champion_bundle(tracking: TrackingConfig, pipeline: str, dst: str | Path) -> tuple[Path, ChampionInfo]:
    """The champion's exported bundle (the folder inside its pyfunc model): read where it lies when the
    artifact store is a folder of this machine, else downloaded under ``dst`` (the bundle only, not
    the code and environment files of the model around it). Loading it checks its checksums and the
    manifest's against the one the version was registered with."""
    import mlflow

    info = get_champion(tracking, pipeline)
    if info is None:
        raise ModelError(
            f"{model_name(pipeline)} has no '{CHAMPION}' version in the registry at {tracking.uri}; "
            f"run `crmlab train {pipeline}` (or `crmlab promote {pipeline} VERSION`), or score from models/"
        )
    client = _client(tracking)
    try:
        uri = client.get_model_version_download_uri(info.name, info.version).rstrip("/")
        where = _local_folder(uri)
        if where is not None and (where / "artifacts").is_dir():
            artifacts = where / "artifacts"
        else:
            artifacts = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/artifacts", dst_path=str(dst)))
    except Exception as exc:  # MLflow raises many kinds (a missing artifact, an unreachable store)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{info.name} version {info.version} (the champion): cannot download its files: "
                         f"{reason}") from None
    # the pyfunc's "bundle" artifact is stored under artifacts/<folder name of the exported bundle>
    found = sorted(p.parent for p in artifacts.glob("*/manifest.json"))
    if len(found) != 1:
        raise ModelError(f"{info.name} version {info.version}: the registered model holds no crmlab bundle")
    from crmlab.export import manifest_sha256

    recorded = client.get_model_version(info.name, info.version).tags.get(MANIFEST_TAG)
    if recorded is not None and recorded != manifest_sha256(found[0]):
        raise ModelError(f"{found[0] / 'manifest.json'}: differs from the manifest {info.name} version {info.version} "
                         f"was registered with (tag {MANIFEST_TAG}); the artifact store was modified: retrain or "
                         "restore it")
    return found[0], info


#: Prefix of the parameter columns of :func:`recent_runs` (MLflow's own, as in ``mlflow.search_runs``).
PARAM_PREFIX = "params."


def _differing(params: list[Mapping[str, str]], pipeline: str) -> list[str]:
    """The parameter names whose value is not the same in every run (missing in some counts as differing):
    the settings first (the pipeline's config section, then the project's), then what was shipped, the
    data fingerprint (``data.*``) and last what was fitted (a model's parameters); each group sorted."""
    keys = set().union(*params) if params else set()
    groups = (f"{pipeline}.", "project.", "shipped.", "data.")

    def rank(k: str) -> tuple[int, str]:
        return next((i for i, g in enumerate(groups) if k.startswith(g)), len(groups)), k

    return sorted((k for k in keys if len({p.get(k) for p in params}) > 1), key=rank)


def recent_runs(tracking: TrackingConfig, pipeline: str, *, last: int = 10,
                metrics: list[str] | None = None, order: str = "metric") -> pd.DataFrame:
    """The latest ``last`` training runs of a pipeline (parent runs, not tuning studies) with their metrics
    side by side, the parameters in which they differ (columns ``params.<name>``), the registered
    version each produced and which one is the champion.

    ``order="metric"``: best first by the pipeline's primary metric (in its direction: lower errors,
    higher AUC), runs without it last, ties newest first; ``"newest"``: newest first."""
    import mlflow

    if order not in ("metric", "newest"):
        raise ConfigError(f"order={order!r}: choose metric or newest")
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
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
            and not r.data.tags.get("crmlab.job", "").startswith("tune")][:last]
    versions: dict[str, str] = {}
    champion = get_champion(tracking, pipeline)
    try:
        for mv in client.search_model_versions(f"name = '{model_name(pipeline)}'"):
            versions[mv.run_id] = str(mv.version)
    except mlflow.exceptions.MlflowException:
        pass
    record = pipelines.get(pipeline)
    primary = record.primary_metric
    differ = _differing([r.data.params for r in runs], pipeline) if len(runs) > 1 else []
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
        row.update({PARAM_PREFIX + k: r.data.params.get(k) for k in differ})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    fixed = ["run_id", "started", "status", "version", "champion"]
    params = [PARAM_PREFIX + k for k in differ]
    logged = [c for c in df.columns if c not in (*fixed, *params)]
    key = [m for m in record.key_metrics if m in logged and m != primary]
    chosen = metrics or [primary, *key, *sorted(c for c in logged if c not in (primary, *key))]
    missing = [m for m in chosen if m not in df.columns]
    if metrics and missing:
        raise ConfigError(f"no {pipeline} run logged metric(s) {missing}; logged: {sorted(logged)}")
    if order == "metric" and primary in df.columns:  # stable: the newest first among equals
        df = df.sort_values(primary, ascending=not record.higher_is_better, na_position="last", kind="stable")
    return df[fixed + [m for m in chosen if m in df.columns] + params].reset_index(drop=True)
