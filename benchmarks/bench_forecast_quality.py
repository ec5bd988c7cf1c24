"""Benchmark: forecast accuracy on weeks that neither training nor tuning sees (issue 18, item 2).

    .venv/bin/python benchmarks/bench_forecast_quality.py [--trials 20] [--case departments|long|both]

Two synthetic weekly panels, seeded, each with its last 13 weeks withheld (``WITHHELD``): every
model and every pipeline run below sees only the weeks before them, and the table reports MASE on
the withheld weeks (mean over series of MAE / the in-sample seasonal naive MAE of the training weeks,
as in :mod:`crmlab.forecast.metrics`).

* ``departments``: 7 department-like series, 156 weeks (Nov 2020 to Oct 2023): level, a trend of
  its own, yearly seasonality (two harmonics), holiday spikes in the weeks of Thanksgiving, the two
  weeks before Christmas and back-to-school, AR(1) drift and multiplicative noise.
* ``long``: 4 series of 420 weeks of different character: smooth trend and season, a random walk
  with drift and a weak season, a stable season with noise, and a trend with level shifts.

Rows of the table:

* each model alone, fitted on all training weeks (seasonal naive, naive, ETS, ARIMA, LightGBM,
  the equal-weight combination of ETS, ARIMA and LightGBM);
* ``before``: what main shipped: the four models of main's default config, the lowest backtest MASE
  over all series ships as one model (``forecast.selection=overall`` without naive or combination);
* ``after, overall``: today's defaults but one model for every series (the combination competes);
* ``after (default)``: today's defaults, ``forecast.selection=fallback``;
* LightGBM with default parameters, tuned the old way (the study's best on the training backtest
  origins themselves), and tuned nested (:mod:`crmlab.forecast.tune`: tuned on earlier origins and
  kept only if better on the backtest origins, else the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crmlab.config import load_config, with_overrides  # noqa: E402
from crmlab.forecast.backtest import Backtest, add_combination, backtest, fit_windows, leaderboard  # noqa: E402
from crmlab.forecast.metrics import scales  # noqa: E402
from crmlab.forecast.models import make_forecaster  # noqa: E402
from crmlab.forecast.pipeline import train_forecast  # noqa: E402
from crmlab.forecast.series import Panel  # noqa: E402
from crmlab.forecast.tune import trial_overrides, tune_forecast  # noqa: E402
from crmlab.tuning import report, run_study  # noqa: E402

WITHHELD = 13
SEASON = 52
MAIN_MODELS = "[seasonal_naive,ets,arima,lightgbm]"


# --------------------------------------------------------------------------- data


def _holiday_weeks(weeks: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Indicator of the week (Monday start) holding Thanksgiving, the two weeks before Christmas and
    the back-to-school weeks (the first two weeks of August)."""
    end = weeks + pd.Timedelta(days=6)
    out = {"thanksgiving": np.zeros(len(weeks)), "christmas": np.zeros(len(weeks)), "school": np.zeros(len(weeks))}
    for year in sorted(set(weeks.year)):
        nov = pd.date_range(f"{year}-11-01", f"{year}-11-30")
        thanksgiving = nov[nov.day_of_week == 3][3]
        xmas = pd.Timestamp(f"{year}-12-25")
        for i, (a, b) in enumerate(zip(weeks, end, strict=True)):
            if a <= thanksgiving <= b:
                out["thanksgiving"][i] = 1
            if a <= xmas - pd.Timedelta(days=1) and b >= xmas - pd.Timedelta(days=14):
                out["christmas"][i] = 1
            if a.month == 8 and a.day <= 14:
                out["school"][i] = 1
    return out


def department_panel(seed: int = 18) -> pd.DataFrame:
    """7 series x 156 weeks (module doc), long format: series_id, period, value."""
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2020-11-02", periods=156, freq="W-MON")
    hol = _holiday_weeks(weeks)
    t = np.arange(len(weeks))
    woy = (weeks.day_of_year.to_numpy() - 1) / 365.25
    frames = []
    for d in range(7):
        level = rng.uniform(5_000, 50_000)
        slope = rng.uniform(-0.0015, 0.003)
        a1, a2 = rng.uniform(0.05, 0.25), rng.uniform(0.0, 0.08)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        season = a1 * np.sin(2 * np.pi * woy + p1) + a2 * np.sin(4 * np.pi * woy + p2)
        spikes = (rng.uniform(0.1, 0.6) * hol["thanksgiving"] + rng.uniform(0.1, 0.8) * hol["christmas"]
                  + rng.uniform(0.0, 0.3) * hol["school"])
        drift = np.zeros(len(t))
        for i in range(1, len(t)):
            drift[i] = 0.8 * drift[i - 1] + rng.normal(0, 0.03)
        noise = rng.normal(0, rng.uniform(0.03, 0.10), len(t))
        y = level * (1 + slope * t) * (1 + season + spikes) * np.exp(drift + noise)
        frames.append(pd.DataFrame({"series_id": f"dept_{d + 1}", "period": weeks, "value": y.round(2)}))
    return pd.concat(frames, ignore_index=True)


