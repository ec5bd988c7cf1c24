"""A small B2B log (a few dozen accounts over a year) trains and scores CLV with nothing but a column
mapping: fits that do not fit fall back to a model that does, and the run says which one shipped."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.clv.fallback import LR_CRITICAL, fit_purchase_model, fit_spend_model
from crmlab.clv.models import TransactionModel
from crmlab.clv.pipeline import ClvModels, ClvSettings, score_clv
from crmlab.clv.pipeline import export_bundle as export_clv_bundle
from crmlab.clv.pipeline import resolve_window
from crmlab.config import ClvConfig
from crmlab.errors import ModelError
from crmlab.features import rfm_summary

from ..conftest import REPO
from .b2b import B2B_COLUMNS, b2b_orders, write_b2b_orders


def _rfm(n: int, seed: int, end: str | None = None) -> pd.DataFrame:
    raw = b2b_orders(n, seed=seed)
    tx = pd.DataFrame({"customer_id": raw["Account"], "ts": pd.to_datetime(raw["Order Date"]),
                       "amount": raw["Net Amount"]})
    return rfm_summary(tx, as_of=end or tx["ts"].max())


def _calibration_rfm(n: int, seed: int) -> pd.DataFrame:
    """The RFM at the calibration end that the shipped clv.yaml derives for this log."""
    raw = b2b_orders(n, seed=seed)
    tx = pd.DataFrame({"customer_id": raw["Account"], "ts": pd.to_datetime(raw["Order Date"]),
                       "amount": raw["Net Amount"]})
    window = resolve_window(ClvConfig(), tx, tx["ts"].max().date(), "W")
    return rfm_summary(tx, as_of=window.calibration_end)


def test_no_dropout_in_the_data_ships_nbd_with_a_note():
    rfm = _rfm(30, 7, "2011-09-01")
    f, r, T = rfm["frequency"], rfm["recency"], rfm["T"]
    with pytest.raises(ModelError, match="bgnbd fit on 30 customers: the data do not identify the model"):
        TransactionModel().fit(f, r, T, search_hint=False)  # what used to stop the run
    model, notes = fit_purchase_model(f, r, T, ClvConfig())
    assert model.kind == "nbd" and model.penalizer == 0.0
    assert notes == [notes[0]] and notes[0].startswith("bgnbd (clv.penalizer=0) did not fit: bgnbd fit on 30 ")
    assert "shipped nbd (the NBD model: purchases without dropout" in notes[0]
    # the same as fitting NBD directly; every account is alive, and buys at its posterior rate
    direct = TransactionModel("nbd").fit(f, r, T)
    assert model.params_ == direct.params_
    assert (model.probability_alive(f, r, T) == 1.0).all()
    # with the fallback off, the error names the remedy that was checked, and nothing else
    with pytest.raises(ModelError, match=r"clv\.model=nbd \(purchases without dropout\) fits these data \(checked\)$"):
        fit_purchase_model(f, r, T, ClvConfig(fallback=False))


def test_a_penalised_bgnbd_ships_only_when_the_data_support_dropout():
    rfm = _rfm(25, 3, "2011-09-08")
    f, r, T = rfm["frequency"], rfm["recency"], rfm["T"]
    model, notes = fit_purchase_model(f, r, T, ClvConfig())
    # NBD itself needs the smallest penalty here (its r and alpha run off together: no heterogeneity)
    with pytest.raises(ModelError, match=r"nbd fit on 25 customers.*clv\.penalizer=0\.001 fits these data"):
        TransactionModel("nbd").fit(f, r, T)
    nbd = TransactionModel("nbd", 0.001).fit(f, r, T)
    lr = 2 * (model.report_["log_likelihood"] - nbd.report_["log_likelihood"])
    assert (model.kind, model.penalizer) == ("bgnbd", 0.001) and lr > LR_CRITICAL
    assert f"likelihood ratio of {lr:.2f} > 2.71" in notes[0]
    # where the penalised BG/NBD fits no better than NBD, NBD (the simpler model) ships
    rfm = _calibration_rfm(40, 3)
    f, r, T = rfm["frequency"], rfm["recency"], rfm["T"]
    model, notes = fit_purchase_model(f, r, T, ClvConfig())
    assert model.kind == "nbd" and "fits no better than NBD (likelihood ratio" in notes[0]


def test_spend_falls_back_to_a_checked_penalty_then_to_the_mean():
    rfm = _rfm(30, 2)
    f, m = rfm["frequency"], rfm["monetary_value"]
    model, notes = fit_spend_model(f, m, ClvConfig())
    assert (model.kind, model.penalizer) == ("gamma_gamma", 1e-6) and model.params_["q"] > 1
    assert notes[0].startswith("Gamma-Gamma (clv.gg_penalizer=0) did not fit")
    assert notes[0].endswith("shipped Gamma-Gamma with clv.gg_penalizer=1e-06, the smallest larger penalty that fits")
    # no larger penalty to try: the population mean spend of the repeat customers, for everyone
    model, notes = fit_spend_model(f, m, ClvConfig(gg_penalizer=0.001))
    mean = m[f > 0].mean()
    assert model.kind == "mean" and model.params_["mean"] == pytest.approx(mean)
    assert f"shipped the population mean spend ({mean:,.2f} per purchase, over {(f > 0).sum()} repeat" in notes[0]
    assert np.allclose(model.conditional_expected_spend(f, m), mean)


def test_a_fallback_bundle_scores_like_the_models(tmp_path):
    rfm = _rfm(30, 2)
    clv = ClvConfig(gg_penalizer=0.001)
    tm, _ = fit_purchase_model(rfm["frequency"], rfm["recency"], rfm["T"], clv)
    sm, _ = fit_spend_model(rfm["frequency"], rfm["monetary_value"], clv)
    models = ClvModels(tm, sm, ("note",))
    raw = b2b_orders(30, seed=2)
    tx = pd.DataFrame({"customer_id": raw["Account"], "ts": pd.to_datetime(raw["Order Date"]), "amount": raw["Net Amount"]})
    window = resolve_window(ClvConfig(), tx, tx["ts"].max().date(), "W")
    path = export_clv_bundle(tmp_path / "clv", models, ClvSettings(), window, metrics={}, config_digest="x")
    assert {p.name for p in path.iterdir()} == {"checksums.sha256", "manifest.json", "params.json"}
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["model"], manifest["spend_model"], manifest["notes"]) == ("nbd", "mean", ["note"])
    scores = score_clv(rfm, path)
    h = ClvSettings().horizon_units
    p = tm.params_
    by_hand = (p["r"] + rfm["frequency"]) / (p["alpha"] + rfm["T"]) * h
    assert np.allclose(scores["expected_purchases"], by_hand)
    assert np.allclose(scores["expected_spend"], sm.params_["mean"]) and (scores["p_alive"] == 1).all()


@pytest.mark.slow
def test_small_b2b_log_trains_and_scores_clv_with_the_mapping_only(tmp_path, capsys):
    """Issue 14, item 2: `crmlab train clv` then `crmlab score` on 30 accounts over 2011 with the
    shipped configs and a column mapping; before, the run stopped on CDNOW's calibration dates and then
    on a BG/NBD fit that no suggested penalty could fix."""
    path = write_b2b_orders(tmp_path / "orders.csv", 30, seed=7)
    mapping = "{" + ", ".join(f"{k}: {v}" for k, v in B2B_COLUMNS.items()) + "}"
    sets = ["--set", f"project.data.transactions.path={path}", "--set", f"project.data.transactions.columns={mapping}"]
    code = main(["-c", str(REPO / "configs"), *sets, "train", "clv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    out = " ".join(captured.out.split())
    assert "nbd + gamma_gamma refitted to 2011-12-29 on 30 customers" in out
    assert "note: holdout shortened from 39 to 17 weeks: the data span 51 weeks" in out
    assert "note: calibration fit: bgnbd (clv.penalizer=0) did not fit" in out and "shipped nbd" in out

    manifest = json.loads((tmp_path / "models" / "clv" / "manifest.json").read_text())
    assert (manifest["model"], manifest["spend_model"]) == ("nbd", "gamma_gamma")
    assert any("shipped nbd" in n for n in manifest["notes"])
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("crmlab").experiment_id])[0]
    assert run.data.tags["crmlab.clv.purchase_model"] == "nbd" and run.data.tags["crmlab.model"] == "nbd"
    assert "shipped nbd" in run.data.tags["crmlab.clv.notes"]
    assert run.data.params["shipped.purchase_model"] == "nbd"

    code = main(["-c", str(REPO / "configs"), *sets, "score", "--model", "clv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    scores = pd.read_parquet(tmp_path / "outputs" / "scores.parquet")
    assert len(scores) == 30 and scores["customer_id"].is_unique
    cols = ["p_alive", "expected_purchases", "expected_spend", "clv"]
    assert np.isfinite(scores[cols].to_numpy()).all()
    assert (scores["p_alive"] == 1).all() and (scores["clv"] > 0).all()
    # what NBD says by hand, (r + x) / (alpha + T) purchases a week over 12 months; accounts that ordered
    # more often are expected to order more; spend per order in the range of the data's orders
    rfm = _rfm(30, 7).set_index("customer_id")
    s = scores.set_index("customer_id").join(rfm)
    p = json.loads((tmp_path / "models" / "clv" / "params.json").read_text())["transaction_model"]["params"]
    assert np.allclose(s["expected_purchases"], (p["r"] + s["frequency"]) / (p["alpha"] + s["T"]) * 12 * 30.4375 / 7)
    assert s["expected_purchases"].corr(s["frequency"] / s["T"], method="spearman") > 0.9
    raw = b2b_orders(30, seed=7)["Net Amount"]
    assert s["expected_spend"].between(raw.min(), raw.max()).all()
    # the registered pyfunc scores the same
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    features = rfm.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]]
    got = model.predict(features).set_index("customer_id")
    assert np.allclose(got.loc[s.index, "clv"], s["clv"])
