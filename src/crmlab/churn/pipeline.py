"""The churn pipeline: build a labelled dataset, fit LightGBM and its baselines, compare, export, track.

Steps are pure functions named with verbs in the package's rooms (``data``, ``models``, ``evaluate``,
``plots``, ``bundle``, ``tune``); :func:`train_churn` only wires them::

    prepare_data -> resolve_mode -> build_dataset (snapshots | contract split)
      [-> cross_validate (contract: LightGBM, logistic, blend; repeated stratified folds)]
      -> fit_models (LightGBM [+ calibration], logistic, blend, BG/NBD)
      -> evaluate_models (leaderboard on the validation rows) -> choose_shipped -> choose_decision
      [-> refit_shipped (contract)] -> export_bundle -> log_training (parent run ``churn``, a child run per model)

Two kinds of business (:mod:`crmlab.churn.data`):

* **transactions**: a customer has churned when they make no purchase in the ``horizon_days``
  after a cut-off. The validation snapshot is at ``project.as_of`` when the data cover the horizon
  after it (CDNOW at 1997-09-30: labels to 1998-03-31), else at ``as_of - horizon_days`` (the
  default ``as_of``, the last transaction date, has no future to label). Training snapshots end
  ``horizon_days`` before the validation one and step back from there, so no training label comes
  from the period the models are judged on. Never a random split of one period. The validation
  snapshot judges and chooses (DeLong); the exported model is the one evaluated (trained on the
  training snapshots only), so a retraining can score the champion's bundle on a challenger's
  validation snapshot without the champion having seen those labels.
* **contract**: the customer table has its own churn column; a stratified train/test split. A
  repeated stratified cross-validation of the training part chooses the shipped model (and the
  blend's weight), the test part reports on it, and the chosen model is then fitted again on every
  labelled row (``churn.refit``): a small table gives its model all it has. The bundle keeps a
  hash of each (customer, label) row it was fitted on, so a retraining judges the champion only on
  rows it has not seen (:func:`crmlab.churn.bundle.evaluate_bundle`).

:func:`crmlab.churn.bundle.score_churn` is what batch scoring and the MLflow pyfunc call: it reads the LightGBM text
model and the JSON preprocessing spec of a bundle (no pickles) and returns, per customer, the churn
probability, a risk tier, whether the decision rule flags them and their top three reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.blend import BlendChurn, CrossValidation, repeats_for
from crmlab.churn.blend import cross_validate as blend_cv
from crmlab.churn.data import ChurnDataset, ChurnWindows, make_contract_dataset, make_snapshot_dataset, resolve_windows
from crmlab.churn.models import (
    CalibratedChurn,
    LightGBMChurn,
    LogisticChurn,
    PAliveChurn,
    WithoutColumns,
    voice_columns,
)
from crmlab.config import ChurnConfig, CrmlabConfig, config_hash
from crmlab.data.io import Tables
from crmlab.errors import ConfigError, DataError
from crmlab.export import load_bundle
from crmlab.registry import check_evaluation
from crmlab.tracking import Run, Tracker
from crmlab.training import register_pyfunc, training_run
from crmlab.utils import Step, no_step
from crmlab.workflow import PreparedData, prepare_data
from crmlab.churn.models import inner_lightgbm
from crmlab.churn.evaluate import (
    choose_decision,
    choose_shipped,
    customer_value,
    evaluate_models,
    importance_table,
    mark_shipped,
    reliability_table,
)
from crmlab.churn.plots import plot_calibration, plot_importance
from crmlab.churn.result import ChurnResult
from crmlab.churn.bundle import export_bundle, score_churn, valid_features

__all__ = [
    "REGISTERED_MODEL_NAME",
    "ChurnResult",
    "build_dataset",
    "churn_windows",
    "choose_decision",
    "cross_validate",
    "evaluate_models",
    "export_bundle",
    "fit_models",
    "lightgbm_model",
    "log_training",
    "resolve_mode",
    "score_churn",
    "train_churn",
    "validation_cut_off",
]

REGISTERED_MODEL_NAME = "crmlab-churn"
#: The leaderboard's ablation: LightGBM without the customer's-voice features (never shipped).
WITHOUT_VOICE = "lightgbm_without_voice"


# --------------------------------------------------------------------------- result


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
            drop_columns=feats.drop_columns, windows=feats.windows, voice=project.voice, surveys=tables.surveys,
        )
    if as_of is None:
        raise ConfigError("no cut-off date: set project.as_of")
    w = churn_windows(churn, tables.transactions, as_of)
    ds = make_snapshot_dataset(
        tables.transactions, tables.customers, tables.interactions, as_of=w.validation_as_of,
        horizon_days=w.horizon_days, n_snapshots=w.n_snapshots, step_days=w.step_days, time_unit=project.time_unit,
        windows=feats.windows, pii_columns=feats.pii_columns,
        drop_columns=[*feats.drop_columns, churn.label_column], voice=project.voice,
        surveys=tables.surveys,
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


def model_specs(ds: ChurnDataset, churn: ChurnConfig, *, seed: int, time_unit: str) -> dict[str, Callable[[], Any]]:
    """Each model of the leaderboard as a function making it unfitted: LightGBM (calibrated when
    ``churn.calibration`` says so), the logistic baseline and, on transaction data, the BG/NBD
    baseline. (The blend is made from the fitted LightGBM and logistic regression.)"""
    def make_lightgbm() -> Any:
        lgbm: Any = lightgbm_model(churn, seed)
        if churn.calibration != "none":
            lgbm = CalibratedChurn(lgbm, method=churn.calibration, calibration_fraction=churn.calibration_fraction,
                                   seed=seed)
        return lgbm

    specs: dict[str, Callable[[], Any]] = {
        "lightgbm": make_lightgbm,
        "logistic": lambda: LogisticChurn(class_weight=churn.class_weight, seed=seed),
    }
    if ds.mode == "transactions":
        horizon = ds.info["horizon_days"]
        specs["bgnbd"] = lambda: PAliveChurn(score=churn.p_alive_score, horizon_days=horizon, time_unit=time_unit)
    voice = tuple(voice_columns(ds.X_train.columns))
    if churn.voice_ablation and voice and len(voice) < ds.X_train.shape[1]:
        specs[WITHOUT_VOICE] = lambda: WithoutColumns(lightgbm_model(churn, seed), voice)
    return specs


def fit_models(ds: ChurnDataset, churn: ChurnConfig, *, seed: int, time_unit: str, step: Step | None = None,
               blend_weight: float | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the leaderboard's models (:func:`model_specs`) on the training rows and, with
    ``churn.blend``, the blend of LightGBM and the logistic regression with LightGBM's weight
    ``blend_weight`` (0.5 when None). Returns the models by name (the leaderboard's) and each one's
    fit time in seconds."""
    step = step or no_step
    models, seconds = {}, {}
    for name, make in model_specs(ds, churn, seed=seed, time_unit=time_unit).items():
        with step(f"Fitting {name} on {len(ds.y_train):,} rows"):
            start = time.perf_counter()
            # a customer's rows from several snapshots stay on one side of any inner fold
            models[name] = make().fit(ds.X_train, ds.y_train, groups=ds.ids_train.to_numpy())
            seconds[name] = time.perf_counter() - start
    if churn.blend:
        models["blend"] = BlendChurn(models["lightgbm"], models["logistic"], 0.5 if blend_weight is None else blend_weight)
        seconds["blend"] = seconds["lightgbm"] + seconds["logistic"]
    return models, seconds


