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
from crmlab.churn.data import MIN_ROWS
from crmlab.churn.explain import blend_reasons, linear_reasons, reasons_and_probability
from crmlab.churn.metrics import (
    profit_targets,
    risk_tiers,
)
from crmlab.churn.models import CalibratedChurn, LightGBMChurn, LinearChurn, category_codes, inner_lightgbm
from crmlab.churn.result import ChurnResult
from crmlab.config import ChurnConfig
from crmlab.errors import ModelError, NoFairComparison
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.utils import ids_unique, text_column

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


def row_hashes(ids: Any, labels: Any) -> np.ndarray:
    """One 64-bit hash per (customer id, label) row, sorted and unique: what a refitted contract
    bundle keeps of the rows it was fitted on (no id in clear), so that a retraining can judge it
    on rows it has not seen (:func:`evaluate_bundle`)."""
    keys = np.asarray([f"{i}\x1f{int(v)}" for i, v in zip(pd.Series(ids).astype(str), labels, strict=True)],
                      dtype=object)
    return np.unique(pd.util.hash_array(keys))


def linear_input_spec(linear: LinearChurn) -> dict[str, Any]:
    """The input spec of a logistic model: its categories go in as they are (an unseen one is not missing)."""
    return {"features": linear.features, "categorical": {}, "text": sorted(linear.categorical),
            "medians": dict(linear.medians), "zero_when_absent": list(_ZERO_WHEN_ABSENT)}


def export_bundle(path: str | Path, result: ChurnResult, churn: ChurnConfig, *, config_digest: str,
                  time_unit: str) -> Path:
    """Write ``models/churn/``: the LightGBM text model and its preprocessing spec (JSON), or the
    logistic regression's coefficients, or both and the weight (the blend); the calibration map,
    decision rule and risk tiers (params.json), the report tables and a manifest with features,
    training window and metrics. A contract model refitted on every labelled row also keeps the
    hashes of those rows (``arrays.npz``). No pickles."""
    shipped = result.shipped
    model = result.exported_model
    ds = result.dataset
    refit = result.shipped_model is not None
    X_fit = pd.concat([ds.X_train, ds.X_valid], ignore_index=True) if refit else ds.X_train
    linear = lgbm = None
    if shipped in ("logistic", "blend"):
        linear = LinearChurn.from_model(model if shipped == "logistic" else model.logistic)
    if shipped in ("lightgbm", "blend"):
        lgbm = inner_lightgbm(model if shipped == "lightgbm" else model.lightgbm)
    spec = preprocessing_spec(lgbm, X_fit) if lgbm is not None else linear_input_spec(linear)
    params = {
        "mode": result.mode,
        "model_kind": shipped,
        **({"logistic": linear.spec} if linear is not None else {}),
        **({"lightgbm": {"params": lgbm.lgb_params(), "best_iteration": lgbm.best_iteration_}} if lgbm is not None
           else {}),
        **({"blend": {"weight": model.weight}} if shipped == "blend" else {}),
        "calibration": _calibration_params(model),
        "decision": {k: result.decision.get(k) for k in ("rule", "threshold", "offer_cost", "save_rate",
                                                          "value_column")},
        "risk_tiers": {"edges": list(churn.risk_tier_edges), "labels": list(TIER_LABELS)},
        "top_k_percent": churn.top_k_percent,
        "reasons": churn.reasons,
    }
    window = {"mode": result.mode, **{k: v for k, v in ds.info.items() if k != "seed"}}
    if refit:
        window.update(refit_rows=len(X_fit), evaluated_rows=len(ds.y_train))
    manifest = {
        "features": spec["features"],
        "input_columns": ["customer_id", *spec["features"]],
        "output_columns": OUTPUT_COLUMNS,
        "time_unit": time_unit,
        "mode": result.mode,
        "model": shipped + (f"+{churn.calibration}" if shipped == "lightgbm" and churn.calibration != "none" else ""),
        "shipped_because": result.shipped_because,
        "refit_on_all_rows": refit,
        "training_window": window,
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in result.metrics.items()},
        "config_hash": config_digest,
    }
    texts = {
        **({MODEL_FILE: lgbm.booster_.model_to_string(num_iteration=lgbm.best_iteration_)} if lgbm is not None
           else {}),
        SPEC_FILE: json.dumps(spec, indent=2, sort_keys=True),
        "report_leaderboard.csv": result.leaderboard.to_csv(index=False),
        "report_calibration.csv": result.calibration.to_csv(index=False),
    }
    arrays = None
    if refit:
        y_all = np.concatenate([ds.y_train.to_numpy(), ds.y_valid.to_numpy()])
        arrays = {"trained_rows": row_hashes(pd.concat([ds.ids_train, ds.ids_valid], ignore_index=True), y_all)}
    return write_bundle(path, pipeline="churn", params=params, manifest=manifest, texts=texts, arrays=arrays)


