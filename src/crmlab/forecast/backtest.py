"""Rolling-origin backtests, the leaderboard, model selection and conformal prediction intervals.

A backtest (Tashman 2000, "Out-of-sample tests of forecasting accuracy") refits every model at
each origin on the periods before it only (:meth:`Panel.cut`) and forecasts the next ``horizon``
periods; origins step back from the end of the history by ``origin_step``. Series may end on
different dates: an origin is a number of periods *before each series' own end*, so every series
is judged on its own span only (an origin ``o`` of an ``n``-period grid cuts each series
``n - o`` periods before its own last period), and a series too short for a fold sits it out.

The windows must fit the data (:func:`fit_windows`): every fold trains on at least
``max(MIN_TRAIN, horizon)`` periods, so the horizon and the number of origins shrink, with a note,
to what the longest series allows; a series that fits no fold is named.

Intervals are split-conformal (Stankeviciute et al. 2021, "Conformal time-series forecasting"),
one per horizon step: the backtest errors of the shipped model, divided by each fold's series
scale (the MASE denominator, so series of any size pool), give the quantile ``q_h`` of the absolute
scaled error at step ``h``; the interval is ``forecast +- q_h * scale``. With few origins a step has
few errors, so neighbouring steps are pooled until there are enough for the quantile not to be
the largest error (9 for 80%, 39 for 95%), and ``q_h`` never shrinks with ``h``. Coverage is measured honestly by leaving one origin out: the
errors of each origin are judged against quantiles computed from the other origins only.

The combination (:func:`add_combination`) is backtested from its members' backtest forecasts: at
each origin it is the weighted mean of their forecasts, with inverse-MASE weights computed from the
errors of earlier origins on periods before that one only (equal weights when there are none), so its backtest error is as honest as a
single model's. Its intervals come from its own backtest errors like any model's.

Selection (:func:`select_model`, :func:`choose_per_series`): the overall winner is the model with the
lowest backtest MASE over all series; with ``forecast.selection: fallback`` (the default) a series
where a baseline (seasonal naive or naive) had a lower backtest MASE than the winner and erred less
at more than half of its origins ships that baseline instead, provided the rule pays off when
replayed honestly on the backtest (:func:`replay_fallback`: at each origin the rule chooses from the
errors on earlier periods only; its MASE must beat that of the winner shipped on every series),
since per-series backtests are short and a baseline's win there is often noise; with ``per_series`` each series takes its own best model. The per-series choice is
made on the backtest it is reported on, which flatters the shipped figure a little (a series
switches only when a baseline beat the winner there, so never by more than the switch gained).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmlab.errors import DataError
from crmlab.forecast.metrics import point_metrics, scales
from crmlab.forecast.series import Panel

logger = logging.getLogger(__name__)

__all__ = [
    "LEVELS",
    "Backtest",
    "Windows",
    "add_combination",
    "backtest",
    "choose_per_series",
    "combination_weights",
    "origin_mase",
    "replay_fallback",
    "conformal_quantiles",
    "fit_windows",
    "interval_coverage",
    "leaderboard",
    "origin_indices",
    "select_model",
    "select_per_series",
    "shipped_errors",
    "shipping_table",
]

LEVELS = (80, 95)
MIN_TRAIN = 4


def origin_indices(n_periods: int, horizon: int, origins: int, step: int) -> list[int]:
    """Forecast origins as period counts of history, oldest first: the last leaves exactly
    ``horizon`` periods to forecast; those with fewer than ``MIN_TRAIN`` periods are left out."""
    out = [n_periods - horizon - k * step for k in range(origins)]
    out = sorted(o for o in out if o >= MIN_TRAIN)
    if not out:
        raise DataError(f"{n_periods} periods of history are too few for a backtest of forecast.horizon={horizon} "
                        f"(needs at least {MIN_TRAIN + horizon})",
                        expected="a shorter forecast.horizon, a finer forecast.freq or more history")
    return out


@dataclass(frozen=True)
class Windows:
    """The backtest windows that fit the data: horizon, origins (:func:`backtest`), the least
    training periods of a fold, and notes saying what was shrunk and which series sit out."""

    horizon: int
    origins: list[int]
    step: int
    min_train: int
    notes: tuple[str, ...] = ()


def fit_windows(panel: Panel, *, horizon: int, origins: int, origin_step: int | None, season_length: int
                ) -> Windows:
    """Shrink ``horizon`` and the number of ``origins`` to what the series allow (module doc), with
    a note for each change; a clear error when even the longest series is too short for one fold."""
    lengths = panel.lengths
    i = int(np.argmax(lengths))
    longest, sid = int(lengths[i]), panel.series_ids[i]
    who = f"the longest series ({sid!r}, {longest} periods)" if len(lengths) > 1 else f"the series ({longest} periods)"
    if longest < MIN_TRAIN + 1:
        raise DataError(f"series {sid!r} has {longest} period(s) of history, the longest of the data; a backtest "
                        f"needs at least {MIN_TRAIN + 1} ({MIN_TRAIN} to train on and 1 to forecast)",
                        expected="more history or a finer forecast.freq")
    notes = []
    h = horizon
    if longest < max(MIN_TRAIN, h) + h:
        h = longest // 2 if longest >= 2 * MIN_TRAIN else longest - MIN_TRAIN
        notes.append(f"forecast.horizon={horizon} shrunk to {h}: {who} holds no fold of {horizon} periods "
                     f"to forecast after at least {max(MIN_TRAIN, horizon)} to train on")
    min_train = max(MIN_TRAIN, h)
    step = origin_step or max(1, h // 4)
    possible = (longest - min_train - h) // step + 1
    n_origins = min(origins, possible)
    if n_origins < origins:
        notes.append(f"forecast.origins={origins} shrunk to {n_origins}: {who} holds {n_origins} origin(s) "
                     f"{step} period(s) apart with a horizon of {h} and at least {min_train} periods to train on")
    if longest < 2 * season_length:
        notes.append(f"season_length={season_length}: {who} is shorter than two seasons ({2 * season_length} "
                     "periods), so no model learns the season and seasonal naive repeats the last value "
                     "(set forecast.season_length, or use a coarser forecast.freq)")
    out = [panel.n_periods - h - k * step for k in range(n_origins)][::-1]
    idle = [f"{s} ({int(n)} periods)" for s, n in zip(panel.series_ids, lengths, strict=True) if n < min_train + h]
    if idle:
        notes.append(f"{len(idle)} series too short for a backtest fold (needs {min_train + h} periods: "
                     f"{min_train} to train, {h} to forecast), forecast by the shipped model but untested: "
                     + ", ".join(idle[:10]) + (f" (+{len(idle) - 10} more)" if len(idle) > 10 else ""))
    for note in notes:
        logger.info("forecast windows: %s", note)
    return Windows(h, out, step, min_train, tuple(notes))


@dataclass
class Backtest:
    """Every backtest forecast: one row per model, series, origin and step (``errors``)."""

    errors: pd.DataFrame
    origins: list[int]
    horizon: int
    season_length: int
    failures: dict[str, str]
    min_train: int = MIN_TRAIN


def backtest(panel: Panel, factories: dict[str, Callable[[], Any]], *, horizon: int, origins: list[int],
             season_length: int, min_train: int = MIN_TRAIN) -> Backtest:
    """Fit each model at each origin on the history before it and forecast ``horizon`` periods.

    Origin ``o`` cuts every series ``n_periods - o`` periods before its own last period (module
    doc); a series with fewer than ``min_train`` periods before its cut sits that fold out.
    A model that raises at some origin is left out of the comparison, with its reason in
    ``failures`` (a crmlab error message or the exception's first line)."""
    rows = []
    failures: dict[str, str] = {}
    all_ids = np.asarray(panel.series_ids, dtype=object)
    ends, starts = panel.ends, panel.starts
    for o in origins:
        back = panel.n_periods - o
        h = min(horizon, back)
        cut = ends - back
        active = cut - starts >= min_train
        if h < 1 or not active.any():
            continue
        ids, cut = all_ids[active], cut[active]
        train = panel.select(active).cut(cut)
        idx = cut[:, None] + np.arange(h)[None, :]
        actual = panel.values[active][np.arange(len(ids))[:, None], idx]
        periods = panel.periods.to_numpy()[idx]
        sc = np.array([scales(row, season_length) for row in train.values]).reshape(-1, 2)
        for name, factory in factories.items():
            if name in failures:
                continue
            try:
                fc = factory().fit(train).predict(h)
            except Exception as exc:  # one model failing must not stop the comparison; the run says why
                failures[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            rows.append(pd.DataFrame({
                "model": name,
                "series_id": np.repeat(ids, h),
                "origin": o,
                "period": periods.reshape(-1),
                "step": np.tile(np.arange(1, h + 1), len(ids)),
                "actual": actual.reshape(-1),
                "forecast": fc.reshape(-1),
                "scale": np.repeat(sc[:, 0], h),
                "scale2": np.repeat(sc[:, 1], h),
            }))
    errors = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if not errors.empty:
        keep = errors[["actual", "forecast", "scale"]].notna().all(axis=1)
        errors = errors[keep].reset_index(drop=True)
    return Backtest(errors, origins, horizon, season_length, failures, min_train)


def _metrics(df: pd.DataFrame) -> dict[str, float]:
    group = df["series_id"].astype(str) + "|" + df["origin"].astype(str)
    out = point_metrics(df["actual"].to_numpy(), df["forecast"].to_numpy(), df["scale"].to_numpy(),
                        df["scale2"].to_numpy(), group.to_numpy())
    out["n_forecasts"] = float(len(df))
    return out


def leaderboard(bt: Backtest, *, by_series: bool = False) -> pd.DataFrame:
    """Accuracy per model (and per series), best backtest MASE first."""
    keys = ["model", "series_id"] if by_series else ["model"]
    rows = [{**dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)), **_metrics(g)}
            for k, g in bt.errors.groupby(keys, sort=True)]
    board = pd.DataFrame(rows)
    return board.sort_values([*keys[1:], "mase"], kind="stable").reset_index(drop=True) if rows else board


