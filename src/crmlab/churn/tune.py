"""Tuning the churn LightGBM with Optuna: a split of the training rows, pruning on the validation AUC every few boosting rounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.data import ChurnDataset
from crmlab.churn.models import holdout_split
from crmlab.churn.pipeline import lightgbm_model, load_dataset
from crmlab.config import CrmlabConfig
from crmlab.tracking import Tracker
from crmlab.utils import Step, no_step

_PRUNE_EVERY = 10  # boosting rounds between two reports of the validation AUC to the pruner


def _tuning_split(ds: ChurnDataset, seed: int) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """Rows a trial fits on and rows it is judged on, all from the training part, so the validation
    snapshot (or the contract test split) stays unseen by tuning. A stratified fifth of the
    customers is held out; a trial is judged on their rows of the latest training snapshot. With
    several training snapshots it fits on the other customers' rows of the earlier snapshots, so it
    is judged forward in time, as the model will be used; with one (or a contract table), on the
    other customers' rows."""
    y = ds.y_train.to_numpy()
    fit, held = holdout_split(len(y), y, 0.2, seed, ds.ids_train.to_numpy())
    if ds.snapshot_train is not None and ds.snapshot_train.nunique() > 1:
        snap = ds.snapshot_train.to_numpy()
        latest = max(snap)
        earlier, last = fit[snap[fit] != latest], held[snap[held] == latest]
        # forward only when the earlier snapshots hold a fair share of the rows (an early snapshot
        # of a young business can hold a handful of customers) and both parts have both classes
        if (len(earlier) >= len(fit) / 4 and np.unique(y[earlier]).size == 2
                and np.unique(y[last]).size == 2):
            fit, held = earlier, last
    return ds.X_train.iloc[fit], ds.y_train.iloc[fit], ds.X_train.iloc[held], ds.y_train.iloc[held]


def _pruning_callback(trial: Any) -> Callable[[Any], None]:
    """A LightGBM callback reporting the validation AUC to Optuna every few rounds; the pruner's
    verdict raises ``optuna.TrialPruned`` out of the boosting loop."""
    from crmlab.tuning import report

    def callback(env: Any) -> None:
        if (env.iteration + 1) % _PRUNE_EVERY:
            return
        for _, metric, value, _ in env.evaluation_result_list:
            if metric == "auc":
                report(trial, value, env.iteration + 1)
                return

    return callback


def _cross_validated_objective(cfg: CrmlabConfig, ds: ChurnDataset) -> Callable[[Any, dict[str, Any]], float]:
    """Contract tables: a trial's value is LightGBM's mean ROC AUC over the repeated stratified
    cross-validation of the training part (``churn.cv_folds`` x ``churn.cv_repeats``, the folds the
    training compares models on), so that a better trial is better by more than one split's noise;
    the running mean is reported after each fold for pruning."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    from crmlab.churn.blend import repeats_for
    from crmlab.config import with_overrides
    from crmlab.tuning import nested_overrides, report

    churn, seed = cfg.churn, cfg.project.seed
    y = ds.y_train.to_numpy()
    folds = max(2, min(churn.cv_folds, int(np.bincount(y, minlength=2).min())))
    splits = list(RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats_for(churn.cv_repeats, len(y)),
                                          random_state=seed).split(np.zeros(len(y)), y))

    def objective(trial: Any, params: dict[str, Any]) -> float:
        trial_churn = with_overrides(cfg, nested_overrides("churn", params)).churn
        aucs = []
        for k, (tr, va) in enumerate(splits):
            model = lightgbm_model(trial_churn, seed).fit(ds.X_train.iloc[tr], y[tr])
            aucs.append(roc_auc_score(y[va], model.decision_function(ds.X_train.iloc[va])))
            report(trial, float(np.mean(aucs)), k)
        return float(np.mean(aucs))

    return objective


def tune_churn(cfg: CrmlabConfig, *, trials: int | None = None, timeout: float | None = None,
               tracker: Tracker | None = None, step: Step | None = None) -> Any:
    """Tune LightGBM with Optuna over ``churn.tuning.search_space`` (:func:`crmlab.tuning.run_study`:
    seeded TPE, median pruning, resumable SQLite study, a child run per trial, the best parameters
    written to ``outputs/tuning/churn_best.yaml``). Returns the :class:`~crmlab.tuning.TuningResult`.

    Contract tables: each trial is LightGBM's mean ROC AUC over the repeated stratified
    cross-validation of the training part (:func:`_cross_validated_objective`). Transactions: each trial fits on four fifths of the training customers (their rows of the earlier training
    snapshots when there are several), with early stopping on, and is judged by ROC AUC on, the
    other fifth's rows of the latest training snapshot (:func:`_tuning_split`); that AUC is
    reported every 10 rounds for pruning. The validation snapshot (contract: the test
    split) never chooses the parameters, so a training with them still compares LightGBM with the
    baselines blind.
    """
    from sklearn.metrics import roc_auc_score

    from crmlab.config import with_overrides
    from crmlab.tuning import nested_overrides, run_study

    step = step or no_step
    project, churn = cfg.project, cfg.churn
    prepared, mode, ds = load_dataset(cfg, step)
    X_fit, y_fit, X_val, y_val = _tuning_split(ds, project.seed)
    if mode == "contract":
        objective = _cross_validated_objective(cfg, ds)
        return run_study("churn", objective, churn.tuning, project=project, direction="maximize", metric="roc_auc",
                         trials=trials, timeout=timeout, tracker=tracker, step=step, config=cfg.section("churn"),
                         fingerprint=prepared.fingerprint)

    def objective(trial: Any, params: dict[str, Any]) -> float:
        trial_cfg = with_overrides(cfg, nested_overrides("churn", params))
        model = lightgbm_model(trial_cfg.churn, project.seed)
        model.set_params(params={**(model.params or {}), "metric": "auc"})
        model.fit(X_fit, y_fit, eval_set=(X_val, y_val), callbacks=[_pruning_callback(trial)])
        trial.set_user_attr("best_iteration", model.best_iteration_)
        return float(roc_auc_score(y_val, model.predict_proba(X_val)[:, 1]))

    return run_study("churn", objective, churn.tuning, project=project, direction="maximize", metric="roc_auc",
                     trials=trials, timeout=timeout, tracker=tracker, step=step, config=cfg.section("churn"),
                     fingerprint=prepared.fingerprint)
