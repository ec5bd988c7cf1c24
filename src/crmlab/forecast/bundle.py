"""The forecast bundle: the shipped model's JSON form, the horizon it forecasts with its conformal intervals, and the scorer of forecast requests (series and horizon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import ForecastConfig
from crmlab.errors import ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.forecast.backtest import (
    LEVELS,
    Backtest,
    add_combination,
    backtest,
    interval_coverage,
    leaderboard,
    shipped_errors,
)
from crmlab.forecast.metrics import scales
from crmlab.forecast.models import MODELS, forecaster_from_dict, make_forecaster
from crmlab.forecast.result import ForecastResult
from crmlab.forecast.series import (
    Panel,
    future_periods,
)

INPUT_COLUMNS = ["series_id", "horizon"]


OUTPUT_COLUMNS = ["series_id", "step", "period", "forecast", "lower_80", "upper_80", "lower_95", "upper_95"]


MODEL_FILE = "lightgbm_model.txt"


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


def export_bundle(path: str | Path, model: Any, panel: Panel, *, result_metrics: dict[str, float],
                  quantiles: dict[int, np.ndarray], fc: ForecastConfig, season_length: int,
                  report: pd.DataFrame, config_digest: str, horizon: int | None = None,
                  excluded: dict[str, str] | None = None, notes: list[str] | None = None,
                  shipped: dict[str, Any] | None = None, leaderboard: pd.DataFrame | None = None) -> Path:
    """Write the shipped model to a bundle: its JSON state (statistical models' fitted parameters,
    LightGBM's settings and series scales, a combination's members and weights), the history it
    forecasts from (``arrays.npz``), the LightGBM text model, the interval quantiles,
    ``report_forecast.csv`` and, given ``shipped`` (model, winner, because, selection and the
    per-series ``table``), what shipped and why in the manifest and ``report_shipped.csv``. No pickles."""
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
    shipped = dict(shipped or {})
    table = shipped.pop("table", None)
    if table is not None and len(table):
        texts["report_shipped.csv"] = table.to_csv(index=False)
        shipped["by_series"] = {str(r.series_id): {"model": r.shipped, "because": r.because, "beat": r.beat}
                                for r in table.itertuples()}
    if leaderboard is not None and len(leaderboard):
        board = leaderboard[[c for c in ("model", "mase", "rmsse", "wape", "bias") if c in leaderboard]].copy()
        board.insert(1, "overall_winner", board["model"] == shipped.get("winner"))
        texts["report_leaderboard.csv"] = board.to_csv(index=False)
    text = model.model_text() if hasattr(model, "model_text") else None
    if text is not None:
        texts[MODEL_FILE] = text
    manifest = {
        "features": model.to_dict().get("features", []),
        "input_columns": INPUT_COLUMNS,
        "output_columns": OUTPUT_COLUMNS,
        "model": model.name,
        **({"shipped": shipped.get("model", model.name), "shipped_because": shipped.get("because", ""),
            "shipping": shipped} if shipped else {}),
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


def shipped_metrics(errors: pd.DataFrame, bt: Backtest) -> dict[str, float]:
    """Backtest accuracy and interval coverage of the shipped model's rows (:func:`shipped_errors`)."""
    board = leaderboard(Backtest(errors.assign(model="shipped"), bt.origins, bt.horizon, bt.season_length, {}))
    metrics = {k: float(v) for k, v in board.iloc[0].items() if k != "model"}
    metrics.update(interval_coverage(errors, bt.horizon))
    return metrics


def _base_specs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The single models inside a bundle's model state (a per-series choice and a combination hold others)."""
    if state.get("name") in ("per_series", "combination"):
        out: dict[str, dict[str, Any]] = {}
        for member in state.get("members", {}).values():
            out.update(_base_specs(member))
        return out
    return {str(state.get("name")): state}


def _combination_state(state: dict[str, Any]) -> dict[str, Any] | None:
    if state.get("name") == "combination":
        return state
    return next((m for m in state.get("members", {}).values() if m.get("name") == "combination"), None)


def evaluate_bundle(bundle: Bundle | str | Path, result: ForecastResult) -> dict[str, float]:
    """The backtest metrics of another exported model's *specification* (the registry's champion,
    say) on the series and origins of ``result``: the champion's model kind, lags and LightGBM
    parameters are refitted at each origin and judged on the same periods as the new model (its
    exported fit saw those periods); a combination is rebuilt from its members' backtests with its
    weighting rule, a per-series choice keeps its choice."""
    bundle = as_bundle(bundle, "forecast")
    state = bundle.params.get("model", {})
    per_series = state.get("name") == "per_series"
    specs = _base_specs(state)
    unknown = [name for name in specs if name not in MODELS or name == "combination"]
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
    combo = _combination_state(state)
    if combo is not None:
        bt, _ = add_combination(bt, list(combo["members"]), weighting=str(combo.get("weighting", "equal")))
    first = next(iter(state["members"])) if per_series else str(state.get("name"))
    errors = shipped_errors(bt.errors, state.get("choice", {}) if per_series else {}, first)
    return shipped_metrics(errors, bt)
