"""The forecast pipeline end to end: real files, a real MLflow store, a real exported bundle, the CLI."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.config import load_config
from crmlab.export import load_bundle
from crmlab.forecast.bundle import OUTPUT_COLUMNS, evaluate_bundle, forecast_bundle, score_forecast
from crmlab.forecast.pipeline import train_forecast
from crmlab.registry import model_name

from ..conftest import synthetic_project

FAST = ["forecast.freq=M", "forecast.horizon=3", "forecast.origins=3", "forecast.origin_step=2",
        "forecast.models=[seasonal_naive,ets,lightgbm]", "forecast.lightgbm={num_boost_round: 60}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _empty_mlflow_db):
    import shutil

    root = tmp_path_factory.mktemp("forecast")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    sets = [*synthetic_project(root, n_customers=600, seed=11), *FAST, "forecast.group_by=channel"]
    cfg = load_config(None, sets)
    return cfg, train_forecast(cfg)


def test_training_backtests_every_model_and_ships_the_best(trained):
    cfg, result = trained
    assert result.panel.series_ids == ("app", "store", "unknown", "web")  # cleaning fills a missing channel
    assert set(result.leaderboard["model"]) == {"seasonal_naive", "ets", "lightgbm"}
    winner = result.leaderboard.iloc[0]["model"]
    # forecast.selection=fallback: the winner, except on series where seasonal naive beat it on their own backtest
    mase = result.leaderboard_by_series.set_index(["series_id", "model"])["mase"]
    for r in result.shipping.itertuples():
        assert r.shipped == winner or (r.shipped == "seasonal_naive" and mase[r.series_id, r.shipped]
                                       < mase[r.series_id, winner]), r
    assert result.metrics["mase"] <= result.leaderboard["mase"].min()
    assert result.shipped_because.startswith(f"{winner} had the lowest backtest MASE over all series")
    assert len(result.backtest.origins) == 3 and set(result.leaderboard_by_series["series_id"]) == set(result.panel.series_ids)
    f = result.forecast
    assert list(f.columns) == OUTPUT_COLUMNS and len(f) == 12 and (f["forecast"] >= 0).all()
    assert ((f["lower_95"] <= f["lower_80"]) & (f["lower_80"] <= f["forecast"]) & (f["forecast"] <= f["upper_80"])
            & (f["upper_80"] <= f["upper_95"])).all()


def test_the_run_logs_mase_and_registers_the_model(trained):
    cfg, result = trained
    run = mlflow.MlflowClient(tracking_uri=result.tracking_uri).get_run(result.run_id)
    assert run.data.metrics["mase"] == pytest.approx(result.metrics["mase"])
    assert {"coverage_80", "coverage_95", "seasonal_naive_mase", "lightgbm_mase"} <= set(run.data.metrics)
    assert result.registered_model_version is not None
    model = mlflow.pyfunc.load_model(f"models:/{model_name('forecast')}/{result.registered_model_version}")
    out = model.predict(pd.DataFrame({"series_id": ["web", "app"], "horizon": [2, 1]}))
    assert out["series_id"].tolist() == ["app", "web", "web"]


def test_bundle_has_no_pickle_and_reloads_to_the_same_forecast(trained):
    cfg, result = trained
    files = {p.name for p in result.bundle_path.iterdir()}
    assert not any(name.endswith((".pkl", ".pickle", ".joblib")) for name in files)
    assert "report_forecast.csv" in files
    bundle = load_bundle(result.bundle_path, pipeline="forecast")  # arrays read with allow_pickle=False
    again = forecast_bundle(bundle)
    pd.testing.assert_frame_equal(again, result.forecast)
    longer = score_forecast(pd.DataFrame({"horizon": [3]}), bundle)
    assert len(longer) == 12


def test_evaluate_bundle_backtests_the_champion_spec_on_the_same_origins(trained):
    cfg, result = trained
    metrics = evaluate_bundle(result.bundle_path, result)
    assert metrics["mase"] == pytest.approx(result.metrics["mase"])


def test_sales_table_with_a_covariate(tmp_path, tracking):
    rng = np.random.default_rng(2)
    months = pd.period_range("2019-01", periods=48, freq="M").start_time
    rows = []
    for store, level in (("north", 200.0), ("south", 80.0)):
        promo = (rng.random(48) < 0.3).astype(int)
        sales = level * (1 + 0.6 * promo) + rng.normal(0, level * 0.03, 48)
        for i, m in enumerate(months):
            rows.append({"store": store, "month": m.strftime("%Y-%m"), "sales": f"{sales[i]:.2f}" if i < 44 else "",
                         "promo": promo[i]})
    rows.append({"store": "north", "month": "2019-13", "sales": "5", "promo": 0})  # bad period: rejected
    path = tmp_path / "sales.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    sets = [f"project.data.sales.path={path}", "project.data.sales.columns={series_id: store, period: month, "
            "value: sales}", "forecast.covariates=[promo]", "forecast.freq=M", "forecast.horizon=4",
            "forecast.origins=3", "forecast.models=[seasonal_naive,lightgbm]", f"project.output.dir={tmp_path / 'o'}",
            f"project.output.models_dir={tmp_path / 'm'}", "project.tracking.enabled=false"]
    result = train_forecast(load_config(None, sets))
    assert result.panel.n_periods == 44 and result.panel.n_future == 4
    assert result.selected == "lightgbm"  # the promotions are known in advance: it beats seasonal naive
    rejects = pd.read_csv(tmp_path / "o" / "clean" / "rejects_sales.csv")
    assert rejects["reason"].tolist() == ["period is not a date"]


def test_cli_train_forecast_then_forecast_horizon(tmp_path, tracking, capsys):
    sets = [*synthetic_project(tmp_path, n_customers=300, seed=4), *FAST, "forecast.models=[seasonal_naive]",
            f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", "forecast", *args]) == 0
    out = capsys.readouterr().out
    assert "shipped: seasonal_naive" in out and "MASE" in out
    target = tmp_path / "fc.csv"
    assert main(["forecast", "--horizon", "2", "--out", str(target), *args]) == 0
    table = pd.read_csv(target)
    assert table.columns.tolist() == OUTPUT_COLUMNS and table["step"].max() == 2
    assert main(["forecast", "--horizon", "5", *args]) == 2  # beyond the calibrated intervals: a named error
    assert "beyond the 3 steps" in capsys.readouterr().err


def test_per_series_selection_ships_each_series_its_best_model(tmp_path):
    rng = np.random.default_rng(7)
    months = pd.period_range("2019-01", periods=44, freq="M").strftime("%Y-%m")
    promo = (rng.random(48) < 0.35).astype(int)
    north = 200 * (1 + 0.8 * promo[:44]) + rng.normal(0, 4, 44)  # driven by a known promotion
    south = np.tile([50.0, 90.0, 20.0, 70.0], 11)  # an exact season of 4: seasonal naive is perfect
    future = pd.period_range("2022-09", periods=4, freq="M").strftime("%Y-%m")
    frame = pd.concat([
        pd.DataFrame({"series_id": "north", "period": months, "value": north.round(2), "promo": promo[:44]}),
        pd.DataFrame({"series_id": "south", "period": months, "value": south, "promo": 0}),
        pd.DataFrame({"series_id": "north", "period": future, "value": np.nan, "promo": promo[44:]}),
        pd.DataFrame({"series_id": "south", "period": future, "value": np.nan, "promo": 0}),
    ])
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    sets = [f"project.data.sales.path={path}", "forecast.covariates=[promo]", "forecast.freq=M", "forecast.horizon=4",
            "forecast.season_length=4", "forecast.origins=4", "forecast.selection=per_series",
            "forecast.models=[seasonal_naive,lightgbm]", f"project.output.dir={tmp_path / 'o'}",
            f"project.output.models_dir={tmp_path / 'm'}", "project.tracking.enabled=false"]
    result = train_forecast(load_config(None, sets))
    assert result.selected == "per_series"
    assert result.bundle_path.joinpath("manifest.json").is_file()
    state = load_bundle(result.bundle_path).params["model"]
    assert state["choice"] == {"north": "lightgbm", "south": "seasonal_naive"}
    south_fc = result.forecast[result.forecast["series_id"] == "south"]["forecast"].tolist()
    assert south_fc == [50.0, 90.0, 20.0, 70.0]
    pd.testing.assert_frame_equal(forecast_bundle(result.bundle_path), result.forecast)
    assert evaluate_bundle(result.bundle_path, result)["mase"] == pytest.approx(result.metrics["mase"])
    assert result.metrics["mase"] < result.leaderboard["mase"].min()  # each series its best: better than either


def test_the_html_report_reads_the_bundle_forecast_table(trained):
    from crmlab.report import read_pipeline_outputs

    cfg, result = trained
    table = read_pipeline_outputs(cfg.project.output.models_dir, "forecast").tables["forecast"]
    assert {"period", "forecast", "lower", "upper", "actual", "series_id"} <= set(table.columns)
    future = table[table["forecast"].notna()]
    assert len(future) == len(result.forecast) and (future["lower"] <= future["upper"]).all()
    assert table["actual"].notna().sum() > 0  # recent history, for the plot


def test_the_html_report_says_what_shipped_and_why(trained):
    from crmlab.report import _shipped_note, read_pipeline_outputs

    cfg, result = trained
    outputs = read_pipeline_outputs(cfg.project.output.models_dir, "forecast")
    shipped = outputs.tables["shipped"]
    assert shipped["series_id"].tolist() == list(result.panel.series_ids)
    assert shipped["shipped"].tolist() == result.shipping["shipped"].tolist() and shipped["because"].notna().all()
    board = outputs.tables["leaderboard"]
    assert board.loc[board["overall_winner"], "model"].tolist() == [result.leaderboard.iloc[0]["model"]]
    html = _shipped_note(outputs)  # the section opens with it
    assert f"<strong>Shipped: {result.shipped}</strong>" in html
    assert "had the lowest backtest MASE over all series" in html


@pytest.mark.parametrize(("sets", "message"), [
    (["forecast.models=[seasonal_naive,ets,combination]"], r"forecast\.models.*combination is the mean of two or more"),
    (["forecast.combination_weight=equal"], r"forecast\.combination_weight.*did you mean 'combination_weights'"),
    (["forecast.selection=fallbak"], r"forecast\.selection"),
])
def test_bad_forecast_settings_name_the_key(sets, message):
    from crmlab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, sets)


@pytest.mark.slow
def test_retrain_promotes_a_forecast_model_that_beats_the_champion_on_the_same_origins(tmp_path):
    from crmlab.registry import get_champion
    from crmlab.retrain import retrain

    sets = [*synthetic_project(tmp_path, n_customers=400, seed=6), *FAST, "project.retrain.min_customers=10",
            "project.retrain.max_reject_share=0.5"]
    tracking = load_config(None, sets).project.tracking
    # a deliberately poor champion: seasonal naive with a season of 5 months
    poor = train_forecast(load_config(None, [*sets, "forecast.models=[seasonal_naive]", "forecast.season_length=5"]))
    assert poor.selected == "seasonal_naive" and get_champion(tracking, "forecast").version == "1"
    out = retrain(load_config(None, sets), "forecast", trials=0)
    # the champion's spec (season 5) on the challenger's origins, scaled like the challenger's errors
    assert out.champion_value > out.challenger_value
    assert out.promoted
    assert get_champion(tracking, "forecast").version == "2"


def _sales_only_project(tmp_path, tracking, bad_rows: int = 0) -> list[str]:
    rng = np.random.default_rng(5)
    months = pd.period_range("2019-01", periods=40, freq="M").strftime("%Y-%m")
    frame = pd.DataFrame({"period": months, "value": (100 + 10 * np.sin(np.arange(40)) + rng.normal(0, 2, 40)).round(2)})
    frame = pd.concat([frame, pd.DataFrame({"period": ["2019-13"] * bad_rows, "value": [1.0] * bad_rows})])
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    return [f"project.data.sales.path={path}", "project.data.transactions=null", "forecast.freq=M",
            "forecast.horizon=3", "forecast.origins=2", "forecast.models=[seasonal_naive,ets]",
            f"project.output.dir={tmp_path / 'o'}", f"project.output.models_dir={tmp_path / 'm'}",
            f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}"]


def test_retrain_a_sales_table_forecast_checks_the_table_not_customers(tmp_path, tracking):
    from crmlab.errors import DataCheckError
    from crmlab.retrain import retrain

    cfg = load_config(None, _sales_only_project(tmp_path, tracking))
    first = retrain(cfg, "forecast", trials=0)  # no customers at all, and no champion yet: promoted
    assert first.promoted and first.challenger_value == pytest.approx(first.challenger_metrics["mase"])
    assert (tmp_path / "m" / "forecast" / "manifest.json").exists()
    dirty = load_config(None, [*_sales_only_project(tmp_path, tracking, bad_rows=10), "project.retrain.max_reject_share=0.1"])
    with pytest.raises(DataCheckError, match=r"sales: 20\.0% of 50 rows rejected"):
        retrain(dirty, "forecast", trials=0)


def _promo_and_seasonal_sales(tmp_path) -> list[str]:
    """Three series driven by a known promotion every third month (LightGBM's) and one that is an
    exact season of 4 plus N(0, 2) noise (seasonal naive's), with the next 4 months' promotions."""
    rng = np.random.default_rng(1)
    n = 44
    months = pd.period_range("2019-01", periods=n + 4, freq="M").strftime("%Y-%m")
    frames = []
    for k in range(3):
        promo = ((np.arange(n + 4) + k) % 3 == 0).astype(int)
        y = 200 * (1 + 0.8 * promo) + rng.normal(0, 4, n + 4)
        y[n:] = np.nan
        frames.append(pd.DataFrame({"series_id": f"promo{k}", "period": months, "value": y.round(2), "promo": promo}))
    y = np.tile([50.0, 90.0, 20.0, 70.0], 12) + rng.normal(0, 2.0, n + 4)
    y[n:] = np.nan
    frames.append(pd.DataFrame({"series_id": "seasonal", "period": months, "value": y.round(2), "promo": 0}))
    path = tmp_path / "sales.csv"
    pd.concat(frames).to_csv(path, index=False)
    return [f"project.data.sales.path={path}", "forecast.freq=M", "forecast.horizon=4", "forecast.origins=4",
            "forecast.covariates=[promo]", "forecast.season_length=4", "forecast.lightgbm={num_boost_round: 60}",
            "forecast.models=[seasonal_naive,naive,lightgbm]", f"project.output.dir={tmp_path / 'o'}",
            f"project.output.models_dir={tmp_path / 'm'}", "project.tracking.enabled=false"]


def test_fallback_ships_seasonal_naive_where_it_beat_lightgbm_and_lightgbm_elsewhere(tmp_path):
    sets = _promo_and_seasonal_sales(tmp_path)
    result = train_forecast(load_config(None, sets))  # forecast.selection=fallback, the default
    assert result.leaderboard.iloc[0]["model"] == "lightgbm"
    shipping = result.shipping.set_index("series_id")
    assert shipping["shipped"].to_dict() == {"promo0": "lightgbm", "promo1": "lightgbm", "promo2": "lightgbm",
                                             "seasonal": "seasonal_naive"}
    assert shipping.loc["seasonal", "because"].startswith("a baseline did better here: seasonal_naive backtest MASE")
    assert shipping.loc["seasonal", "beat"].startswith("lightgbm") and "naive" in shipping.loc["promo0", "beat"]
    assert result.shipped == "per series: lightgbm on 3, seasonal_naive on 1"
    assert "seasonal_naive ships instead on 1 of 4 series where it beat lightgbm" in result.shipped_because
    # the seasonal series repeats its last observed season
    history = result.panel.values[result.panel.series_ids.index("seasonal")][-4:]
    future = result.forecast[result.forecast["series_id"] == "seasonal"]["forecast"].to_numpy()
    np.testing.assert_array_equal(future, history)
    manifest = load_bundle(result.bundle_path).manifest
    assert manifest["shipped"] == result.shipped and manifest["shipped_because"] == result.shipped_because
    assert manifest["shipping"]["by_series"]["seasonal"]["model"] == "seasonal_naive"
    pd.testing.assert_frame_equal(forecast_bundle(result.bundle_path), result.forecast)
    assert evaluate_bundle(result.bundle_path, result)["mase"] == pytest.approx(result.metrics["mase"])
    # shipping LightGBM everywhere would do worse on the backtest
    overall = train_forecast(load_config(None, [*sets, "forecast.selection=overall"]))
    assert overall.selected == "lightgbm" and overall.metrics["mase"] > result.metrics["mase"]


def test_a_combination_ships_with_its_members_and_weights_and_scores_through_the_pyfunc(tmp_path, tracking):
    # two series with a trend (ETS's strength) and a known promotion (LightGBM's); with this seed the
    # weighted mean of the two has the lowest backtest MASE
    rng = np.random.default_rng(3)
    n = 48
    months = pd.period_range("2016-01", periods=n, freq="M").strftime("%Y-%m")
    frames = []
    for k in range(2):
        promo = (rng.random(n) < 0.3).astype(int)
        y = 100 + 3 * np.arange(n) + 25 * promo + rng.normal(0, 4, n)
        y[-4:] = np.nan
        frames.append(pd.DataFrame({"series_id": f"s{k}", "period": months, "value": y.round(2), "promo": promo}))
    path = tmp_path / "sales.csv"
    pd.concat(frames).to_csv(path, index=False)
    sets = [f"project.data.sales.path={path}", "forecast.freq=M", "forecast.horizon=4", "forecast.origins=4",
            "forecast.covariates=[promo]", "forecast.models=[ets,lightgbm,combination]",
            "forecast.lightgbm={num_boost_round: 60}", f"project.output.dir={tmp_path / 'o'}",
            f"project.output.models_dir={tmp_path / 'm'}", f"project.tracking.uri={tracking.uri}",
            f"project.tracking.artifact_dir={tracking.artifact_dir}"]
    result = train_forecast(load_config(None, sets))
    mase = result.leaderboard.set_index("model")["mase"]
    assert result.selected == "combination" and mase["combination"] < min(mase["ets"], mase["lightgbm"])
    state = load_bundle(result.bundle_path).params["model"]
    inverse = {m: 1 / mase[m] for m in ("ets", "lightgbm")}  # forecast.combination_weights=inverse_mase
    assert state["name"] == "combination" and state["weighting"] == "inverse_mase"
    assert state["weights"] == pytest.approx({m: w / sum(inverse.values()) for m, w in inverse.items()})
    assert set(state["members"]) == {"ets", "lightgbm"}
    files = {p.name for p in result.bundle_path.iterdir()}
    assert "lightgbm_model.txt" in files and not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    pd.testing.assert_frame_equal(forecast_bundle(result.bundle_path), result.forecast)
    assert evaluate_bundle(result.bundle_path, result)["mase"] == pytest.approx(result.metrics["mase"])
    run = mlflow.MlflowClient(tracking_uri=result.tracking_uri).get_run(result.run_id)
    assert run.data.tags["crmlab.shipped"] == "combination"
    assert run.data.tags["crmlab.shipped_because"].startswith("combination had the lowest backtest MASE")
    model = mlflow.pyfunc.load_model(f"models:/{model_name('forecast')}/{result.registered_model_version}")
    request = pd.DataFrame({"series_id": ["s1"], "horizon": [3]})
    pd.testing.assert_frame_equal(model.predict(request), score_forecast(request, result.bundle_path))
    assert model.predict(request)["forecast"].tolist() == pytest.approx(
        result.forecast[result.forecast["series_id"] == "s1"]["forecast"].iloc[:3].tolist())
