"""The churn pipeline: build a labelled dataset, fit LightGBM and its baselines, compare, export, track.

Steps are pure functions named with verbs; :func:`train_churn` only wires them::

    prepare_data -> resolve_mode -> build_dataset (snapshots | contract split)
      -> fit_models (LightGBM [+ calibration], logistic, BG/NBD) [-> cross_validate (contract)]
      -> evaluate_models (leaderboard on the validation rows) -> choose_decision
      -> export_bundle -> log_training (parent run ``churn``, a child run per model)

Two kinds of business (:mod:`crmlab.churn.data`):

* **transactions**: a customer has churned when they make no purchase in the ``horizon_days``
  after a cut-off. The validation snapshot is at ``project.as_of`` when the data cover the horizon
  after it (CDNOW at 1997-09-30: labels to 1998-03-31), else at ``as_of - horizon_days`` (the
  default ``as_of``, the last transaction date, has no future to label). Training snapshots end
  ``horizon_days`` before the validation one and step back from there, so no training label comes
  from the period the models are judged on. Never a random split of one period.
* **contract**: the customer table has its own churn column; stratified train/test split, plus a
  stratified cross-validation of LightGBM on the training part.

The exported model is the one evaluated (trained on the training rows only, not refitted with
the validation rows): the metrics in its manifest are the metrics of exactly that model, and a
retraining can score the champion's bundle on a challenger's validation snapshot without the
champion having seen those labels.

:func:`score_churn` is what batch scoring and the MLflow pyfunc call: it reads the LightGBM text
model and the JSON preprocessing spec of a bundle (no pickles) and returns, per customer, the churn
probability, a risk tier, whether the decision rule flags them and their top three reasons.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from crmlab.churn.data import ChurnDataset, ChurnWindows, make_contract_dataset, make_snapshot_dataset, resolve_windows
from crmlab.churn.explain import global_importance, reasons_and_probability
from crmlab.churn.metrics import (
    best_f1_threshold,
    calibration_table,
    capacity_threshold,
    classification_metrics,
    compare_auc,
    lift_at,
    profit_targets,
    realised_profit,
    risk_tiers,
)
from crmlab.churn.models import CalibratedChurn, LightGBMChurn, LogisticChurn, PAliveChurn, holdout_split
from crmlab.config import ChurnConfig, CrmlabConfig, config_hash
from crmlab.data.io import Tables
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.export import Bundle, as_bundle, load_bundle, write_bundle
from crmlab.registry import check_evaluation
from crmlab.tracking import Run, Tracker
from crmlab.training import TrainingResult, register_pyfunc, training_run
from crmlab.utils import Step, ids_unique, no_step
from crmlab.workflow import PreparedData, prepare_data

__all__ = [
    "MODEL_FILE",
    "OUTPUT_COLUMNS",
    "REGISTERED_MODEL_NAME",
    "SPEC_FILE",
    "ChurnResult",
    "build_dataset",
    "churn_windows",
    "choose_decision",
    "cross_validate",
    "evaluate_bundle",
    "evaluate_models",
    "export_bundle",
    "fit_models",
    "lightgbm_model",
    "log_training",
    "resolve_mode",
    "score_churn",
    "train_churn",
    "tune_churn",
    "validation_cut_off",
]

REGISTERED_MODEL_NAME = "crmlab-churn"
MODEL_FILE = "lightgbm.txt"
SPEC_FILE = "preprocessing.json"
N_REASONS = 3
TIER_LABELS = ("low", "medium", "high")
OUTPUT_COLUMNS: list[str] = ["customer_id", "churn_probability", "churn_risk_tier", "churn_flagged",
                             *(f"churn_reason_{i}" for i in range(1, N_REASONS + 1))]
#: Interaction-count features exist only for the kinds seen in the scored population; a chunk of
#: customers without any interaction of a kind has no such column, which means a count of 0.
_ZERO_WHEN_ABSENT = ("interaction_",)
_SHAP_ROWS = 10_000  # validation rows the global mean |SHAP| is computed on (seeded sample)


# --------------------------------------------------------------------------- result


@dataclass(kw_only=True)
class ChurnResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check).

    ``metrics`` are the parent run's: the exported LightGBM's under plain names (``roc_auc``, the
    registry's primary metric), every model's as ``<model>_<metric>``, the decision rule's and,
    in contract mode, the cross-validation's. ``predictions``: each model's on the validation rows;
    ``fit_seconds``: each model's fitting time.
    """

    mode: str
    dataset: ChurnDataset
    models: dict[str, Any]
    leaderboard: pd.DataFrame
    decision: dict[str, Any]
    importance: pd.DataFrame
    calibration: pd.DataFrame
    predictions: dict[str, np.ndarray]
    fit_seconds: dict[str, float]
    top_k_percent: float = 10.0

    def summary(self) -> list[str]:
        """A few lines for the CLI: the data, the leaderboard, the decision rule, the bundle."""
        ds, info = self.dataset, self.dataset.info
        if self.mode == "transactions":
            lines = [f"transactions: trained on {len(ds.y_train):,} customer-snapshots "
                     f"({', '.join(info['train_snapshots'])}), validated on {len(ds.y_valid):,} customers at "
                     f"{info['valid_snapshot']} (churn = no purchase in {info['horizon_days']} days; "
                     f"rate {ds.y_valid.mean():.1%})"]
            if info.get("window_note"):
                lines.append(f"note: {info['window_note']}")
        else:
            cv = (f"; LightGBM {int(self.metrics['cv_folds'])}-fold CV ROC AUC {self.metrics['cv_roc_auc_mean']:.3f}"
                  f" ± {self.metrics['cv_roc_auc_std']:.3f}") if "cv_roc_auc_mean" in self.metrics else ""
            lines = [f"contract: trained on {len(ds.y_train):,} customers, tested on {len(ds.y_valid):,} "
                     f"(stratified; churn rate {ds.y_valid.mean():.1%}){cv}"]
        k = self.top_k_percent
        lines.append(f"{'model':<10} {'ROC AUC':>7} {'PR AUC':>7} {'logloss':>7} {'Brier':>6} "
                     f"{'lift@10%':>8} {f'recall@{k:g}%':>10}")
        for row in self.leaderboard.itertuples(index=False):
            lines.append(f"{row.model:<10} {row.roc_auc:7.3f} {row.pr_auc:7.3f} {row.log_loss:7.3f} {row.brier:6.3f} "
                         f"{row.lift_top_decile:8.2f} {row.recall_at_k:10.1%}")
        lines.extend(gain_verdict(row) for row in self.leaderboard.to_dict("records") if row["model"] != "lightgbm")
        for name, model in self.models.items():
            note = getattr(inner_lightgbm(model), "note_", "")
            if note:
                lines.append(f"note: {name}: {note}")
        d = self.decision
        rule = (f"threshold {d['threshold']:.3f}" if d.get("threshold") is not None else
                f"expected profit > 0 (offer {d['offer_cost']:g}, save rate {d['save_rate']:g}, "
                f"value {d['value_column']})")
        lines.append(f"decision ({d['rule']}): {rule} flags {d['flagged_share']:.1%} of the validation customers; "
                     f"precision {d['precision']:.1%}, recall {d['recall']:.1%}"
                     + (f", realised profit {d['realised_profit']:,.0f}" if "realised_profit" in d else ""))
        lines.append("top features (mean |SHAP|): " + ", ".join(self.importance["feature"].head(5)))
        lines.append(f"bundle: {self.bundle_path}")
        return lines


