"""The purchase-count challenger, the blend and the choice of what predicts expected purchases: on
data where the right answer is known."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.clv.counts import best_blend_weight
from crmlab.clv.evaluate import choose_shipped, purchase_leaderboard
from crmlab.clv.pipeline import REGISTERED_MODEL_NAME, score_clv, train_clv
from crmlab.config import ClvConfig, load_config
from crmlab.errors import ConfigError, ModelError
from crmlab.export import load_bundle

from ..conftest import reseal_bundle, synthetic_project
from .plan_driven import AS_OF, write_plan_driven


def _errs_apart(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts y ~ Poisson(mu); one model over-predicts by 40%, the other under-predicts by 40%:
    their mean is exactly mu."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.8, 1.0, n)
    return rng.poisson(mu).astype(float), mu, 1.4 * mu, 0.6 * mu


def test_blend_weight_by_hand():
    # y = (1, 3); parametric (2, 2), challenger (0, 4): w p + (1 - w) c = (2w, 4 - 2w), squared errors
    # (2w - 1)^2 + (1 - 2w)^2, smallest at w = 1/2
    w, search = best_blend_weight(np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([0.0, 4.0]))
    assert w == 0.5 and len(search) == 21
    assert search[0] == {"weight": 0.0, "mse": 1.0} and search[-1] == {"weight": 1.0, "mse": 1.0}
    # a tie keeps the parametric model: identical predictions give weight 1
    assert best_blend_weight(np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([2.0, 2.0]))[0] == 1.0


def test_the_blend_beats_both_parts_when_they_err_differently():
    y, mu, over, under = _errs_apart()
    w, _ = best_blend_weight(y, over, under)
    assert w == 0.5  # the weight that recovers mu exactly
    board = purchase_leaderboard(y, {"bgnbd": over, "lightgbm": under, "blend": w * over + (1 - w) * under}, "bgnbd")
    mse = board.set_index("model")["mse"]
    assert mse["blend"] < mse["lightgbm"] and mse["blend"] < mse["bgnbd"]
    assert board.set_index("model").loc["blend", "total_predicted"] == pytest.approx(mu.sum())
    shipped, because = choose_shipped(board, "auto", "bgnbd")
    assert shipped == "blend"
    assert because.startswith("blend predicts holdout purchases significantly better than bgnbd")
    assert "it beat bgnbd: holdout MSE" in because and "lightgbm: holdout MSE" in because


def test_the_parametric_model_ships_unless_beaten_significantly():
    y, mu, _, _ = _errs_apart()
    rng = np.random.default_rng(1)
    noisy = mu * rng.lognormal(0, 0.02, mu.size)  # as good as the parametric model, up to noise
    board = purchase_leaderboard(y, {"bgnbd": mu, "lightgbm": noisy}, "bgnbd")
    row = board.set_index("model").loc["lightgbm"]
    assert row["mse_change_low"] < 0 < row["mse_change_high"]
    shipped, because = choose_shipped(board, "auto", "bgnbd")
    assert shipped == "bgnbd" and because.startswith("no challenger predicts holdout purchases significantly better")
    # asked for by name, it ships whatever the holdout says
    assert choose_shipped(board, "lightgbm", "bgnbd")[0] == "lightgbm"
    assert choose_shipped(board, "model", "bgnbd") == ("bgnbd", f"clv.ship=model ({because.rsplit('); ', 1)[1]})")
    with pytest.raises(ModelError, match="clv.ship=blend: the blend purchase model could not be trained"):
        choose_shipped(board, "blend", "bgnbd")


def test_config_of_the_purchase_models_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"clv\.blend_wieght.*did you mean 'blend_weight'"):
        load_config(None, ["clv.blend_wieght=0.5"])
    with pytest.raises(ConfigError, match=r"clv.*ship='blend' needs the purchase challenger"):
        load_config(None, ["clv.ship=blend", "clv.purchase_challenger=false"])
    with pytest.raises(ConfigError, match=r"clv\.interval"):
        load_config(None, ["clv.interval=1.2"])
    with pytest.raises(ConfigError, match=r"clv\.blend_weight"):
        load_config(None, ["clv.blend_weight=1.5"])
    assert ClvConfig().ship == "auto" and ClvConfig().interval == 0.8


def test_bgnbd_keeps_shipping_on_data_simulated_from_bgnbd(tmp_path):
    cfg = load_config(None, [*synthetic_project(tmp_path, n_customers=1500, seed=11),
                             "project.tracking.enabled=false", "clv.challenger=false"])
    result = train_clv(cfg)
    board = result.purchase_leaderboard.set_index("model")
    assert result.shipped == "bgnbd" and result.models.purchases.weight == 1.0
    assert board.loc["lightgbm", "mse"] > board.loc["bgnbd", "mse"]
    assert result.shipped_because.startswith("no challenger predicts holdout purchases significantly better than bgnbd")
    assert not (result.bundle_path / "purchases_lightgbm.txt").exists()
    # the report's CLV section says what shipped and why, with the leaderboard and the conditional
    # expectations of every purchase model, read from the bundle
    from crmlab.report import _purchase_models_block, read_pipeline_outputs

    outputs = read_pipeline_outputs(cfg.project.output.models_dir, "clv")
    assert not outputs.problems and set(outputs.tables) == {"purchase_leaderboard", "conditional_expectations"}
    assert list(outputs.tables["conditional_expectations"].columns) == [
        "label", "frequency_cal", "customers", "actual", "bgnbd", "lightgbm", "blend"]
    html = _purchase_models_block(outputs)
    assert "<b>Expected purchases shipped: bgnbd</b>. no challenger predicts holdout purchases" in html
    assert "Purchase models on the holdout" in html and "mean holdout purchases by calibration frequency" in html


def test_lightgbm_wins_when_purchases_follow_an_attribute_bgnbd_cannot_see(tmp_path, tracking):
    paths = write_plan_driven(tmp_path / "data", 1500, seed=3)
    cfg = load_config(None, [
        f"project.data.transactions.path={paths['transactions']}", f"project.data.customers.path={paths['customers']}",
        f"project.as_of={AS_OF}", "clv.holdout_weeks=26", "clv.challenger=false",
        f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
        f"project.output.models_dir={tmp_path / 'models'}", f"project.output.dir={tmp_path / 'out'}"])
    result = train_clv(cfg)
    board = result.purchase_leaderboard.set_index("model")
    # bgnbd extrapolates each customer's past pace; the plan says young customers are about to change it
    assert result.shipped in ("lightgbm", "blend") and result.models.purchases.weight <= 0.2
    assert board.loc[result.shipped, "mse_change_high"] < 0
    assert abs(board.loc[result.shipped, "total_pct_error"]) < 5 < abs(board.loc["bgnbd", "total_pct_error"])
    run = mlflow.MlflowClient(tracking.uri).get_run(result.run_id)
    assert run.data.tags["crmlab.shipped"] == result.shipped
    assert run.data.tags["crmlab.shipped_because"].startswith(f"{result.shipped} predicts holdout purchases")

    # the bundle: LightGBM as text, checked; scores from the shared features equal the training's
    bundle = load_bundle(result.bundle_path, pipeline="clv")
    assert bundle.manifest["shipped_purchases"] == result.shipped and "plan" in bundle.manifest["features"]
    from crmlab.clv.counts import aligned_features
    from crmlab.workflow import prepare_data

    tables = prepare_data(cfg.project).tables
    feats = aligned_features(tables, cfg.project, AS_OF, result.final_rfm["customer_id"])
    scores = score_clv(feats, bundle)
    pd.testing.assert_frame_equal(scores, result.scores)
    assert (scores["clv_low"] < scores["clv"]).all() and (scores["clv"] < scores["clv_high"]).all()
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}/1")
    example = feats.head(30).assign(plan=lambda d: d["plan"].astype(object))
    pd.testing.assert_frame_equal(model.predict(example).reset_index(drop=True), scores.head(30),
                                  check_dtype=False)
    # a transaction log alone lacks the plan the shipped model needs: a named error, not a traceback
    with pytest.raises(ModelError, match=r"needs the shared customer features; missing \['plan'\]"):
        score_clv(tables.transactions, bundle, as_of=AS_OF)
    with pytest.raises(ModelError, match=r"cannot read the features .*'recency_days'"):  # text where numbers were
        score_clv(feats.assign(recency_days="soon"), bundle)
    # the holdout figures are the shipped model's; retraining judges this bundle as a champion alike
    assert result.metrics["purchases_total_pct_error"] == pytest.approx(board.loc[result.shipped, "total_pct_error"])
    assert result.metrics["purchases_parametric_mae"] == pytest.approx(board.loc["bgnbd", "mae"])
    from crmlab.clv.bundle import evaluate_bundle

    champion = evaluate_bundle(result.bundle_path, result)
    assert champion["purchases_mae"] == pytest.approx(result.metrics["purchases_mae"], rel=1e-9)
    # a cut LightGBM file is refused before LightGBM parses it
    path = result.bundle_path / "purchases_lightgbm.txt"
    path.write_text(path.read_text()[:-2000])
    reseal_bundle(result.bundle_path)
    with pytest.raises(ModelError, match="not a whole LightGBM model"):
        score_clv(feats, result.bundle_path)


def test_the_count_challenger_reports_its_folds_and_one_thread_predicts_as_two():
    """The blend weight's out-of-fold fits say which fold runs; the one-thread LightGBM (the default,
    against OpenMP waits on busy machines) predicts bit for bit what two threads predicted."""
    from lightgbm import LGBMRegressor

    from crmlab.clv.counts import COUNT_PARAMS, N_FOLDS, fit_count_booster, out_of_fold
    from crmlab.utils import progress_to

    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(2_000, 6)), columns=[f"f{i}" for i in range(6)])
    y = rng.poisson(np.exp(0.5 * X["f0"] - 0.3 * X["f1"])).astype(float)
    said: list[str] = []
    with progress_to(said.append):
        out_of_fold(X, y, seed=1)
    assert [s.split(" on ")[0] for s in said] == [f"blend weight, out-of-fold fit {k}/{N_FOLDS}"
                                                  for k in range(1, N_FOLDS + 1)]
    assert COUNT_PARAMS["num_threads"] == 1
    one = fit_count_booster(X, y, seed=1).predict(X)
    two = LGBMRegressor(**{**COUNT_PARAMS, "num_threads": 2}, random_state=1).fit(X, y).booster_.predict(X)
    assert np.array_equal(one, two)
