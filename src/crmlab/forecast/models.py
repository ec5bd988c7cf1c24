"""The forecasters: seasonal naive, ETS and ARIMA per series (statsmodels), and a global LightGBM model.

Every forecaster follows one small protocol, so the backtest, the export and scoring treat them
alike: ``fit(panel) -> self`` learns from a :class:`~crmlab.forecast.series.Panel`, ``predict(h)``
returns an array of ``n_series x h`` point forecasts, ``to_dict()`` is its JSON state (settings and
fitted parameters, never a pickle) and ``from_dict(state, panel)`` rebuilds the fitted model on the
same history without estimating anything again, so a reloaded bundle forecasts exactly what the
trained model did.

* **Seasonal naive** repeats the last season; a series shorter than one season repeats its last
  value (documented fallback, recorded in ``fallbacks_``).
* **ETS** (``statsmodels.tsa.exponential_smoothing.ets.ETSModel``, additive errors, heuristic
  initial states, which is fifty times faster than estimating them): no trend or a damped additive
  trend, additive seasonality when two seasons are known; the lowest AIC wins.
* **ARIMA** (``statsmodels.tsa.arima.model.ARIMA``, no standard errors computed): the "airline"
  model (0,1,1)(0,1,1)m when three seasons are known and the season is at most 24 periods, else
  (0,1,1) or (1,1,1), the lowest AIC winning. (A seasonal fit takes seconds: one candidate only.)
  A series too short for ETS or ARIMA (fewer than ``MIN_LOCAL`` periods), or one where the fit
  fails, gets the naive forecast, recorded in ``fallbacks_``.
* **LightGBM** is one model over all series (Januschowski et al. 2020, "Criteria for classifying
  forecasting methods"): each series is divided by its mean absolute level, then target and sales
  features by the local level (the trailing mean of the first window); features are lags, trailing
  means and standard deviations, calendar fields, the local level, the series code and known
  covariates; it forecasts recursively, one step at a time, feeding its forecasts back as lags.
* **Naive** repeats the last value (seasonal naive with a season of 1), the second baseline.
* **Combination** (:class:`Combination`) is the weighted mean of ETS, ARIMA and LightGBM's forecasts
  (whichever are configured and fitted): equal weights, or inverse backtest MASE (Bates and Granger
  1969; the equal mean is hard to beat, Smith and Wallis 2009). Its state is its members' states and
  the weights.
* **Per series** (:class:`PerSeries`) puts them together: each series takes the model chosen for it
  on the backtest (a baseline where it beat the overall winner, ``forecast.selection``).

Every model forecasts each series from its own last observed period (series of a sales table may
end on different dates), never from the common grid's end. Sales are never forecast below zero
when the history has no negative value.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import pandas as pd

from crmlab.errors import ModelError
from crmlab.forecast.series import Panel, future_periods

__all__ = [
    "BASELINES",
    "MODELS",
    "Arima",
    "Ets",
    "Forecaster",
    "COMBINED",
    "Combination",
    "LightGBMForecaster",
    "Naive",
    "PerSeries",
    "SeasonalNaive",
    "default_lags",
    "forecaster_from_dict",
    "make_forecaster",
]

MIN_LOCAL = 10
BASELINES = ("seasonal_naive", "ets", "arima")
NAIVES = ("seasonal_naive", "naive")  # the baselines a series falls back to (forecast.selection=fallback)
COMBINED = ("ets", "arima", "lightgbm")  # the members of the combination, when configured and fitted
MODELS = ("seasonal_naive", "naive", "ets", "arima", "lightgbm", "combination")
DEFAULT_LAGS = {"D": [1, 2, 3, 7, 14, 28], "W": [1, 2, 3, 4, 8, 13, 26, 52], "M": [1, 2, 3, 6, 12]}
WINDOWS = {"D": [7, 28], "W": [4, 13], "M": [3, 12]}
LGB_DEFAULTS: dict[str, Any] = {
    "objective": "regression_l1",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 5,
    "feature_fraction": 0.9,
    "num_boost_round": 300,
    "verbosity": -1,
    "num_threads": 1,  # a few hundred rows: a second thread costs more than it saves
    "deterministic": True,
    "force_row_wise": True,
}


class Forecaster(Protocol):
    name: str

    def fit(self, panel: Panel) -> Forecaster: ...

    def predict(self, horizon: int) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


def default_lags(freq: str) -> list[int]:
    return list(DEFAULT_LAGS[freq])


def _observed(row: np.ndarray) -> np.ndarray:
    return row[~np.isnan(row)]


def _nonneg(panel: Panel) -> bool:
    return bool(np.nanmin(panel.values) >= 0) if np.isfinite(panel.values).any() else True


def _naive(y: np.ndarray, horizon: int) -> np.ndarray:
    return np.full(horizon, y[-1] if len(y) else np.nan)


class _Local:
    """Shared plumbing of the per-series models: fit each series, fall back to naive, clip."""

    name = "local"

    def __init__(self, season_length: int) -> None:
        self.season_length = season_length

    def fit(self, panel: Panel) -> _Local:
        """Fit every series. BLAS runs on one thread here: the state-space matrices are tiny, and
        with several threads their set-up costs five times more than the work."""
        from threadpoolctl import threadpool_limits

        self.panel_ = panel
        self.nonneg_ = _nonneg(panel)
        self.states_: list[dict[str, Any] | None] = []
        self.fallbacks_: dict[str, str] = {}
        self.results_: list[Any] = []
        for sid, row in zip(panel.series_ids, panel.values, strict=True):
            y = _observed(row)
            with threadpool_limits(limits=1):
                state, res = self._fit_one(y)
            if state is None and len(y):
                why = f"{len(y)} periods < {MIN_LOCAL}" if len(y) < MIN_LOCAL else "no candidate model could be fitted"
                self.fallbacks_[sid] = f"{why}: naive forecast"
            self.states_.append(state)
            self.results_.append(res)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        out = np.empty((len(self.states_), horizon))
        for i, (row, res) in enumerate(zip(self.panel_.values, self.results_, strict=True)):
            y = _observed(row)
            out[i] = _naive(y, horizon) if res is None else np.asarray(res.forecast(horizon), dtype=np.float64)
        return np.maximum(out, 0.0) if self.nonneg_ else out

    def _rebuild(self, panel: Panel, states: list[dict[str, Any] | None]) -> _Local:
        self.panel_, self.nonneg_, self.states_, self.fallbacks_ = panel, _nonneg(panel), states, {}
        self.results_ = [None if s is None else self._refilter(_observed(row), s)
                         for row, s in zip(panel.values, states, strict=True)]
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "season_length": self.season_length, "states": self.states_,
                "fallbacks": self.fallbacks_}

    def _fit_one(self, y: np.ndarray) -> tuple[dict[str, Any] | None, Any]:
        raise NotImplementedError

    def _refilter(self, y: np.ndarray, state: dict[str, Any]) -> Any:
        raise NotImplementedError


def _best_by_aic(candidates: list[dict[str, Any]], fit: Any) -> tuple[dict[str, Any] | None, Any]:
    """Fit each candidate specification (statsmodels warnings silenced, failures skipped) and keep
    the lowest finite AIC: its JSON state (spec, parameters, AIC) and its results object."""
    best: tuple[float, dict[str, Any], Any] | None = None
    for spec in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fit(spec)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.aic) and (best is None or res.aic < best[0]):
            best = (float(res.aic), spec, res)
    if best is None:
        return None, None
    return {"spec": best[1], "params": [float(p) for p in best[2].params], "aic": best[0]}, best[2]


class SeasonalNaive(_Local):
    """y(T+h) = y(T+h-m*k) for the last full season; the last value when the history is shorter."""

    name = "seasonal_naive"

    def fit(self, panel: Panel) -> SeasonalNaive:
        self.panel_, self.nonneg_, self.fallbacks_ = panel, _nonneg(panel), {}
        self.states_ = []
        for sid, row in zip(panel.series_ids, panel.values, strict=True):
            n = len(_observed(row))
            lag = self.season_length if n >= self.season_length else 1
            if lag == 1 and self.season_length > 1 and n:
                self.fallbacks_[sid] = f"{n} periods < season_length={self.season_length}: naive forecast"
            self.states_.append({"lag": lag})
        return self

    def predict(self, horizon: int) -> np.ndarray:
        out = np.full((len(self.states_), horizon), np.nan)
        for i, (row, s) in enumerate(zip(self.panel_.values, self.states_, strict=True)):
            y = _observed(row)
            if len(y):
                last = y[-s["lag"]:]
                out[i] = np.resize(last, horizon)
        return out

    def _rebuild(self, panel: Panel, states: list[dict[str, Any] | None]) -> SeasonalNaive:
        self.panel_, self.nonneg_, self.states_, self.fallbacks_ = panel, _nonneg(panel), states, {}
        return self


class Naive(SeasonalNaive):
    """y(T+h) = y(T): the last observed value (seasonal naive with a season of one period)."""

    name = "naive"

    def __init__(self, season_length: int = 1) -> None:
        super().__init__(1)


class Ets(_Local):
    """Exponential smoothing state-space models, chosen per series by AIC (module doc)."""

    name = "ets"

    def _candidates(self, n: int) -> list[dict[str, Any]]:
        seasonal = self.season_length > 1 and n >= 2 * self.season_length + 2
        out = []
        for trend in (None, "add"):
            out.append({"trend": trend, "damped_trend": trend is not None,
                        "seasonal": "add" if seasonal else None,
                        "seasonal_periods": self.season_length if seasonal else None})
        return out

    def _model(self, y: np.ndarray, spec: dict[str, Any]) -> Any:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        return ETSModel(y, error="add", initialization_method="heuristic", **spec)

    def _fit_one(self, y: np.ndarray) -> tuple[dict[str, Any] | None, Any]:
        if len(y) < MIN_LOCAL:
            return None, None
        def fit(spec: dict[str, Any]) -> Any:
            model = self._model(y, spec)
            return model.smooth(model.fit(disp=False, maxiter=200, return_params=True))

        return _best_by_aic(self._candidates(len(y)), fit)

    def _refilter(self, y: np.ndarray, state: dict[str, Any]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._model(y, state["spec"]).smooth(np.asarray(state["params"]))


class Arima(_Local):
    """ARIMA per series, order chosen by AIC among a small grid (module doc)."""

    name = "arima"
    ORDERS = ((0, 1, 1), (1, 1, 1))

    def _model(self, y: np.ndarray, spec: dict[str, Any]) -> Any:
        from statsmodels.tsa.arima.model import ARIMA

        return ARIMA(y, order=tuple(spec["order"]), seasonal_order=tuple(spec["seasonal_order"]), trend="n")

    def _fit_one(self, y: np.ndarray) -> tuple[dict[str, Any] | None, Any]:
        if len(y) < MIN_LOCAL:
            return None, None
        m = self.season_length
        seasonal = 1 < m <= 24 and len(y) >= 3 * m
        candidates = ([{"order": [0, 1, 1], "seasonal_order": [0, 1, 1, m]}] if seasonal else
                      [{"order": list(order), "seasonal_order": [0, 0, 0, 0]} for order in self.ORDERS])
        return _best_by_aic(candidates, lambda spec: self._model(y, spec).fit(cov_type="none"))

    def _refilter(self, y: np.ndarray, state: dict[str, Any]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._model(y, state["spec"]).filter(np.asarray(state["params"]))


# --------------------------------------------------------------------------- LightGBM


def _calendar(periods: pd.DatetimeIndex, freq: str) -> dict[str, np.ndarray]:
    cal = {"month": periods.month.to_numpy(dtype=np.float64)}
    if freq == "W":
        cal["week_of_year"] = periods.isocalendar().week.to_numpy(dtype=np.float64)
    if freq == "D":
        cal["day_of_week"] = periods.dayofweek.to_numpy(dtype=np.float64)
        cal["day_of_month"] = periods.day.to_numpy(dtype=np.float64)
    return cal


class LightGBMForecaster:
    """One LightGBM regressor over all series, forecasting recursively (module doc).

    Feature names are deterministic: ``sales_lag_<l>``, ``sales_mean_<w>``, ``sales_std_<w>``,
    calendar fields, ``sales_level``, ``series_code`` and the covariates' names.
    """

    name = "lightgbm"

    def __init__(self, *, lags: list[int], windows: list[int], params: dict[str, Any] | None = None,
                 seed: int = 42) -> None:
        self.lags = lags
        self.windows = windows
        self.params = params or {}
        self.seed = seed

    def _feature_names(self, panel: Panel) -> list[str]:
        names = [f"sales_lag_{lag}" for lag in self.lags_]
        names += [f"sales_{stat}_{w}" for w in self.windows for stat in ("mean", "std")]
        names += list(_calendar(panel.periods[:1], panel.freq))
        names += ["sales_level", "series_code", *sorted(panel.covariates)]
        return names

    def _features(self, z: np.ndarray, t: int | np.ndarray, calendar: dict[str, np.ndarray],
                  covariates: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Features of period column ``t`` of every series (one column for all, or one per series:
        each forecasts from its own end) from the scaled history ``z[:, :t]``, and the local level
        they are relative to (the mean of the first window; 1 where it is 0).

        Sales features and the target are divided by the local level, so the trees learn shapes
        (seasonality, the effect of a promotion) rather than levels, and a falling or rising series
        does not drag its forecast back to the levels it had in training."""
        n = z.shape[0]
        rows = np.arange(n)
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))

        def window(w: int) -> np.ndarray:
            idx = t[:, None] - w + np.arange(w)[None, :]
            past = z[rows[:, None], np.maximum(idx, 0)]
            return np.where(idx >= 0, past, np.nan)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            level = np.nanmean(window(self.windows[0]), axis=1)
            level = np.where(np.isfinite(level) & (level > 0), level, 1.0)
            cols = [np.where(t - lag >= 0, z[rows, np.maximum(t - lag, 0)], np.nan) / level for lag in self.lags_]
            for w in self.windows:
                past = window(w)
                cols += [np.nanmean(past, axis=1) / level, np.nanstd(past, axis=1) / level]
        cols += [v[t] for v in calendar.values()]
        cols += [level, rows.astype(np.float64)]
        cols += [covariates[c][rows, t] for c in sorted(covariates)]
        return np.column_stack(cols), level

    def _train_params(self) -> dict[str, Any]:
        params = {**LGB_DEFAULTS, **self.params, "seed": self.seed}
        params.pop("num_boost_round", None)
        return params

    def fit(self, panel: Panel) -> LightGBMForecaster:
        import lightgbm as lgb

        n_obs = np.sum(~np.isnan(panel.values), axis=1).max()
        self.lags_ = [lag for lag in self.lags if lag < n_obs] or [1]
        self.panel_ = panel
        self.nonneg_ = _nonneg(panel)
        level = np.nanmean(np.abs(panel.values), axis=1) if np.isfinite(panel.values).any() else np.ones(1)
        self.scale_ = np.where(np.isfinite(level) & (level > 0), level, 1.0)
        z = panel.values / self.scale_[:, None]
        calendar = _calendar(panel.periods, panel.freq)
        xs, ys = [], []
        for t in range(1, panel.n_periods):
            ok = ~np.isnan(z[:, t]) & ~np.isnan(z[:, t - 1])
            if ok.any():
                x, level = self._features(z, t, calendar, panel.covariates)
                xs.append(x[ok])
                ys.append(z[ok, t] / level[ok])
        if not xs:
            raise ModelError("LightGBM: no series has two consecutive periods to learn from")
        x, y = np.vstack(xs), np.concatenate(ys)
        rounds = int({**LGB_DEFAULTS, **self.params}["num_boost_round"])
        names = self._feature_names(panel)
        cat = ["series_code"] if len(panel.series_ids) > 1 else []
        data = lgb.Dataset(x, y, feature_name=names, categorical_feature=cat, free_raw_data=False)
        self.booster_ = lgb.train(self._train_params(), data, num_boost_round=rounds)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        panel = self.panel_
        available = panel.n_future
        if panel.covariates and horizon > available:
            raise ModelError(f"LightGBM uses covariates {sorted(panel.covariates)}, known for {available} future "
                             f"period(s); a horizon of {horizon} needs them for every forecast period (add future "
                             "rows to the sales table or forecast fewer periods)")
        t0 = panel.ends  # each series from its own last period
        rows = np.arange(len(t0))
        periods = panel.periods.append(future_periods(panel.periods[-1], horizon, panel.freq))
        calendar = _calendar(periods, panel.freq)
        z = np.concatenate([panel.values / self.scale_[:, None], np.full((len(self.scale_), horizon), np.nan)], axis=1)
        started = np.isfinite(panel.values).any(axis=1)
        out = np.full((len(t0), horizon), np.nan)
        for h in range(horizon):
            x, level = self._features(z, t0 + h, calendar, panel.covariates)
            pred = self.booster_.predict(x) * level
            if self.nonneg_:
                pred = np.maximum(pred, 0.0)
            out[:, h] = np.where(started, pred, np.nan)
            z[rows, t0 + h] = out[:, h]
        return out * self.scale_[:, None]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lags": self.lags, "lags_used": self.lags_, "windows": self.windows,
                "params": self.params, "seed": self.seed, "scale": self.scale_.tolist(),
                "features": self._feature_names(self.panel_)}

    def model_text(self) -> str:
        return self.booster_.model_to_string()

    @classmethod
    def from_dict(cls, state: dict[str, Any], panel: Panel, model_text: str) -> LightGBMForecaster:
        import lightgbm as lgb

        self = cls(lags=list(state["lags"]), windows=list(state["windows"]), params=dict(state["params"]),
                   seed=int(state["seed"]))
        self.lags_ = list(state["lags_used"])
        self.panel_, self.nonneg_ = panel, _nonneg(panel)
        self.scale_ = np.asarray(state["scale"], dtype=np.float64)
        self.booster_ = lgb.Booster(model_str=model_text)
        return self


