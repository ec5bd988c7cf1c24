"""The segmentation pipeline: features -> scale -> choose k -> K-means -> profile, name, check
stability -> export -> track; and score from a bundle.

Steps are pure functions named with verbs; :func:`train_segmentation` only wires them::

    prepare_data -> build_features_from_tables (as_of) -> check_features -> purchasers
      -> FeatureScaler.fit -> sweep_k + choose_k on a sample (or the configured k)
      -> fit_segments (KMeans, MiniBatchKMeans above a size) -> evaluate_segments (silhouette on a
      sample, Calinski-Harabasz, Davies-Bouldin, stability ARI) -> profile + name
      -> RfmScorer (the classic baseline) -> export_bundle -> log_training

Segments are made of the customers with a purchase on or before ``as_of`` (``project.as_of``, else
the data's own last date: never a fixed date); a customer without one is ``no_purchase`` (segment
id -1) when scored.

An unstable K-means is never shipped. With fewer customers than ``segmentation.min_customers``,
with no stable k in the sweep, or with a chosen (or fixed) k whose stability ARI is below
``segmentation.stability_threshold``, the pipeline ships ``segmentation.fallback`` instead: the RFM
segments of the baseline (the marketer's named RFM grid, scored against the training base) or one
segment of all purchasers, and says so in the log, the MLflow tags (``crmlab.fallback``), the
manifest and the printed summary; the metrics of the shipped partition are logged, with
``kmeans_shipped`` = 0 and the best K-means stability ARI seen.

:func:`crmlab.segmentation.bundle.score_segmentation` is what batch scoring and the MLflow pyfunc call: it reads the scaler
and the centres from the bundle's arrays (no pickles, no scikit-learn object) and assigns each
row to its nearest centre with numpy, so millions of customers take seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CrmlabConfig, SegmentationConfig, config_hash
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.export import Bundle, as_bundle
from crmlab.features import build_features_from_tables
from crmlab.registry import check_evaluation
from crmlab.segmentation.models import (
    FeatureScaler,
    choose_k,
    fit_kmeans,
    nearest_centre,
    sample_rows,
    stability,
    sweep_k,
)
from crmlab.segmentation.profiles import migration_matrix, name_segments, percentile_profile, profile_segments
from crmlab.segmentation.rfm import RfmScorer, monetary_column, rfm_segment_names

#: the segments a fallback ships: every RFM grid name (ids are positions here), or one segment
RFM_NAMES: list[str] = list(dict.fromkeys(str(n) for n in rfm_segment_names()))
SINGLE_NAME = "all_customers"
from crmlab.tracking import Run, Tracker
from crmlab.training import register_pyfunc, training_run
from crmlab.utils import Step, no_step
from crmlab.workflow import prepare_data
from crmlab.segmentation.models import SegmentationModel
from crmlab.segmentation.evaluate import evaluate_segments
from crmlab.segmentation.result import SegmentationResult
from crmlab.segmentation.bundle import export_bundle, score_segmentation, shipped_because

__all__ = [
    "MigrationResult",
    "SegmentationModel",
    "SegmentationResult",
    "check_features",
    "evaluate_segments",
    "export_bundle",
    "fit_segments",
    "log_training",
    "migrate_segments",
    "purchasers",
    "score_segmentation",
    "train_segmentation",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the model


# --------------------------------------------------------------------------- steps


def check_features(features: pd.DataFrame, cfg: SegmentationConfig) -> list[str]:
    """The configured feature columns, checked: each must be a numeric column of the features frame."""
    columns = [str(c) for c in features.columns]
    numeric = [c for c in columns if c != "customer_id" and pd.api.types.is_numeric_dtype(features[c])
               and not pd.api.types.is_bool_dtype(features[c])]
    for name in cfg.features:
        if name not in columns:
            raise ConfigError(f"segmentation.features: {name!r} is not a feature column; choose from "
                              f"{', '.join(numeric)}")
        if name not in numeric:
            raise ConfigError(f"segmentation.features: {name!r} is not numeric ({features[name].dtype}); choose "
                              f"numeric columns such as {', '.join(numeric[:8])}")
    if len(set(cfg.features)) != len(cfg.features):
        raise ConfigError(f"segmentation.features lists a column twice: {cfg.features}")
    return list(cfg.features)


def purchasers(features: pd.DataFrame) -> pd.DataFrame:
    """The customers with a purchase on or before the cut-off (finite ``recency_days``), in order."""
    if "recency_days" not in features.columns:
        raise DataError("segmentation needs transactions (the features lack recency_days)", column="recency_days")
    bought = np.isfinite(features["recency_days"].to_numpy(dtype=np.float64, na_value=np.nan))
    return features.loc[bought].reset_index(drop=True)


def fit_segments(z: np.ndarray, k: int, *, seed: int, n_init: int, minibatch: bool) -> np.ndarray:
    """The final K-means centres, numbered by segment size (0 = the largest) so that ids read the
    same way from one training to the next."""
    centres = fit_kmeans(z, k, seed=seed, n_init=n_init, minibatch=minibatch)
    sizes = np.bincount(nearest_centre(z, centres), minlength=k)
    return centres[np.argsort(-sizes, kind="stable")]


# --------------------------------------------------------------------------- migration


@dataclass
class MigrationResult:
    """Segments of the same customers at two cut-off dates and the matrix of moves between them."""

    date_from: date
    date_to: date
    matrix: pd.DataFrame
    before: pd.DataFrame
    after: pd.DataFrame

    def summary(self) -> list[str]:
        stayed = sum(int(self.matrix.loc[n, n]) for n in self.matrix.index if n in self.matrix.columns)
        total = int(self.matrix.to_numpy().sum())
        return [f"{total:,} customers from {self.date_from} to {self.date_to}: {stayed:,} "
                f"({stayed / max(total, 1):.1%}) kept their segment (rows: from, columns: to)"]


def migrate_segments(cfg: CrmlabConfig, date_from: date | str, date_to: date | str,
                     bundle: Bundle | str | Path | None = None, *, tables: Any = None) -> MigrationResult:
    """Score the customers with one segmentation bundle at two cut-off dates and count the moves
    (:func:`crmlab.segmentation.profiles.migration_matrix`). Default bundle:
    ``<models_dir>/segmentation``; default tables: the configured data, cleaned."""
    d1, d2 = pd.Timestamp(date_from).date(), pd.Timestamp(date_to).date()
    if d2 <= d1:
        raise ConfigError(f"migration: --to {d2} must be after --from {d1}")
    loaded = as_bundle(bundle if bundle is not None else Path(cfg.project.output.models_dir) / "segmentation",
                       "segmentation")
    if tables is None:
        tables = prepare_data(cfg.project).tables
    before = score_segmentation(build_features_from_tables(tables, as_of=d1, cfg=cfg.project), loaded)
    after = score_segmentation(build_features_from_tables(tables, as_of=d2, cfg=cfg.project), loaded)
    return MigrationResult(d1, d2, migration_matrix(before, after), before, after)


# --------------------------------------------------------------------------- tracking


def log_training(run: Run, result: SegmentationResult, *, registered_model_name: str | None = None) -> None:
    """Log one training to its MLflow run: metrics, parameters, the sweep and profiles (tables and
    plots), the RFM cross-table and the model (a pyfunc over the bundle, with a signature, registered)."""
    if not run.active:
        return
    from crmlab.registry import model_name
    from crmlab.segmentation import plots

    run.log_params({"k": result.k, "chosen_by": result.chosen_by, "algorithm": result.algorithm,
                    "segment_names": result.profiles["name"].tolist()})
    because = result.fallback or shipped_because(result.k, result.chosen_by, result.metrics)
    run.set_tags({"crmlab.model": result.model.kind, "crmlab.shipped": result.model.kind,
                  "crmlab.shipped_because": because[:4000],
                  **({"crmlab.fallback": result.fallback} if result.fallback else {})})
    run.log_metrics(result.metrics)
    run.log_table(result.profiles, "segments/profiles.csv")
    run.log_table(result.rfm_vs_kmeans.reset_index(), "segments/rfm_vs_kmeans.csv")
    run.log_figure(plots.plot_profiles(result.profiles, result.ranks), "plots/profiles.png")
    if result.sweep is not None:
        for row in result.sweep.drop(columns="unstable").itertuples(index=False):  # MLflow charts them against k
            run.log_metrics({f"sweep_{key}": value for key, value in row._asdict().items() if key != "k"}, step=row.k)
        run.log_table(result.sweep, "sweep/sweep.csv")
        run.log_figure(plots.plot_sweep(result.sweep, result.k, result.chosen_by), "plots/sweep.png")
    run.log_dict({"as_of": result.as_of.isoformat(), "k": result.k, "chosen_by": result.chosen_by,
                  "algorithm": result.algorithm, "kind": result.model.kind, "fallback": result.fallback,
                  "metrics": result.metrics, "names": result.profiles["name"].tolist(),
                  "bundle": str(result.bundle_path)},
                 "segmentation_report.json")
    example = result.features[result.model.input_columns].head(20).reset_index(drop=True)
    register_pyfunc(result, input_example=example, output_example=score_segmentation(example, result.bundle_path),
                    registered_model_name=registered_model_name or model_name("segmentation"))


# --------------------------------------------------------------------------- wiring


def train_segmentation(cfg: CrmlabConfig, *, tracker: Tracker | None = None,
                       step: Step | None = None) -> SegmentationResult:
    """Train the segmentation pipeline end to end (see the module doc) and return what it produced.

    ``step(text)`` is a context manager wrapped around each step (the CLI shows progress with it).
    """
    step = step or no_step
    project, seg = cfg.project, cfg.segmentation
    seed = project.seed
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project)
    if prepared.tables.transactions is None or prepared.as_of is None:
        raise ConfigError("the segmentation pipeline needs transactions: project.data.transactions is null or empty")
    as_of = prepared.as_of
    with step(f"Building features at {as_of}"):
        features = build_features_from_tables(prepared.tables, as_of=as_of, cfg=project)
        columns = check_features(features, seg)
        base = purchasers(features)
    n = len(base)
    if n < 2:
        raise ModelError(f"{n} customer(s) with a purchase on or before {as_of}: too few to find segments")
    scaler = FeatureScaler(seg.transform).fit(base[columns].to_numpy(dtype=np.float64, na_value=np.nan))
    z = scaler.transform_rows(base[columns].to_numpy(dtype=np.float64, na_value=np.nan))
    sample = sample_rows(n, seg.sample_size, seed)
    sil_rows = sample_rows(n, seg.silhouette_sample, seed)
    rfm = RfmScorer(monetary_column(base.columns)).fit(base)
    fallback: str | None = None
    least = max(seg.k or 0, seg.k_range[0]) + 1
    if n < max(seg.min_customers, least):
        fallback = (f"{n} customers with a purchase on or before {as_of}, fewer than "
                    + (f"segmentation.min_customers={seg.min_customers}" if n >= least else f"the {least} K-means needs"))

    with training_run(cfg, "segmentation", tracker=tracker, fingerprint=prepared.fingerprint,
                      cleaning=prepared.cleaning, tags={"crmlab.model": "kmeans"}) as tr:
        sweep = None
        metrics: dict[str, float] = {}
        k, chosen_by, algorithm = 0, "fallback", "KMeans"
        if fallback is None and seg.k is None:
            lo, hi = seg.k_range[0], min(seg.k_range[1], len(sample) - 1)
            with step(f"Sweeping k = {lo}..{hi} on {len(sample):,} customers"):
                sweep = sweep_k(z[sample], range(lo, hi + 1), seed=seed, n_init=seg.n_init,
                                silhouette_sample=seg.silhouette_sample, stability_runs=seg.stability_runs,
                                stability_threshold=seg.stability_threshold)
            metrics["kmeans_best_stability_ari"] = float(sweep["stability_ari"].max())
            if sweep["unstable"].all():
                best = sweep.loc[sweep["stability_ari"].idxmax()]
                fallback = (f"no k in {lo}..{hi} is stable: the best bootstrap stability ARI is "
                            f"{best['stability_ari']:.3f} (k={int(best['k'])}), below "
                            f"segmentation.stability_threshold={seg.stability_threshold:g}")
            else:
                k, chosen_by = choose_k(sweep, seg.k_selection), seg.k_selection
        elif fallback is None:
            k, chosen_by = seg.k, "fixed"
        if fallback is None:
            minibatch = n > seg.minibatch_threshold
            algorithm = "MiniBatchKMeans" if minibatch else "KMeans"
            with step(f"Fitting {algorithm} with k={k} on {n:,} customers"):
                centres = fit_segments(z, k, seed=seed, n_init=seg.n_init, minibatch=minibatch)
                labels = nearest_centre(z, centres)
            with step(f"Evaluating: silhouette, stability over {seg.stability_runs} seeds and bootstrap samples"):
                metrics.update(evaluate_segments(z, labels, sil_rows))
                metrics.update(stability(z[sample], k, seed=seed, runs=seg.stability_runs, reference=labels[sample]))
                metrics.update({"k": float(k), "n_customers": float(n), "kmeans_shipped": 1.0,
                                "inertia": float(((z - centres[labels]) ** 2).sum()),
                                "stable": float(metrics["stability_ari"] >= seg.stability_threshold)})
            if not metrics["stable"]:
                fallback = (f"k={k} ({chosen_by}) is unstable: stability ARI {metrics['stability_ari']:.3f} < "
                            f"segmentation.stability_threshold={seg.stability_threshold:g}")
                metrics = {"kmeans_best_stability_ari": max(metrics["stability_ari"],
                                                            metrics.get("kmeans_best_stability_ari", -1.0))}
            else:
                model = SegmentationModel(columns, scaler, centres, name_segments(
                    percentile_profile(base, labels, columns, k)), rfm)
        if fallback is not None:
            kind = seg.fallback
            algorithm = "RFM segments" if kind == "rfm" else "one segment"
            names = RFM_NAMES if kind == "rfm" else [SINGLE_NAME]
            model = SegmentationModel(columns, scaler, np.empty((0, len(columns))), names, rfm, kind)
            labels = model.assign(base)
            fallback += f"; shipped {algorithm} instead (segmentation.fallback={kind})"
            log.warning("segmentation: no K-means shipped: %s", fallback)
            metrics.update(evaluate_segments(z, labels, sil_rows))
            k, chosen_by = int(len(np.unique(labels))), "fallback"
            metrics.update({"k": float(k), "n_customers": float(n), "kmeans_shipped": 0.0, "stable": 0.0})
        with step("Profiling and naming the segments; RFM baseline"):
            size = len(model.names)
            ranks = percentile_profile(base, labels, columns, size)
            ranks.index = pd.Index(model.names, name="segment")
            profiles = profile_segments(base, labels, columns, model.names,
                                        revenue="amount_sum_total" if "amount_sum_total" in base.columns else None)
            used = profiles["customers"].to_numpy() > 0
            profiles, ranks = profiles[used].reset_index(drop=True), ranks[used]
            scores = model.score(features)
            bought = scores["segment_id"].to_numpy() >= 0
            rfm_vs_kmeans = pd.crosstab(scores["segment_rfm"][bought].rename("rfm_segment"),
                                        scores["segment_name"][bought].rename("segment"))
        check_evaluation("segmentation", metrics, what=f"({algorithm}, k={k})")
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(Path(project.output.models_dir) / "segmentation", model, profiles, as_of=as_of,
                                        k=k, chosen_by=chosen_by, algorithm=algorithm, metrics=metrics,
                                        config_digest=config_hash(cfg.section("segmentation")), sweep=sweep,
                                        fallback=fallback)
        result = SegmentationResult(
            as_of=as_of, k=k, chosen_by=chosen_by, algorithm=algorithm, metrics=metrics, sweep=sweep,
            profiles=profiles, ranks=ranks, model=model, scores=scores, bundle_path=bundle_path, fingerprint=prepared.fingerprint,
            features=base, labels=labels, silhouette_rows=sil_rows, rfm_vs_kmeans=rfm_vs_kmeans, fallback=fallback,
            **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, plots and model to MLflow"):
                log_training(tr.run, result)
    return result