def cross_validate(ds: ChurnDataset, churn: ChurnConfig, *, seed: int, time_unit: str = "W") -> CrossValidation | None:
    """Repeated stratified k-fold ROC AUC of LightGBM, the logistic regression and their blend on
    the training part (contract mode; :func:`crmlab.churn.blend.cross_validate`): it chooses the
    shipped model and the blend's weight, so the test part only reports."""
    specs = {k: v for k, v in model_specs(ds, churn, seed=seed, time_unit=time_unit).items()
             if k in ("lightgbm", "logistic")}
    return blend_cv(ds.X_train, ds.y_train.to_numpy(), specs, folds=churn.cv_folds,
                    repeats=repeats_for(churn.cv_repeats, len(ds.y_train)), seed=seed, blend=churn.blend)


def cv_metrics(cv: CrossValidation | None, shipped: str) -> dict[str, float]:
    """The cross-validation's figures of the shipped model under the parent run's names."""
    if cv is None or shipped not in cv.aucs.columns:
        return {}
    return {"cv_roc_auc_mean": cv.mean(shipped), "cv_roc_auc_std": cv.sd(shipped), "cv_folds": float(cv.folds),
            "cv_repeats": float(cv.repeats)}


def refit_shipped(models: Mapping[str, Any], shipped: str, ds: ChurnDataset, churn: ChurnConfig, *, seed: int,
                  time_unit: str) -> Any:
    """The shipped model fitted again, with the same settings, on every labelled row (training and
    test part): contract mode with ``churn.refit``. The blend keeps its weight."""
    X = pd.concat([ds.X_train, ds.X_valid], ignore_index=True)
    y = pd.concat([ds.y_train, ds.y_valid], ignore_index=True)
    specs = model_specs(ds, churn, seed=seed, time_unit=time_unit)
    if shipped == "blend":
        blend = models["blend"]
        return BlendChurn(specs["lightgbm"]().fit(X, y), specs["logistic"]().fit(X, y), blend.weight)
    return specs[shipped]().fit(X, y)


# --------------------------------------------------------------------------- evaluation


