"""The forecast pipeline: series, rolling-origin backtest of every model, selection, intervals, export.

Steps are functions named with verbs; :func:`train_forecast` only wires them::

    load_panel (transactions via prepare_data, or the aggregated sales table)
      -> backtest (every configured model at every origin) -> leaderboard -> select_model
      -> conformal_quantiles + interval_coverage (shipped model, backtest errors)
      -> refit the shipped model on the whole history -> forecast_frame -> export_bundle -> log_training

Series may start and end on their own dates. Each is backtested on its own span and forecast from
its own last period; a series that stopped long before the others (``forecast.stale_after``) is
handled by ``forecast.stale_series`` (:func:`apply_stale_policy`): excluded and named (the
default), forecast from its own end (dated from there), or an error. The backtest windows are
fitted to the series' lengths (:func:`~crmlab.forecast.backtest.fit_windows`), with a note for each
change.

The shipped model is the one with the lowest backtest MASE, over all series or, with
``forecast.selection: per_series``, for each series. Seasonal naive is always on the board, so the
accuracy gate holds by construction: LightGBM (or ETS, ARIMA) ships only when it beats every
baseline, and the summary names the models that did worse than seasonal naive.

:func:`score_forecast` is what the MLflow pyfunc calls: it rebuilds the fitted model from the
bundle's JSON state, history arrays and LightGBM text model (no pickles) and returns point
forecasts with 80% and 95% intervals per series and period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CrmlabConfig, ForecastConfig, config_hash
from crmlab.data.io import source_name
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.forecast.backtest import (
    LEVELS,
    Backtest,
    backtest,
    conformal_quantiles,
    fit_windows,
    interval_coverage,
    leaderboard,
    select_model,
    select_per_series,
    shipped_errors,
)
from crmlab.forecast.metrics import scales
from crmlab.forecast.models import MODELS, PerSeries, forecaster_from_dict, make_forecaster
from crmlab.forecast.series import (
    Panel,
    default_season_length,
    future_periods,
    read_sales,
    stale_series,
    transaction_panel,
)
from crmlab.registry import check_evaluation
from crmlab.tracking import Run, Tracker, data_fingerprint
from crmlab.training import TrainingResult, register_pyfunc, training_run
from crmlab.utils import Step, no_step

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "ForecastResult",
    "apply_stale_policy",
    "evaluate_bundle",
    "export_bundle",
    "forecast_bundle",
    "forecast_frame",
    "load_panel",
    "log_training",
    "model_factories",
    "plot_forecasts",
    "score_forecast",
    "train_forecast",
]

INPUT_COLUMNS = ["series_id", "horizon"]
OUTPUT_COLUMNS = ["series_id", "step", "period", "forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
MODEL_FILE = "lightgbm_model.txt"
REPORT_HISTORY = 26  # history periods per series in report_forecast.csv


@dataclass(kw_only=True)
class ForecastResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check)."""

    panel: Panel
    config: ForecastConfig
    season_length: int
    backtest: Backtest
    leaderboard: pd.DataFrame
    leaderboard_by_series: pd.DataFrame
    selected: str
    notes: list[str]
    quantiles: dict[int, np.ndarray]
    forecast: pd.DataFrame
    excluded: dict[str, str] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """A few lines for the CLI: the data, the leaderboard, the shipped model and its intervals."""
        p, m = self.panel, self.metrics
        lines = [f"{len(p.series_ids)} series of {p.target} per {p.freq}: {p.n_periods} periods "
                 f"{p.periods[0].date()}..{p.periods[-1].date()}; backtest at {len(self.backtest.origins)} origins, "
                 f"horizon {self.backtest.horizon}"]
        lines += [f"note: {n}" for n in (*p.notes, *self.notes)]
        for r in self.leaderboard.itertuples():
            mark = "*" if r.model == self.selected else " "
            lines.append(f" {mark} {r.model:<15} MASE {r.mase:.3f}  RMSSE {r.rmsse:.3f}  sMAPE {r.smape:.1f}%  "
                         f"WAPE {r.wape:.3f}  bias {r.bias:+.3f}")
        how = "lowest backtest MASE per series" if self.selected == "per_series" else "lowest backtest MASE"
        lines.append(f"shipped: {self.selected} ({how}: {m['mase']:.3f}); interval coverage "
                     f"(leave-one-origin-out) 80%: {m['coverage_80']:.1%}, 95%: {m['coverage_95']:.1%}")
        lines.append(f"bundle: {self.bundle_path}")
        return lines


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
    """Fresh-model constructors for the backtest, seasonal naive first (the accuracy gate)."""
    names = ["seasonal_naive", *(m for m in fc.models if m != "seasonal_naive")]
    return {name: (lambda name=name: make_forecaster(name, freq=fc.freq, season_length=season_length,
                                                     lags=fc.lags, lightgbm=fc.lightgbm, seed=seed))
            for name in names}


