"""The forecast pipeline: series, rolling-origin backtest of every model, selection, intervals, export.

Steps are functions named with verbs; :func:`train_forecast` only wires them::

    load_panel (transactions via prepare_data, or the aggregated sales table)
      -> backtest (every configured model at every origin) -> add_combination -> leaderboard
      -> select_model -> choose_per_series (baseline fallback) -> shipping_table, ship_reason
      -> conformal_quantiles + interval_coverage (shipped model, backtest errors)
      -> refit the shipped model on the whole history -> forecast_frame -> export_bundle -> log_training

Series may start and end on their own dates. Each is backtested on its own span and forecast from
its own last period; a series that stopped long before the others (``forecast.stale_after``) is
handled by ``forecast.stale_series`` (:func:`apply_stale_policy`): excluded and named (the
default), forecast from its own end (dated from there), or an error. The backtest windows are
fitted to the series' lengths (:func:`~crmlab.forecast.backtest.fit_windows`), with a note for each
change.

The overall winner is the model with the lowest backtest MASE over all series (the combination of
ETS, ARIMA and LightGBM among them). With ``forecast.selection: fallback`` (the default) each series
where a baseline (seasonal naive, naive) beat the winner on its own backtest (a lower MASE, and less
error at more than half of its origins) ships that baseline;
``overall`` ships the winner everywhere, ``per_series`` each series' own best. Seasonal naive is
always on the board, so the accuracy gate holds by construction: LightGBM (or ETS, ARIMA, the
combination) ships only when it beats every baseline, and the summary names the models that did
worse than seasonal naive. What shipped, why and what it beat is said in the result
(``shipped``, ``shipped_because``, ``shipping`` per series), the run's tags ``crmlab.shipped`` and
``crmlab.shipped_because``, the bundle manifest and the report.

:func:`crmlab.forecast.bundle.score_forecast` is what the MLflow pyfunc calls: it rebuilds the fitted model from the
bundle's JSON state, history arrays and LightGBM text model (no pickles) and returns point
forecasts with 80% and 95% intervals per series and period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CrmlabConfig, ForecastConfig, config_hash
from crmlab.data.io import source_name
from crmlab.errors import ConfigError, DataError
from crmlab.forecast.backtest import (
    add_combination,
    backtest,
    choose_per_series,
    conformal_quantiles,
    fit_windows,
    leaderboard,
    replay_fallback,
    select_model,
    shipped_errors,
    shipping_table,
)
from crmlab.forecast.models import COMBINED, Combination, PerSeries, make_forecaster
from crmlab.forecast.series import (
    Panel,
    default_season_length,
    read_sales,
    stale_series,
    transaction_panel,
)
from crmlab.registry import check_evaluation
from crmlab.tracking import Run, Tracker, data_fingerprint
from crmlab.training import register_pyfunc, training_run
from crmlab.utils import Step, no_step
from crmlab.forecast.result import ForecastResult
from crmlab.forecast.plots import plot_forecasts
from crmlab.forecast.bundle import export_bundle, forecast_frame, score_forecast, shipped_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "ForecastResult",
    "apply_stale_policy",
    "export_bundle",
    "forecast_frame",
    "load_panel",
    "log_training",
    "model_factories",
    "plot_forecasts",
    "score_forecast",
    "ship_reason",
    "shipped_model",
    "train_forecast",
]

REPORT_HISTORY = 26  # history periods per series in report_forecast.csv


# --------------------------------------------------------------------------- steps


def load_panel(cfg: CrmlabConfig) -> tuple[Panel, dict[str, Any], dict[str, Any]]:
    """The series to forecast, the data fingerprint and a report of the input (rows, rejects).

    ``forecast.source`` picks the aggregated sales table (``project.data.sales``) or the cleaned
    transaction log; ``auto`` takes the sales table when one is configured."""
    project, fc = cfg.project, cfg.forecast
    source = fc.source
    if source == "auto":
        source = "sales" if project.data.sales is not None else "transactions"
    if source == "sales":
        if project.data.sales is None:
            raise ConfigError("forecast.source=sales needs project.data.sales (a table with period and value)")
        if fc.group_by is not None:
            raise ConfigError("forecast.group_by applies to transactions; a sales table has its series in series_id")
        sales = read_sales(project.data.sales, freq=fc.freq, covariates=fc.covariates, as_of=project.as_of,
                           target=fc.target_name)
        if len(sales.rejects):
            from crmlab.utils import write_table_atomic

            write_table_atomic(sales.rejects, Path(project.output.dir) / "clean" / "rejects_sales.csv")
        fp = data_fingerprint({"sales": sales.panel.to_frame()}, project.features.pii_columns)
        fp["sources"] = {"sales": source_name(project.data.sales)}
        return sales.panel, fp, {"source": "sales", **sales.counts, "rejects": sales.rejects}
    if fc.covariates:
        raise ConfigError("forecast.covariates are columns of a sales table (project.data.sales); "
                          "the transaction log has none")
    from crmlab.workflow import prepare_data

    prepared = prepare_data(project)
    tx = prepared.tables.transactions
    if tx is None or prepared.as_of is None:
        raise ConfigError("the forecast pipeline needs transactions or project.data.sales")
    panel = transaction_panel(tx, target=fc.target, freq=fc.freq, as_of=prepared.as_of, group_by=fc.group_by,
                              partial_period=fc.partial_period)
    _refuse_empty_tail(tx, panel, prepared.as_of)
    if fc.target_name:
        panel = replace(panel, target=fc.target_name)
    return panel, prepared.fingerprint, {"source": "transactions", "cleaning": prepared.cleaning.report.to_dict()}


def _refuse_empty_tail(tx: pd.DataFrame, panel: Panel, as_of: Any) -> None:
    """A cut-off after the last transaction pads whole periods with zeros that nobody observed: the
    backtest would score the models on them (an empty holdout) and the fit would learn a collapse.
    Refused with the dates, rather than trained on silently."""
    ts = tx["ts"]
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    ts = ts[ts < pd.Timestamp(as_of) + pd.Timedelta(days=1)]
    if ts.empty or not len(panel.periods):
        return
    last = pd.Timestamp(ts.max())
    empty = panel.periods[panel.periods > last]
    if len(empty):
        raise DataError(
            f"project.as_of={as_of} is after the last transaction ({last.date()}): the last {len(empty)} "
            f"period(s), {empty[0].date()} to {empty[-1].date()}, hold no data and would count as zero sales in "
            f"the backtest and the fit; set project.as_of on or before {last.date()} (or leave it auto)", column="ts")


def apply_stale_policy(panel: Panel, fc: ForecastConfig) -> tuple[Panel, dict[str, str], list[str]]:
    """Apply ``forecast.stale_series`` to the series whose last period is more than
    ``forecast.stale_after`` (default: the horizon) periods before the latest series' last period.

    Returns the panel to model, the excluded series (id -> its last period) and notes. Series that
    end only a little earlier are no concern here: every model forecasts them from their own end."""
    after = fc.stale_after or fc.horizon
    stale = stale_series(panel, after)
    if not stale.any():
        return panel, {}, []
    lasts = panel.last_periods()
    latest = lasts.max().date()
    found = {sid: str(lasts[i].date()) for i, sid in enumerate(panel.series_ids) if stale[i]}
    listed = ", ".join(f"{sid} (last {d})" for sid, d in list(found.items())[:10])
    listed += f" (+{len(found) - 10} more)" if len(found) > 10 else ""
    what = (f"{len(found)} series stopped more than {after} periods before the latest series' last period "
            f"{latest}: {listed}")
    if fc.stale_series == "error":
        raise DataError(f"{what}; set forecast.stale_series to exclude or forecast_from_own_end",
                        column="value", expected="series that run up to the same recent period")
    if fc.stale_series == "forecast_from_own_end":
        note = f"{what}; each is forecast from its own end (forecast.stale_series=forecast_from_own_end)"
        logger.warning(note)
        return panel, {}, [note]
    if stale.all():
        raise DataError(f"every series would be excluded as stale: {what}", column="value")
    note = f"{what}; excluded from the backtest and the forecast (forecast.stale_series=exclude)"
    logger.warning(note)
    return panel.select(~stale), found, [note]


def model_factories(fc: ForecastConfig, season_length: int, seed: int) -> dict[str, Callable[[], Any]]:
    """Fresh-model constructors for the backtest, seasonal naive first (the accuracy gate). The
    combination has none: it is built from its members (:func:`shipped_model`)."""
    names = ["seasonal_naive", *(m for m in fc.models if m not in ("seasonal_naive", "combination"))]
    return {name: (lambda name=name: make_forecaster(name, freq=fc.freq, season_length=season_length,
                                                     lags=fc.lags, lightgbm=fc.lightgbm, seed=seed))
            for name in names}


def shipped_model(names: list[str], factories: dict[str, Callable[[], Any]], weights: dict[str, float],
                  weighting: str = "equal") -> dict[str, Any]:
    """Fresh instances of the named models; a combination shares its members with the others (one
    LightGBM fitted once, one LightGBM text model in the bundle)."""
    base: dict[str, Any] = {}

    def make(name: str) -> Any:
        if name not in base:
            base[name] = (Combination({m: make(m) for m in weights}, weights, weighting) if name == "combination"
                          else factories[name]())
        return base[name]

    return {name: make(name) for name in names}


def ship_reason(board: pd.DataFrame, winner: str, shipping: pd.DataFrame, selection: str, n_origins: int) -> str:
    """One sentence: which model shipped, why, and what it beat (overall, then the per-series exceptions)."""
    mase = board.set_index("model")["mase"]
    beat = ", ".join(f"{m} {v:.3f}" for m, v in mase.items() if m != winner)
    text = (f"{winner} had the lowest backtest MASE over all series ({mase[winner]:.3f} at {n_origins} origins)"
            + (f", beating {beat}" if beat else ""))
    others = shipping[shipping["shipped"] != winner]
    if len(others):
        if selection == "per_series":
            text += "; per series, each its own lowest backtest MASE: " + ", ".join(
                f"{m} on {n}" for m, n in others["shipped"].value_counts().items())
        else:
            for m, g in others.groupby("shipped", sort=True):
                text += (f"; {m} ships instead on {len(g)} of {len(shipping)} series where it beat {winner} "
                         f"on their own backtest ({', '.join(g['series_id'].astype(str)[:10])})")
    return text


def _replay_gate(bt: Any, choice: dict[str, str], winner: str, selection: str) -> tuple[dict[str, str], str]:
    """The series whose fallback to a baseline is withdrawn, and why: all of them when the fallback
    rule, replayed honestly on the backtest (:func:`~crmlab.forecast.backtest.replay_fallback`), did
    not beat shipping the winner everywhere."""
    switched = {sid: m for sid, m in choice.items() if m != winner}
    if selection != "fallback" or not switched:
        return {}, ""
    policy, plain, n = replay_fallback(bt.errors, winner)
    if policy < plain:
        return {}, ""
    figures = (f"MASE {policy:.3f} vs {plain:.3f} for {winner} everywhere, at {n} origins" if n
               else "no origin had earlier errors to decide from")
    return switched, (f"the fallback rule did not pay off when replayed on the backtest with choices made from "
                      f"earlier periods only ({figures})")


def _report_table(panel: Panel, future: pd.DataFrame) -> pd.DataFrame:
    """``report_forecast.csv`` for crmlab.report: recent actuals, then the forecast with its 95% interval."""
    hist = panel.to_frame().groupby("series_id", sort=False).tail(REPORT_HISTORY)
    past = pd.DataFrame({"series_id": hist["series_id"], "period": hist["period"], "actual": hist["value"],
                         "forecast": np.nan, "lower": np.nan, "upper": np.nan})
    ahead = pd.DataFrame({"series_id": future["series_id"], "period": future["period"], "actual": np.nan,
                          "forecast": future["forecast"], "lower": future["lower_95"], "upper": future["upper_95"],
                          "lower_80": future["lower_80"], "upper_80": future["upper_80"]})
    df = pd.concat([past, ahead], ignore_index=True).sort_values(["series_id", "period"], kind="stable")
    df["period"] = pd.to_datetime(df["period"]).dt.strftime("%Y-%m-%d")
    return df


# --------------------------------------------------------------------------- tracking


def log_training(run: Run, result: ForecastResult, input_report: dict[str, Any]) -> None:
    """Log one training: the shipped model's backtest metrics (``mase`` is the registry's primary
    metric), each model's, the leaderboards, the backtest forecasts, the plot and the pyfunc model."""
    if not run.active:
        return
    from crmlab.registry import model_name

    run.set_tags({"crmlab.model": result.selected, "crmlab.forecast_target": result.panel.target,
                  "crmlab.shipped": result.shipped, "crmlab.shipped_because": result.shipped_because[:4000]})
    if result.excluded:
        run.set_tags({"crmlab.excluded_series": ", ".join(result.excluded)[:4000]})
    run.log_params({"selected_model": result.selected, "season_length": result.season_length,
                    "origins": [str(result.panel.periods[o].date()) for o in result.backtest.origins],
                    "n_series": len(result.panel.series_ids)})
    run.log_metrics(result.metrics)
    for r in result.leaderboard.to_dict("records"):
        run.log_metrics({f"{r['model']}_{k}": v for k, v in r.items() if k != "model"})
    rejects = input_report.get("rejects")
    run.log_dict({k: v for k, v in input_report.items() if k != "rejects"}, "input_report.json")
    if rejects is not None and len(rejects):
        run.log_table(rejects, "rejects_sales.csv")
    run.log_dict({"selected": result.selected, "shipped": result.shipped,
                  "shipped_because": result.shipped_because, "notes": [*result.panel.notes, *result.notes],
                  "excluded_series": result.excluded,
                  "failures": result.backtest.failures,
                  "quantiles": {str(k): v.tolist() for k, v in result.quantiles.items()}}, "forecast_report.json")
    run.log_table(result.leaderboard, "backtest/leaderboard.csv")
    run.log_table(result.leaderboard_by_series, "backtest/leaderboard_by_series.csv")
    run.log_table(result.shipping, "backtest/shipped_by_series.csv")
    run.log_table(result.backtest.errors, "backtest/forecasts.csv")
    run.log_table(result.forecast, "forecast.csv")
    run.log_figure(plot_forecasts(result.panel, result.forecast), "plots/forecast.png")
    example = pd.DataFrame({"series_id": list(result.panel.series_ids[:3]), "horizon": 2})
    register_pyfunc(result, input_example=example, output_example=score_forecast(example, result.bundle_path),
                    registered_model_name=model_name("forecast"))


