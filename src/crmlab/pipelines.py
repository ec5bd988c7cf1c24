"""The pipelines, recorded once: what each one trains, tunes, evaluates, scores and reports.

Every part of crmlab that needs to know the pipelines (the command line, the demo, batch scoring,
retraining, the registry, the MLflow pyfuncs, the report, the config's sections) reads these
records; none keeps a list of its own. Adding a pipeline is a package with its trainer, evaluator and
scorer, its config section in :mod:`crmlab.config`, and one record here.

The records hold ``"module:function"`` references, not functions, so that reading them imports
nothing heavy (``crmlab --help`` and config loading stay fast); :meth:`Pipeline.load` imports one
when it is needed. This module imports nothing of crmlab's, so every other module may import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Pipeline", "customer_models", "get", "names", "records", "training_order", "tunable"]

Role = Literal["trainer", "evaluator", "scorer", "tuner"]


@dataclass(frozen=True)
class Pipeline:
    """One pipeline's record.

    ``title``: its heading (configs written by ``crmlab init``); ``summary``: one line of help;
    ``trainer``: ``(cfg, *, tracker=None, step=None) -> result`` (a result has ``summary()``, ``run_id``);
    ``evaluator``: ``(bundle, result) -> metrics``, another bundle judged on a result's holdout (retraining);
    ``scorer``: ``(input DataFrame, bundle) -> DataFrame``, the function batch scoring and the pyfunc call;
    ``tuner``: ``(cfg, *, trials, timeout, tracker, step) -> TuningResult``, or None;
    ``primary_metric``: what runs are ranked and promoted by (logged on the parent run, measured on data the
    model did not see) and whether higher is better; ``key_metrics``: what ``crmlab compare`` shows next;
    ``scores_customers``: one row per customer in ``crmlab score``; ``report_tables``: optional
    ``report_<name>.csv`` files of the bundle and the columns each must have; ``train_first``: trained
    before the others by ``crmlab demo`` and ``crmlab train all`` (the KPIs and the report use its bundle).
    """

    name: str
    title: str
    summary: str
    trainer: str
    evaluator: str
    scorer: str
    primary_metric: str
    higher_is_better: bool
    key_metrics: tuple[str, ...]
    scores_customers: bool
    tuner: str | None = None
    report_tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    train_first: bool = False

    def load(self, role: Role) -> Callable[..., Any]:
        """The function behind one of the record's references, imported now."""
        ref = getattr(self, role)
        if ref is None:
            raise LookupError(f"the {self.name} pipeline has no {role}")
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)


# The order of the score columns and of the config sections (training order: see training_order()).
_RECORDS: tuple[Pipeline, ...] = (
    Pipeline(
        name="churn",
        title="Churn",
        summary="LightGBM against logistic-regression and BG/NBD baselines: validation on the latest snapshot "
        "(or a stratified test split of a contract table), reasons per customer, export.",
        trainer="crmlab.churn.pipeline:train_churn",
        evaluator="crmlab.churn.bundle:evaluate_bundle",
        scorer="crmlab.churn.bundle:score_churn",
        tuner="crmlab.churn.tune:tune_churn",
        primary_metric="roc_auc", higher_is_better=True,
        key_metrics=("pr_auc", "log_loss", "brier", "lift_at_k", "recall_at_k"),
        scores_customers=True,
        report_tables={"leaderboard": ("model",), "calibration": ("predicted", "observed")},
    ),
    Pipeline(
        name="clv",
        title="CLV: BG/NBD + Gamma-Gamma",
        summary="BG/NBD (or Pareto/NBD, MBG/NBD) + Gamma-Gamma: holdout evaluation, LightGBM challenger, export.",
        trainer="crmlab.clv.pipeline:train_clv",
        evaluator="crmlab.clv.bundle:evaluate_bundle",
        scorer="crmlab.clv.bundle:score_clv",
        primary_metric="purchases_mae", higher_is_better=False,
        key_metrics=("purchases_total_pct_error", "purchases_spearman", "spend_mae", "spend_gini",
                     "spend_top_decile_share"),
        scores_customers=True,
        train_first=True,
    ),
    Pipeline(
        name="segmentation",
        title="Segmentation",
        summary="K-means segments on scaled behavioural features: k sweep, profiles, names, stability, export.",
        trainer="crmlab.segmentation.pipeline:train_segmentation",
        evaluator="crmlab.segmentation.bundle:evaluate_bundle",
        scorer="crmlab.segmentation.bundle:score_segmentation",
        primary_metric="silhouette", higher_is_better=True,
        key_metrics=("k", "calinski_harabasz", "davies_bouldin", "stability_ari"),
        scores_customers=True,
        report_tables={"profiles": ("segment", "customers")},
    ),
    Pipeline(
        name="forecast",
        title="Sales forecast",
        summary="Seasonal naive, ETS, ARIMA and LightGBM: rolling-origin backtest, the best ships with intervals.",
        trainer="crmlab.forecast.pipeline:train_forecast",
        evaluator="crmlab.forecast.bundle:evaluate_bundle",
        scorer="crmlab.forecast.bundle:score_forecast",
        tuner="crmlab.forecast.tune:tune_forecast",
        primary_metric="mase", higher_is_better=False,
        key_metrics=("rmsse", "wape", "smape", "bias", "coverage_80", "coverage_95"),
        scores_customers=False,
        report_tables={"forecast": ("period", "forecast", "lower", "upper")},
    ),
)
_BY_NAME: dict[str, Pipeline] = {p.name: p for p in _RECORDS}


def records() -> tuple[Pipeline, ...]:
    """Every pipeline's record."""
    return _RECORDS


def names() -> tuple[str, ...]:
    """The pipelines' names (the order of the config sections and of the score columns)."""
    return tuple(_BY_NAME)


def training_order() -> tuple[str, ...]:
    """The names in the order ``crmlab demo`` and ``crmlab train all`` train them."""
    return tuple(p.name for p in sorted(_RECORDS, key=lambda p: not p.train_first))


def customer_models() -> tuple[str, ...]:
    """The pipelines with one score per customer (``crmlab score``)."""
    return tuple(p.name for p in _RECORDS if p.scores_customers)


def tunable() -> tuple[str, ...]:
    """The pipelines with a tuner (``crmlab tune``, ``crmlab retrain --trials``)."""
    return tuple(p.name for p in _RECORDS if p.tuner is not None)


def get(name: str) -> Pipeline:
    """One pipeline's record; a KeyError names the known pipelines."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown pipeline {name!r}; choose one of {', '.join(_BY_NAME)}") from None