def forecast_frame(model: Any, panel: Panel, horizon: int, quantiles: dict[int, np.ndarray], *,
                   season_length: int) -> pd.DataFrame:
    """The future: one row per series and step with the point forecast and the 80%/95% intervals
    (``forecast +- q_h * scale``, the series' MASE scale as in the backtest, floored at zero for
    sales that never go negative)."""
    q_len = len(next(iter(quantiles.values())))
    if horizon > q_len:
        raise ModelError(f"horizon {horizon} is beyond the {q_len} steps the intervals were calibrated for "
                         f"(forecast.horizon); retrain with a longer forecast.horizon")
    point = model.predict(horizon)
    sc = np.array([scales(row, season_length)[0] for row in panel.values])
    grid = panel.periods.append(future_periods(panel.periods[-1], horizon, panel.freq)).to_numpy()
    periods = grid[panel.ends[:, None] + np.arange(horizon)[None, :]]  # each series from its own end
    n = len(panel.series_ids)
    out = pd.DataFrame({
        "series_id": np.repeat(np.asarray(panel.series_ids, dtype=object), horizon),
        "step": np.tile(np.arange(1, horizon + 1), n),
        "period": periods.reshape(-1),
        "forecast": point.reshape(-1),
    })
    floor = 0.0 if bool(np.nanmin(panel.values) >= 0) else -np.inf
    for level in LEVELS:
        width = (sc[:, None] * quantiles[level][None, :horizon]).reshape(-1)
        out[f"lower_{level}"] = np.maximum(out["forecast"] - width, floor)
        out[f"upper_{level}"] = out["forecast"] + width
    return out


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


def export_bundle(path: str | Path, model: Any, panel: Panel, *, result_metrics: dict[str, float],
                  quantiles: dict[int, np.ndarray], fc: ForecastConfig, season_length: int,
                  report: pd.DataFrame, config_digest: str, horizon: int | None = None,
                  excluded: dict[str, str] | None = None, notes: list[str] | None = None) -> Path:
    """Write the shipped model to a bundle: its JSON state (statistical models' fitted parameters,
    LightGBM's settings and series scales), the history it forecasts from (``arrays.npz``), the
    LightGBM text model, the interval quantiles and ``report_forecast.csv``. No pickles."""
    params = {
        "model": model.to_dict(),
        "quantiles": {str(k): v.tolist() for k, v in quantiles.items()},
        "series_ids": list(panel.series_ids),
        "periods": [p.date().isoformat() for p in panel.periods],
        "freq": panel.freq,
        "target": panel.target,
        "season_length": season_length,
        "n_future": panel.n_future,
        "covariates": sorted(panel.covariates),
    }
    arrays = {"values": panel.values, **{f"covariate__{k}": v for k, v in panel.covariates.items()}}
    texts = {"report_forecast.csv": report.to_csv(index=False)}
    text = model.model_text() if hasattr(model, "model_text") else None
    if text is not None:
        texts[MODEL_FILE] = text
    manifest = {
        "features": model.to_dict().get("features", []),
        "input_columns": INPUT_COLUMNS,
        "output_columns": OUTPUT_COLUMNS,
        "model": model.name,
        "target": panel.target,
        "time_unit": panel.freq,
        "horizon": horizon or fc.horizon,
        "training_window": {"first_period": panel.periods[0].date().isoformat(),
                            "last_period": panel.periods[-1].date().isoformat(), "freq": panel.freq},
        "n_series": len(panel.series_ids),
        "series_last_period": dict(zip(panel.series_ids, (p.date().isoformat() for p in panel.last_periods()),
                                       strict=True)),
        "excluded_series": excluded or {},
        "notes": list(notes or []),
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in result_metrics.items()},
        "config_hash": config_digest,
    }
    return write_bundle(path, pipeline="forecast", params=params, manifest=manifest, arrays=arrays, texts=texts)


def _model_from_bundle(bundle: Bundle) -> tuple[Any, Panel, dict[int, np.ndarray]]:
    p = bundle.params
    missing = [k for k in ("model", "quantiles", "series_ids", "periods", "freq", "season_length") if k not in p]
    if missing or "values" not in bundle.arrays:
        raise ModelError(f"{bundle.path}: lacks {missing or ['arrays.npz values']}; not a forecast bundle of this "
                         "crmlab, retrain")
    covs = {k.split("__", 1)[1]: v for k, v in bundle.arrays.items() if k.startswith("covariate__")}
    panel = Panel(tuple(p["series_ids"]), pd.DatetimeIndex(pd.to_datetime(p["periods"])), bundle.arrays["values"],
                  str(p["freq"]), covs, int(p.get("n_future", 0)), target=str(p.get("target", "value")))
    text = bundle.lightgbm_text(MODEL_FILE) if (bundle.path / MODEL_FILE).is_file() else None
    model = forecaster_from_dict(p["model"], panel, text)
    quantiles = {int(k): np.asarray(v, dtype=np.float64) for k, v in p["quantiles"].items()}
    return model, panel, quantiles


