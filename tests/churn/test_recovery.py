"""Churn models on data with a known mechanism (synthetic) and on the real CDNOW log."""

from __future__ import annotations

from datetime import date

import numpy as np
from sklearn.metrics import roc_auc_score

from crmlab.churn.data import make_snapshot_dataset
from crmlab.churn.metrics import compare_auc
from crmlab.churn.models import LightGBMChurn, LogisticChurn, PAliveChurn
from crmlab.churn.pipeline import lightgbm_model
from crmlab.config import ChurnConfig, CleaningConfig
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables, load_cdnow
from crmlab.data.synth import generate_synthetic, true_churn_probability
from tests.churn.path_reference import leaf_path_contributions


def test_lightgbm_auc_is_close_to_the_true_mechanism_on_synthetic_data():
    data = generate_synthetic(3000, seed=1)
    tables = clean_tables(Tables(transactions=data.transactions, customers=data.customers,
                                 interactions=data.interactions), CleaningConfig(), today=date(2025, 1, 1)).tables
    ds = make_snapshot_dataset(tables.transactions, tables.customers, tables.interactions, as_of="2024-06-30",
                               horizon_days=182, n_snapshots=3, step_days=91)
    model = LightGBMChurn().fit(ds.X_train, ds.y_train)
    auc = roc_auc_score(ds.y_valid, model.predict_proba(ds.X_valid)[:, 1])
    history = ds.X_valid[["frequency", "recency", "T"]].assign(customer_id=ds.ids_valid.to_numpy())
    true_auc = roc_auc_score(ds.y_valid, true_churn_probability(data.truth, history, "2024-06-30", 182).to_numpy())
    # Observed (seeds 1, 2, 3; 3,000-5,000 people): true 0.915-0.920, LightGBM 0.889-0.904, gap 0.017-0.026.
    # The true score knows each person's own lambda and p, which no model can, so a gap is expected; with
    # ~3,000 validation rows the AUC's standard error is ~0.006, so 0.05 is a wide but meaningful bound
    # (the P(alive) baseline, which ignores the complaints, is ~0.10 below the truth).
    assert true_auc - 0.05 < auc
    assert auc < true_auc + 0.02  # it cannot do much better than the truth


def test_lightgbm_beats_p_alive_on_cdnow_and_ties_logistic():
    ds = make_snapshot_dataset(load_cdnow(), as_of="1997-09-30", horizon_days=182, n_snapshots=3, step_days=91)
    # one usable training snapshot (1997-04-01; 1996-12-31 is before the first purchase)
    assert ds.info["train_snapshots"] == ["1997-04-01"] and ds.info["n_valid"] == 23570
    lgbm = lightgbm_model(ChurnConfig(), seed=42).fit(ds.X_train, ds.y_train, groups=ds.ids_train)
    scores = {"lightgbm": lgbm.predict_proba(ds.X_valid)[:, 1]}
    for name, model in (("logistic", LogisticChurn()), ("p_alive", PAliveChurn()),
                        ("no_purchase", PAliveChurn(score="no_purchase"))):
        scores[name] = model.fit(ds.X_train, ds.y_train).predict_proba(ds.X_valid)[:, 1]
    vs = {name: compare_auc(ds.y_valid, scores["lightgbm"], s) for name, s in scores.items() if name != "lightgbm"}
    # Observed: LightGBM 0.770, logistic 0.772 (difference -0.0017, 95% CI -0.0056 to +0.0022), BG/NBD
    # P(no purchase) 0.741, 1 - P(alive) 0.327. 1 - P(alive) ranks badly because BG/NBD holds every
    # one-time buyer alive (P = 1), and one-time buyers are CDNOW's churners. LightGBM does not beat
    # logistic here: the only honest training snapshot is 3 months into a single cohort, so
    # recency_days and T at validation (up to 272 days, 39 weeks) lie far outside their training
    # range (90 days, 13 weeks) and trees cannot extrapolate; many settings, features and training
    # designs were tried (issue 4's note), none significantly better.
    assert vs["no_purchase"]["low"] > 0.015 and vs["p_alive"]["low"] > 0.3  # LightGBM clearly better
    assert vs["logistic"]["low"] < 0 < vs["logistic"]["high"]  # a tie, not a loss
    assert abs(vs["logistic"]["diff"]) < 0.005
    assert vs["logistic"]["auc_a"] > 0.765


def test_compiled_path_attributions_equal_the_pred_leaf_reference_on_cdnow():
    ds = make_snapshot_dataset(load_cdnow(), as_of="1997-09-30", horizon_days=182, n_snapshots=3, step_days=91)
    model = LightGBMChurn(num_leaves=15).fit(ds.X_train, ds.y_train)
    fast, reference = model.path_contributions(ds.X_valid), leaf_path_contributions(model, ds.X_valid)
    assert np.abs(fast.to_numpy() - reference.to_numpy()).max() < 1e-9
    assert np.allclose(fast.sum(axis=1), model.decision_function(ds.X_valid))
    prob, _, _ = model.top_path_reasons(ds.X_valid, 3, risk_only=True)
    np.testing.assert_allclose(prob, model.predict_proba(ds.X_valid)[:, 1], rtol=1e-13, atol=0)


def test_on_cdnow_the_shipped_churn_model_is_never_significantly_worse_than_a_baseline(tmp_path):
    """issue 18: the leaderboard decides, with DeLong. On CDNOW (validation snapshot 1997-09-30, the
    paper's split) LightGBM ties the logistic regression, and their equal-weight blend ranks
    significantly better than LightGBM; whatever ships, no model on the board ranks significantly
    better than it."""
    from crmlab.churn.pipeline import train_churn
    from crmlab.config import load_config

    cfg = load_config(None, ["project.tracking.enabled=false", f"project.output.models_dir={tmp_path / 'models'}",
                             f"project.output.dir={tmp_path / 'out'}", "project.as_of=1997-09-30",
                             "churn.horizon_days=182"])
    result = train_churn(cfg)
    y, shipped = result.dataset.y_valid, result.predictions[result.shipped]
    for name, p in result.predictions.items():
        if name != result.shipped:
            assert compare_auc(y, shipped, p)["high"] > 0, name  # never significantly worse than any
    # Observed: blend 0.7781 vs LightGBM 0.7742 (+0.0039, 95% CI +0.0011 to +0.0068), logistic 0.7763
    assert result.shipped == "blend" and "significantly better than LightGBM" in result.shipped_because
    assert compare_auc(y, shipped, result.predictions["bgnbd"])["low"] > 0
