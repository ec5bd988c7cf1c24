"""Churn models: a contract table trains and scores; calibration; reasons follow SHAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crmlab.churn import _paths
from crmlab.churn.data import make_contract_dataset
from crmlab.churn.explain import global_importance, shap_values, top_reasons
from crmlab.churn.models import CalibratedChurn, LightGBMChurn, LogisticChurn, PAliveChurn
from crmlab.errors import ModelError
from tests.churn.path_reference import leaf_path_contributions
from tests.churn.test_data import _contract


@pytest.fixture(scope="module")
def contract():
    return make_contract_dataset(_contract(1500, seed=4), label_column="Churn", seed=0)


def _small_lgbm(**kw) -> LightGBMChurn:
    return LightGBMChurn(n_estimators=200, learning_rate=0.1, num_leaves=7, min_child_samples=20, **kw)


def test_contract_table_trains_lightgbm_and_logistic_and_scores(contract):
    for model in (_small_lgbm(), _small_lgbm(class_weight="balanced"), LogisticChurn()):
        model.fit(contract.X_train, contract.y_train)
        p = model.predict_proba(contract.X_valid)[:, 1]
        assert p.shape == (len(contract.y_valid),) and np.all((p >= 0) & (p <= 1))
        # the mechanism is logistic in plan, tenure and charges: both learn it
        assert roc_auc_score(contract.y_valid, p) > 0.8


def test_lightgbm_is_deterministic_and_uses_native_categoricals(contract):
    a = _small_lgbm().fit(contract.X_train, contract.y_train)
    b = _small_lgbm().fit(contract.X_train, contract.y_train)
    assert np.array_equal(a.predict_proba(contract.X_valid), b.predict_proba(contract.X_valid))
    assert a.categorical_features_ == ["plan"]
    assert a.booster_.pandas_categorical == [["monthly", "two_year", "yearly"]]


def test_calibrated_probabilities_average_to_the_churn_rate(contract):
    for method in ("isotonic", "sigmoid"):
        model = CalibratedChurn(_small_lgbm(class_weight="balanced"), method=method).fit(contract.X_train,
                                                                                          contract.y_train)
        p = model.predict_proba(contract.X_valid)[:, 1]
        assert abs(p.mean() - contract.y_valid.mean()) < 0.05


def test_missing_feature_and_bad_labels_are_model_errors(contract):
    model = LogisticChurn().fit(contract.X_train, contract.y_train)
    with pytest.raises(ModelError, match="missing"):
        model.predict_proba(contract.X_valid.drop(columns="plan"))
    with pytest.raises(ModelError, match="both classes"):
        LogisticChurn().fit(contract.X_train, np.zeros(len(contract.y_train)))
    with pytest.raises(ModelError, match="transaction features"):
        PAliveChurn().fit(contract.X_train)


def test_top_reasons_match_the_sign_of_shap_contributions(contract):
    model = _small_lgbm().fit(contract.X_train, contract.y_train)
    X = contract.X_valid.head(50)
    contrib = shap_values(model, X)
    # contributions add up to the log-odds
    assert np.allclose(contrib.sum(axis=1), model.decision_function(X))
    reasons = top_reasons(model, X)
    for i in range(len(X)):
        for j in (1, 2, 3):
            feat, c, text = reasons.iloc[i][[f"feature_{j}", f"contribution_{j}", f"reason_{j}"]]
            assert c == pytest.approx(contrib.iloc[i][feat])
            assert text.startswith(feat) and text.endswith(f"({c:+.2f})")
        # ordered by absolute size
        sizes = reasons.iloc[i][["contribution_1", "contribution_2", "contribution_3"]].abs().to_numpy(float)
        assert np.all(np.diff(sizes) <= 0)
    risk = top_reasons(model, X, risk_only=True)
    assert (risk["contribution_1"].dropna() > 0).all()
    imp = global_importance(model, X)
    assert set(imp["feature"]) == set(contract.X_train.columns)
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    assert imp["gain_share"].sum() == pytest.approx(1.0)


def test_p_alive_baseline_scores_follow_bgnbd():
    from crmlab.data.io import load_cdnow_sample_summary

    rfm = load_cdnow_sample_summary()[["frequency", "recency", "T"]]
    one_timer = rfm.iloc[[0]].assign(frequency=0.0, recency=0.0, T=30.0)
    alive = PAliveChurn().fit(rfm)
    # published BG/NBD fit of this sample (Fader, Hardie and Lee 2005): r 0.243, alpha 4.414
    assert alive.model_.params_["r"] == pytest.approx(0.243, abs=0.002)
    assert alive.predict_proba(one_timer)[0, 1] == pytest.approx(0.0)  # BG/NBD: never dropped out
    quiet = PAliveChurn(score="no_purchase", horizon_days=7 * 26).fit(rfm)
    r, a = quiet.model_.params_["r"], quiet.model_.params_["alpha"]
    # x = 0: alive, so P(no purchase in h) = ((alpha + T) / (alpha + T + h)) ** r
    assert quiet.predict_proba(one_timer)[0, 1] == pytest.approx(((a + 30) / (a + 30 + 26)) ** r)
    no_history = rfm.iloc[[0]].assign(frequency=float("nan"))
    assert quiet.predict_proba(no_history)[0, 1] == pytest.approx(quiet.fill_)


def test_path_attributions_of_one_split_are_the_leaf_minus_the_mean(contract):
    """One tree with one split, worked out from the tree itself: the split feature gets the leaf's
    value minus the count-weighted mean of both leaves, every other feature 0, the bias that mean."""
    model = LightGBMChurn(n_estimators=1, num_leaves=2, learning_rate=1.0, early_stopping_rounds=0).fit(
        contract.X_train, contract.y_train)
    tree = model.booster_.dump_model()["tree_info"][0]["tree_structure"]
    left, right = tree["left_child"], tree["right_child"]
    mean = (left["leaf_value"] * left["leaf_count"] + right["leaf_value"] * right["leaf_count"]) \
        / (left["leaf_count"] + right["leaf_count"])
    X = contract.X_valid.head(200)
    path = model.path_contributions(X)
    split = model.booster_.feature_name()[tree["split_feature"]]
    leaf = model.booster_.predict(X, pred_leaf=True).ravel()
    value = np.where(leaf == left["leaf_index"], left["leaf_value"], right["leaf_value"])
    assert np.allclose(path[split], value - mean)
    assert np.allclose(path["bias"], mean)
    assert (path.drop(columns=[split, "bias"]) == 0).all().all()


def test_path_attributions_add_up_and_mostly_agree_with_shap(contract):
    model = _small_lgbm().fit(contract.X_train, contract.y_train)
    X = contract.X_valid
    path, shap = model.path_contributions(X), shap_values(model, X)
    assert np.allclose(path.sum(axis=1), model.decision_function(X))  # local accuracy, like SHAP
    a, b = top_reasons(model, X, method="path"), top_reasons(model, X, method="shap")
    assert (a["feature_1"] == b["feature_1"]).mean() > 0.7
    # the features that matter globally are the same ones
    top = lambda c: set(c.drop(columns="bias").abs().mean().nlargest(3).index)  # noqa: E731
    assert top(path) == top(shap)
    with pytest.raises(ValueError, match="'shap' or 'path'"):
        top_reasons(model, X, method="lime")


def _holes(X, seed):
    """``X`` with 10% NaN in every column (categorical ones too) and 10% exact zeros in the numbers."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    for c in X.columns:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            X.loc[rng.random(len(X)) < 0.1, c] = np.nan
        else:
            X[c] = X[c].astype(float)
            X.loc[rng.random(len(X)) < 0.1, c] = np.nan
            X.loc[rng.random(len(X)) < 0.1, c] = 0.0
    return X


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"use_missing": False}],
                         ids=["missing-nan", "missing-zero", "missing-none"])