@dataclass(frozen=True)
class _LoadedChurn:
    kind: str  # lightgbm, logistic or blend
    spec: dict[str, Any]  # the input spec of LightGBM (of the logistic regression when it ships alone)
    params: dict[str, Any]
    lightgbm: LightGBMChurn | None = None
    linear: LinearChurn | None = None
    weight: float = 1.0


def _load(bundle: Bundle) -> _LoadedChurn:
    kind = bundle.params.get("model_kind", "lightgbm")
    needed = (SPEC_FILE,) if kind == "logistic" else (MODEL_FILE, SPEC_FILE)
    missing = [name for name in needed if not (bundle.path / name).is_file()]
    if missing or "decision" not in bundle.params or kind not in ("lightgbm", "logistic", "blend"):
        raise ModelError(f"{bundle.path}: lacks {missing or ['params.json decision']}; not a churn bundle of this "
                         "crmlab, retrain")
    spec = json.loads(bundle.read_text(SPEC_FILE))
    linear, weight = None, 1.0
    if kind in ("logistic", "blend"):
        try:
            linear = LinearChurn(bundle.params["logistic"])
            weight = float(bundle.params["blend"]["weight"]) if kind == "blend" else 0.0
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{bundle.path / 'params.json'}: the {kind} model is incomplete ({exc}); retrain or "
                             "restore the bundle") from None
        if kind == "logistic":
            return _LoadedChurn(kind, spec, bundle.params, linear=linear, weight=0.0)
    booster = lgb.Booster(model_str=bundle.lightgbm_text(MODEL_FILE))
    model = LightGBMChurn.from_booster(booster, features=spec["features"],
                                       categorical_features=list(spec["categorical"]),
                                       feature_medians=spec["medians"])
    return _LoadedChurn(kind, spec, bundle.params, lightgbm=model, linear=linear, weight=weight)


def _model_input(features: pd.DataFrame, spec: Mapping[str, Any], where: Path) -> pd.DataFrame:
    """LightGBM's input from a features frame: the spec's columns in its order, categoricals with
    the training levels, numbers as float64; an absent interaction count is 0 (module constant)."""
    absent = [c for c in spec["features"] if c not in features.columns]
    fatal = [c for c in absent if not c.startswith(tuple(spec.get("zero_when_absent", ())))]
    if fatal:
        raise ModelError(f"churn scoring input: {len(fatal)} feature(s) of the model {where} are missing, e.g. "
                         f"{fatal[:5]}; score a frame from crmlab.features.build_features on the same kind of tables")
    if not spec["categorical"] and not spec.get("text"):  # every feature a number: one float block, no stacking
        block = np.empty((len(spec["features"]), len(features)), dtype=np.float64)
        for j, col in enumerate(spec["features"]):
            if col in absent:
                block[j] = 0.0
            elif isinstance(features[col].dtype, np.dtype) and features[col].dtype.kind in "fiub":
                block[j] = features[col].to_numpy()  # NumPy numbers: cast on assignment, nothing to mark missing
            else:
                block[j] = _numeric_column(features, col)
        return pd.DataFrame(block.T, columns=list(spec["features"]), index=features.index, copy=False)
    out = {}
    for col in spec["features"]:
        if col in absent:
            out[col] = np.zeros(len(features))
        elif col in spec.get("text", ()):  # a logistic model's category: as it is (an unseen value is not missing)
            values = features[col]
            out[col] = values if isinstance(values.dtype, pd.CategoricalDtype) else (
                values.astype(object).where(values.notna(), None))
        elif col in spec["categorical"]:
            levels = spec["categorical"][col]
            out[col] = pd.Categorical.from_codes(category_codes(features[col], levels), categories=levels)
        else:
            out[col] = _numeric_column(features, col)
    return pd.DataFrame(out, index=features.index)