# --------------------------------------------------------------------------- dataset


def resolve_mode(churn: ChurnConfig, tables: Tables) -> str:
    """``"contract"`` or ``"transactions"`` from ``churn.mode`` and the tables there are."""
    customers = tables.customers
    has_label = customers is not None and churn.label_column in customers.columns
    if churn.mode == "contract" or (churn.mode == "auto" and has_label):
        if customers is None:
            raise ConfigError("churn.mode=contract needs a customer table with a churn column: "
                              "project.data.customers is null")
        if not has_label:
            raise DataError(f"no churn label column {churn.label_column!r}", file=tables.sources.get("customers"),
                            expected=f"one of the columns {list(map(str, customers.columns))[:12]} "
                            "(set churn.label_column)")
        return "contract"
    if tables.transactions is None or tables.transactions.empty:
        raise ConfigError("churn needs either transactions (project.data.transactions) or a customer table with "
                          f"a churn column {churn.label_column!r} (churn.label_column)")
    return "transactions"


def churn_windows(churn: ChurnConfig, transactions: pd.DataFrame, as_of: date) -> ChurnWindows:
    """The horizon, validation cut-off and snapshots of a transaction-mode dataset: explicit values of
    ``churn`` win, auto ones are derived from the data's span (:func:`crmlab.churn.data.resolve_windows`).
    The label window of the validation snapshot must lie inside the data: censored labels would
    count customers who simply have not been observed long enough as churned."""
    ts = transactions["ts"]
    first, last = pd.Timestamp(ts.min()).date(), pd.Timestamp(ts.max()).date()
    if churn.validation_as_of is not None and churn.horizon_days != "auto":
        cut, horizon = churn.validation_as_of, timedelta(days=churn.horizon_days)
        if cut + horizon > last:
            raise ConfigError(f"churn.validation_as_of={cut} plus churn.horizon_days={churn.horizon_days} ends on "
                              f"{cut + horizon}, after the last transaction ({last}): its labels would be censored; "
                              "set an earlier churn.validation_as_of (or leave it empty)")
    if as_of > last and (as_of - last) <= quiet_tolerance(ts):
        # a cut-off a few days after the last purchase (data exported today, nobody bought since): the base
        # has been this quiet before, so those days are observed days without a purchase, not missing data
        last = as_of
    return resolve_windows(churn.horizon_days, churn.n_snapshots, churn.snapshot_step_days, first=first, last=last,
                           as_of=as_of, validation_as_of=churn.validation_as_of)