def long_panel(seed: int = 4) -> pd.DataFrame:
    """4 series x 420 weeks of different character (module doc), long format."""
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2015-09-07", periods=420, freq="W-MON")
    t = np.arange(len(weeks))
    yearly = np.sin(2 * np.pi * (weeks.day_of_year.to_numpy() - 1) / 365.25)
    smooth = 1_000 + 1.5 * t + 150 * yearly + rng.normal(0, 25, len(t))
    walk = 800 + np.cumsum(rng.normal(0.5, 18, len(t))) + 30 * yearly
    seasonal = 600 + 200 * yearly + 60 * np.sin(4 * np.pi * (weeks.day_of_year.to_numpy() - 1) / 365.25) \
        + rng.normal(0, 30, len(t))
    shifts = 1_200 + 0.8 * t + 120 * yearly + 150 * np.cumsum(rng.random(len(t)) < 0.02) + rng.normal(0, 30, len(t))
    return pd.concat([pd.DataFrame({"series_id": name, "period": weeks, "value": y.round(2)})
                      for name, y in (("smooth", smooth), ("walk", walk), ("seasonal", seasonal),
                                      ("shifts", shifts))], ignore_index=True)


# --------------------------------------------------------------------------- scoring


def _panel(frame: pd.DataFrame) -> Panel:
    wide = frame.pivot(index="series_id", columns="period", values="value")
    return Panel(tuple(wide.index.astype(str)), pd.DatetimeIndex(wide.columns), wide.to_numpy(np.float64), "W", {}, 0)


