"""The CLV pipeline end to end: real files, a real MLflow store, a real exported bundle."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.clv.pipeline import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    REGISTERED_MODEL_NAME,
    calibration_rfm,
    evaluate_holdout,
    fit_models,
    predict_holdout,
    resolve_window,
    score_clv,
    split_calibration_holdout,
    train_clv,
)
from crmlab.config import ClvConfig, load_config
from crmlab.data.io import load_cdnow
from crmlab.demo import demo_config
from crmlab.errors import ConfigError, ModelError
from crmlab.export import load_bundle
from crmlab.features import rfm_summary

from ..conftest import REPO, synthetic_project


def _synthetic_sets(tracking, tmp_path, n_customers=1500, seed=5) -> list[str]:
    return [*synthetic_project(tmp_path, n_customers=n_customers, seed=seed),
            f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}"]


@pytest.fixture(scope="module")
def cdnow_split():
    cfg = demo_config(load_config(REPO / "configs"))  # the paper's split, as the demo sets it
    tx = load_cdnow()
    window = resolve_window(cfg.clv, tx, pd.Timestamp(tx["ts"].max()).date(), "W")
    return cfg, tx, window, split_calibration_holdout(tx, window)


def test_cdnow_window_and_holdout_are_the_papers(cdnow_split):
    """39 weeks of calibration from 1997-01-01 and a 39-week holdout: the whole CDNOW cohort."""
    cfg, tx, window, split = cdnow_split
    assert (str(window.calibration_start), str(window.calibration_end), str(window.holdout_end)) == (
        "1997-01-01", "1997-09-30", "1998-06-30")
    assert len(split) == 23_570
    assert float(split["duration_holdout"].iloc[0]) == 39.0
    # repeat purchase days in the holdout, counted independently here from the raw log
    days = tx.assign(day=tx["ts"].dt.normalize()).drop_duplicates(["customer_id", "day"])
    in_holdout = (days["day"] > "1997-09-30") & (days["day"] <= "1998-06-30")
    assert split["frequency_holdout"].sum() == in_holdout.sum() == 19_684


def test_cdnow_holdout_evaluation(cdnow_split):
    cfg, tx, window, split = cdnow_split
    models = fit_models(calibration_rfm(split), cfg.clv)
    # the full cohort's calibration fit lies near the paper's 1/10 sample (r .243, alpha 4.41, a .793, b 2.43)
    p = models.transaction.params_
    assert 0.2 < p["r"] < 0.3 and 4 < p["alpha"] < 5.5 and 0.6 < p["a"] < 0.85 and 2 < p["b"] < 2.6
    holdout = predict_holdout(models, split)
    metrics, table = evaluate_holdout(holdout, models.spend)
    assert metrics["holdout_customers"] == 23_570
    assert metrics["purchases_total_actual"] == 19_684
    # totals and the conditional expectations are consistent with the per-customer predictions
    assert metrics["purchases_total_predicted"] == pytest.approx(holdout["predicted_purchases"].sum())
    assert (table["customers"].sum(), list(table["label"])) == (23_570, ["0", "1", "2", "3", "4", "5", "6", "7+"])
    assert table["predicted"].is_monotonic_increasing and table["actual"].is_monotonic_increasing
    assert -20 < metrics["purchases_total_pct_error"] < 0  # BG/NBD under-predicts CDNOW's holdout (~ -14%)
    assert metrics["purchases_spearman"] > 0.35 and metrics["spend_gini"] > 0.5
    # CDNOW has one repeat customer whose mean spend is $0: reported, and excluded from Gamma-Gamma
    assert metrics["gg_n_nonpositive_spend"] == 1 and metrics["gg_n_excluded"] == 1
    assert 0 < metrics["gg_freq_spend_corr"] < 0.2


def test_holdout_after_the_cut_off_is_refused(cdnow_split):
    cfg, tx, _, _ = cdnow_split
    clv = ClvConfig(calibration_end=pd.Timestamp("1998-03-01").date(), holdout_weeks=39)
    with pytest.raises(ConfigError, match="after the cut-off"):
        resolve_window(clv, tx, pd.Timestamp("1998-06-30").date(), "W")
    with pytest.raises(ConfigError, match="before the first transaction"):
        resolve_window(ClvConfig(calibration_end=pd.Timestamp("1996-01-01").date()), tx,
                       pd.Timestamp("1998-06-30").date(), "W")


def test_train_clv_end_to_end(tracking, tmp_path):
    cfg = load_config(tmp_path / "no-configs", _synthetic_sets(tracking, tmp_path))
    result = train_clv(cfg)

    # the run: metrics, parameters, plots, holdout tables and a registered pyfunc model
    client = mlflow.MlflowClient(tracking.uri)
    run = client.get_run(result.run_id)
    for key in ("purchases_mae", "purchases_total_pct_error", "spend_gini", "spend_top_decile_share",
                "gg_freq_spend_corr", "challenger_spend_gini", "challenger_wins"):
        assert np.isfinite(run.data.metrics[key]), key
    assert "model.r" in run.data.params and "calibration_model.a" in run.data.params
    artifacts = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {f"plots/{n}.png" for n in (
        "repeat_purchase_histogram", "conditional_expectations", "cumulative_repeat_purchases",
        "p_alive_matrix", "expected_purchases_matrix")}
    tables = {f.path for f in client.list_artifacts(result.run_id, "holdout")}
    assert "holdout/conditional_expectations.csv" in tables
    version = client.get_model_version(REGISTERED_MODEL_NAME, "1")
    assert version.run_id == result.run_id

    # the model is well specified for this data: the holdout total is close to the truth
    assert abs(result.metrics["purchases_total_pct_error"]) < 15
    assert set(result.comparison["winner"]) <= {"bgnbd_gamma_gamma", "lightgbm"}

    # the bundle: JSON only, loads, scores like the training did
    files = {p.name for p in result.bundle_path.iterdir()}
    lightgbm = result.models.purchases.uses_lightgbm
    assert files == {"checksums.sha256", "manifest.json", "params.json", "report_purchase_leaderboard.csv",
                     "report_conditional_expectations.csv", *(["purchases_lightgbm.txt"] if lightgbm else [])}
    bundle = load_bundle(result.bundle_path, pipeline="clv")
    # which purchase model ships, and why, is said alike in the result, the run and the manifest
    board = result.purchase_leaderboard
    assert list(board["model"]) == ["bgnbd", "lightgbm", "blend"] and board["shipped"].sum() == 1
    assert board.loc[board["shipped"], "model"].item() == result.shipped == run.data.tags["crmlab.shipped"]
    assert bundle.manifest["shipped_purchases"] == result.shipped
    assert bundle.manifest["shipped_because"] == result.shipped_because == run.data.tags["crmlab.shipped_because"]
    assert 0 <= result.metrics["purchases_blend_weight"] <= 1
    ce = result.conditional_expectations_by_model
    assert list(ce.columns) == ["label", "frequency_cal", "customers", "actual", "bgnbd", "lightgbm", "blend"]
    assert bundle.manifest["features"] == INPUT_COLUMNS[1:]
    assert bundle.manifest["metrics"]["purchases_mae"] == pytest.approx(result.metrics["purchases_mae"])
    rfm = result.final_rfm
    scores = score_clv(rfm, bundle)
    pd.testing.assert_frame_equal(scores, result.scores)
    assert list(scores.columns) == OUTPUT_COLUMNS and scores["customer_id"].is_unique
    assert scores["p_alive"].between(0, 1).all() and (scores["clv"] >= 0).all()
    assert ((scores["clv_low"] < scores["clv"]) & (scores["clv"] < scores["clv_high"])).all()

    # the pyfunc gives the same numbers and refuses an input without the model's columns
    model = mlflow.pyfunc.load_model(result.model_uri)
    example = rfm[INPUT_COLUMNS].head(50).reset_index(drop=True)
    pd.testing.assert_frame_equal(model.predict(example).reset_index(drop=True),
                                  scores.head(50).reset_index(drop=True), check_dtype=False)
    with pytest.raises(mlflow.exceptions.MlflowException, match="T"):
        model.predict(example.drop(columns=["T"]))


def test_score_from_transactions_equals_score_from_features(tracking, tmp_path):
    cfg = load_config(tmp_path / "no-configs", [*_synthetic_sets(tracking, tmp_path, 400, 9),
                                                "project.tracking.enabled=false", "clv.challenger=false"])
    result = train_clv(cfg)
    from crmlab.workflow import prepare_data

    tx = prepare_data(cfg.project).tables.transactions
    as_of = result.window.as_of
    from_tx = score_clv(tx, result.bundle_path, as_of=as_of)
    from_features = score_clv(rfm_summary(tx, as_of=as_of, time_unit="W"), result.bundle_path)
    pd.testing.assert_frame_equal(from_tx, from_features)
    with pytest.raises(ModelError, match="missing column"):
        score_clv(tx.drop(columns=["amount"]), result.bundle_path)
    with pytest.raises(ModelError, match="unique"):
        score_clv(pd.concat([from_features.head(2)] * 2).assign(frequency=1, recency=1, T=2, monetary_value=5),
                  result.bundle_path)


def test_cli_train_clv(tracking, tmp_path, capsys):
    sets = [a for s in _synthetic_sets(tracking, tmp_path, 400, 11) for a in ("--set", s)]
    (tmp_path / "no-configs").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    code = main(["-c", str(tmp_path / "no-configs"), *sets, "--set", "clv.challenger=false", "train", "clv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "holdout" in captured.out and "bundle:" in captured.out and "mlflow ui" in captured.out
    # a window that needs data after the cut-off: one line, exit 2
    code = main(["-c", str(tmp_path / "no-configs"), *sets, "--set", "clv.calibration_end=2024-12-01",
                 "train", "clv"])
    err = capsys.readouterr().err
    assert code == 2 and "clv.calibration_end" in err and "Traceback" not in err