def quiet_tolerance(ts: pd.Series) -> timedelta:
    """The longest stretch between two consecutive purchase days of the whole base: a cut-off at most
    this long after the last purchase is taken as observed silence; a longer one as missing data."""
    days = pd.Series(pd.to_datetime(ts).dt.normalize().unique()).sort_values()
    if len(days) < 2:
        return timedelta(0)
    return pd.Timedelta(days.diff().max()).to_pytimedelta()


def validation_cut_off(churn: ChurnConfig, transactions: pd.DataFrame, as_of: date) -> date:
    """The validation snapshot's cut-off: ``churn.validation_as_of`` if set, else ``as_of`` when the
    data cover the horizon after it, else ``as_of`` minus the horizon (see the module doc)."""
    return churn_windows(churn, transactions, as_of).validation_as_of


def build_dataset(cfg: CrmlabConfig, tables: Tables, as_of: date | None, mode: str) -> ChurnDataset:
    """The labelled training and validation rows of either kind of business (module doc)."""
    project, churn, feats = cfg.project, cfg.churn, cfg.project.features
    if mode == "contract":
        return make_contract_dataset(
            tables.customers, tables.interactions, label_column=churn.label_column, as_of=as_of,
            test_size=churn.test_size, seed=project.seed, pii_columns=feats.pii_columns,
            drop_columns=feats.drop_columns, windows=feats.windows,
        )
    if as_of is None:
        raise ConfigError("no cut-off date: set project.as_of")
    w = churn_windows(churn, tables.transactions, as_of)
    ds = make_snapshot_dataset(
        tables.transactions, tables.customers, tables.interactions, as_of=w.validation_as_of,
        horizon_days=w.horizon_days, n_snapshots=w.n_snapshots, step_days=w.step_days, time_unit=project.time_unit,
        windows=feats.windows, pii_columns=feats.pii_columns,
        drop_columns=[*feats.drop_columns, churn.label_column],
    )
    ds.info.update({"n_snapshots": w.n_snapshots, "step_days": w.step_days, "window_note": w.note})
    return ds


# --------------------------------------------------------------------------- models