class PerSeries:
    """Each series forecast by its own model (``forecast.selection: per_series``): every chosen model
    is fitted on the whole panel (LightGBM stays global) and each series takes its model's row."""

    name = "per_series"

    def __init__(self, choice: dict[str, str], members: dict[str, Any]) -> None:
        self.choice = choice
        self.members = members

    def fit(self, panel: Panel) -> PerSeries:
        self.panel_ = panel
        for member in self.members.values():
            if getattr(member, "panel_", None) is not panel:  # a LightGBM shared with a combination: once
                member.fit(panel)
        self.fallbacks_ = {sid: why for name, m in self.members.items()
                           for sid, why in getattr(m, "fallbacks_", {}).items() if self._model_of(sid) == name}
        return self

    def _model_of(self, sid: str) -> str:
        """The series' model; a series the selection never saw takes the first member (the overall best)."""
        return self.choice.get(sid, next(iter(self.members)))

    def predict(self, horizon: int) -> np.ndarray:
        forecasts = {name: m.predict(horizon) for name, m in self.members.items()}
        return np.vstack([forecasts[self._model_of(sid)][i] for i, sid in enumerate(self.panel_.series_ids)])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "choice": self.choice,
                "members": {name: m.to_dict() for name, m in self.members.items()}}

    def model_text(self) -> str | None:
        """The LightGBM text model of a member (one fitted LightGBM at most: a combination member shares it)."""
        for m in self.members.values():
            text = m.model_text() if hasattr(m, "model_text") else None
            if text is not None:
                return text
        return None

    @classmethod
    def from_dict(cls, state: dict[str, Any], panel: Panel, model_text: str | None) -> PerSeries:
        members = {name: forecaster_from_dict(s, panel, model_text) for name, s in state["members"].items()}
        self = cls(dict(state["choice"]), members)
        self.panel_, self.fallbacks_ = panel, {}
        return self