def test_compiled_path_walk_reaches_lightgbms_leaves_and_the_reference_attributions(contract, params):
    """The numba walk reproduces LightGBM's decisions (NaN, zero, default side, categories incl. an
    unknown one) leaf for leaf, and the former pred_leaf-based attributions to 1e-9."""
    model = _small_lgbm(params=params).fit(_holes(contract.X_train, 0), contract.y_train)
    X = _holes(contract.X_valid, 1)
    cat = model.categorical_features_[0]
    X[cat] = X[cat].cat.add_categories(["never-seen"])
    X.loc[X.index[:25], cat] = "never-seen"
    forest = _paths.flatten(model.booster_.dump_model(num_iteration=model.best_iteration_)["tree_info"])
    kinds = set(zip(forest.kind[forest.feature >= 0].tolist(), forest.missing[forest.feature >= 0].tolist()))
    assert (1, 0) in kinds or (1, 2) in kinds  # categorical splits are exercised
    leaves = _paths.leaf_indices(forest, _paths.lgb_matrix(model.booster_, model._prepare(X)))
    expected = model.booster_.predict(model._prepare(X), num_iteration=model.best_iteration_, pred_leaf=True)
    assert np.array_equal(leaves, expected)
    fast, reference = model.path_contributions(X), leaf_path_contributions(model, X)
    assert list(fast.columns) == list(reference.columns) and fast.index.equals(reference.index)
    assert np.abs(fast.to_numpy() - reference.to_numpy()).max() < 1e-9
    assert model.path_contributions(X.head(0)).shape == (0, X.shape[1] + 1)
    # the fused walk of scoring: LightGBM's probabilities (the same sum and sigmoid: equal here, allowed
    # an ulp where another platform's exp differs), reasons those of the attributions
    prob, cols, values = model.top_path_reasons(X, 3, risk_only=True)
    np.testing.assert_allclose(prob, model.predict_proba(X)[:, 1], rtol=1e-13, atol=0)
    assert np.array_equal(cols, _paths.top_columns(reference.drop(columns="bias").to_numpy(), 3, risk_only=True))
    picked = np.take_along_axis(reference.to_numpy(), np.maximum(cols, 0), axis=1)
    assert np.allclose(values[cols >= 0], picked[cols >= 0], rtol=0, atol=1e-9) and np.isnan(values[cols < 0]).all()