_LGBM_ARGS = frozenset(LightGBMChurn().get_params()) - {"params", "class_weight", "seed"}


def lightgbm_model(churn: ChurnConfig, seed: int, **overrides: Any) -> LightGBMChurn:
    """The configured LightGBM: keys of ``churn.lightgbm`` that are :class:`LightGBMChurn` arguments
    go to it, the others are raw LightGBM parameters; ``overrides`` (tuning) win over both."""
    settings = {**churn.lightgbm, **overrides}
    kwargs = {k: v for k, v in settings.items() if k in _LGBM_ARGS}
    raw = {k: v for k, v in settings.items() if k not in _LGBM_ARGS}
    return LightGBMChurn(**kwargs, class_weight=churn.class_weight, seed=seed, params=raw or None)


def fit_models(ds: ChurnDataset, churn: ChurnConfig, *, seed: int, time_unit: str,
               step: Step | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit LightGBM (calibrated when ``churn.calibration`` says so), the logistic baseline and, on
    transaction data, the BG/NBD baseline on the training rows. Returns the models by name (the
    leaderboard's) and each one's fit time in seconds."""
    step = step or no_step
    specs: dict[str, Any] = {}
    lgbm: Any = lightgbm_model(churn, seed)
    if churn.calibration != "none":
        lgbm = CalibratedChurn(lgbm, method=churn.calibration, calibration_fraction=churn.calibration_fraction,
                               seed=seed)
    specs["lightgbm"] = lgbm
    specs["logistic"] = LogisticChurn(class_weight=churn.class_weight, seed=seed)
    if ds.mode == "transactions":
        specs["bgnbd"] = PAliveChurn(score=churn.p_alive_score, horizon_days=ds.info["horizon_days"],
                                     time_unit=time_unit)
    models, seconds = {}, {}
    for name, model in specs.items():
        with step(f"Fitting {name} on {len(ds.y_train):,} rows"):
            start = time.perf_counter()
            # a customer's rows from several snapshots stay on one side of any inner fold
            models[name] = model.fit(ds.X_train, ds.y_train, groups=ds.ids_train.to_numpy())
            seconds[name] = time.perf_counter() - start
    return models, seconds


def inner_lightgbm(model: Any) -> LightGBMChurn:
    """The LightGBM inside a possibly calibrated model (its contributions explain the scores)."""
    return model.estimator_ if isinstance(model, CalibratedChurn) else model


def cross_validate(ds: ChurnDataset, churn: ChurnConfig, *, seed: int) -> dict[str, float]:
    """Stratified k-fold ROC AUC of the configured LightGBM on the training part (contract mode):
    how much the test-set figure could move with another split. Fewer folds than configured when
    the rarer class has fewer rows than ``churn.cv_folds``."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    y = ds.y_train.to_numpy()
    folds = min(churn.cv_folds, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        return {}
    aucs = []
    for tr, va in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(ds.X_train, y):
        if np.unique(y[va]).size < 2:
            continue
        m = lightgbm_model(churn, seed).fit(ds.X_train.iloc[tr], y[tr])
        aucs.append(roc_auc_score(y[va], m.predict_proba(ds.X_train.iloc[va])[:, 1]))
    return {"cv_roc_auc_mean": float(np.mean(aucs)), "cv_roc_auc_std": float(np.std(aucs)),
            "cv_folds": float(len(aucs))} if aucs else {}


# --------------------------------------------------------------------------- evaluation


def churn_metrics(y: Any, prob: Any, k_percent: float) -> dict[str, float]:
    """:func:`~crmlab.churn.metrics.classification_metrics` with lift and recall at the top k%
    under the names the registry's leaderboard shows (``lift_at_k``, ``recall_at_k``)."""
    m = classification_metrics(y, prob, k_percent)
    m["recall_at_k"] = m.pop(f"recall_top_{k_percent:g}pct")
    m["lift_at_k"] = lift_at(y, prob, k_percent)
    return m


def evaluate_models(models: Mapping[str, Any], ds: ChurnDataset, k_percent: float
                    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every model's metrics on the validation rows, best ROC AUC first, and its predictions.

    Each baseline's row also says whether LightGBM really ranks better on these rows:
    ``lightgbm_gain`` (LightGBM's ROC AUC minus the baseline's), its 95% interval
    ``lightgbm_gain_low``/``_high`` and the p-value ``lightgbm_gain_p`` of DeLong's paired test
    (:func:`~crmlab.churn.metrics.compare_auc`); NaN on LightGBM's own row."""
    rows, predictions = [], {}
    for name, model in models.items():
        p = model.predict_proba(ds.X_valid)[:, 1]
        predictions[name] = p
        rows.append({"model": name, **churn_metrics(ds.y_valid, p, k_percent)})
    for row in rows:
        gain = {"diff": np.nan, "low": np.nan, "high": np.nan, "p_value": np.nan}
        if row["model"] != "lightgbm" and "lightgbm" in predictions:
            gain = compare_auc(ds.y_valid, predictions["lightgbm"], predictions[row["model"]])
        row.update({"lightgbm_gain": gain["diff"], "lightgbm_gain_low": gain["low"],
                    "lightgbm_gain_high": gain["high"], "lightgbm_gain_p": gain["p_value"]})
    board = pd.DataFrame(rows).sort_values("roc_auc", ascending=False, kind="stable").reset_index(drop=True)
    return board, predictions


def gain_verdict(row: Mapping[str, Any]) -> str:
    """One line on LightGBM against a baseline's leaderboard row: the ROC AUC gain, its 95%
    interval, DeLong's p-value and what they mean (better, worse or no significant difference)."""
    low, high = row["lightgbm_gain_low"], row["lightgbm_gain_high"]
    verdict = ("LightGBM ranks better" if low > 0 else "the baseline ranks better" if high < 0
               else "no significant difference")
    return (f"LightGBM vs {row['model']}: ROC AUC {row['lightgbm_gain']:+.4f} (95% CI {low:+.4f} to {high:+.4f}, "
            f"DeLong p = {row['lightgbm_gain_p']:.3g}): {verdict}")


def _customer_value(X: pd.DataFrame, column: str) -> np.ndarray:
    if column not in X.columns:
        raise ConfigError(f"churn.value_column={column!r} is not a feature; choose one of "
                          f"{[c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])][:12]}")
    return np.nan_to_num(X[column].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)


def choose_decision(churn: ChurnConfig, y: Any, prob: np.ndarray, X: pd.DataFrame) -> dict[str, Any]:
    """The decision rule (``churn.threshold``) fixed on the validation rows and how it does there.

    ``best_f1`` and ``capacity`` give a probability threshold; ``profit`` flags each customer whose
    expected profit of an offer is positive (:mod:`crmlab.churn.metrics`), which needs calibrated
    probabilities to mean anything. Choosing the threshold on the rows it is reported on flatters
    precision and recall a little; the ranking metrics are unaffected.
    """
    y = np.asarray(y, dtype=np.int8)
    out: dict[str, Any] = {"rule": churn.threshold, "threshold": None}
    if churn.threshold == "profit":
        value = _customer_value(X, churn.value_column)
        flagged = profit_targets(prob, value, offer_cost=churn.offer_cost, save_rate=churn.save_rate)
        out.update(offer_cost=churn.offer_cost, save_rate=churn.save_rate, value_column=churn.value_column,
                   realised_profit=realised_profit(y, flagged, value, offer_cost=churn.offer_cost,
                                                   save_rate=churn.save_rate))
    else:
        t = (best_f1_threshold(y, prob)[0] if churn.threshold == "best_f1"
             else capacity_threshold(prob, churn.top_k_percent))
        out["threshold"] = float(t)
        flagged = prob >= t
    tp = float((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / max(int(y.sum()), 1)
    out.update(flagged_share=float(flagged.mean()), precision=float(precision), recall=float(recall),
               f1=float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0)
    return out


def reliability_table(y: Any, predictions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The calibration curve of every model, in the report's columns (``model``, ``predicted``,
    ``observed``, ``count``): ten quantile bins of predicted probability each."""
    parts = []
    for name, p in predictions.items():
        t = calibration_table(y, p, n_bins=10)
        parts.append(pd.DataFrame({"model": name, "predicted": t["mean_predicted"], "observed": t["observed_rate"],
                                   "count": t["n"]}))
    return pd.concat(parts, ignore_index=True)


def importance_table(model: LightGBMChurn, X: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Gain and mean |SHAP| per feature, SHAP on (a seeded sample of at most 10,000) validation rows."""
    sample = X if len(X) <= _SHAP_ROWS else X.sample(_SHAP_ROWS, random_state=seed)
    return global_importance(model, sample)


def plot_importance(importance: pd.DataFrame, top: int = 15) -> Any:
    """Two bar charts side by side: share of split gain and mean |SHAP| (log-odds), top features."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    df = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(10, 0.35 * len(df) + 1.5), layout="constrained")
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2, sharey=True)
    a.barh(df["feature"], df["gain_share"], color="#2f6db5")
    a.set_xlabel("share of split gain")
    b.barh(df["feature"], df["mean_abs_shap"], color="#e07b28")
    b.set_xlabel("mean |SHAP| (churn log-odds)")
    fig.suptitle("LightGBM churn model: global importance")
    return fig


def plot_calibration(table: pd.DataFrame) -> Any:
    """Observed churn rate against mean predicted probability, one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1)
    for name, part in table.groupby("model", sort=False):
        ax.plot(part["predicted"], part["observed"], marker="o", ms=3, label=str(name))
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend()
    return fig


# --------------------------------------------------------------------------- export and scoring


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
    model = result.models["lightgbm"]
    lgbm = inner_lightgbm(model)
    ds = result.dataset
    spec = preprocessing_spec(lgbm, ds.X_train)
    params = {
        "mode": result.mode,
        "lightgbm": {"params": lgbm.lgb_params(), "best_iteration": lgbm.best_iteration_},
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
        "model": "lightgbm" + (f"+{churn.calibration}" if churn.calibration != "none" else ""),
        "training_window": window,
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in result.metrics.items()},
        "config_hash": config_digest,
    }
    texts = {
        MODEL_FILE: lgbm.booster_.model_to_string(num_iteration=lgbm.best_iteration_),
        SPEC_FILE: json.dumps(spec, indent=2, sort_keys=True),
        "report_leaderboard.csv": result.leaderboard.to_csv(index=False),
        "report_calibration.csv": result.calibration.to_csv(index=False),
    }
    return write_bundle(path, pipeline="churn", params=params, manifest=manifest, texts=texts)


@dataclass(frozen=True)
class _LoadedChurn:
    model: LightGBMChurn
    spec: dict[str, Any]
    params: dict[str, Any]


def _load(bundle: Bundle) -> _LoadedChurn:
    missing = [name for name in (MODEL_FILE, SPEC_FILE) if not (bundle.path / name).is_file()]
    if missing or "decision" not in bundle.params:
        raise ModelError(f"{bundle.path}: lacks {missing or ['params.json decision']}; not a churn bundle of this "
                         "crmlab, retrain")
    spec = json.loads(bundle.read_text(SPEC_FILE))
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
    if len(X) and method != "none":
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


def _valid_features(ds: ChurnDataset) -> pd.DataFrame:
    return ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy())[["customer_id", *ds.X_valid.columns]]


def evaluate_bundle(bundle: Bundle | str | Path, result: ChurnResult) -> dict[str, float]:
    """Another exported churn model (the registry's champion, say) scored on the validation rows of
    ``result`` and measured like ``result.metrics``, so a retraining compares like with like. The
    champion was trained on snapshots whose labels end on or before its own validation cut-off,
    which is not later than the challenger's, so it has not seen these labels (transaction mode;
    in contract mode both split the same table with the same seed)."""
    bundle = as_bundle(bundle, "churn")
    scores = score_churn(_valid_features(result.dataset), bundle)
    return churn_metrics(result.dataset.y_valid, scores["churn_probability"].to_numpy(), result.top_k_percent)


# --------------------------------------------------------------------------- tracking


def _simple_params(model: Any) -> dict[str, Any]:
    params = model.get_params(deep=False)
    out = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool)) or v is None}
    if isinstance(model, CalibratedChurn):
        out.update({f"estimator.{k}": v for k, v in _simple_params(model.estimator).items()})
    if isinstance(params.get("params"), dict):
        out.update({f"lightgbm.{k}": v for k, v in params["params"].items()})
    return out


