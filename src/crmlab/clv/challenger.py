"""A LightGBM challenger to BG/NBD x Gamma-Gamma: a regressor of a customer's spend in the holdout
from the shared customer features at the end of calibration, judged on the same holdout by the same
code (:func:`crmlab.clv.evaluate.spend_metrics`).

Trained honestly: the regressor never sees the holdout. It learns from an earlier window that ends
at ``calibration_end``: features at ``t0 = calibration_end - L``, target = net spend in
``(t0, calibration_end]``, then predicts holdout spend from the features at ``calibration_end``.
``L`` is the holdout length when the data before ``calibration_end`` are at least twice that long;
otherwise (CDNOW's paper split: 39 weeks of calibration, 39 of holdout) ``L`` is half the history
before ``calibration_end`` and the predictions are scaled by ``holdout / L`` (a constant spend rate,
which the report states).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.evaluate import spend_metrics
from crmlab.clv.shared import feature_matrix
from crmlab.config import ProjectConfig
from crmlab.features import build_features_from_tables, calibration_holdout_split
from crmlab.utils import progress

__all__ = ["LGBM_PARAMS", "EarlierWindow", "SpendChallenger", "compare_spend_models", "earlier_target", "earlier_window",
           "feature_matrix", "fit_challenger", "predict_challenger"]

log = logging.getLogger(__name__)

#: Fixed, modest settings: deterministic for a given seed (no tuning on the holdout). One thread: on
#: some 20,000 customers a fit takes well under a second on one core, while two OpenMP threads on a
#: machine whose cores are busy with other work wait at every barrier for each other (a fit took 20-70 s
#: instead of 3-4.5 s on a loaded 2-core machine); the predictions are the same bit for bit
#: (benchmarks/bench_demo.py --threads compares them).
LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
MIN_TRAIN_CUSTOMERS = 50
# metric -> whether higher is better
_DIRECTION = {"mae": False, "rmse": False, "spearman": True, "total_pct_error": False,
              "top_decile_share": True, "gini": True}


@dataclass
class SpendChallenger:
    """A fitted challenger: the LightGBM model and the window it learnt from."""

    model: Any
    feature_names: list[str]
    train_as_of: date
    target_days: int
    holdout_days: int
    n_train: int
    seed: int

    @property
    def scale(self) -> float:
        """Holdout length / training target length: 1 unless the history was too short."""
        return self.holdout_days / self.target_days

    def report(self) -> dict[str, Any]:
        return {
            "model": "lightgbm.LGBMRegressor",
            "params": {**LGBM_PARAMS, "random_state": self.seed},
            "train_features_as_of": self.train_as_of.isoformat(),
            "target_days": self.target_days,
            "holdout_days": self.holdout_days,
            "prediction_scale": self.scale,
            "n_train_customers": self.n_train,
            "n_features": len(self.feature_names),
        }

    def importance(self) -> pd.DataFrame:
        booster = self.model.booster_
        return (pd.DataFrame({"feature": self.feature_names,
                              "gain": booster.feature_importance(importance_type="gain"),
                              "splits": booster.feature_importance(importance_type="split")})
                .sort_values("gain", ascending=False, kind="stable").reset_index(drop=True))


@dataclass(frozen=True)
class EarlierWindow:
    """The window a challenger learns from: features at ``t0``, target over ``(t0, end]`` (``target_days``),
    predictions wanted over ``predict_days`` after ``end`` (scaled by ``scale`` = predict / target days)."""

    t0: date
    end: date
    target_days: int
    predict_days: int

    @property
    def scale(self) -> float:
        return self.predict_days / self.target_days


def earlier_window(first_date: date, end: date, predict_days: int, *, what: str = "challenger") -> EarlierWindow | None:
    """The window of the module doc ending at ``end``: ``L = min(predict_days, history // 2)``, where
    history is the days from ``first_date`` to ``end``; None (with a warning) when ``L`` < 7 days."""
    history = (end - first_date).days
    target_days = min(int(predict_days), history // 2)
    if target_days < 7:
        log.warning("%s skipped: only %d days of history before %s", what, history, end)
        return None
    t0 = end - timedelta(days=target_days)
    if target_days < predict_days:
        log.warning("%s: the history before %s is shorter than twice the %d days to predict; it learns over %d "
                    "days from features at %s and its predictions are scaled by %.3g", what, end, predict_days,
                    target_days, t0, predict_days / target_days)
    return EarlierWindow(t0, end, target_days, int(predict_days))


def earlier_target(tables: Any, project: ProjectConfig, ew: EarlierWindow, calibration_start: date | None
                   ) -> pd.DataFrame:
    """The cohort at ``ew.t0`` and what it did in ``(t0, end]`` (:func:`calibration_holdout_split`)."""
    return calibration_holdout_split(tables.transactions, calibration_end=ew.t0, holdout_end=ew.end,
                                     calibration_start=calibration_start, time_unit=project.time_unit)


def fit_challenger(tables: Any, project: ProjectConfig, window: Any, *, seed: int) -> SpendChallenger | None:
    """Fit the LightGBM spend regressor on the window before ``calibration_end``; None (with a
    warning) when there is too little history or too few customers to learn from."""
    from lightgbm import LGBMRegressor

    ew = earlier_window(window.first_date, window.calibration_end, window.holdout_days)
    if ew is None:
        return None
    target = earlier_target(tables, project, ew, window.calibration_start)
    if len(target) < MIN_TRAIN_CUSTOMERS:
        log.warning("challenger skipped: %d customers with a purchase by %s (need %d)", len(target), ew.t0,
                    MIN_TRAIN_CUSTOMERS)
        return None
    feats = build_features_from_tables(tables, as_of=ew.t0, cfg=project)
    feats = feats.merge(target[["customer_id", "amount_sum_holdout"]], on="customer_id", how="inner")
    X = feature_matrix(feats.drop(columns=["amount_sum_holdout"]))
    y = feats["amount_sum_holdout"].to_numpy(dtype=np.float64)
    progress(f"fit on {len(y):,} customers, {ew.t0} -> {ew.end}")
    model = LGBMRegressor(**LGBM_PARAMS, random_state=seed).fit(X, y)
    return SpendChallenger(model, list(X.columns), ew.t0, ew.target_days, ew.predict_days, len(feats), seed)


def predict_challenger(challenger: SpendChallenger, tables: Any, project: ProjectConfig, window: Any,
                       customer_ids: Sequence[str] | pd.Series) -> np.ndarray:
    """Predicted holdout spend for ``customer_ids`` (in their order) from the features at
    ``calibration_end``, scaled to the holdout length."""
    feats = build_features_from_tables(tables, as_of=window.calibration_end, cfg=project)
    ids = pd.Series(np.asarray(customer_ids), dtype="str")
    feats = feats.set_index(feats["customer_id"].astype("str")).reindex(ids)
    if feats["customer_id"].isna().any():
        missing = ids[feats["customer_id"].isna().to_numpy()].iloc[0]
        raise ValueError(f"customer {missing!r} of the holdout cohort has no features at {window.calibration_end}")
    X = feature_matrix(feats.reset_index(drop=True), challenger.feature_names)
    return challenger.model.predict(X) * challenger.scale


def compare_spend_models(actual: np.ndarray, predictions: Mapping[str, np.ndarray]
                         ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Side-by-side spend metrics of each model and, per metric, which model wins (lower MAE, RMSE
    and absolute total % error; higher Spearman, top-decile share and Gini)."""
    scores = {name: spend_metrics(actual, pred) for name, pred in predictions.items()}
    rows = []
    for metric, higher in _DIRECTION.items():
        values = {name: s[metric] for name, s in scores.items()}
        keyed = {n: (abs(v) if metric == "total_pct_error" else v) for n, v in values.items() if np.isfinite(v)}
        winner = (max if higher else min)(keyed, key=keyed.get) if keyed else None
        rows.append({"metric": metric, **values, "better": "higher" if higher else "lower", "winner": winner})
    return pd.DataFrame(rows), scores
