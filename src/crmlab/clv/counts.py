"""A LightGBM challenger to the purchase model (BG/NBD or its family): a Poisson regressor of the
number of repeat purchase periods a customer makes in a window, from the shared customer features at
the window's start; and the blend of the two.

Trained honestly, as the spend challenger (:mod:`crmlab.clv.challenger`, whose window it uses): it
learns on an earlier window that ends at ``calibration_end`` (features at ``t0 = calibration_end - L``,
target = purchase periods in ``(t0, calibration_end]``), then predicts the holdout from the features
at ``calibration_end``, scaled by ``holdout / L`` when the history is too short for ``L`` to be the
holdout's length (a constant purchase rate over the horizon, which the report states).

The blend is ``w * parametric + (1 - w) * challenger``. Its weight is also fixed before the holdout
is seen (:func:`choose_blend_weight`): on the same earlier window, the purchase model is fitted to
the histories at ``t0`` and predicts ``(t0, calibration_end]``, the challenger's predictions there are
out of fold (5 folds of customers, so it is never judged on the customers it learnt from), and ``w``
is the value of 0, 0.05, ..., 1 with the smallest mean squared error (the loss whose minimiser is the
expected count, which CLV multiplies; ties keep the larger ``w``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.challenger import LGBM_PARAMS, MIN_TRAIN_CUSTOMERS, EarlierWindow, earlier_target, earlier_window
from crmlab.clv.shared import feature_matrix
from crmlab.clv.evaluate import BLEND, LIGHTGBM
from crmlab.clv.result import ClvModels, ClvSettings, ClvWindow, ShippedPurchases
from crmlab.config import ClvConfig, ProjectConfig
from crmlab.errors import ModelError
from crmlab.features import build_features_from_tables
from crmlab.utils import progress

__all__ = ["BLEND_GRID", "COUNT_PARAMS", "N_FOLDS", "PurchaseChallenger", "aligned_features", "best_blend_weight", "challenger_predictions",
           "choose_blend_weight", "fit_count_booster", "fit_purchase_challenger", "out_of_fold",
           "purchase_model_metrics", "ship_purchases"]

log = logging.getLogger(__name__)

#: Fixed, modest settings: the spend challenger's, with a Poisson objective (nothing tuned on a holdout).
COUNT_PARAMS: dict[str, Any] = {**LGBM_PARAMS, "objective": "poisson"}
N_FOLDS = 5
BLEND_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


def fit_count_booster(X: pd.DataFrame, y: np.ndarray, seed: int) -> Any:
    """The LightGBM Poisson regressor on one row per customer (returns its Booster)."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(**COUNT_PARAMS, random_state=seed).fit(X, y).booster_


@dataclass
class PurchaseChallenger:
    """A fitted purchase-count challenger: the LightGBM booster, its features and window, and the
    blend weight chosen on that window (None when it was not chosen there)."""

    booster: Any
    feature_names: list[str]
    window: EarlierWindow
    n_train: int
    seed: int
    blend_weight: float | None = None
    blend_search: list[dict[str, float]] = field(default_factory=list)

    @property
    def scale(self) -> float:
        return self.window.scale

    def predict(self, feats: pd.DataFrame) -> np.ndarray:
        """Expected purchase periods over ``window.predict_days`` after the features' date, one per row
        of ``feats`` (a shared features frame, in its order)."""
        X = feature_matrix(feats, self.feature_names)
        return self.booster.predict(X) * self.scale

    def report(self) -> dict[str, Any]:
        return {
            "model": "lightgbm.LGBMRegressor (Poisson)",
            "params": {**COUNT_PARAMS, "random_state": self.seed},
            "train_features_as_of": self.window.t0.isoformat(),
            "target_end": self.window.end.isoformat(),
            "target_days": self.window.target_days,
            "predict_days": self.window.predict_days,
            "prediction_scale": self.scale,
            "n_train_customers": self.n_train,
            "n_features": len(self.feature_names),
            "blend_weight": self.blend_weight,
            "blend_search": self.blend_search,
        }

    def importance(self) -> pd.DataFrame:
        return (pd.DataFrame({"feature": self.feature_names,
                              "gain": self.booster.feature_importance(importance_type="gain"),
                              "splits": self.booster.feature_importance(importance_type="split")})
                .sort_values("gain", ascending=False, kind="stable").reset_index(drop=True))