def log_training(run: Run, tracker: Tracker, result: ChurnResult,
                 registered_model_name: str | None = REGISTERED_MODEL_NAME) -> None:
    """Log one training: a child run per model (its parameters and validation metrics), and on the
    parent run the exported model's metrics, the leaderboard, the calibration and importance tables
    and plots, and the model as a pyfunc over the bundle (with a signature, registered)."""
    if not run.active:
        return

    seconds = result.fit_seconds
    for row in result.leaderboard.to_dict("records"):
        name = row.pop("model")
        note = getattr(inner_lightgbm(result.models[name]), "note_", "")
        tags = {"crmlab.model": name, **({"crmlab.note": note[:4000]} if note else {})}
        with tracker.start_run(f"churn-{name}", pipeline="churn", nested=True, tags=tags) as child:
            child.log_params(_simple_params(result.models[name]))
            child.log_metrics({**row, "fit_seconds": seconds.get(name, float("nan"))})
    lgbm = inner_lightgbm(result.models["lightgbm"])
    run.log_params({"mode": result.mode, "dataset": result.dataset.info, "best_iteration": lgbm.best_iteration_,
                    "decision": result.decision, "n_features": len(lgbm.feature_names_in_)})
    run.log_metrics(result.metrics)
    run.log_table(result.leaderboard, "leaderboard.csv")
    run.log_table(result.calibration, "calibration.csv")
    run.log_table(result.importance, "feature_importance.csv")
    run.log_dict({"mode": result.mode, "dataset": result.dataset.info,
                  "leaderboard": result.leaderboard.to_dict("records"), "decision": result.decision,
                  "bundle": str(result.bundle_path)}, "churn_report.json")
    run.log_figure(plot_importance(result.importance), "plots/feature_importance.png")
    run.log_figure(plot_calibration(result.calibration), "plots/calibration.png")

    bundle = load_bundle(result.bundle_path, pipeline="churn")
    example = _valid_features(result.dataset).head(20).reset_index(drop=True)
    example = example[bundle.manifest["input_columns"]]
    for col in example.columns:  # MLflow's schema knows strings and numbers, not pandas categories
        if isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object).where(example[col].notna(), None)
        elif col != "customer_id":
            example[col] = example[col].astype(np.float64)
    register_pyfunc(result, input_example=example, output_example=score_churn(example, bundle),
                    registered_model_name=registered_model_name)