def _numeric_column(features: pd.DataFrame, col: str) -> np.ndarray:
    try:
        return features[col].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        bad = features[col][pd.to_numeric(features[col], errors="coerce").isna() & features[col].notna()]
        raise ModelError(f"churn scoring input: column {col!r} should be numeric, got e.g. {bad.iloc[0]!r}") from None


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
    if loaded.kind == "logistic":  # the log-odds contributions are the reasons, exactly
        if len(X):
            reasons, raw = linear_reasons(loaded.linear, X, N_REASONS, text="str")
            if method == "none":
                reasons = None
    elif loaded.kind == "blend":  # w x LightGBM's contributions + (1 - w) x the regression's: the blend's log-odds
        if len(X):
            X_linear = (_model_input(features.reset_index(drop=True), linear_input_spec(loaded.linear), bundle.path)
                        if loaded.linear.categorical else X)  # its categories go in as text; numbers are alike
            reasons, raw = blend_reasons(loaded.lightgbm, loaded.linear, loaded.weight, X, X_linear, N_REASONS,
                                         method=method, text="str")
    elif len(X) and method != "none":
        # path reasons walk the trees once for the probability too (bit for bit predict_proba's)
        reasons, _, raw = reasons_and_probability(loaded.lightgbm, X, N_REASONS, risk_only=True, method=method,
                                                  text="str")
    if raw is None:
        raw = loaded.lightgbm.predict_proba(X)[:, 1] if len(X) else np.zeros(0)
    prob = _calibrate(raw, params.get("calibration"))
    tiers = risk_tiers(prob, tuple(params["risk_tiers"]["edges"]), tuple(params["risk_tiers"]["labels"]))
    decision = params["decision"]
    if decision["rule"] == "profit":
        value = np.nan_to_num(X[decision["value_column"]].to_numpy(dtype=np.float64), nan=0.0)  # a model feature
        flagged = profit_targets(prob, value, offer_cost=decision["offer_cost"], save_rate=decision["save_rate"])
    else:
        flagged = prob >= decision["threshold"]
    out = pd.DataFrame({"customer_id": features["customer_id"].reset_index(drop=True),
                        "churn_probability": prob, "churn_risk_tier": text_column(list(tiers.categories), tiers.codes),
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
    ``result`` and measured like ``result.metrics``, so a retraining compares like with like.

    Transactions: the champion was trained on snapshots whose labels end on or before its own
    validation cut-off, which is not later than the challenger's, so it has not seen these labels.
    Contract: a champion refitted on every labelled row keeps the hashes of those rows; it is judged
    only on the test rows it has not seen (a new customer, or a customer whose label changed), and
    the challenger's figures on the same rows come back as ``challenger_<metric>``. Raises
    :class:`~crmlab.errors.NoFairComparison` when fewer than 20 such rows (or one class only) remain.
    """
    bundle = as_bundle(bundle, "churn")
    ds = result.dataset
    y = ds.y_valid.to_numpy()
    seen = bundle.arrays.get("trained_rows")
    keep = np.ones(len(y), dtype=bool)
    if seen is not None:
        keep = ~np.isin(row_hashes(ds.ids_valid, y), seen)
        if keep.sum() < MIN_ROWS or np.unique(y[keep]).size < 2:
            raise NoFairComparison(
                f"the champion was fitted on {int((~keep).sum()):,} of the {len(y):,} test rows (same customer, same "
                f"label); the {int(keep.sum())} it has not seen are too few to judge it (at least {MIN_ROWS} with both "
                "labels): it is kept. Retrain when labels have moved on, or promote by hand (crmlab models promote).")
    features = valid_features(ds)
    scores = score_churn(features[keep].reset_index(drop=True), bundle)
    out = churn_metrics(y[keep], scores["churn_probability"].to_numpy(), result.top_k_percent)
    if not keep.all():
        mine = churn_metrics(y[keep], result.predictions[result.shipped][keep], result.top_k_percent)
        out.update({f"challenger_{k}": v for k, v in mine.items()})
        out["unseen_rows"] = float(keep.sum())
    return out
