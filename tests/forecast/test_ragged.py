"""Several series that start and end on their own dates (issue 14, item 3): each is backtested on its
own span and forecast from its own last period; stale series are excluded, forecast or refused by
``forecast.stale_series``; a sales table's value is named as itself, never "revenue"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmlab.config import load_config
from crmlab.errors import DataError
from crmlab.forecast.bundle import forecast_bundle
from crmlab.forecast.pipeline import train_forecast

# series id -> (first month, last month, known level)
SPANS = {"a": ("1990-01", "1999-12", 100.0), "b": ("1996-01", "2005-06", 500.0), "c": ("2008-01", "2018-12", 2000.0)}


def _ragged_sales(tmp_path, spans=SPANS, seed=3):
    """Monthly units of three products: level * (1 + 0.1 sin(2 pi month / 12)) + 4% noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for sid, (first, last, level) in spans.items():
        months = pd.period_range(first, last, freq="M")
        season = 1 + 0.1 * np.sin(2 * np.pi * (months.month.to_numpy() - 1) / 12)
        units = level * season + rng.normal(0, 0.04 * level, len(months))
        parts.append(pd.DataFrame({"product": sid, "month": months.strftime("%Y-%m"), "units": units.round(2)}))
    path = tmp_path / "sales.csv"
    pd.concat(parts).sample(frac=1.0, random_state=seed).to_csv(path, index=False)
    return path


def _sets(tmp_path, path, *extra):
    return [f"project.data.sales.path={path}", "project.data.transactions=null",
            "project.data.sales.columns={series_id: product, period: month, value: units}",
            "forecast.freq=M", "forecast.horizon=6", "forecast.origins=3", "forecast.origin_step=3",
            "forecast.models=[seasonal_naive,ets,lightgbm]", "forecast.lightgbm={num_boost_round: 60}",
            f"project.output.dir={tmp_path / 'o'}", f"project.output.models_dir={tmp_path / 'm'}",
            "project.tracking.enabled=false", *extra]


def test_each_series_is_forecast_from_its_own_end_and_continues_its_own_level(tmp_path):
    path = _ragged_sales(tmp_path)
    result = train_forecast(load_config(None, _sets(tmp_path, path, "forecast.stale_series=forecast_from_own_end")))
    assert result.panel.series_ids == ("a", "b", "c") and result.panel.target == "units"
    f = result.forecast
    for sid, (first, last, level) in SPANS.items():
        own = f[f["series_id"] == sid]
        # dated from its own last month, not from the last month of the table
        expected = pd.period_range(pd.Period(last, "M") + 1, periods=6, freq="M").start_time
        assert own["period"].tolist() == list(expected)
        # continues its own level (the seasonal swing is +-10%): never the ~0 of zero padding
        assert own["forecast"].mean() == pytest.approx(level, rel=0.12)
        # its backtest used its own span only: no padded period, no zero actual
        bt = result.backtest.errors[result.backtest.errors["series_id"] == sid]
        assert len(bt) and bt["period"].min() >= pd.Timestamp(first) and bt["period"].max() <= pd.Timestamp(last)
        assert (bt["actual"] > 0.5 * level).all()
    # metrics not flattered (nor wrecked) by padded zeros: a few percent of error, as simulated
    assert result.metrics["smape"] < 15 and result.metrics["wape"] < 0.15
    assert any("forecast from its own end" in n and "a (last 1999-12-01)" in n for n in result.notes)
    assert result.summary()[0].startswith("3 series of units per M")
    manifest = json.loads((result.bundle_path / "manifest.json").read_text())
    assert manifest["target"] == "units" and manifest["series_last_period"]["b"] == "2005-06-01"
    pd.testing.assert_frame_equal(forecast_bundle(result.bundle_path), result.forecast)  # the bundle agrees