# --------------------------------------------------------------------------- tuning

_PRUNE_EVERY = 10  # boosting rounds between two reports of the validation AUC to the pruner


def load_dataset(cfg: CrmlabConfig, step: Step) -> tuple[PreparedData, str, ChurnDataset]:
    """Load and clean the data, pick the mode from the tables and build the churn dataset: what
    training and tuning both start from."""
    with step("Loading and cleaning the data"):
        prepared = prepare_data(cfg.project)
    mode = resolve_mode(cfg.churn, prepared.tables)
    with step(f"Building the {mode} churn dataset"):
        ds = build_dataset(cfg, prepared.tables, prepared.as_of, mode)
    return prepared, mode, ds


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


def tune_churn(cfg: CrmlabConfig, *, trials: int | None = None, timeout: float | None = None,
               tracker: Tracker | None = None, step: Step | None = None) -> Any:
    """Tune LightGBM with Optuna over ``churn.tuning.search_space`` (:func:`crmlab.tuning.run_study`:
    seeded TPE, median pruning, resumable SQLite study, a child run per trial, the best parameters
    written to ``outputs/tuning/churn_best.yaml``). Returns the :class:`~crmlab.tuning.TuningResult`.

    Each trial fits on four fifths of the training customers (their rows of the earlier training
    snapshots when there are several), with early stopping on, and is judged by ROC AUC on, the
    other fifth's rows of the latest training snapshot (:func:`_tuning_split`); that AUC is
    reported every 10 rounds for pruning. The validation snapshot (contract: the test
    split) never chooses the parameters, so a training with them still compares LightGBM with the
    baselines blind.
    """
    from sklearn.metrics import roc_auc_score

    from crmlab.retrain import with_overrides
    from crmlab.tuning import nested_overrides, run_study

    step = step or no_step
    project, churn = cfg.project, cfg.churn
    prepared, mode, ds = load_dataset(cfg, step)
    X_fit, y_fit, X_val, y_val = _tuning_split(ds, project.seed)

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