def combination_weights(wide: pd.DataFrame, members: list[str], weighting: str) -> dict[str, float]:
    """Weights of the combination's members from a wide frame of their aligned backtest forecasts
    (one column per member): equal, or proportional to 1 / MASE (equal when ``wide`` is empty)."""
    equal = {m: 1.0 / len(members) for m in members}
    if weighting == "equal" or wide.empty:
        return equal
    mase = np.array([_metrics(wide.assign(forecast=wide[m]))["mase"] for m in members])
    if not np.isfinite(mase).all():
        return equal
    inv = 1.0 / np.maximum(mase, 1e-12)
    return {m: float(w) for m, w in zip(members, inv / inv.sum(), strict=True)}


def add_combination(bt: Backtest, members: list[str], *, weighting: str = "equal"
                    ) -> tuple[Backtest, dict[str, float]]:
    """The backtest with the combination's rows added (model ``combination``, module doc) and the
    weights to ship (from every origin). Members that failed or have no rows are left out; with
    fewer than two left there is no combination (the backtest comes back unchanged, no weights).
    A row is combined only where every member forecast it."""
    have = set(bt.errors["model"]) if not bt.errors.empty else set()
    members = [m for m in members if m in have and m not in bt.failures]
    if len(members) < 2:
        return bt, {}
    keys = ["series_id", "origin", "step"]
    base = bt.errors[bt.errors["model"] == members[0]].drop(columns=["model", "forecast"]).set_index(keys)
    own = bt.errors[bt.errors["model"].isin(members)].pivot(index=keys, columns="model", values="forecast")
    wide = base.join(own[members], how="inner").dropna(subset=members).reset_index()
    forecast = np.empty(len(wide))
    for o in sorted(wide["origin"].unique()):
        at = (wide["origin"] == o).to_numpy()
        known = (wide["origin"] + wide["step"] <= o).to_numpy()  # errors on periods before this origin only
        w = combination_weights(wide[known], members, weighting)
        forecast[at] = wide.loc[at, members].to_numpy() @ np.array([w[m] for m in members])
    rows = wide[[c for c in bt.errors.columns if c not in ("model", "forecast")]].assign(
        model="combination", forecast=forecast)[list(bt.errors.columns)]
    errors = pd.concat([bt.errors, rows], ignore_index=True)
    out = Backtest(errors, bt.origins, bt.horizon, bt.season_length, bt.failures, bt.min_train)
    return out, combination_weights(wide, members, weighting)