# --------------------------------------------------------------------------- wiring


def train_forecast(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> ForecastResult:
    """Train the forecast pipeline end to end (module doc) and return what it produced."""
    step = step or no_step
    project, fc = cfg.project, cfg.forecast
    with step("Loading the sales series"):
        panel, fingerprint, input_report = load_panel(cfg)
    season = default_season_length(fc.freq, fc.season_length)
    panel, excluded, stale_notes = apply_stale_policy(panel, fc)
    windows = fit_windows(panel, horizon=fc.horizon, origins=fc.origins, origin_step=fc.origin_step,
                          season_length=season)
    horizon, origins = windows.horizon, windows.origins
    factories = model_factories(fc, season, project.seed)
    with training_run(cfg, "forecast", tracker=tracker, fingerprint=fingerprint,
                      tags={"crmlab.forecast_source": input_report["source"]}) as tr:
        with step(f"Backtesting {', '.join(factories)} at {len(origins)} origins"):
            bt = backtest(panel, factories, horizon=horizon, origins=origins, season_length=season,
                          min_train=windows.min_train)
            weights: dict[str, float] = {}
            combo_notes = []
            if "combination" in fc.models:
                bt, weights = add_combination(bt, [m for m in COMBINED if m in factories],
                                              weighting=fc.combination_weights)
                combo_notes = [f"combination weights ({fc.combination_weights}): "
                               + ", ".join(f"{m} {w:.3f}" for m, w in weights.items()) if weights else
                               "combination left out: fewer than two of its members produced a backtest"]
            board, by_series = leaderboard(bt), leaderboard(bt, by_series=True)
            best, notes = select_model(board)
            notes = [*stale_notes, *windows.notes, *combo_notes, *notes]
            notes += [f"{m} failed on the backtest: {why}" for m, why in bt.failures.items()]
            choice = choose_per_series(by_series, best, fc.selection, bt.errors)
            vetoed, veto = _replay_gate(bt, choice, best, fc.selection)
            if vetoed:
                choice = dict.fromkeys(choice, best)
                notes.append(f"fallback to a baseline on {len(vetoed)} series not applied: {veto}")
            shipping = shipping_table(by_series, choice, best, fc.selection, panel.series_ids, bt.errors,
                                      vetoed=vetoed, veto=veto)
            because = ship_reason(board, best, shipping, fc.selection, len(bt.origins))
            if vetoed:
                because += f"; no baseline fallback: {veto}"
            if set(choice.values()) <= {best}:
                choice = {}
            errors = shipped_errors(bt.errors, choice, best)
            metrics = shipped_metrics(errors, bt)
            check_evaluation("forecast", metrics, what=f"(the backtest of {best})")
            quantiles = conformal_quantiles(errors, horizon)
        if choice:
            members = shipped_model(list(dict.fromkeys([best, *choice.values()])), factories, weights,
                                    fc.combination_weights)
            fresh: Any = PerSeries(choice, members)
            counts = pd.Series(choice).value_counts()
            selected = "per_series"
            shipped_name = "per series: " + ", ".join(f"{m} on {n}" for m, n in counts.items())
            notes.append("per series: " + ", ".join(f"{m} for {n} series" for m, n in counts.items()))
        else:
            fresh, selected = shipped_model([best], factories, weights, fc.combination_weights)[best], best
            shipped_name = best
        with step(f"Refitting {selected} on all {panel.n_periods} periods and forecasting {horizon}"):
            model = fresh.fit(panel)
            future = forecast_frame(model, panel, horizon, quantiles, season_length=season)
            notes += [f"{selected} on {sid}: {why}" for sid, why in getattr(model, "fallbacks_", {}).items()]
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(Path(project.output.models_dir) / "forecast", model, panel,
                                        result_metrics=metrics, quantiles=quantiles, fc=fc, season_length=season,
                                        report=_report_table(panel, future),
                                        config_digest=config_hash(cfg.section("forecast")), horizon=horizon,
                                        excluded=excluded, notes=[*panel.notes, *notes],
                                        shipped={"model": shipped_name, "winner": best, "because": because,
                                                 "selection": fc.selection, "table": shipping},
                                        leaderboard=board)
        result = ForecastResult(
            panel=panel, config=fc, season_length=season, backtest=bt, leaderboard=board,
            leaderboard_by_series=by_series, selected=selected, notes=notes, metrics=metrics,
            quantiles=quantiles, forecast=future, bundle_path=bundle_path, fingerprint=fingerprint,
            excluded=excluded, shipped=shipped_name,
            shipped_because=because, shipping=shipping, **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, leaderboard, plot and model to MLflow"):
                log_training(tr.run, result, input_report)
    return result