# --------------------------------------------------------------------------- wiring


def train_churn(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> ChurnResult:
    """Train the churn pipeline end to end (see the module doc) and return what it produced.

    ``step(text)`` is a context manager wrapped around each step (the CLI shows progress with it).
    """
    step = step or no_step
    project, churn = cfg.project, cfg.churn
    prepared, mode, ds = load_dataset(cfg, step)
    if churn.threshold == "profit":
        _customer_value(ds.X_valid, churn.value_column)  # a wrong column fails before any fitting

    with training_run(cfg, "churn", tracker=tracker, fingerprint=prepared.fingerprint, cleaning=prepared.cleaning,
                      tags={"crmlab.mode": mode}) as tr:
        if mode == "transactions":
            info = ds.info
            tr.run.set_tags({"crmlab.churn.horizon_days": info["horizon_days"],
                          "crmlab.churn.n_snapshots": info.get("n_snapshots"),
                          "crmlab.churn.step_days": info.get("step_days"),
                          **({"crmlab.churn.window_note": info["window_note"]} if info.get("window_note") else {})})
        models, seconds = fit_models(ds, churn, seed=project.seed, time_unit=project.time_unit, step=step)
        metrics: dict[str, float] = {}
        if mode == "contract":
            with step(f"Cross-validating LightGBM ({churn.cv_folds} stratified folds)"):
                metrics.update(cross_validate(ds, churn, seed=project.seed))
        with step("Evaluating on the validation rows"):
            board, predictions = evaluate_models(models, ds, churn.top_k_percent)
            champion = board.set_index("model").loc["lightgbm"].to_dict()
            metrics.update({k: float(v) for k, v in champion.items() if np.isfinite(v)})
            check_evaluation("churn", {**champion, **metrics}, what="(LightGBM on the validation rows)")
            for row in board.to_dict("records"):
                metrics.update({f"{row['model']}_{k}": float(v) for k, v in row.items()
                                if k != "model" and np.isfinite(v)})
            decision = choose_decision(churn, ds.y_valid, predictions["lightgbm"], ds.X_valid)
            metrics.update({f"decision_{k}": float(v) for k, v in decision.items()
                            if k in ("threshold", "flagged_share", "precision", "recall", "f1", "realised_profit")
                            and v is not None})
            calibration = reliability_table(ds.y_valid, predictions)
        with step("Explaining LightGBM (gain and SHAP)"):
            importance = importance_table(inner_lightgbm(models["lightgbm"]), ds.X_valid, seed=project.seed)
        result = ChurnResult(
            mode=mode, dataset=ds, models=models, leaderboard=board, metrics=metrics, decision=decision,
            importance=importance, calibration=calibration, bundle_path=Path(project.output.models_dir) / "churn",
            fingerprint=prepared.fingerprint, top_k_percent=churn.top_k_percent, fit_seconds=seconds,
            predictions=predictions, **tr.ids(),
        )
        with step("Exporting the model bundle"):
            result.bundle_path = export_bundle(result.bundle_path, result, churn,
                                               config_digest=config_hash(cfg.section("churn")),
                                               time_unit=project.time_unit)
        if tr.active:
            with step("Logging the run, child runs, plots and model to MLflow"):
                log_training(tr.run, tr.tracker, result)
    return result