# --------------------------------------------------------------------------- export and scoring


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
                    "decision": result.decision, "n_features": len(lgbm.feature_names_in_),
                    "shipped": result.shipped})
    run.set_tags({"crmlab.shipped": result.shipped, "crmlab.shipped_because": result.shipped_because[:4000]})
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
    example = valid_features(result.dataset).head(20).reset_index(drop=True)
    example = example[bundle.manifest["input_columns"]]
    for col in example.columns:  # MLflow's schema knows strings and numbers, not pandas categories
        if isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object).where(example[col].notna(), None)
        elif col != "customer_id":
            example[col] = example[col].astype(np.float64)
    register_pyfunc(result, input_example=example, output_example=score_churn(example, bundle),
                    registered_model_name=registered_model_name)


# --------------------------------------------------------------------------- tuning


def load_dataset(cfg: CrmlabConfig, step: Step) -> tuple[PreparedData, str, ChurnDataset]:
    """Load and clean the data, pick the mode from the tables and build the churn dataset: what
    training and tuning both start from."""
    with step("Loading and cleaning the data"):
        prepared = prepare_data(cfg.project)
    mode = resolve_mode(cfg.churn, prepared.tables)
    with step(f"Building the {mode} churn dataset"):
        ds = build_dataset(cfg, prepared.tables, prepared.as_of, mode)
    return prepared, mode, ds


# --------------------------------------------------------------------------- wiring


def train_churn(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> ChurnResult:
    """Train the churn pipeline end to end (see the module doc) and return what it produced.

    ``step(text)`` is a context manager wrapped around each step (the CLI shows progress with it).
    """
    step = step or no_step
    project, churn = cfg.project, cfg.churn
    prepared, mode, ds = load_dataset(cfg, step)
    if churn.threshold == "profit":
        customer_value(ds.X_valid, churn.value_column)  # a wrong column fails before any fitting

    with training_run(cfg, "churn", tracker=tracker, fingerprint=prepared.fingerprint, cleaning=prepared.cleaning,
                      tags={"crmlab.mode": mode}) as tr:
        if mode == "transactions":
            info = ds.info
            tr.run.set_tags({"crmlab.churn.horizon_days": info["horizon_days"],
                          "crmlab.churn.n_snapshots": info.get("n_snapshots"),
                          "crmlab.churn.step_days": info.get("step_days"),
                          **({"crmlab.churn.window_note": info["window_note"]} if info.get("window_note") else {})})
        cv = None
        if mode == "contract":
            repeats = repeats_for(churn.cv_repeats, len(ds.y_train))
            with step(f"Cross-validating LightGBM, the logistic regression{' and their blend' if churn.blend else ''} "
                      f"({churn.cv_folds} stratified folds x {repeats})"):
                cv = cross_validate(ds, churn, seed=project.seed, time_unit=project.time_unit)
        models, seconds = fit_models(ds, churn, seed=project.seed, time_unit=project.time_unit, step=step,
                                     blend_weight=cv.weight if cv is not None else None)
        metrics: dict[str, float] = {}
        with step("Evaluating on the validation rows"):
            board, predictions = evaluate_models(models, ds, churn.top_k_percent)
            shipped, because = choose_shipped(board, churn.ship, cv)
            board = mark_shipped(board, shipped, cv)
            metrics.update(cv_metrics(cv, shipped))
            if cv is not None and cv.weight is not None:
                metrics["blend_weight"] = cv.weight
            champion = board.set_index("model").loc[shipped].drop(["shipped"]).to_dict()
            metrics.update({k: float(v) for k, v in champion.items() if np.isfinite(v) and not k.startswith("cv_")})
            check_evaluation("churn", {**champion, **metrics}, what=f"({shipped} on the validation rows)")
            for row in board.drop(columns="shipped").to_dict("records"):
                metrics.update({f"{row['model']}_{k}": float(v) for k, v in row.items()
                                if k != "model" and np.isfinite(v)})
            decision = choose_decision(churn, ds.y_valid, predictions[shipped], ds.X_valid)
            metrics.update({f"decision_{k}": float(v) for k, v in decision.items()
                            if k in ("threshold", "flagged_share", "precision", "recall", "f1", "realised_profit")
                            and v is not None})
            calibration = reliability_table(ds.y_valid, predictions)
        with step("Explaining LightGBM (gain and SHAP)"):
            importance = importance_table(inner_lightgbm(models["lightgbm"]), ds.X_valid, seed=project.seed)
        shipped_model = None
        if mode == "contract" and churn.refit:
            n_all = len(ds.y_train) + len(ds.y_valid)
            with step(f"Refitting {shipped} on all {n_all:,} labelled rows"):
                shipped_model = refit_shipped(models, shipped, ds, churn, seed=project.seed, time_unit=project.time_unit)
        result = ChurnResult(
            mode=mode, dataset=ds, models=models, leaderboard=board, metrics=metrics, decision=decision,
            shipped_model=shipped_model, cross_validation=cv,
            importance=importance, calibration=calibration, bundle_path=Path(project.output.models_dir) / "churn",
            fingerprint=prepared.fingerprint, top_k_percent=churn.top_k_percent, fit_seconds=seconds,
            shipped=shipped, shipped_because=because,
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