class Combination:
    """The weighted mean of its members' forecasts (module doc). ``weights`` maps member name to
    weight (they sum to 1); every member is fitted on the whole panel. A member already fitted on
    this very panel (shared with :class:`PerSeries`) is not fitted again."""

    name = "combination"

    def __init__(self, members: dict[str, Any], weights: dict[str, float], weighting: str = "equal") -> None:
        self.members = members
        self.weights = weights
        self.weighting = weighting

    def fit(self, panel: Panel) -> Combination:
        if set(self.weights) != set(self.members) or len(self.members) < 2:
            raise ModelError(f"a combination needs two or more members with a weight each, got members "
                             f"{sorted(self.members)} and weights {self.weights}")
        self.panel_ = panel
        for member in self.members.values():
            if getattr(member, "panel_", None) is not panel:
                member.fit(panel)
        self.fallbacks_ = {sid: f"{name} member: {why}" for name, m in self.members.items()
                           for sid, why in getattr(m, "fallbacks_", {}).items()}
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return sum(self.weights[name] * m.predict(horizon) for name, m in self.members.items())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights, "weighting": self.weighting,
                "members": {name: m.to_dict() for name, m in self.members.items()}}

    def model_text(self) -> str | None:
        lgb = self.members.get("lightgbm")
        return lgb.model_text() if lgb is not None else None

    @classmethod
    def from_dict(cls, state: dict[str, Any], panel: Panel, model_text: str | None) -> Combination:
        members = {name: forecaster_from_dict(s, panel, model_text) for name, s in state["members"].items()}
        self = cls(members, {k: float(v) for k, v in state["weights"].items()}, str(state.get("weighting", "equal")))
        self.panel_, self.fallbacks_ = panel, {}
        return self


