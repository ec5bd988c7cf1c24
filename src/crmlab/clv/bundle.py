"""The CLV bundle: the fitted models' parameters as JSON, and the scorer batch scoring and the pyfunc call (P(alive), expected purchases and spend, CLV per customer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from crmlab.clv.evaluate import evaluate_holdout, predict_holdout
from crmlab.clv.models import SpendModel, TransactionModel, fit_models, score_rfm
from crmlab.clv.result import (
    FEATURES,
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    TRANSACTION_COLUMNS,
    ClvModels,
    ClvResult,
    ClvSettings,
    ClvWindow,
    ShippedPurchases,
)
from crmlab.clv.window import calibration_rfm
from crmlab.config import ClvConfig
from crmlab.errors import ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.features import rfm_summary
from crmlab.utils import ids_unique

#: The shipped LightGBM purchase model's text file in the bundle (when LightGBM or a blend ships).
PURCHASE_MODEL_FILE = "purchases_lightgbm.txt"


def export_bundle(
    path: str | Path,
    models: ClvModels,
    settings: ClvSettings,
    window: ClvWindow,
    *,
    metrics: Mapping[str, float],
    config_digest: str,
    notes: Sequence[str] | None = None,
    leaderboard: pd.DataFrame | None = None,
    conditional_expectations: pd.DataFrame | None = None,
) -> Path:
    """Write the refitted models to a bundle folder: JSON parameters and a manifest (features, time
    unit, horizon, training window, holdout metrics, config hash, which purchase model shipped and
    why) and the notes on what was derived or fell back (default: the models' own); a shipped LightGBM
    purchase model as its text file; the purchase leaderboard and the conditional expectations by model
    as the report's tables. No pickles."""
    params = {**models.to_dict(), "clv": settings.to_dict()}
    texts: dict[str, str] = {}
    shipped = models.purchases
    if shipped is not None:
        params["purchases"] = shipped.to_dict()
        if shipped.uses_lightgbm:
            texts[PURCHASE_MODEL_FILE] = shipped.booster.model_to_string()
    for name, table in (("purchase_leaderboard", leaderboard), ("conditional_expectations", conditional_expectations)):
        if table is not None:
            texts[f"report_{name}.csv"] = table.to_csv(index=False)
    manifest = {
        "shipped_purchases": models.shipped,
        "shipped_because": shipped.because if shipped is not None else f"{models.transaction.kind} (no challenger)",
        "blend_weight": float(shipped.weight) if shipped is not None else 1.0,
        "features": FEATURES,
        "input_columns": INPUT_COLUMNS,
        "output_columns": OUTPUT_COLUMNS,
        "time_unit": settings.time_unit,
        "horizon_months": settings.horizon_months,
        "model": models.transaction.kind,
        "spend_model": models.spend.kind,
        "penalizer": float(models.transaction.penalizer),
        "gg_penalizer": float(models.spend.penalizer),
        "notes": list(models.notes if notes is None else notes),
        "training_window": window.to_dict(),
        "n_customers": models.transaction.report_.get("n_customers"),
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()},
        "config_hash": config_digest,
    }
    if shipped is not None and shipped.uses_lightgbm:
        manifest["features"] = [*FEATURES, *(c for c in shipped.feature_names if c not in FEATURES)]
    return write_bundle(path, pipeline="clv", params=params, manifest=manifest, texts=texts)