def forecast_bundle(bundle: Bundle | str | Path, horizon: int | None = None) -> pd.DataFrame:
    """The future forecast of an exported bundle: ``horizon`` periods (default: the trained horizon)."""
    bundle = as_bundle(bundle, "forecast")
    model, panel, quantiles = _model_from_bundle(bundle)
    steps = horizon or int(bundle.manifest.get("horizon", len(quantiles[LEVELS[0]])))
    if steps < 1:
        raise ModelError(f"horizon must be at least 1, got {steps}")
    return forecast_frame(model, panel, steps, quantiles, season_length=int(bundle.params["season_length"]))


def score_forecast(request: pd.DataFrame, bundle: Bundle | str | Path) -> pd.DataFrame:
    """Forecasts for a request frame (the pyfunc input): one row per wanted series with ``horizon``
    (periods ahead) and ``series_id`` (optional: without it every series gets the first row's
    horizon). Returns one row per series and step with ``period``, ``forecast`` and the 80%/95%
    interval bounds (:data:`OUTPUT_COLUMNS`)."""
    if not isinstance(request, pd.DataFrame) or "horizon" not in request.columns:
        raise ModelError("forecast scoring input: a DataFrame with a 'horizon' column (and optional 'series_id')")
    bundle = as_bundle(bundle, "forecast")
    model, panel, quantiles = _model_from_bundle(bundle)
    horizons = pd.to_numeric(request["horizon"], errors="coerce")
    if horizons.isna().any() or (horizons < 1).any():
        raise ModelError(f"forecast scoring input: horizon must be a whole number >= 1, got "
                         f"{request['horizon'][horizons.isna() | (horizons < 1)].iloc[0]!r}")
    if "series_id" in request.columns:
        wanted = dict(zip(request["series_id"].astype(str), horizons.astype(int), strict=True))
        unknown = sorted(set(wanted) - set(panel.series_ids))
        if unknown:
            raise ModelError(f"forecast scoring input: unknown series_id {unknown[:5]}; the model knows "
                             f"{list(panel.series_ids)[:10]}")
    else:
        wanted = dict.fromkeys(panel.series_ids, int(horizons.iloc[0]))
    full = forecast_frame(model, panel, max(wanted.values()), quantiles,
                          season_length=int(bundle.params["season_length"]))
    limit = full["series_id"].map(wanted)
    return full[limit.notna() & (full["step"] <= limit)].reset_index(drop=True)[OUTPUT_COLUMNS]


def _shipped_metrics(errors: pd.DataFrame, bt: Backtest) -> dict[str, float]:
    """Backtest accuracy and interval coverage of the shipped model's rows (:func:`shipped_errors`)."""
    board = leaderboard(Backtest(errors.assign(model="shipped"), bt.origins, bt.horizon, bt.season_length, {}))
    metrics = {k: float(v) for k, v in board.iloc[0].items() if k != "model"}
    metrics.update(interval_coverage(errors, bt.horizon))
    return metrics


def evaluate_bundle(bundle: Bundle | str | Path, result: ForecastResult) -> dict[str, float]:
    """The backtest metrics of another exported model's *specification* (the registry's champion,
    say) on the series and origins of ``result``: the champion's model kind, lags and LightGBM
    parameters are refitted at each origin and judged on the same periods as the new model (its
    exported fit saw those periods)."""
    bundle = as_bundle(bundle, "forecast")
    state = bundle.params.get("model", {})
    per_series = state.get("name") == "per_series"
    specs = state.get("members", {}) if per_series else {state.get("name"): state}
    unknown = [name for name in specs if name not in MODELS]
    if not specs or unknown:
        raise ModelError(f"{bundle.path}: unknown forecast model(s) {unknown or [state.get('name')]}; retrain")
    if bundle.params.get("freq") != result.panel.freq:
        raise ModelError(f"{bundle.path}: freq {bundle.params.get('freq')!r}, the new run uses "
                         f"{result.panel.freq!r}; compare models of the same frequency")
    season = int(bundle.params.get("season_length", result.season_length))
    factories = {name: (lambda name=name, s=s: make_forecaster(name, freq=result.panel.freq, season_length=season,
                                                               lags=s.get("lags"), lightgbm=s.get("params"),
                                                               seed=int(s.get("seed", 42))))
                 for name, s in specs.items()}
    bt = backtest(result.panel, factories, horizon=result.backtest.horizon, origins=result.backtest.origins,
                  season_length=result.season_length, min_train=result.backtest.min_train)
    if bt.failures:
        raise ModelError(f"{bundle.path}: the champion's model failed on the new backtest: {bt.failures}")
    errors = shipped_errors(bt.errors, state.get("choice", {}) if per_series else {}, next(iter(specs)))
    return _shipped_metrics(errors, bt)