def _training_set(tables: Any, project: ProjectConfig, ew: EarlierWindow, calibration_start: date | None
                  ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(the cohort at t0 with its target, the features at t0 of the same customers in the same order)."""
    target = earlier_target(tables, project, ew, calibration_start)
    if len(target) < MIN_TRAIN_CUSTOMERS or not target["frequency_holdout"].sum() > 0:
        log.warning("purchase challenger skipped: %d customers with a purchase by %s and %d repeat purchases "
                    "after it (need %d customers and a purchase)", len(target), ew.t0,
                    int(target["frequency_holdout"].sum()) if len(target) else 0, MIN_TRAIN_CUSTOMERS)
        return None
    feats = build_features_from_tables(tables, as_of=ew.t0, cfg=project)
    ids = target["customer_id"].astype("str")
    feats = feats.set_index(feats["customer_id"].astype("str")).reindex(ids).reset_index(drop=True)
    if feats["customer_id"].isna().any():
        missing = ids[feats["customer_id"].isna().to_numpy()].iloc[0]
        raise ModelError(f"customer {missing!r} of the cohort at {ew.t0} has no features there")
    return target.reset_index(drop=True), feats


def fit_purchase_challenger(tables: Any, project: ProjectConfig, *, first_date: date, end: date, predict_days: int,
                            calibration_start: date | None, seed: int,
                            blend_with: ClvConfig | None = None) -> PurchaseChallenger | None:
    """Fit the challenger on the earlier window ending at ``end`` (predicting ``predict_days`` after
    it); with ``blend_with`` (the purchase model's specification) also choose the blend weight there
    (:func:`choose_blend_weight`). None (with a warning) when the history is too short or the cohort
    too small."""
    ew = earlier_window(first_date, end, predict_days, what="purchase challenger")
    if ew is None:
        return None
    data = _training_set(tables, project, ew, calibration_start)
    if data is None:
        return None
    target, feats = data
    X = feature_matrix(feats)
    y = target["frequency_holdout"].to_numpy(dtype=np.float64)
    progress(f"fit on {len(y):,} customers, {ew.t0} -> {ew.end}")
    booster = fit_count_booster(X, y, seed)
    challenger = PurchaseChallenger(booster, list(X.columns), ew, len(y), seed)
    if blend_with is not None:
        challenger.blend_weight, challenger.blend_search = choose_blend_weight(target, X, blend_with, seed=seed)
    return challenger


def out_of_fold(X: pd.DataFrame, y: np.ndarray, seed: int, folds: int = N_FOLDS) -> np.ndarray:
    """The challenger's prediction for each row from a model that did not see it (``folds`` seeded
    folds of customers)."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    out = np.empty(len(y))
    for k in range(folds):
        progress(f"blend weight, out-of-fold fit {k + 1}/{folds} on {int((fold != k).sum()):,} customers")
        test = fold == k
        booster = fit_count_booster(X[~test], y[~test], seed)
        out[test] = booster.predict(X[test])
    return out


def choose_blend_weight(target: pd.DataFrame, X: pd.DataFrame, spec: ClvConfig, *, seed: int,
                        grid: Sequence[float] = BLEND_GRID) -> tuple[float, list[dict[str, float]]]:
    """The weight of the purchase model in the blend, chosen on the earlier window (see the module
    doc): (weight, the mean squared error of each weight tried)."""
    from crmlab.clv.fallback import fit_purchase_model

    y = target["frequency_holdout"].to_numpy(dtype=np.float64)
    duration = float(target["duration_holdout"].iloc[0])
    try:
        model, _ = fit_purchase_model(target["frequency_cal"], target["recency_cal"], target["T_cal"], spec)
    except ModelError as exc:
        log.warning("blend weight: the purchase model does not fit the earlier window (%s); weight 0.5", exc)
        return 0.5, []
    parametric = model.predict_purchases(duration, target["frequency_cal"], target["recency_cal"], target["T_cal"])
    weight, search = best_blend_weight(y, parametric, out_of_fold(X, y, seed), grid)
    log.info("blend weight %.2f on %s (earlier window, mean squared error %.4g)", weight, spec.model,
             min(r["mse"] for r in search))
    return weight, search


def best_blend_weight(actual: np.ndarray, parametric: np.ndarray, challenger: np.ndarray,
                      grid: Sequence[float] = BLEND_GRID) -> tuple[float, list[dict[str, float]]]:
    """The weight ``w`` of ``grid`` whose blend ``w * parametric + (1 - w) * challenger`` has the smallest
    mean squared error against ``actual`` (ties: the larger ``w``), and the error of each weight."""
    y, p, c = (np.asarray(v, dtype=np.float64) for v in (actual, parametric, challenger))
    search = [{"weight": float(w), "mse": float(np.mean((w * p + (1 - w) * c - y) ** 2))} for w in grid]
    best = min(search, key=lambda r: (round(r["mse"], 12), -r["weight"]))
    return best["weight"], search

# --------------------------------------------------------------------------- the pipeline's steps


def aligned_features(tables: Any, project: Any, as_of: Any, customer_ids: Any) -> pd.DataFrame:
    """The shared customer features at ``as_of`` of ``customer_ids``, in their order."""
    feats = build_features_from_tables(tables, as_of=as_of, cfg=project)
    ids = pd.Series(np.asarray(customer_ids), dtype="str")
    out = feats.set_index(feats["customer_id"].astype("str")).reindex(ids)
    if out["customer_id"].isna().any():
        missing = ids[out["customer_id"].isna().to_numpy()].iloc[0]
        raise ModelError(f"customer {missing!r} has no shared features at {as_of}")
    return out.reset_index(drop=True)


def challenger_predictions(challenger: Any, feats: pd.DataFrame, predictions: dict[str, np.ndarray]
                           ) -> dict[str, np.ndarray]:
    """The LightGBM challenger's and the blend's holdout purchases (the blend with the weight chosen
    before the holdout, on the first model of ``predictions``, the parametric one)."""
    parametric = next(iter(predictions.values()))
    lgbm = challenger.predict(feats)
    w = float(challenger.blend_weight if challenger.blend_weight is not None else 0.5)
    return {LIGHTGBM: lgbm, BLEND: w * parametric + (1.0 - w) * lgbm}


def purchase_model_metrics(board: pd.DataFrame, challenger: Any) -> dict[str, float]:
    """Each purchase model's holdout metrics (``purchases_<parametric|lightgbm|blend>_<metric>``), the
    blend's weight and whether the parametric model shipped."""
    out: dict[str, float] = {}
    for row in board.itertuples(index=False):
        name = row.model if row.model in (LIGHTGBM, BLEND) else "parametric"
        for k in ("mae", "rmse", "spearman", "total_pct_error", *(("mse_change",) if name != "parametric" else ())):
            out[f"purchases_{name}_{k}"] = float(getattr(row, k))
    if challenger is not None:
        out["purchases_blend_weight"] = float(challenger.blend_weight if challenger.blend_weight is not None else 0.5)
    out["purchases_shipped_parametric"] = float(bool(board.loc[board["shipped"], "model"].isin(
        [m for m in board["model"] if m not in (LIGHTGBM, BLEND)]).any()))
    return out


def ship_purchases(models: ClvModels, shipped: str, because: str, challenger: Any, tables: Any, project: Any,
                   window: ClvWindow, settings: ClvSettings, rfm: pd.DataFrame
                   ) -> tuple[ClvModels, pd.DataFrame | None]:
    """The refitted models with the shipped purchase model, and the shared features at ``as_of`` of
    ``rfm``'s customers when it needs them. LightGBM is refitted as it was evaluated: on the window
    ending at ``as_of``, predicting the CLV horizon; the blend keeps the weight chosen before the holdout."""
    if shipped not in (LIGHTGBM, BLEND):
        return replace(models, purchases=ShippedPurchases(models.transaction.kind, 1.0, because)), None
    final = fit_purchase_challenger(tables, project, first_date=window.first_date, end=window.as_of,
                                    predict_days=settings.horizon_days, calibration_start=None, seed=challenger.seed)
    if final is None:
        note = (f"{shipped} won on the holdout but LightGBM could not be refitted up to {window.as_of}: "
                f"{models.transaction.kind} ships")
        log.warning("CLV purchase model: %s", note)
        return replace(models, notes=(*models.notes, note),
                       purchases=ShippedPurchases(models.transaction.kind, 1.0, f"{because}; {note}")), None
    weight = 0.0 if shipped == LIGHTGBM else float(challenger.blend_weight if challenger.blend_weight is not None
                                                   else 0.5)
    purchases = ShippedPurchases(shipped, weight, because, booster=final.booster,
                                 feature_names=tuple(final.feature_names), scale=final.scale,
                                 target_days=final.window.target_days,
                                 feature_windows=tuple(project.features.windows))
    return replace(models, purchases=purchases), aligned_features(tables, project, window.as_of, rfm["customer_id"])