def _models_from_bundle(bundle: Bundle) -> tuple[ClvModels, ClvSettings]:
    params = bundle.params
    missing = [k for k in ("transaction_model", "spend_model", "clv") if k not in params]
    if missing:
        raise ModelError(f"{bundle.path}: params.json lacks {missing}; not a CLV bundle of this crmlab, retrain")
    purchases = None
    raw = params.get("purchases")
    if raw is not None:
        try:
            weight = float(raw["weight"])
            purchases = ShippedPurchases(str(raw["name"]), weight, str(raw.get("because", "")),
                                         feature_names=tuple(map(str, raw.get("feature_names") or ())),
                                         scale=float(raw.get("scale", 1.0)), target_days=raw.get("target_days"),
                                         feature_windows=tuple(int(w) for w in raw.get("feature_windows") or ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{bundle.path}: params.json 'purchases' is incomplete or invalid ({exc!r}); retrain") from None
        if not (0.0 <= weight <= 1.0 and np.isfinite(purchases.scale) and purchases.scale > 0):
            raise ModelError(f"{bundle.path}: params.json 'purchases' has weight={weight!r}, scale={purchases.scale!r}; "
                             "retrain")
        if purchases.uses_lightgbm:
            import lightgbm as lgb

            booster = lgb.Booster(model_str=bundle.lightgbm_text(PURCHASE_MODEL_FILE))
            if list(booster.feature_name()) != list(purchases.feature_names):
                raise ModelError(f"{bundle.path / PURCHASE_MODEL_FILE}: its features differ from params.json's; retrain")
            purchases = replace(purchases, booster=booster)
    models = ClvModels(TransactionModel.from_dict(params["transaction_model"]), SpendModel.from_dict(params["spend_model"]),
                       purchases=purchases)
    return models, ClvSettings.from_dict(params["clv"])


def score_clv(
    features_or_transactions: pd.DataFrame,
    bundle: Bundle | str | Path,
    *,
    as_of: date | str | None = None,
    parametric_only: bool = False,
) -> pd.DataFrame:
    """Score customers with an exported CLV bundle: one row per customer with ``customer_id``,
    ``p_alive``, ``expected_purchases`` (over the bundle's horizon), ``expected_spend`` (expected
    spend per purchase) and ``clv`` (discounted, with margin, over the horizon).

    The input is either a features frame (``customer_id``, ``frequency``, ``recency``, ``T``,
    ``monetary_value`` in the bundle's time unit; other columns are ignored; rows keep their order)
    or a clean transaction log (``customer_id``, ``ts``, ``amount``), from which the RFM summary is
    built at ``as_of`` (default: its last date); then rows are sorted by customer id.

    Expected purchases come from the purchase model the bundle shipped (``manifest["shipped_purchases"]``):
    when that is LightGBM or a blend, the input must be the shared customer features frame
    (:func:`crmlab.features.build_features_from_tables`, what ``crmlab score`` passes), or a transaction
    log when the model needs no customer attribute. ``parametric_only`` scores with the bundle's
    BG/NBD-family model alone (the KPIs' BG/NBD CLV). ``clv_low`` and ``clv_high`` bound each CLV at
    the bundle's interval level (:mod:`crmlab.clv.interval`).
    """
    bundle = as_bundle(bundle, "clv")
    models, settings = _models_from_bundle(bundle)
    if parametric_only:
        models = replace(models, purchases=None)
    df = features_or_transactions
    if not isinstance(df, pd.DataFrame):
        raise ModelError(f"score_clv needs a pandas DataFrame, got {type(df).__name__}")
    columns = set(map(str, df.columns))
    missing_features = [c for c in INPUT_COLUMNS if c not in columns]
    if missing_features:
        missing_tx = [c for c in TRANSACTION_COLUMNS if c not in columns]
        if missing_tx:
            tx_like = {"ts", "amount"} & columns
            raise ModelError(
                "CLV scoring input: missing column(s) "
                + (f"{missing_tx} of a transaction log (customer_id, ts, amount)" if tx_like else
                   f"{missing_features} of a features frame ({', '.join(INPUT_COLUMNS)})")
                + (f" or {missing_features} of a features frame" if tx_like else
                   f" or {missing_tx} of a transaction log (customer_id, ts, amount)")
                + f"; got columns {sorted(columns)[:12]}"
            )
        if as_of is None:
            if df.empty:
                raise ModelError("CLV scoring input: the transaction log is empty")
            as_of = pd.Timestamp(df["ts"].max())
        rfm = rfm_summary(df, as_of=as_of, time_unit=settings.time_unit)
        features = None
        if models.purchases is not None and models.purchases.uses_lightgbm:
            # the shared features a transaction log alone gives (no customer attributes, no interactions)
            from crmlab.features import build_features

            windows = models.purchases.feature_windows or None
            feats = build_features(df, as_of=as_of, time_unit=settings.time_unit,
                                   **({"windows": windows} if windows else {}))
            features = feats.set_index(feats["customer_id"].astype("str")).reindex(
                rfm["customer_id"].astype("str")).reset_index(drop=True)
    else:
        rfm = df[INPUT_COLUMNS]
        features = df
        if not ids_unique(rfm["customer_id"]):
            dup = rfm["customer_id"].duplicated()
            raise ModelError(f"CLV scoring input: customer_id must be unique in a features frame; "
                             f"{int(dup.sum())} repeated, e.g. {rfm['customer_id'][dup].iloc[0]!r}")
    return score_rfm(models, rfm, settings, features=features)


def evaluate_bundle(bundle: Bundle | str | Path, result: ClvResult) -> dict[str, float]:
    """The holdout metrics of another exported model's specification (the registry's champion, say)
    on the holdout of ``result``, computed like ``result.metrics``, so a retraining compares like
    with like: the champion's model kind, penalizers and spend rule are fitted on the same
    calibration period as the challenger and judged on the same holdout. (Its exported parameters
    were refitted on data that may include this holdout, which would flatter it.) A champion that
    shipped LightGBM or a blend for expected purchases is judged with this run's LightGBM challenger
    (trained before the holdout) in its place, at the champion's blend weight."""
    bundle = as_bundle(bundle, "clv")
    models, settings = _models_from_bundle(bundle)
    if settings.time_unit != result.window.time_unit:
        raise ModelError(f"{bundle.path}: time unit {settings.time_unit!r}, the new run uses "
                         f"{result.window.time_unit!r}; compare models of the same time unit")
    spec = ClvConfig(model=models.transaction.kind, penalizer=models.transaction.penalizer,
                     spend_model=models.spend.kind, gg_penalizer=models.spend.penalizer,
                     spend_rule=models.spend.spend_rule)
    split = result.split
    calibrated = fit_models(calibration_rfm(split), spec)
    holdout = predict_holdout(calibrated, split)
    shipped = models.purchases
    if shipped is not None and shipped.uses_lightgbm and "lightgbm_purchases" in result.holdout.columns:
        # the champion's LightGBM was refitted on data that may include this holdout: the new run's
        # challenger, trained before it, stands in for it, blended with the champion's weight
        lgbm = result.holdout.set_index("customer_id")["lightgbm_purchases"].reindex(holdout["customer_id"]).to_numpy()
        purchases = shipped.weight * holdout["predicted_purchases"].to_numpy() + (1.0 - shipped.weight) * lgbm
        holdout = holdout.assign(predicted_purchases=purchases, predicted_spend=purchases * holdout["expected_spend"])
    metrics, _ = evaluate_holdout(holdout, calibrated.spend)
    return metrics
