"""The CLV pipeline: calibrate, evaluate on a holdout, refit, export, track; and score from a bundle.

Steps are pure functions named with verbs; :func:`train_clv` only wires them::

    prepare_data -> resolve_window -> split_calibration_holdout -> fit_models (calibration)
      -> predict_holdout -> evaluate_holdout (+ spend challenger on the same holdout)
      -> fit_purchase_challenger (earlier window; blend weight there) -> purchase_leaderboard
      -> choose_shipped (the holdout decides what predicts expected purchases)
      -> fit_models (all data up to as_of) -> ship_purchases -> score_rfm -> export_bundle -> log_training

Evaluation follows Fader, Hardie and Lee (2005a, "Counting Your Customers the Easy Way"): the models
are fitted on the purchase histories of a cohort up to ``calibration_end`` and judged on what the
same customers do in the ``holdout_weeks`` after it (per-customer error, the conditional
expectations by calibration frequency, the tracking of cumulative repeat purchases). The exported
model is then refitted on every customer's history up to ``as_of``.

:func:`crmlab.clv.bundle.score_clv` is what batch scoring and the MLflow pyfunc call: it loads only the JSON
parameters of a bundle (no pickles) and returns one row per customer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from crmlab.clv.evaluate import spend_metrics
from crmlab.config import CrmlabConfig, config_hash
from crmlab.errors import ConfigError, DataError
from crmlab.export import load_bundle
from crmlab.features import rfm_summary
from crmlab.registry import check_evaluation
from crmlab.utils import Step, no_step
from crmlab.tracking import Run, Tracker
from crmlab.training import register_pyfunc, training_run
from crmlab.workflow import prepare_data
from crmlab.clv.result import ClvModels, ClvResult, ClvSettings, ClvWindow, FEATURES, INPUT_COLUMNS, MAX_FREQUENCY, OUTPUT_COLUMNS, named_params, run_notes
from crmlab.clv.window import calibration_rfm, resolve_window, split_calibration_holdout
from crmlab.clv.evaluate import (
    BLEND,
    LIGHTGBM,
    choose_shipped,
    conditional_expectations_by_model,
    cumulative_repeat_purchases,
    evaluate_holdout,
    predict_holdout,
    purchase_leaderboard,
)
from crmlab.clv.models import fit_models, score_rfm
from crmlab.clv.bundle import export_bundle, score_clv

__all__ = [
    "FEATURES",
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "REGISTERED_MODEL_NAME",
    "ClvModels",
    "ClvResult",
    "ClvSettings",
    "ClvWindow",
    "cumulative_repeat_purchases",
    "evaluate_holdout",
    "export_bundle",
    "fit_models",
    "log_training",
    "predict_holdout",
    "resolve_window",
    "run_notes",
    "score_clv",
    "score_rfm",
    "spend_metrics",
    "split_calibration_holdout",
    "train_clv",
]

REGISTERED_MODEL_NAME = "crmlab-clv"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- small value types


# --------------------------------------------------------------------------- steps


# --------------------------------------------------------------------------- tracking


def log_training(run: Run, result: ClvResult, *, transactions: pd.DataFrame, split: pd.DataFrame,
                 registered_model_name: str | None = REGISTERED_MODEL_NAME, tables: Any = None,
                 project: Any = None) -> None:
    """Log one training to its MLflow run: metrics, parameters, the report, the holdout tables, the
    plots and the model (as a pyfunc over the bundle, with a signature, registered)."""
    if not run.active:
        return
    from crmlab.clv import plots

    cal, final = result.calibration_models, result.models
    run.log_params({
        "window": result.window.to_dict(),
        "calibration_model": named_params(cal),
        "model": named_params(final),
        "shipped": {"purchase_model": final.transaction.kind, "penalizer": final.transaction.penalizer,
                    "spend_model": final.spend.kind, "gg_penalizer": final.spend.penalizer,
                    "expected_purchases": final.shipped,
                    "blend_weight": final.purchases.weight if final.purchases is not None else 1.0},
    })
    run.set_tags({"crmlab.shipped": final.shipped, "crmlab.shipped_because": (result.shipped_because or "")[:4000]})
    run.set_tags({"crmlab.model": final.transaction.kind, "crmlab.clv.purchase_model": final.transaction.kind,
                  "crmlab.clv.spend_model": final.spend.kind,
                  **({"crmlab.clv.notes": " | ".join(result.notes)[:4900]} if result.notes else {})})
    run.log_metrics(result.metrics)
    run.log_metrics({"final_customers": float(final.transaction.report_["n_customers"]),
                     "final_log_likelihood": float(final.transaction.report_["log_likelihood"])})
    report = {
        "window": result.window.to_dict(),
        "settings": result.settings.to_dict(),
        "calibration": cal.to_dict(),
        "final": final.to_dict(),
        "metrics": result.metrics,
        "notes": result.notes,
        "challenger": result.challenger_report,
        "shipped": result.shipped,
        "shipped_because": result.shipped_because,
        "purchase_leaderboard": (result.purchase_leaderboard.to_dict("records")
                                 if result.purchase_leaderboard is not None else None),
        "bundle": str(result.bundle_path),
    }
    run.log_dict(report, "clv_report.json")
    run.log_table(result.conditional_expectations, "holdout/conditional_expectations.csv")
    if result.purchase_leaderboard is not None:
        run.log_table(result.purchase_leaderboard, "purchases/leaderboard.csv")
        run.log_table(result.conditional_expectations_by_model, "purchases/conditional_expectations_by_model.csv")
    if result.purchase_challenger is not None:
        run.log_dict(result.purchase_challenger.report(), "purchases/challenger.json")
        run.log_table(result.purchase_challenger.importance(), "purchases/feature_importance.csv")

    histogram = plots.repeat_purchase_histogram(cal.transaction, split["frequency_cal"], split["T_cal"],
                                                max_frequency=MAX_FREQUENCY)
    run.log_table(histogram, "holdout/repeat_purchase_histogram.csv")
    tracking = cumulative_repeat_purchases(transactions, split, result.window, cal.transaction)
    run.log_table(tracking, "holdout/cumulative_repeat_purchases.csv")
    if result.comparison is not None:
        run.log_table(result.comparison, "challenger/comparison.csv")
        run.log_dict(result.challenger_report or {}, "challenger/report.json")
        importance = result.challenger_importance
        if importance is not None:
            run.log_table(importance, "challenger/feature_importance.csv")

    unit = result.window.time_unit
    rfm = result.final_rfm
    figures = {
        "plots/repeat_purchase_histogram.png": plots.plot_repeat_purchase_histogram(histogram, unit),
        "plots/conditional_expectations.png": plots.plot_conditional_expectations(
            result.conditional_expectations, result.window),
        "plots/cumulative_repeat_purchases.png": plots.plot_cumulative_repeat_purchases(tracking, result.window),
        "plots/p_alive_matrix.png": plots.plot_frequency_recency_matrix(
            final.transaction, rfm, what="p_alive", time_unit=unit),
        "plots/expected_purchases_matrix.png": plots.plot_frequency_recency_matrix(
            final.transaction, rfm, what="expected_purchases", time_unit=unit, t=result.settings.horizon_units),
    }
    for name, fig in figures.items():
        run.log_figure(fig, name)

    example = rfm[INPUT_COLUMNS].head(20).reset_index(drop=True)
    if final.purchases is not None and final.purchases.uses_lightgbm:  # the shipped model needs the shared features
        from crmlab.clv.counts import aligned_features

        bundle = load_bundle(result.bundle_path, pipeline="clv")
        feats = aligned_features(tables, project, result.window.as_of, example["customer_id"])
        example = feats[["customer_id", *(c for c in bundle.manifest["features"] if c in feats.columns)]]
        for col in example.columns:  # MLflow's schema knows strings and numbers, not pandas categories
            if isinstance(example[col].dtype, pd.CategoricalDtype):
                example[col] = example[col].astype(object).where(example[col].notna(), None)
            elif col != "customer_id":
                example[col] = example[col].astype("float64")
    register_pyfunc(result, input_example=example,
                    output_example=score_clv(example, load_bundle(result.bundle_path, pipeline="clv")),
                    registered_model_name=registered_model_name)


# --------------------------------------------------------------------------- wiring


def train_clv(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> ClvResult:
    """Train the CLV pipeline end to end (see the module doc) and return what it produced.

    ``step(text)`` is a context manager wrapped around each step (the CLI shows progress with it).
    """
    from crmlab.clv.challenger import compare_spend_models, fit_challenger, predict_challenger
    from crmlab.clv.counts import (
        aligned_features,
        challenger_predictions,
        fit_purchase_challenger,
        purchase_model_metrics,
        ship_purchases,
    )

    step = step or no_step
    project, clv = cfg.project, cfg.clv
    settings = ClvSettings.from_config(clv, project)
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project)
    tx = prepared.tables.transactions
    if tx is None:
        raise ConfigError("the CLV pipeline needs transactions: project.data.transactions is null")
    window = resolve_window(clv, tx, prepared.as_of, project.time_unit)

    with training_run(cfg, "clv", tracker=tracker, fingerprint=prepared.fingerprint, cleaning=prepared.cleaning,
                      tags={"crmlab.model": clv.model}) as tr:
        with step(f"Fitting {clv.model} + {clv.spend_model} on the calibration period to {window.calibration_end}"):
            split = split_calibration_holdout(tx, window)
            cal_models = fit_models(calibration_rfm(split), clv)
        with step(f"Evaluating on the {window.holdout_weeks}-week holdout to {window.holdout_end}"):
            holdout = predict_holdout(cal_models, split)
            metrics, ce_table = evaluate_holdout(holdout, cal_models.spend)
            if not holdout["actual_purchases"].sum() > 0:
                raise DataError(f"the CLV holdout {window.calibration_end} -> {window.holdout_end}: none of the "
                                f"{len(holdout):,} calibration customers bought in it, so the model cannot be "
                                "evaluated; set an earlier project.as_of or a longer clv.holdout_weeks", column="ts")
            check_evaluation("clv", metrics, what=f"holdout {window.calibration_end} -> {window.holdout_end}")
        comparison = challenger = challenger_report = challenger_importance = None
        if clv.challenger:
            with step("Training the LightGBM challenger on an earlier window"):
                challenger = fit_challenger(prepared.tables, project, window, seed=project.seed)
                if challenger is not None:
                    predicted = predict_challenger(challenger, prepared.tables, project, window, holdout["customer_id"])
                    comparison, challenger_metrics = compare_spend_models(
                        holdout["actual_spend"].to_numpy(),
                        {f"{cal_models.transaction.kind}_{cal_models.spend.kind}": holdout["predicted_spend"].to_numpy(),
                         "lightgbm": predicted},
                    )
                    holdout["challenger_spend"] = predicted
                    metrics.update({f"challenger_spend_{k}": v for k, v in challenger_metrics["lightgbm"].items()})
                    metrics["challenger_wins"] = float((comparison["winner"] == "lightgbm").sum())
                    challenger_report = {**challenger.report(), "comparison": comparison.to_dict("records")}
                    challenger_importance = challenger.importance()
        purchase_challenger = None
        predictions = {cal_models.transaction.kind: holdout["predicted_purchases"].to_numpy()}
        if clv.purchase_challenger:
            with step("Training the LightGBM purchase challenger and the blend weight"):
                purchase_challenger = fit_purchase_challenger(
                    prepared.tables, project, first_date=window.first_date, end=window.calibration_end,
                    predict_days=window.holdout_days, calibration_start=window.calibration_start, seed=project.seed,
                    blend_with=cal_models.spec(clv) if clv.blend_weight == "auto" else None)
                if purchase_challenger is not None:
                    if clv.blend_weight != "auto":
                        purchase_challenger.blend_weight = float(clv.blend_weight)
                    feats = aligned_features(prepared.tables, project, window.calibration_end, holdout["customer_id"])
                    predictions.update(challenger_predictions(purchase_challenger, feats, predictions))
                    for name in (LIGHTGBM, BLEND):
                        holdout[f"{name}_purchases"] = predictions[name]
        board = purchase_leaderboard(holdout["actual_purchases"].to_numpy(), predictions, cal_models.transaction.kind)
        shipped, because = choose_shipped(board, clv.ship, cal_models.transaction.kind)
        board["shipped"] = board["model"] == shipped
        metrics.update(purchase_model_metrics(board, purchase_challenger))
        if shipped != cal_models.transaction.kind:  # the holdout figures (purchases_*, spend_*) are what ships
            holdout["parametric_purchases"] = holdout["predicted_purchases"]
            holdout["predicted_purchases"] = predictions[shipped]
            holdout["predicted_spend"] = holdout["predicted_purchases"] * holdout["expected_spend"]
            shipped_metrics, ce_table = evaluate_holdout(holdout, cal_models.spend)
            metrics.update(shipped_metrics)
        ce_by_model = conditional_expectations_by_model(holdout["frequency_cal"].to_numpy(),
                                                        holdout["actual_purchases"].to_numpy(), predictions)
        with step(f"Refitting on all data up to {window.as_of}"):
            rfm = rfm_summary(tx, as_of=window.as_of, time_unit=project.time_unit)
            # the specification that was evaluated on the holdout (after any fallback) is the one refitted
            models = fit_models(rfm, cal_models.spec(clv))
            models, final_feats = ship_purchases(models, shipped, because, purchase_challenger, prepared.tables,
                                                 project, window, settings, rfm)
            scores = score_rfm(models, rfm, settings, features=final_feats)
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(
                Path(project.output.models_dir) / "clv", models, settings, window,
                metrics=metrics, config_digest=config_hash(cfg.section("clv")),
                notes=run_notes(window, cal_models, models), leaderboard=board,
                conditional_expectations=ce_by_model,
            )
        result = ClvResult(
            window=window, settings=settings, calibration_models=cal_models, models=models, holdout=holdout,
            metrics=metrics, conditional_expectations=ce_table, scores=scores, bundle_path=bundle_path,
            fingerprint=prepared.fingerprint, comparison=comparison, challenger=challenger, split=split,
            final_rfm=rfm, challenger_report=challenger_report, challenger_importance=challenger_importance,
            purchase_leaderboard=board, conditional_expectations_by_model=ce_by_model,
            purchase_challenger=purchase_challenger, shipped=models.shipped,
            shipped_because=models.purchases.because if models.purchases is not None else because,
            **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, plots and model to MLflow"):
                log_training(tr.run, result, transactions=tx, split=split, tables=prepared.tables,
                             project=project)
    return result