def test_reason_texts_are_formatted_once_per_distinct_text_exactly_as_printf():
    from crmlab.churn.explain import _texts

    rng = np.random.default_rng(0)
    # half-hundredths (ties in binary or not), tiny negatives ("-0.00"), and ordinary values
    v = np.concatenate([np.array([0.125, 0.005, 1.005, 2.675, -0.004, -0.005, 0.015, -1.115, 1e-9, 7.0]),
                        np.round(rng.normal(size=2000), 3), rng.normal(scale=3, size=2000)])
    prefix = rng.integers(0, 3, size=len(v))
    ok = rng.random(len(v)) < 0.9
    names = np.array(["a high", "b=x", "c missing"], dtype=object)
    text = _texts(prefix, v, ok, names)
    assert text.tolist() == [f"{names[p]} ({x:+.2f})" if o else None for p, x, o in zip(prefix, v, ok, strict=True)]


@pytest.mark.parametrize("risk_only", [False, True])
def test_top_columns_pick_what_a_stable_argsort_picks(risk_only):
    rng = np.random.default_rng(1)
    values = np.round(rng.normal(size=(3000, 7)), 1)  # many ties and zeros
    values[::50, :] = 0.0
    top = _paths.top_columns(values, 3, risk_only=risk_only)
    key = np.where(values > 0, values, -np.inf) if risk_only else np.abs(values)
    order = np.argsort(-key, axis=1, kind="stable")[:, :3]
    k = np.take_along_axis(key, order, axis=1)
    expected = np.where(np.isfinite(k) & (k != 0), order, -1)
    assert np.array_equal(top, expected)