# --------------------------------------------------------------------------- construction


def make_forecaster(name: str, *, freq: str, season_length: int, lags: list[int] | None = None,
                    lightgbm: dict[str, Any] | None = None, seed: int = 42) -> Any:
    """A fresh (unfitted) forecaster by name, with the pipeline's settings."""
    if name == "seasonal_naive":
        return SeasonalNaive(season_length)
    if name == "naive":
        return Naive()
    if name == "ets":
        return Ets(season_length)
    if name == "arima":
        return Arima(season_length)
    if name == "lightgbm":
        return LightGBMForecaster(lags=lags or default_lags(freq), windows=WINDOWS[freq], params=lightgbm, seed=seed)
    if name == "combination":
        raise ModelError("the combination is built from its fitted members (crmlab.forecast.models.Combination), "
                         "not by name")
    raise ModelError(f"unknown forecast model {name!r}; choose among {list(MODELS)}")


def forecaster_from_dict(state: dict[str, Any], panel: Panel, model_text: str | None = None) -> Any:
    """Rebuild a fitted forecaster from its :meth:`to_dict` state on the history it was fitted on."""
    name = state.get("name")
    if name == "per_series":
        return PerSeries.from_dict(state, panel, model_text)
    if name == "combination":
        return Combination.from_dict(state, panel, model_text)
    if name == "lightgbm":
        if model_text is None:
            raise ModelError("a LightGBM forecast bundle needs its model text file; retrain")
        return LightGBMForecaster.from_dict(state, panel, model_text)
    classes = {"seasonal_naive": SeasonalNaive, "naive": Naive, "ets": Ets, "arima": Arima}
    if name not in classes:
        raise ModelError(f"unknown forecast model {name!r} in the bundle; choose among {list(MODELS)}")
    return classes[name](int(state["season_length"]))._rebuild(panel, list(state["states"]))
