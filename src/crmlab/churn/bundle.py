"""The churn bundle: what is exported (the LightGBM text model, its preprocessing spec and calibration), how it is read back and how it scores customers (probability, risk tier, flag and reasons)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from crmlab.churn.data import ChurnDataset
from crmlab.churn.evaluate import churn_metrics
from crmlab.churn.explain import linear_reasons, reasons_and_probability
from crmlab.churn.metrics import (
    profit_targets,
    risk_tiers,
)
from crmlab.churn.models import CalibratedChurn, LightGBMChurn, LinearChurn, inner_lightgbm
from crmlab.churn.result import ChurnResult
from crmlab.config import ChurnConfig
from crmlab.errors import ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.utils import ids_unique

MODEL_FILE = "lightgbm.txt"


SPEC_FILE = "preprocessing.json"


N_REASONS = 3


TIER_LABELS = ("low", "medium", "high")


OUTPUT_COLUMNS: list[str] = ["customer_id", "churn_probability", "churn_risk_tier", "churn_flagged",
                             *(f"churn_reason_{i}" for i in range(1, N_REASONS + 1))]


#: Interaction-count features exist only for the kinds seen in the scored population; a chunk of
#: customers without any interaction of a kind has no such column, which means a count of 0.
_ZERO_WHEN_ABSENT = ("interaction_",)


def preprocessing_spec(model: LightGBMChurn, X: pd.DataFrame) -> dict[str, Any]:
    """What scoring needs to rebuild LightGBM's input from a features frame, as JSON: the feature
    order, the levels of each categorical feature (unseen levels become missing) and the numeric
    training medians (a reason says "high" or "low" against them)."""
    features = [str(c) for c in model.feature_names_in_]
    categorical = {c: [str(v) for v in X[c].cat.categories] for c in model.categorical_features_}
    return {"features": features, "categorical": categorical, "medians": model.feature_medians_,
            "zero_when_absent": list(_ZERO_WHEN_ABSENT)}


def _calibration_params(model: Any) -> dict[str, Any] | None:
    if not isinstance(model, CalibratedChurn):
        return None
    if model.method == "isotonic":
        return {"method": "isotonic", "x": model.isotonic_.X_thresholds_.tolist(),
                "y": model.isotonic_.y_thresholds_.tolist()}
    return {"method": "sigmoid", **model.sigmoid_}


def export_bundle(path: str | Path, result: ChurnResult, churn: ChurnConfig, *, config_digest: str,
                  time_unit: str) -> Path:
    """Write ``models/churn/``: the LightGBM text model, the preprocessing spec (JSON), the
    calibration map, decision rule and risk tiers (params.json), the report tables and a manifest
    with features, training window and metrics. No pickles."""
    shipped = result.shipped
    model = result.models[shipped]
    ds = result.dataset
    if shipped == "logistic":
        linear = LinearChurn.from_model(model)
        spec = {"features": linear.features, "categorical": {}, "text": sorted(linear.categorical),
                "medians": dict(linear.medians), "zero_when_absent": list(_ZERO_WHEN_ABSENT)}
    else:
        lgbm = inner_lightgbm(model)
        spec = preprocessing_spec(lgbm, ds.X_train)
    params = {
        "mode": result.mode,
        "model_kind": shipped,
        **({"logistic": linear.spec} if shipped == "logistic" else
           {"lightgbm": {"params": lgbm.lgb_params(), "best_iteration": lgbm.best_iteration_}}),
        "calibration": _calibration_params(model),
        "decision": {k: result.decision.get(k) for k in ("rule", "threshold", "offer_cost", "save_rate",
                                                          "value_column")},
        "risk_tiers": {"edges": list(churn.risk_tier_edges), "labels": list(TIER_LABELS)},
        "top_k_percent": churn.top_k_percent,
        "reasons": churn.reasons,
    }
    window = {"mode": result.mode, **{k: v for k, v in ds.info.items() if k != "seed"}}
    manifest = {
        "features": spec["features"],
        "input_columns": ["customer_id", *spec["features"]],
        "output_columns": OUTPUT_COLUMNS,
        "time_unit": time_unit,
        "mode": result.mode,
        "model": shipped + (f"+{churn.calibration}" if shipped == "lightgbm" and churn.calibration != "none" else ""),
        "shipped_because": result.shipped_because,
        "training_window": window,
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in result.metrics.items()},
        "config_hash": config_digest,
    }
    texts = {
        **({MODEL_FILE: lgbm.booster_.model_to_string(num_iteration=lgbm.best_iteration_)} if shipped == "lightgbm"
           else {}),
        SPEC_FILE: json.dumps(spec, indent=2, sort_keys=True),
        "report_leaderboard.csv": result.leaderboard.to_csv(index=False),
        "report_calibration.csv": result.calibration.to_csv(index=False),
    }
    return write_bundle(path, pipeline="churn", params=params, manifest=manifest, texts=texts)


@dataclass(frozen=True)
class _LoadedChurn:
    model: Any  # LightGBMChurn, or LinearChurn for a shipped logistic regression
    spec: dict[str, Any]
    params: dict[str, Any]


def _load(bundle: Bundle) -> _LoadedChurn:
    kind = bundle.params.get("model_kind", "lightgbm")
    needed = (SPEC_FILE,) if kind == "logistic" else (MODEL_FILE, SPEC_FILE)
    missing = [name for name in needed if not (bundle.path / name).is_file()]
    if missing or "decision" not in bundle.params or kind not in ("lightgbm", "logistic"):
        raise ModelError(f"{bundle.path}: lacks {missing or ['params.json decision']}; not a churn bundle of this "
                         "crmlab, retrain")
    spec = json.loads(bundle.read_text(SPEC_FILE))
    if kind == "logistic":
        try:
            return _LoadedChurn(LinearChurn(bundle.params["logistic"]), spec, bundle.params)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{bundle.path / 'params.json'}: the logistic model is incomplete ({exc}); retrain or "
                             "restore the bundle") from None
    booster = lgb.Booster(model_str=bundle.lightgbm_text(MODEL_FILE))
    model = LightGBMChurn.from_booster(booster, features=spec["features"],
                                       categorical_features=list(spec["categorical"]),
                                       feature_medians=spec["medians"])
    return _LoadedChurn(model, spec, bundle.params)


def _model_input(features: pd.DataFrame, spec: Mapping[str, Any], where: Path) -> pd.DataFrame:
    """LightGBM's input from a features frame: the spec's columns in its order, categoricals with
    the training levels, numbers as float64; an absent interaction count is 0 (module constant)."""
    absent = [c for c in spec["features"] if c not in features.columns]
    fatal = [c for c in absent if not c.startswith(tuple(spec.get("zero_when_absent", ())))]
    if fatal:
        raise ModelError(f"churn scoring input: {len(fatal)} feature(s) of the model {where} are missing, e.g. "
                         f"{fatal[:5]}; score a frame from crmlab.features.build_features on the same kind of tables")
    out = {}
    for col in spec["features"]:
        if col in absent:
            out[col] = np.zeros(len(features))
        elif col in spec.get("text", ()):  # a logistic model's category: as it is (an unseen value is not missing)
            values = features[col]
            out[col] = values.astype(object).where(values.notna(), None)
        elif col in spec["categorical"]:
            values = features[col]
            values = values.astype(object).where(values.notna(), None)
            out[col] = pd.Categorical([None if v is None else str(v) for v in values],
                                      categories=spec["categorical"][col])
        else:
            try:
                out[col] = features[col].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                bad = features[col][pd.to_numeric(features[col], errors="coerce").isna() & features[col].notna()]
                raise ModelError(f"churn scoring input: column {col!r} should be numeric, got e.g. "
                                 f"{bad.iloc[0]!r}") from None
    return pd.DataFrame(out, index=features.index)


def _calibrate(raw: np.ndarray, calibration: Mapping[str, Any] | None) -> np.ndarray:
    if calibration is None:
        return raw
    if calibration["method"] == "isotonic":
        return np.interp(raw, calibration["x"], calibration["y"])
    logit = np.log(np.clip(raw, 1e-6, 1 - 1e-6) / (1 - np.clip(raw, 1e-6, 1 - 1e-6)))
    return 1 / (1 + np.exp(-(calibration["a"] * logit + calibration["b"])))


def score_churn(features: pd.DataFrame, bundle: Bundle | str | Path) -> pd.DataFrame:
    """Score customers with an exported churn bundle, one row per input row, in the input's order:
    ``customer_id``, ``churn_probability``, ``churn_risk_tier`` (low / medium / high),
    ``churn_flagged`` (the decision rule: above the threshold, or a positive expected profit of an
    offer) and ``churn_reason_1..3``: the features pushing this customer's churn odds up the most,
    e.g. ``"recency_days high (+0.42)"`` (None when fewer push up).

    ``features`` is a frame of :func:`crmlab.features.build_features` (other columns are ignored).
    """
    bundle = as_bundle(bundle, "churn")
    if not isinstance(features, pd.DataFrame):
        raise ModelError(f"score_churn needs a pandas DataFrame, got {type(features).__name__}")
    if "customer_id" not in features.columns:
        raise ModelError(f"churn scoring input: no customer_id column; got columns {list(features.columns)[:12]}")
    if not ids_unique(features["customer_id"]):
        dup = features["customer_id"].duplicated()
        raise ModelError(f"churn scoring input: customer_id must be unique; {int(dup.sum())} repeated, e.g. "
                         f"{features['customer_id'][dup].iloc[0]!r}")
    loaded = _load(bundle)
    X = _model_input(features.reset_index(drop=True), loaded.spec, bundle.path)
    params = loaded.params
    method = params.get("reasons", "shap")
    reasons, raw = None, None
    if isinstance(loaded.model, LinearChurn):  # the log-odds contributions are the reasons, exactly
        if len(X):
            reasons, raw = linear_reasons(loaded.model, X, N_REASONS)
            if method == "none":
                reasons = None
    elif len(X) and method != "none":
        # path reasons walk the trees once for the probability too (bit for bit predict_proba's)
        reasons, _, raw = reasons_and_probability(loaded.model, X, N_REASONS, risk_only=True, method=method)
    if raw is None:
        raw = loaded.model.predict_proba(X)[:, 1] if len(X) else np.zeros(0)
    prob = _calibrate(raw, params.get("calibration"))
    tiers = risk_tiers(prob, tuple(params["risk_tiers"]["edges"]), tuple(params["risk_tiers"]["labels"]))
    decision = params["decision"]
    if decision["rule"] == "profit":
        value = np.nan_to_num(X[decision["value_column"]].to_numpy(dtype=np.float64), nan=0.0)  # a model feature
        flagged = profit_targets(prob, value, offer_cost=decision["offer_cost"], save_rate=decision["save_rate"])
    else:
        flagged = prob >= decision["threshold"]
    out = pd.DataFrame({"customer_id": features["customer_id"].reset_index(drop=True),
                        "churn_probability": prob, "churn_risk_tier": np.asarray(tiers.astype(str), dtype=object),
                        "churn_flagged": np.asarray(flagged, dtype=bool)})
    if reasons is not None:
        for i in range(1, N_REASONS + 1):
            out[f"churn_reason_{i}"] = reasons.get(f"reason_{i}", np.full(len(out), None, dtype=object))
    else:
        for i in range(1, N_REASONS + 1):
            out[f"churn_reason_{i}"] = np.full(len(out), None, dtype=object)
    return out


def valid_features(ds: ChurnDataset) -> pd.DataFrame:
    return ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy())[["customer_id", *ds.X_valid.columns]]


def evaluate_bundle(bundle: Bundle | str | Path, result: ChurnResult) -> dict[str, float]:
    """Another exported churn model (the registry's champion, say) scored on the validation rows of
    ``result`` and measured like ``result.metrics``, so a retraining compares like with like. The
    champion was trained on snapshots whose labels end on or before its own validation cut-off,
    which is not later than the challenger's, so it has not seen these labels (transaction mode;
    in contract mode both split the same table with the same seed)."""
    bundle = as_bundle(bundle, "churn")
    scores = score_churn(valid_features(result.dataset), bundle)
    return churn_metrics(result.dataset.y_valid, scores["churn_probability"].to_numpy(), result.top_k_percent)