def test_inner_folds_hold_out_whole_customers_when_rows_repeat_across_snapshots(contract):
    from crmlab.churn.models import holdout_split

    # each customer three times, as after three snapshots; their labels may differ between snapshots
    X = pd.concat([contract.X_train] * 3, ignore_index=True)
    ids = np.tile(contract.ids_train.to_numpy(), 3)
    rng = np.random.default_rng(0)
    y = np.where(rng.random(len(ids)) < 0.1, 1 - np.tile(contract.y_train, 3), np.tile(contract.y_train, 3))
    fit, held = holdout_split(len(y), y, 0.2, 42, ids)
    assert not set(ids[fit]) & set(ids[held])
    assert len(fit) + len(held) == len(y) and len(np.union1d(fit, held)) == len(y)
    assert len(held) == pytest.approx(0.2 * len(y), rel=0.05)
    assert y[held].mean() == pytest.approx(y.mean(), abs=0.03)  # stratified by the customers' labels
    # unique ids: the same split as a stratified split of the rows
    plain = holdout_split(len(contract.y_train), contract.y_train.to_numpy(), 0.2, 42)
    grouped = holdout_split(len(contract.y_train), contract.y_train.to_numpy(), 0.2, 42, contract.ids_train)
    assert all(np.array_equal(p, g) for p, g in zip(plain, grouped, strict=True))

    # LightGBM and the calibrated wrapper take the groups; without them early stopping watches copies
    # of training rows and keeps boosting
    grouped_model = _small_lgbm().fit(X, y, groups=ids)
    leaky_model = _small_lgbm().fit(X, y)
    assert grouped_model.best_iteration_ < leaky_model.best_iteration_
    cal = CalibratedChurn(_small_lgbm(), method="sigmoid").fit(X, y, groups=ids)
    assert cal.estimator_.best_iteration_ < leaky_model.best_iteration_
    with pytest.raises(ModelError, match="groups has"):
        _small_lgbm().fit(X, y, groups=ids[:10])

    # too few customers of one class to hold any out: a clear error, not a fold of a single class
    few_ids, few_y = np.repeat(np.arange(10), 2), np.zeros(20, dtype=int)
    few_y[1] = 1
    with pytest.raises(ModelError, match="leaves a single class on one side"):
        holdout_split(20, few_y, 0.2, 42, few_ids)


def test_leaves_too_large_for_a_small_table_are_shrunk_and_said_not_a_constant_model():
    """min_child_samples=100 (a setting for tens of thousands of rows) on 150 rows allows no split:
    the model would score everyone alike. It shrinks to a twentieth of the fit rows, with a note;
    on a large table the setting is kept as given."""
    from sklearn.metrics import roc_auc_score

    from crmlab.churn.models import LightGBMChurn

    rng = np.random.default_rng(0)
    n = 150
    X = pd.DataFrame({"recency_days": rng.uniform(0, 300, n), "frequency": rng.poisson(3, n).astype(float)})
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X["recency_days"] - 150) / 30))).astype(int)
    small = LightGBMChurn(min_child_samples=100, num_leaves=7, learning_rate=0.1).fit(X, y)
    assert small.min_child_samples_ == max(5, int(0.8 * n) // 20) and "min_child_samples 100 -> 6" in small.note_
    assert np.ptp(small.predict_proba(X)[:, 1]) > 0.1 and roc_auc_score(y, small.predict_proba(X)[:, 1]) > 0.8
    n = 5000
    X = pd.DataFrame({"recency_days": rng.uniform(0, 300, n), "frequency": rng.poisson(3, n).astype(float)})
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X["recency_days"] - 150) / 30))).astype(int)
    large = LightGBMChurn(min_child_samples=100, num_leaves=7, learning_rate=0.1).fit(X, y)
    assert large.min_child_samples_ == 100 and large.note_ == ""


def test_a_model_without_any_split_says_so():
    from crmlab.churn.models import LightGBMChurn

    X = pd.DataFrame({"recency_days": np.ones(200), "frequency": np.ones(200)})  # nothing to split on
    y = np.tile([0, 1], 100)
    model = LightGBMChurn(early_stopping_rounds=0, n_estimators=5).fit(X, y)
    assert "found no split in 200 rows" in model.note_


@pytest.mark.parametrize("missing", [None, "__missing__"])
def test_category_codes_of_a_categorical_column_are_those_of_its_values_as_text(missing):
    """Scoring codes a categorical column through its few categories; the codes are those of every
    value turned into text one by one: missing values, unseen values, numbers as categories."""
    from crmlab.churn.models import category_codes

    rng = np.random.default_rng(3)
    for values, levels in (
        (np.array(["basic", "pro", "enterprise", "trial", None], dtype=object), ["basic", "enterprise", "pro"]),
        (np.array([1, 2, 3, None], dtype=object), ["1", "3", "__missing__"]),
    ):
        drawn = pd.Series(values[rng.integers(0, len(values), 5000)])
        as_category = drawn.astype("category")
        fast, slow = category_codes(as_category, levels, missing=missing), category_codes(drawn, levels, missing=missing)
        assert np.array_equal(fast, slow)
        expected = [levels.index(str(v)) if v is not None and str(v) in levels else
                    (levels.index(missing) if v is None and missing in levels else -1) for v in drawn]
        assert fast.tolist() == expected
