"""The blend of LightGBM and the logistic regression, the repeated cross-validation that chooses the
shipped churn model, the refit on every row and the retraining's fair comparison (issue 18)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crmlab.churn.blend import BlendChurn, blend_weight, corrected_interval
from crmlab.churn.bundle import MODEL_FILE, evaluate_bundle, row_hashes, score_churn
from crmlab.churn.pipeline import train_churn
from crmlab.config import load_config
from crmlab.errors import NoFairComparison
from crmlab.export import load_bundle
from crmlab.features import build_features


def _two_worlds(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn log-odds = many small slopes (a regression draws them, trees approximate them with steps)
    + an AND of two thresholds (trees draw it, a regression cannot): each model family is right about
    one half, so the two err differently. Returns the table and the true churn probabilities."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    logit = 0.3 * x[:, :10].sum(axis=1) + 2.2 * ((x[:, 10] > 0.3) & (x[:, 11] > 0.3)) - 1.0
    p = 1 / (1 + np.exp(-logit))
    table = pd.DataFrame({"customer_id": [f"W{i:05d}" for i in range(n)]})
    for j in range(x.shape[1]):
        table[f"usage_{j}"] = x[:, j].round(4)
    table["churn"] = np.where(rng.random(n) < p, "Yes", "No")
    return table, p


def _sets(root: Path, table: pd.DataFrame, *extra: str) -> list[str]:
    path = root / "subscribers.csv"
    table.to_csv(path, index=False)
    return ["project.data.transactions=null", f"project.data.customers.path={path}",
            f"project.output.models_dir={root / 'models'}", "project.tracking.enabled=false",
            "project.cleaning.max_date=2024-12-31", *extra]


def test_blend_weight_by_hand():
    # four customers; LightGBM ranks the churners 1st and 3rd, the regression 2nd and 3rd: each alone
    # has ROC AUC 0.75, their mean of log-odds ranks both churners first (AUC 1); the tie at 0.5 wins
    y = np.array([1, 1, 0, 0])
    lgbm = np.array([3.0, 0.0, 1.0, -1.0])
    logistic = np.array([0.0, 3.0, 1.0, -1.0])
    assert roc_auc_score(y, lgbm) == roc_auc_score(y, logistic) == 0.75
    assert blend_weight(y, lgbm, logistic) == 0.5
    assert roc_auc_score(y, 0.5 * lgbm + 0.5 * logistic) == 1.0
    # one model right, the other exactly wrong: every weight above 0.5 ranks perfectly, 0.5 ties all,
    # below 0.5 is wrong; among the best the nearest to 0.5 is taken
    assert blend_weight(y, np.array([2.0, 1.0, 0.0, -1.0]), np.array([-2.0, -1.0, 0.0, 1.0])) == 0.55


def test_corrected_interval_by_hand():
    # four folds (2-fold CV repeated twice, test share 1/2): d = 0.01, 0.03, 0.02, 0.02, mean 0.02,
    # s^2 = 2e-4 / 3; corrected variance (1/4 + 1) * s^2 = 8.3333e-5, se 0.0091287; t(3, 0.975) = 3.182446
    out = corrected_interval(np.array([0.01, 0.03, 0.02, 0.02]), 0.5)
    se = math.sqrt((1 / 4 + 1) * (2e-4 / 3))
    assert out["diff"] == pytest.approx(0.02)
    assert out["low"] == pytest.approx(0.02 - 3.182446 * se, abs=1e-6)
    assert out["high"] == pytest.approx(0.02 + 3.182446 * se, abs=1e-6)
    assert 0.05 < out["p_value"] < 0.2  # t = 2.19 on 3 degrees of freedom: not significant
    # the uncorrected standard error would call it significant (t = 4.9): the folds share training rows
    assert 0.02 / math.sqrt(2e-4 / 3 / 4) > 3.182446


@pytest.mark.slow
def test_the_blend_beats_both_when_they_err_differently_and_ships(tmp_path):
    table, truth = _two_worlds(5000)
    result = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path, table, "churn.cv_folds=4")))
    cv = result.cross_validation
    # honest figures: each fold's blend weight is chosen on the other folds' out-of-fold predictions
    assert cv.mean("blend") > cv.mean("lightgbm") and cv.mean("blend") > cv.mean("logistic")
    assert cv.compare("blend", "logistic")["low"] > 0 and cv.compare("blend", "lightgbm")["diff"] > 0
    assert 0 < cv.weight < 1 and all(0 < w < 1 for w in cv.weights)
    assert result.shipped == "blend" and "it beat LightGBM" in result.shipped_because
    board = result.leaderboard.set_index("model")
    # the test part, which chose nothing, agrees
    assert board.loc["blend", "roc_auc"] > max(board.loc["lightgbm", "roc_auc"], board.loc["logistic", "roc_auc"])
    assert result.metrics["blend_weight"] == cv.weight

    # the bundle: both models and the weight, refitted on every row, scoring as the refit blend does
    bundle = load_bundle(result.bundle_path)
    assert bundle.params["model_kind"] == "blend" and bundle.params["blend"]["weight"] == cv.weight
    assert (result.bundle_path / MODEL_FILE).is_file() and bundle.manifest["refit_on_all_rows"]
    model = result.exported_model
    assert isinstance(model, BlendChurn) and model is not result.models["blend"]
    ds = result.dataset
    features = ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy())
    scores = score_churn(features, result.bundle_path)
    np.testing.assert_allclose(scores["churn_probability"], model.predict_proba(ds.X_valid)[:, 1], rtol=1e-9)
    # each reason is w x LightGBM's path contribution + (1 - w) x the regression's: the AND's features
    # and the slopes both appear among the customers' top reasons
    reasons = scores["churn_reason_1"].dropna()
    assert reasons.str.match(r"^usage_\d+ (high|low) \(\+\d\.\d\d\)$").all()
    firsts = set(reasons.str.extract(r"^(usage_\d+)")[0])
    assert {"usage_10", "usage_11"} <= firsts and len(firsts - {"usage_10", "usage_11"}) >= 5
    # the refit on every row is at least as good on rows nobody fitted on (a fresh draw of the same world)
    fresh, fresh_truth = _two_worlds(4000, seed=1)
    fresh_scores = score_churn(build_features(None, fresh.drop(columns="churn"), as_of=ds.as_of), result.bundle_path)
    assert roc_auc_score(fresh_truth > np.median(fresh_truth), fresh_scores["churn_probability"]) > 0.85


@pytest.mark.slow
def test_a_refitted_champion_is_judged_only_on_rows_it_has_not_seen(tmp_path):
    table, _ = _two_worlds(1200, seed=2)
    first = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path, table, "churn.cv_folds=3")))
    champion = first.bundle_path
    seen = load_bundle(champion).arrays["trained_rows"]
    assert seen.size == 1200 and np.array_equal(seen, np.sort(seen))
    assert np.isin(row_hashes(first.dataset.ids_valid, first.dataset.y_valid), seen).all()

    # the same table again: the champion was fitted on every test row, so there is nothing fair to judge on
    (tmp_path / "again").mkdir()
    again = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path / "again", table, "churn.cv_folds=3")))
    with pytest.raises(NoFairComparison, match=r"fitted on 300 of the 300 test rows"):
        evaluate_bundle(champion, again)

    # a year later: 400 new customers and 200 whose label changed; the rest as before
    later = table.copy()
    moved = later.index[:200]
    later.loc[moved, "churn"] = np.where(later.loc[moved, "churn"] == "Yes", "No", "Yes")
    new, _ = _two_worlds(400, seed=3)
    new["customer_id"] = [f"N{i:05d}" for i in range(400)]
    later = pd.concat([later, new], ignore_index=True)
    (tmp_path / "later").mkdir()
    challenger = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path / "later", later, "churn.cv_folds=3")))
    metrics = evaluate_bundle(champion, challenger)
    ds = challenger.dataset
    unseen = ~np.isin(row_hashes(ds.ids_valid, ds.y_valid), seen)
    assert metrics["unseen_rows"] == unseen.sum() and 0 < unseen.sum() < len(unseen)
    y = ds.y_valid.to_numpy()[unseen]
    assert metrics["challenger_roc_auc"] == pytest.approx(
        roc_auc_score(y, challenger.predictions[challenger.shipped][unseen]))
    champion_scores = score_churn(ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy())[unseen], champion)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, champion_scores["churn_probability"]))


def test_refit_false_exports_the_model_that_was_measured(tmp_path):
    table, _ = _two_worlds(600, seed=4)
    result = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path, table, "churn.cv_folds=3",
                                                                    "churn.refit=false", "churn.blend=false")))
    assert set(result.leaderboard["model"]) == {"lightgbm", "logistic"} and result.shipped_model is None
    bundle = load_bundle(result.bundle_path)
    assert not bundle.manifest["refit_on_all_rows"] and "trained_rows" not in bundle.arrays
    ds = result.dataset
    scores = score_churn(ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy()), result.bundle_path)
    np.testing.assert_allclose(scores["churn_probability"], result.predictions[result.shipped], rtol=1e-9)


def test_blend_path_reasons_are_the_mix_of_both_models_contributions(tmp_path):
    """The compiled walk adds the regression's contributions to the trees' feature by feature: the
    same reasons and probability as mixing the two contribution matrices by hand."""
    from crmlab.churn import _paths
    from crmlab.churn.explain import blend_reasons, reason_columns
    from crmlab.churn.models import LinearChurn

    table, _ = _two_worlds(800, seed=5)
    result = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path, table, "churn.cv_folds=3",
                                                                    "churn.ship=blend", "churn.refit=false")))
    blend = result.models["blend"]
    linear = LinearChurn.from_model(blend.logistic)
    X = result.dataset.X_valid
    reasons, prob = blend_reasons(blend.lightgbm, linear, blend.weight, X, X, 3, method="path")
    np.testing.assert_allclose(prob, blend.predict_proba(X)[:, 1], rtol=1e-12)
    trees = blend.lightgbm.path_contributions(X)
    columns = [c for c in trees.columns if c != "bias"]
    mixed = blend.weight * trees[columns].to_numpy() + (1 - blend.weight) * linear.contributions(X)
    top = _paths.top_columns(mixed, 3, risk_only=True)
    expected = reason_columns(top, np.take_along_axis(mixed, np.maximum(top, 0), axis=1), columns, X[columns],
                              blend.lightgbm.feature_medians_)
    for j in (1, 2, 3):
        assert list(reasons[f"reason_{j}"]) == list(expected[f"reason_{j}"])
        np.testing.assert_allclose(reasons[f"contribution_{j}"], expected[f"contribution_{j}"], rtol=1e-9)
    # SHAP reasons of a blend: the same mix with TreeSHAP, the same probability
    shap_reasons, shap_prob = blend_reasons(blend.lightgbm, linear, blend.weight, X, X, 3, method="shap")
    np.testing.assert_allclose(shap_prob, prob, rtol=1e-9)
    assert shap_reasons["reason_1"][0] is not None


def test_the_regression_computed_in_the_walk_is_its_matrix_bit_for_bit(tmp_path):
    """Scoring a blend computes the regression's terms inside the compiled walk (no rows x features
    matrix): the probability, reasons and contributions are those of the separate path, to the last
    bit, with missing, infinite and unseen-large values among the numbers; a str reason column is the
    object one."""
    from crmlab.churn.explain import blend_reasons
    from crmlab.churn.models import LinearChurn

    table, _ = _two_worlds(600, seed=9)
    result = train_churn(load_config(tmp_path / "no-configs", _sets(tmp_path, table, "churn.cv_folds=3",
                                                                    "churn.ship=blend", "churn.refit=false")))
    blend = result.models["blend"]
    linear = LinearChurn.from_model(blend.logistic)
    X = result.dataset.X_valid.astype(np.float64)
    X.iloc[::7, 0] = np.nan
    X.iloc[3::11, 2] = np.inf
    X.iloc[5::13, 4] = -1e300
    X = pd.DataFrame(np.asfortranarray(X.to_numpy()), columns=X.columns)  # one float block, as scoring builds it
    assert linear.fused_terms([str(c) for c in X.columns], 0.5) is not None
    fused, p_fused = blend_reasons(blend.lightgbm, linear, blend.weight, X, X, 3, method="path")
    apart, p_apart = blend_reasons(blend.lightgbm, linear, blend.weight, X, X.copy(), 3, method="path")
    assert np.array_equal(p_fused, p_apart)
    for j in (1, 2, 3):
        assert list(fused[f"reason_{j}"]) == list(apart[f"reason_{j}"])
        assert np.array_equal(fused[f"contribution_{j}"], apart[f"contribution_{j}"], equal_nan=True)
    assert np.isfinite(p_fused).all()  # the regression imputes inf by its median, as its matrix path does
    as_str, _ = blend_reasons(blend.lightgbm, linear, blend.weight, X, X, 3, method="path", text="str")
    column = pd.Series(as_str["reason_1"])
    assert column.dtype == pd.Series(fused["reason_1"]).dtype == "str"
    assert column.equals(pd.Series(fused["reason_1"]))
    # a regression with a feature the trees lack cannot be computed in the walk: the matrix path is taken
    other = LinearChurn({**linear.spec, "features": [*linear.features[1:], linear.features[0]],
                         "numeric": [*linear.numeric[1:], linear.numeric[0]]})
    assert other.fused_terms([str(c) for c in X.columns], 0.5) is None


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 15, 16, 17, 45, 64, 127, 128])
def test_row_sums_in_the_walk_add_up_in_numpys_order(n):
    """The fused regression's log-odds add a row's terms up as NumPy does (eight running sums), so the
    blend's probability is the one of LinearChurn.log_odds to the last bit; a plain left-to-right sum
    is not (checked on rows whose magnitudes span many orders)."""
    import numba

    from crmlab.churn._paths import _numpy_sum

    @numba.njit
    def sums(a):
        out = np.empty(a.shape[0])
        for i in range(a.shape[0]):
            out[i] = _numpy_sum(a[i], a.shape[1])
        return out

    rng = np.random.default_rng(n)
    a = rng.standard_normal((20_000, n)) * rng.lognormal(0, 4, (20_000, n))
    assert np.array_equal(sums(a), a.sum(axis=1))
    if n >= 9:
        assert not np.array_equal(np.cumsum(a, axis=1)[:, -1], a.sum(axis=1))