def test_stale_series_are_excluded_by_default_with_a_note_naming_them(tmp_path):
    path = _ragged_sales(tmp_path)
    result = train_forecast(load_config(None, _sets(tmp_path, path)))
    assert result.panel.series_ids == ("c",) and set(result.forecast["series_id"]) == {"c"}
    assert result.excluded == {"a": "1999-12-01", "b": "2005-06-01"}
    note = next(n for n in result.notes if "excluded" in n)
    assert "a (last 1999-12-01)" in note and "b (last 2005-06-01)" in note and "2018-12-01" in note
    assert any(note in line for line in result.summary())
    manifest = json.loads((result.bundle_path / "manifest.json").read_text())
    assert manifest["excluded_series"] == {"a": "1999-12-01", "b": "2005-06-01"}
    assert result.forecast["forecast"].mean() == pytest.approx(2000, rel=0.12)


def test_stale_series_error_names_them(tmp_path):
    path = _ragged_sales(tmp_path)
    with pytest.raises(DataError, match=r"2 series stopped .*a \(last 1999-12-01\), b \(last 2005-06-01\)"):
        train_forecast(load_config(None, _sets(tmp_path, path, "forecast.stale_series=error")))


def test_a_series_ending_a_little_earlier_is_forecast_from_its_end_by_default(tmp_path):
    spans = {"x": ("2015-01", "2019-12", 300.0), "y": ("2016-07", "2019-09", 50.0)}  # y ends 3 months early
    path = _ragged_sales(tmp_path, spans)
    result = train_forecast(load_config(None, _sets(tmp_path, path)))
    y = result.forecast[result.forecast["series_id"] == "y"]
    assert y["forecast"].mean() == pytest.approx(50, rel=0.12)
    assert y["period"].iloc[0] == pd.Timestamp("2019-10-01")
    assert not result.backtest.errors.query("series_id == 'y' and actual == 0").size  # no padded zero judged
    assert result.excluded == {}
    assert any("end on different dates" in n for n in result.panel.notes)


def test_a_40_week_sales_table_trains_with_the_default_windows_shrunk_and_said_so(tmp_path):
    rng = np.random.default_rng(8)
    weeks = pd.period_range("2023-01-02", periods=40, freq="W-SUN").start_time
    path = tmp_path / "weekly.csv"
    pd.DataFrame({"period": weeks.strftime("%Y-%m-%d"), "value": (80 + rng.normal(0, 3, 40)).round(2)}).to_csv(path)
    sets = [f"project.data.sales.path={path}", "project.data.transactions=null", "forecast.models=[seasonal_naive,ets]",
            f"project.output.dir={tmp_path / 'o'}", f"project.output.models_dir={tmp_path / 'm'}",
            "project.tracking.enabled=false"]  # shipped defaults: weekly, horizon 13, 8 origins, season 52
    result = train_forecast(load_config(None, sets))
    assert len(result.backtest.origins) == 5 and result.backtest.horizon == 13
    assert any("forecast.origins=8 shrunk to 5" in n for n in result.notes)
    assert result.backtest.errors.groupby("origin")["period"].min().min() >= weeks[13]  # every fold trains >= 13 weeks
    assert len(result.forecast) == 13 and result.forecast["forecast"].mean() == pytest.approx(80, rel=0.1)


def test_cli_names_the_excluded_stale_series_in_its_summary_and_the_mlflow_run(tmp_path, tracking, capsys):
    import mlflow

    from crmlab.cli import main

    path = _ragged_sales(tmp_path)
    sets = [s for s in _sets(tmp_path, path) if s != "project.tracking.enabled=false"]
    sets += [f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
             "project.tracking.experiment=test"]
    assert main(["train", "forecast", *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "note: 2 series stopped more than 6 periods before" in out and "a (last 1999-12-01)" in out
    client = mlflow.MlflowClient(tracking.uri)
    run = client.search_runs([client.get_experiment_by_name("test").experiment_id])[0]
    assert run.data.tags["crmlab.excluded_series"] == "a, b" and run.data.tags["crmlab.forecast_target"] == "units"


@pytest.mark.parametrize("name", ["forecast.yaml", "segmentation.yaml"])
def test_shipped_forecast_and_segmentation_configs_hold_no_dates(name):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "configs" / name).read_text()
    assert not re.search(r"\b(19|20)\d\d[-/.]\d\d?", text), "windows come from the data and project.as_of"