def withheld_mase(train: Panel, actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Per series: MAE over the withheld weeks / in-sample seasonal naive MAE of the training weeks."""
    scale = np.array([scales(row, SEASON)[0] for row in train.values])
    return np.mean(np.abs(forecast - actual), axis=1) / scale


def models_alone(full: Panel, n_train: int) -> dict[str, np.ndarray]:
    """Each model fitted on the training weeks, forecasting the withheld ones: a one-origin backtest
    at ``n_train`` (its scale is the training weeks' own)."""
    names = ["seasonal_naive", "naive", "ets", "arima", "lightgbm"]
    factories = {n: (lambda n=n: make_forecaster(n, freq="W", season_length=SEASON)) for n in names}
    bt = backtest(full, factories, horizon=WITHHELD, origins=[n_train], season_length=SEASON, min_train=WITHHELD)
    bt, _ = add_combination(bt, ["ets", "arima", "lightgbm"])
    by = leaderboard(bt, by_series=True).pivot(index="model", columns="series_id", values="mase")
    return {m: by.loc[m, list(full.series_ids)].to_numpy() for m in [*names, "combination"]}


def _sets(folder: Path, csv: Path, extra: list[str]) -> list[str]:
    return [f"project.data.sales.path={csv}", "forecast.freq=W", f"forecast.horizon={WITHHELD}",
            f"project.output.dir={folder / 'out'}", f"project.output.models_dir={folder / 'models'}",
            "project.tracking.enabled=false", *extra]


def shipped(cfg: Any, train: Panel, actual: np.ndarray) -> tuple[str, np.ndarray, str]:
    """Train the pipeline on the training weeks; its withheld MASE per series, name and reason."""
    result = train_forecast(cfg)
    f = result.forecast.pivot(index="series_id", columns="step", values="forecast").loc[list(train.series_ids)]
    return result.shipped, withheld_mase(train, actual, f.to_numpy()), result.shipped_because


def old_tuning(cfg: Any, panel: Panel, trials: int) -> dict[str, Any]:
    """The tuner as it was on main: Optuna picks the parameters with the lowest LightGBM MASE on the
    training backtest's own origins, and they always come back."""
    fc = cfg.forecast
    windows = fit_windows(panel, horizon=fc.horizon, origins=fc.origins, origin_step=fc.origin_step,
                          season_length=SEASON)

    def objective(trial: Any, params: dict[str, Any]) -> float:
        tuned = with_overrides(cfg, trial_overrides(params)).forecast
        factory = {"lightgbm": lambda: make_forecaster("lightgbm", freq="W", season_length=SEASON, lags=tuned.lags,
                                                       lightgbm=tuned.lightgbm, seed=cfg.project.seed)}
        parts = []
        value = math.nan
        for k, origin in enumerate(windows.origins):
            bt = backtest(panel, factory, horizon=windows.horizon, origins=[origin], season_length=SEASON,
                          min_train=windows.min_train)
            if bt.failures:
                return math.nan
            parts.append(bt.errors)
            value = float(leaderboard(Backtest(pd.concat(parts), windows.origins[:k + 1], windows.horizon, SEASON,
                                               {}))["mase"].iloc[0])
            report(trial, value, k)
        return value

    res = run_study("forecast", objective, fc.tuning, project=cfg.project, direction="minimize", metric="mase",
                    trials=trials, to_overrides=trial_overrides)
    return res.overrides


def lightgbm_withheld(cfg: Any, full: Panel, n_train: int) -> np.ndarray:
    fc = cfg.forecast
    factory = {"lightgbm": lambda: make_forecaster("lightgbm", freq="W", season_length=SEASON, lags=fc.lags,
                                                   lightgbm=fc.lightgbm, seed=cfg.project.seed)}
    bt = backtest(full, factory, horizon=WITHHELD, origins=[n_train], season_length=SEASON, min_train=WITHHELD)
    by = leaderboard(bt, by_series=True).set_index("series_id")["mase"]
    return by.loc[list(full.series_ids)].to_numpy()


# --------------------------------------------------------------------------- the run


def run_case(name: str, frame: pd.DataFrame, trials: int, root: Path, quiet: bool = False) -> pd.DataFrame:
    full = _panel(frame)
    n_train = full.n_periods - WITHHELD
    train = Panel(full.series_ids, full.periods[:n_train], full.values[:, :n_train], "W", {}, 0)
    actual = full.values[:, n_train:]
    folder = root / name
    folder.mkdir(parents=True)
    csv = folder / "sales.csv"
    frame[frame["period"] < full.periods[n_train]].to_csv(csv, index=False)  # the withheld weeks are not in it
    rows: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    t0 = time.perf_counter()
    for model, m in models_alone(full, n_train).items():
        rows[f"{model} alone"] = m
    runs = {"before: main (overall, 4 models)": [f"forecast.models={MAIN_MODELS}", "forecast.selection=overall"],
            "after, overall (+naive, +combination)": ["forecast.selection=overall"],
            "after (default: fallback)": [],
            "after, per_series selection": ["forecast.selection=per_series"]}
    for label, extra in runs.items():
        what, m, because = shipped(load_config(None, _sets(folder / label.split(":")[0].split(",")[0].strip(),
                                                           csv, extra)), train, actual)
        rows[label] = m
        notes[label] = f"{what}: {because}"
    if trials:
        cfg = load_config(None, _sets(folder / "tune_old", csv, []))
        old = old_tuning(cfg, train, trials)
        nested = tune_forecast(load_config(None, _sets(folder / "tune_nested", csv, [])), trials=trials)
        rows["lightgbm default params"] = lightgbm_withheld(cfg, full, n_train)
        rows["lightgbm tuned (old: best on backtest origins)"] = lightgbm_withheld(with_overrides(cfg, old), full,
                                                                                   n_train)
        rows["lightgbm tuned nested (after verdict)"] = lightgbm_withheld(with_overrides(cfg, nested.overrides),
                                                                          full, n_train)
        v = nested.verdict
        notes["nested verdict"] = (f"kept the {v.kept}: tuned {v.tuned:.3f} vs default {v.default:.3f} on the backtest "
                                   f"origins; tuned {v.details['tuned_mase_on_tuning_origins']:.3f} vs default "
                                   f"{v.details['default_mase_on_tuning_origins']:.3f} on the tuning origins")
        if v.keep_tuned:
            rows["after (default) + tuned nested"] = shipped(
                with_overrides(load_config(None, _sets(folder / "after_tuned", csv, [])), nested.overrides),
                train, actual)[1]
    table = pd.DataFrame(rows, index=list(full.series_ids)).T
    table.insert(0, "mean MASE", table.mean(axis=1))
    if quiet:
        return table
    print(f"\n== {name}: {len(full.series_ids)} weekly series, {n_train} training weeks, {WITHHELD} withheld "
          f"({time.perf_counter() - t0:.0f}s)")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    for k, v in notes.items():
        print(f"  {k}: {v}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per study (0: no tuning rows)")
    parser.add_argument("--case", choices=["departments", "long", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=1,
                        help="also average the mean MASE of every row over this many more panels (seeds 1..N, no tuning)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = {"departments": department_panel, "long": long_panel}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(sys.stdout):
        root = Path(tmp)
        for name, make in cases.items():
            if args.case not in (name, "both"):
                continue
            run_case(name, make(), args.trials, root)
            if args.seeds > 1:
                means = pd.DataFrame({seed: run_case(f"{name}_{seed}", make(seed), 0, root, quiet=True)["mean MASE"]
                                      for seed in range(1, args.seeds + 1)})
                means.insert(0, "average", means.mean(axis=1))
                print(f"\n== {name}: mean MASE on the withheld weeks of {args.seeds} more panels (seeds 1..{args.seeds})")
                with pd.option_context("display.width", 200, "display.max_columns", 20):
                    print(means.round(3).to_string())


if __name__ == "__main__":
    main()