def select_model(board: pd.DataFrame) -> tuple[str, list[str]]:
    """The model with the lowest backtest MASE, and notes for the run. The accuracy gate: seasonal
    naive is always on the board, so a model worse than it is never the one shipped (the notes name
    those that lost to it)."""
    if board.empty:
        raise DataError("no model produced a backtest forecast", expected="a longer history")
    best = str(board.iloc[0]["model"])
    notes = []
    snaive = board.loc[board["model"] == "seasonal_naive", "mase"]
    if len(snaive):
        worse = board.loc[board["mase"] >= float(snaive.iloc[0]), "model"].tolist()
        worse = [m for m in worse if m != "seasonal_naive"]
        if worse:
            notes.append(f"not better than seasonal naive on the backtest (never shipped): {', '.join(worse)}")
    return best, notes


def _pooled(residuals: dict[int, np.ndarray], h: int, horizon: int, needed: int) -> np.ndarray:
    for w in range(horizon):
        steps = [s for s in range(max(1, h - w), min(horizon, h + w) + 1) if s in residuals]
        pool = np.concatenate([residuals[s] for s in steps]) if steps else np.empty(0)
        if len(pool) >= needed:
            return pool
    return pool


def conformal_quantiles(errors: pd.DataFrame, horizon: int, levels: tuple[int, ...] = LEVELS
                        ) -> dict[int, np.ndarray]:
    """Per level, the ``horizon`` quantiles ``q_h`` of the absolute scaled backtest error (module doc),
    with the finite-sample correction ceil((n + 1) * level) / n (the largest error when n is small)."""
    r = (errors["actual"] - errors["forecast"]).abs() / errors["scale"]
    residuals = {int(s): g.to_numpy() for s, g in r.groupby(errors["step"])}
    out = {}
    for level in levels:
        needed = math.ceil(200 / (100 - level)) - 1  # 9 errors for 80%, 39 for 95%: the quantile is no maximum
        q = np.zeros(horizon)
        for h in range(1, horizon + 1):
            pool = np.sort(_pooled(residuals, h, horizon, needed))
            if len(pool):
                k = min(len(pool), math.ceil((len(pool) + 1) * level / 100))
                q[h - 1] = pool[k - 1]
            else:
                q[h - 1] = q[h - 2] if h > 1 else 0.0
        out[level] = np.maximum.accumulate(q)
    return out