# --------------------------------------------------------------------------- tracking


def plot_forecasts(panel: Panel, future: pd.DataFrame, *, max_series: int = 6) -> Any:
    """History (last two seasons or 104 periods), forecast and 80%/95% intervals, one panel per series."""
    from matplotlib.figure import Figure

    ids = list(panel.series_ids)[:max_series]
    fig = Figure(figsize=(10, 2.6 * len(ids)), layout="constrained")
    axes = fig.subplots(len(ids), 1, squeeze=False)[:, 0]
    for ax, sid in zip(axes, ids, strict=True):
        i = panel.series_ids.index(sid)
        end = int(panel.ends[i])
        start = max(0, end - 104)
        ax.plot(panel.periods[start:end], panel.values[i, start:end], color="black", lw=1.2, label="actual")
        f = future[future["series_id"] == sid]
        ax.fill_between(f["period"], f["lower_95"], f["upper_95"], color="tab:blue", alpha=0.15, label="95%")
        ax.fill_between(f["period"], f["lower_80"], f["upper_80"], color="tab:blue", alpha=0.3, label="80%")
        ax.plot(f["period"], f["forecast"], color="tab:blue", lw=1.5, label="forecast")
        ax.set_title(str(sid))
        ax.legend(loc="upper left", fontsize=8)
    return fig


def log_training(run: Run, result: ForecastResult, input_report: dict[str, Any]) -> None:
    """Log one training: the shipped model's backtest metrics (``mase`` is the registry's primary
    metric), each model's, the leaderboards, the backtest forecasts, the plot and the pyfunc model."""
    if not run.active:
        return
    from crmlab.registry import model_name

    run.set_tags({"crmlab.model": result.selected, "crmlab.forecast_target": result.panel.target})
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
    run.log_dict({"selected": result.selected, "notes": [*result.panel.notes, *result.notes],
                  "excluded_series": result.excluded,
                  "failures": result.backtest.failures,
                  "quantiles": {str(k): v.tolist() for k, v in result.quantiles.items()}}, "forecast_report.json")
    run.log_table(result.leaderboard, "backtest/leaderboard.csv")
    run.log_table(result.leaderboard_by_series, "backtest/leaderboard_by_series.csv")
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
            board, by_series = leaderboard(bt), leaderboard(bt, by_series=True)
            best, notes = select_model(board)
            notes = [*stale_notes, *windows.notes, *notes]
            notes += [f"{m} failed on the backtest: {why}" for m, why in bt.failures.items()]
            choice = select_per_series(by_series) if fc.selection == "per_series" else {}
            errors = shipped_errors(bt.errors, choice, best)
            metrics = _shipped_metrics(errors, bt)
            check_evaluation("forecast", metrics, what=f"(the backtest of {best})")
            quantiles = conformal_quantiles(errors, horizon)
        if choice:
            members = dict.fromkeys([best, *choice.values()])
            fresh: Any = PerSeries(choice, {name: factories[name]() for name in members})
            counts = pd.Series(choice).value_counts()
            selected = "per_series"
            notes.append("per series: " + ", ".join(f"{m} for {n} series" for m, n in counts.items()))
        else:
            fresh, selected = factories[best](), best
        with step(f"Refitting {selected} on all {panel.n_periods} periods and forecasting {horizon}"):
            model = fresh.fit(panel)
            future = forecast_frame(model, panel, horizon, quantiles, season_length=season)
            notes += [f"{selected} on {sid}: {why}" for sid, why in getattr(model, "fallbacks_", {}).items()]
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(Path(project.output.models_dir) / "forecast", model, panel,
                                        result_metrics=metrics, quantiles=quantiles, fc=fc, season_length=season,
                                        report=_report_table(panel, future),
                                        config_digest=config_hash(cfg.section("forecast")), horizon=horizon,
                                        excluded=excluded, notes=[*panel.notes, *notes])
        result = ForecastResult(
            panel=panel, config=fc, season_length=season, backtest=bt, leaderboard=board,
            leaderboard_by_series=by_series, selected=selected, notes=notes, metrics=metrics,
            quantiles=quantiles, forecast=future, bundle_path=bundle_path, fingerprint=fingerprint,
            excluded=excluded, **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, leaderboard, plot and model to MLflow"):
                log_training(tr.run, result, input_report)
    return result