def interval_coverage(errors: pd.DataFrame, horizon: int, levels: tuple[int, ...] = LEVELS) -> dict[str, float]:
    """Share of backtest actuals inside the intervals, each origin judged by quantiles from the other
    origins (``coverage_<level>``); NaN with a single origin."""
    origins = sorted(errors["origin"].unique())
    if len(origins) < 2:
        return {f"coverage_{level}": float("nan") for level in levels}
    hits = {level: 0 for level in levels}
    total = 0
    for o in origins:
        held = errors[errors["origin"] == o]
        q = conformal_quantiles(errors[errors["origin"] != o], horizon, levels)
        r = ((held["actual"] - held["forecast"]).abs() / held["scale"]).to_numpy()
        steps = held["step"].to_numpy() - 1
        for level in levels:
            hits[level] += int(np.sum(r <= q[level][steps]))
        total += len(held)
    return {f"coverage_{level}": hits[level] / total for level in levels}


def select_per_series(by_series: pd.DataFrame) -> dict[str, str]:
    """Per series, the model with its lowest backtest MASE (``forecast.selection: per_series``).
    Seasonal naive is on every series' board, so the gate holds per series. The errors of such a
    choice are in-sample for the selection, so its backtest figures flatter it a little."""
    best = by_series.sort_values(["series_id", "mase"], kind="stable").drop_duplicates("series_id")
    return dict(zip(best["series_id"].astype(str), best["model"].astype(str), strict=True))


def shipped_errors(errors: pd.DataFrame, choice: dict[str, str], default: str) -> pd.DataFrame:
    """The backtest rows of the shipped model: per series the chosen model (``default`` elsewhere)."""
    wanted = errors["series_id"].astype(str).map(lambda sid: choice.get(sid, default))
    return errors[(errors["model"] == wanted).to_numpy()].reset_index(drop=True)


def origin_mase(errors: pd.DataFrame) -> pd.DataFrame:
    """MASE per series and origin (rows) and model (columns): the mean scaled error of each fold."""
    e = errors.assign(scaled=(errors["actual"] - errors["forecast"]).abs() / errors["scale"])
    return e.groupby(["series_id", "model", "origin"])["scaled"].mean().unstack("model")


def _wins(per_origin: pd.DataFrame, sid: str, model: str, over: str) -> tuple[int, int]:
    """At how many of the series' origins ``model`` erred less than ``over``, and of how many."""
    rows = per_origin.loc[sid][[model, over]].dropna()
    return int((rows[model] < rows[over]).sum()), len(rows)


def choose_per_series(by_series: pd.DataFrame, winner: str, selection: str, errors: pd.DataFrame | None = None,
                      baselines: tuple[str, ...] = ("seasonal_naive", "naive")) -> dict[str, str]:
    """Per backtested series, the model to ship (``forecast.selection``, module doc): ``overall``
    ships ``winner`` everywhere, ``per_series`` each series' lowest MASE, ``fallback`` the winner
    unless a baseline had a lower MASE on that series *and* erred less than the winner at more than
    half of the series' origins (``errors``: the backtest rows), then the best such baseline. The
    second condition keeps one bad origin from switching a series: per-series backtests are short
    and their folds overlap, so a mean over them alone switches series on noise."""
    if selection == "per_series":
        return select_per_series(by_series)
    per_origin = origin_mase(errors) if selection == "fallback" and errors is not None else None
    ids = by_series["series_id"].astype(str)
    out = {}
    for sid in dict.fromkeys(ids):
        rows = by_series[ids == sid].set_index("model")["mase"]
        out[sid] = winner
        if per_origin is not None and winner in rows.index:
            better = rows[[m for m in baselines if m in rows.index and m != winner]]
            better = better[better < rows[winner]]
            better = better[[2 * _wins(per_origin, sid, m, winner)[0] > _wins(per_origin, sid, m, winner)[1]
                             for m in better.index]]
            if len(better):
                out[sid] = str(better.idxmin())
    return out


def replay_fallback(errors: pd.DataFrame, winner: str) -> tuple[float, float, int]:
    """The fallback rule judged honestly on the backtest: at each origin, choose per series from the
    errors on periods before that origin only (as the combination's weights are), and score the
    choice at that origin. Returns the MASE of those choices and of the winner everywhere, over the
    origins where something was known (and how many there were): NaN, NaN, 0 when none."""
    if errors.empty or winner not in set(errors["model"]):
        return math.nan, math.nan, 0
    chosen, plain = [], []
    for o in sorted(errors["origin"].unique()):
        known = errors[errors["origin"] + errors["step"] <= o]
        if known.empty or winner not in set(known["model"]):
            continue
        choice = choose_per_series(leaderboard(Backtest(known, [], 0, 0, {}), by_series=True), winner, "fallback",
                                   known)
        now = errors[errors["origin"] == o]
        chosen.append(shipped_errors(now, choice, winner))
        plain.append(now[now["model"] == winner])
    if not chosen:
        return math.nan, math.nan, 0
    return _metrics(pd.concat(chosen))["mase"], _metrics(pd.concat(plain))["mase"], len(chosen)


def shipping_table(by_series: pd.DataFrame, choice: dict[str, str], winner: str, selection: str,
                   series_ids: tuple[str, ...] | list[str] = (), errors: pd.DataFrame | None = None,
                   vetoed: dict[str, str] | None = None, veto: str = "") -> pd.DataFrame:
    """One row per series: the model shipped, its backtest MASE there, why, and what it beat
    (the models with a higher MASE on that series). Series without a backtest fold take the
    winner, untested. ``vetoed``: series whose baseline the rule chose but that keep the winner
    because the rule lost its honest replay (``veto`` says by how much)."""
    vetoed = vetoed or {}
    rows = []
    ids = by_series["series_id"].astype(str)
    per_origin = origin_mase(errors) if errors is not None and not errors.empty else None
    for sid in dict.fromkeys([*map(str, series_ids), *ids]):
        shipped = choice.get(sid, winner)
        mase = by_series[ids == sid].set_index("model")["mase"]
        if mase.empty:
            rows.append({"series_id": sid, "shipped": shipped, "mase": np.nan,
                         "because": "untested (too short for a backtest fold): the overall winner", "beat": ""})
            continue
        own = float(mase.get(shipped, np.nan))
        beat = ", ".join(f"{m} {v:.3f}" for m, v in mase.sort_values().items() if v > own)
        if shipped != winner and selection == "per_series":
            why = f"{shipped} had the lowest backtest MASE on this series ({own:.3f})"
        elif shipped != winner:
            won = (f" and erred less at {'{} of {}'.format(*_wins(per_origin, sid, shipped, winner))} origins"
                   if per_origin is not None else "")
            why = (f"a baseline did better here: {shipped} backtest MASE {own:.3f} < {winner} "
                   f"{float(mase.get(winner, np.nan)):.3f} (the overall winner){won}")
        elif sid in vetoed:
            why = (f"the overall winner: {vetoed[sid]} had a lower backtest MASE here "
                   f"({float(mase.get(vetoed[sid], np.nan)):.3f} < {own:.3f}), but {veto}")
        elif selection == "fallback":
            why = ("the overall winner; no baseline did better on this series (a lower MASE and less error at "
                   "most origins)")
        elif selection == "per_series":
            why = f"{shipped} had the lowest backtest MASE on this series ({own:.3f})"
        else:
            why = "the overall winner (forecast.selection=overall)"
        rows.append({"series_id": sid, "shipped": shipped, "mase": own, "because": why, "beat": beat})
    return pd.DataFrame(rows, columns=["series_id", "shipped", "mase", "because", "beat"])
