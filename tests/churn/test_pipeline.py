"""The churn pipeline end to end: real files, real LightGBM, a real MLflow store, a real bundle."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from crmlab.churn.bundle import MODEL_FILE, OUTPUT_COLUMNS, SPEC_FILE, evaluate_bundle, score_churn
from crmlab.churn.evaluate import choose_shipped
from crmlab.churn.pipeline import REGISTERED_MODEL_NAME, churn_windows, resolve_mode, train_churn, validation_cut_off
from crmlab.churn.tune import tune_churn
from crmlab.cli import app
from crmlab.config import ChurnConfig, load_config
from crmlab.data.io import Tables
from crmlab.data.synth import true_churn_probability
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.export import load_bundle
from crmlab.pipelines import get as pipeline_record
from crmlab.retrain import retrain
from crmlab.scoring import score_customers
from crmlab.workflow import prepare_data

from ..conftest import synthetic_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _empty_mlflow_db):
    """One transaction-mode training on a synthetic CRM (customers and interactions included),
    tracked in its own MLflow store."""
    root = tmp_path_factory.mktemp("churn")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    sets = synthetic_project(root, n_customers=2500, seed=3, tables=("transactions", "customers", "interactions"))
    cfg = load_config(root / "no-configs", sets)
    return root, cfg, train_churn(cfg)


def test_transaction_mode_end_to_end(trained):
    root, cfg, result = trained
    ds = result.dataset
    # validation is the latest snapshot, its labels inside the data; training snapshots end before it
    assert result.mode == "transactions" and ds.info["valid_snapshot"] > max(ds.info["train_snapshots"])
    assert set(result.leaderboard["model"]) == {"lightgbm", "logistic", "blend", "bgnbd"}

    # MLflow: one parent run, a child per model, the primary metric, plots, a registered pyfunc
    client = mlflow.MlflowClient(cfg.project.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    for key in ("pr_auc", "log_loss", "brier", "lift_at_k", "recall_at_k", "logistic_roc_auc", "bgnbd_roc_auc",
                "decision_threshold", "logistic_lightgbm_gain_low", "bgnbd_lightgbm_gain_p"):
        assert np.isfinite(run.data.metrics[key]), key

    # each baseline's row says by how much LightGBM ranks better, with DeLong's interval, and the
    # summary prints the verdict
    board = result.leaderboard.set_index("model")
    for name in ("logistic", "bgnbd"):
        row = board.loc[name]
        assert row["lightgbm_gain"] == pytest.approx(board.loc["lightgbm", "roc_auc"] - row["roc_auc"])
        assert row["lightgbm_gain_low"] < row["lightgbm_gain"] < row["lightgbm_gain_high"]
        assert 0 <= row["lightgbm_gain_p"] <= 1
    assert np.isnan(board.loc["lightgbm", "lightgbm_gain"]) and "lightgbm_gain" not in result.metrics
    # the synthetic mechanism has complaints and dropout BG/NBD cannot see, and several cohorts, so
    # the validation customers are like the training ones: LightGBM ranks significantly better than
    # both baselines (observed: +0.081 [+0.063, +0.099] and +0.021 [+0.011, +0.031])
    assert board.loc["bgnbd", "lightgbm_gain_low"] > 0.04
    assert board.loc["logistic", "lightgbm_gain_low"] > 0
    assert any(line.startswith("LightGBM vs bgnbd: ROC AUC +") and line.endswith("LightGBM ranks better")
               for line in result.summary())
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(c.data.tags["crmlab.model"] for c in children) == ["bgnbd", "blend", "lightgbm", "logistic"]
    plots = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/feature_importance.png", "plots/calibration.png"}
    assert client.get_model_version(REGISTERED_MODEL_NAME, "1").run_id == result.run_id
    assert result.registered_model_version is not None

    # the bundle: LightGBM text, JSON spec, report tables; no pickle; scores round-trip from disk
    files = {p.name for p in result.bundle_path.iterdir()}
    assert files == {"checksums.sha256", "manifest.json", "params.json", MODEL_FILE, SPEC_FILE, "report_leaderboard.csv",
                     "report_calibration.csv"}
    bundle = load_bundle(result.bundle_path, pipeline="churn")
    features = ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy())
    scores = score_churn(features, bundle)
    assert list(scores.columns) == OUTPUT_COLUMNS
    assert scores["customer_id"].tolist() == ds.ids_valid.tolist()
    assert result.exported_model is result.models[result.shipped]  # transactions: the model evaluated is exported
    np.testing.assert_allclose(scores["churn_probability"], result.predictions[result.shipped], rtol=1e-9)
    assert set(scores["churn_risk_tier"]) <= {"low", "medium", "high"}
    assert scores["churn_reason_1"].str.contains(r"\(\+").mean() > 0.9  # reasons push towards churn
    flagged = scores["churn_probability"] >= result.decision["threshold"]
    assert (scores["churn_flagged"] == flagged).all()

    # the pyfunc (whose signature takes text, not pandas categories) gives the same numbers
    model = mlflow.pyfunc.load_model(result.model_uri)
    example = features[bundle.manifest["input_columns"]].head(30)
    example = example.astype({c: object for c in example.columns if isinstance(example[c].dtype, pd.CategoricalDtype)})
    np.testing.assert_allclose(model.predict(example)["churn_probability"],
                               scores["churn_probability"].head(30), rtol=1e-9)


def test_synthetic_auc_is_close_to_the_true_mechanism(trained):
    root, _, result = trained
    ds = result.dataset
    truth = pd.read_csv(root / "synth" / "ground_truth" / "customers_truth.csv")
    history = ds.X_valid[["frequency", "recency", "T"]].assign(customer_id=ds.ids_valid.to_numpy())
    true_p = true_churn_probability(truth, history, ds.info["valid_snapshot"], ds.info["horizon_days"])
    true_auc = roc_auc_score(ds.y_valid, true_p.to_numpy())
    auc = result.metrics["roc_auc"]
    # Observed (2,500 people, seed 3): LightGBM 0.899, truth 0.925, BG/NBD 0.823. The true score knows
    # each person's own purchase and dropout rates, which no model can, so LightGBM lands a little below.
    assert true_auc - 0.06 < auc < true_auc + 0.02
    assert auc > result.metrics["bgnbd_roc_auc"]


def test_evaluate_bundle_scores_the_champion_on_the_validation_rows(trained):
    _, _, result = trained
    assert pipeline_record("churn").evaluator == "crmlab.churn.bundle:evaluate_bundle"
    metrics = evaluate_bundle(result.bundle_path, result)
    assert metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])


def test_a_transaction_after_the_cut_off_cannot_change_a_score(trained):
    _, cfg, _ = trained
    tables = prepare_data(cfg.project).tables
    as_of = pd.Timestamp(tables.transactions["ts"].max()).date() - pd.Timedelta(days=60)
    before = score_customers(cfg, as_of=as_of, pipelines=["churn"], tables=tables)
    who = before["customer_id"].iloc[0]
    future = pd.DataFrame({"customer_id": [who] * 2, "ts": [pd.Timestamp(as_of) + pd.Timedelta(days=1)] * 2,
                           "amount": [5000.0, -20.0]})
    tx = pd.concat([tables.transactions, future.astype(tables.transactions.dtypes[future.columns].to_dict())],
                   ignore_index=True)
    tables.transactions = tx
    after = score_customers(cfg, as_of=as_of, pipelines=["churn"], tables=tables)
    pd.testing.assert_frame_equal(before, after)


def test_bundle_without_its_model_file_is_refused(trained, tmp_path):
    _, _, result = trained
    copy = tmp_path / "churn"
    shutil.copytree(result.bundle_path, copy)
    (copy / MODEL_FILE).write_text("tree\n")
    with pytest.raises(ModelError, match="checksum"):
        score_churn(pd.DataFrame({"customer_id": ["a"]}), copy)
    with pytest.raises(ModelError, match="missing"):
        score_churn(pd.DataFrame({"customer_id": ["a"], "frequency": [1.0]}), result.bundle_path)


@pytest.mark.slow
def test_retrain_compares_the_champion_on_the_challengers_snapshot(trained):
    _, cfg, result = trained
    decision = retrain(cfg, "churn", trials=0)
    # same data, same settings: the champion (version 1) scores exactly like the challenger, so the
    # challenger is not better by the margin and the champion stays
    assert decision.champion_version == "1" and decision.challenger_version == "2"
    assert decision.champion_value == pytest.approx(decision.challenger_value)
    assert decision.champion_value == pytest.approx(result.metrics["roc_auc"])
    assert not decision.promoted


def test_validation_snapshot_lies_where_its_labels_are_observed():
    tx = pd.DataFrame({"customer_id": ["a", "b"], "ts": pd.to_datetime(["1997-01-01", "1998-06-30"]),
                       "amount": [1.0, 2.0]})
    churn = ChurnConfig()
    # the data cover the 182 days after as_of: validate at as_of (CDNOW at 1997-09-30)
    assert validation_cut_off(churn, tx, date(1997, 9, 30)) == date(1997, 9, 30)
    # they do not (as_of defaults to the last date): step back one horizon
    assert validation_cut_off(churn, tx, date(1998, 6, 30)) == date(1997, 12, 30)
    fixed = ChurnConfig(validation_as_of=date(1997, 6, 1))
    assert validation_cut_off(fixed, tx, date(1998, 6, 30)) == date(1997, 6, 1)
    with pytest.raises(ConfigError, match="churn.validation_as_of=1998-03-01.*censored"):
        validation_cut_off(ChurnConfig(horizon_days=182, validation_as_of=date(1998, 3, 1)), tx, date(1998, 6, 30))
    # an auto horizon shortens to one whose labels are observed after that cut-off: 91 days
    w = churn_windows(ChurnConfig(validation_as_of=date(1998, 3, 1)), tx, date(1998, 6, 30))
    assert (w.validation_as_of, w.horizon_days, w.n_snapshots, w.step_days) == (date(1998, 3, 1), 91, 3, 91)


def test_mode_follows_the_tables():
    tx = pd.DataFrame({"customer_id": ["a"], "ts": pd.to_datetime(["1997-01-01"]), "amount": [1.0]})
    customers = pd.DataFrame({"customer_id": ["a"], "churn": ["Yes"]})
    assert resolve_mode(ChurnConfig(), Tables(transactions=tx)) == "transactions"
    assert resolve_mode(ChurnConfig(), Tables(transactions=tx, customers=customers)) == "contract"
    both = Tables(transactions=tx, customers=customers)
    assert resolve_mode(ChurnConfig(mode="transactions"), both) == "transactions"
    with pytest.raises(ConfigError, match="project.data.customers is null"):
        resolve_mode(ChurnConfig(mode="contract"), Tables(transactions=tx))
    with pytest.raises(DataError, match="no churn label column 'cancelled'.*churn.label_column"):
        resolve_mode(ChurnConfig(mode="contract", label_column="cancelled"), Tables(customers=customers))


# --------------------------------------------------------------------------- contract mode


def _contract_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Subscribers with a Yes/No churn column: month-to-month plans and many support calls churn."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["monthly", "yearly", "two_year"], n, p=[0.5, 0.3, 0.2])
    calls = rng.poisson(1.5, n)
    charges = rng.uniform(20, 110, n).round(2)
    logit = -1.5 + 1.8 * (plan == "monthly") - 1.0 * (plan == "two_year") + 0.6 * calls + 0.01 * (charges - 60)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    return pd.DataFrame({"customer_id": [f"S{i:04d}" for i in range(n)], "signup_date": signup.strftime("%Y-%m-%d"),
                         "plan": plan, "support_calls": calls, "monthly_charges": charges,
                         "churn": np.where(churn, "Yes", "No")})


def _contract_sets(root: Path, table: pd.DataFrame) -> list[str]:
    path = root / "subscribers.csv"
    table.to_csv(path, index=False)
    return ["project.data.transactions=null", f"project.data.customers.path={path}",
            f"project.output.models_dir={root / 'models'}", "project.tracking.enabled=false",
            "project.cleaning.max_date=2024-12-31", "churn.cv_folds=3"]


def test_contract_table_without_transactions_trains_and_scores(tmp_path):
    cfg = load_config(tmp_path / "no-configs", _contract_sets(tmp_path, _contract_table(600)))
    result = train_churn(cfg)
    assert result.mode == "contract" and set(result.leaderboard["model"]) == {"lightgbm", "logistic", "blend"}
    assert len(result.dataset.y_valid) == 150  # 25% held out, stratified
    assert result.metrics["roc_auc"] > 0.7 and 0.6 < result.metrics["cv_roc_auc_mean"] <= 1
    assert "churn" not in result.dataset.X_train.columns  # the label never becomes a feature
    assert any("plan" in line or "support_calls" in line for line in result.summary())
    scores = score_customers(cfg, as_of="2024-01-01", pipelines=["churn"])
    assert len(scores) == 600 and scores["churn_probability"].between(0, 1).all()
    assert scores["churn_reason_1"].notna().any()


def test_contract_calibration_and_profit_rule(tmp_path):
    sets = [*_contract_sets(tmp_path, _contract_table(600, seed=1)), "churn.calibration=sigmoid",
            "churn.threshold=profit", "churn.value_column=monthly_charges", "churn.offer_cost=5",
            "churn.ship=lightgbm"]  # LightGBM's calibration is tested (the logistic regression ranks better here)
    result = train_churn(load_config(tmp_path / "no-configs", sets))
    params = load_bundle(result.bundle_path).params
    assert params["calibration"]["method"] == "sigmoid" and params["decision"]["rule"] == "profit"
    ds = result.dataset
    scores = score_churn(ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy()), result.bundle_path)
    # the bundle holds the model refitted on every labelled row (churn.refit): it scores as that model does
    np.testing.assert_allclose(scores["churn_probability"], result.exported_model.predict_proba(ds.X_valid)[:, 1],
                               rtol=1e-9)
    expected = scores["churn_probability"] * 0.3 * ds.X_valid["monthly_charges"].to_numpy() > 5
    assert (scores["churn_flagged"] == expected).all()


@pytest.mark.parametrize(("table", "message"), [
    (_contract_table(100).assign(churn=lambda d: d["churn"].where(d.index != 7, "maybe")), "'maybe'"),
    (_contract_table(100).assign(churn="No"), "same label"),
    (_contract_table(12), "only 12 labelled row"),
])
def test_bad_contract_labels_stop_with_a_clear_message(tmp_path, table, message):
    cfg = load_config(tmp_path / "no-configs", _contract_sets(tmp_path, table))
    with pytest.raises(DataError, match=message) as err:
        train_churn(cfg)
    assert "subscribers.csv" in str(err.value) and "'churn'" in str(err.value)


def test_cli_train_churn(tmp_path):
    sets = [a for s in _contract_sets(tmp_path, _contract_table(300, seed=2)) for a in ("--set", s)]
    runner = CliRunner()
    (tmp_path / "no-configs").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    res = runner.invoke(app, ["-c", str(tmp_path / "no-configs"), *sets, "train", "churn"])
    assert res.exit_code == 0, res.output
    assert "lightgbm" in res.output and "bundle:" in res.output
    shipped = load_bundle(tmp_path / "models" / "churn").manifest["model"]
    assert f"shipped: {shipped} (" in res.output  # the summary names the model in the bundle
    assert (tmp_path / "models" / "churn" / MODEL_FILE).is_file() == (shipped != "logistic")


# --------------------------------------------------------------------------- tuning


@pytest.mark.slow
def test_tune_churn_resumes_and_its_best_file_trains(tmp_path):
    sets = [*synthetic_project(tmp_path, n_customers=1500, seed=8), "project.tracking.enabled=false"]
    cfg = load_config(tmp_path / "no-configs", sets)
    first = tune_churn(cfg, trials=3)
    assert first.n_trials == 3 and first.best_file.name == "churn_best.yaml"
    assert 0.5 < first.best_value <= 1 and set(first.overrides) == {"churn"}
    second = tune_churn(cfg, trials=2)  # the SQLite study is resumed, not restarted
    assert second.n_trials == 5 and second.best_value >= first.best_value

    flags = [a for s in sets for a in ("--set", s)]
    (tmp_path / "no-configs").mkdir(exist_ok=True)  # an explicit --config-dir must exist; empty means defaults
    res = CliRunner().invoke(app, ["-c", str(tmp_path / "no-configs"), *flags, "train", "churn",
                                   "--tuned", str(second.best_file)])
    assert res.exit_code == 0, res.output
    params = load_bundle(tmp_path / "models" / "churn").params["lightgbm"]["params"]
    tuned = second.overrides["churn"]["lightgbm"]
    assert params["num_leaves"] == tuned["num_leaves"]
    assert params["learning_rate"] == pytest.approx(tuned["learning_rate"])


def test_tuning_never_sees_the_validation_snapshot(trained):
    from crmlab.churn.tune import _tuning_split

    _, _, result = trained
    ds = result.dataset
    X_fit, y_fit, X_judge, y_judge = _tuning_split(ds, seed=42)
    # every row comes from the training part: the validation snapshot stays blind
    assert set(X_fit.index) | set(X_judge.index) <= set(range(len(ds.y_train)))
    assert not set(X_fit.index) & set(X_judge.index)
    # judged on held-out customers only, at the latest training snapshot, after fitting on the
    # earlier ones: forward in time, as the model is used
    ids, snaps = ds.ids_train.to_numpy(), ds.snapshot_train.to_numpy()
    assert len(set(snaps)) == 2
    assert not set(ids[X_fit.index]) & set(ids[X_judge.index])
    assert set(snaps[X_judge.index]) == {max(snaps)} and set(snaps[X_fit.index]) == {min(snaps)}
    assert len(set(ids[X_judge.index])) == pytest.approx(0.2 * len(set(ids)), rel=0.1)
    assert y_judge.nunique() == 2 and len(y_fit) == len(X_fit)

    # earlier snapshots with too few rows to learn from: judged on held-out customers of all snapshots
    few = np.flatnonzero(snaps == min(snaps))[:30]
    keep = np.sort(np.concatenate([few, np.flatnonzero(snaps == max(snaps))]))
    small = dataclasses.replace(ds, X_train=ds.X_train.iloc[keep].reset_index(drop=True),
                                y_train=ds.y_train.iloc[keep].reset_index(drop=True),
                                ids_train=ds.ids_train.iloc[keep].reset_index(drop=True),
                                snapshot_train=ds.snapshot_train.iloc[keep].reset_index(drop=True))
    X_fit, _, X_judge, _ = _tuning_split(small, seed=42)
    assert len(X_fit) > 1000 and not set(small.ids_train[X_fit.index]) & set(small.ids_train[X_judge.index])


def test_tune_churn_on_a_contract_table(tmp_path):
    sets = [*_contract_sets(tmp_path, _contract_table(400, seed=4)), f"project.output.dir={tmp_path / 'outputs'}"]
    result = tune_churn(load_config(tmp_path / "no-configs", sets), trials=2)
    assert result.n_trials == 2 and 0.5 < result.best_value <= 1
    assert (tmp_path / "outputs" / "tuning" / "churn_best.yaml").is_file()
    # a trial's value is LightGBM's mean ROC AUC over the training's own repeated cross-validation
    # (3 folds x 3 repeats here): the same figure the training computes for those parameters
    from crmlab.config import with_overrides

    tuned = with_overrides(load_config(tmp_path / "no-configs", sets), result.overrides)
    again = train_churn(tuned)
    assert len(again.cross_validation.aucs) == 9
    assert again.cross_validation.mean("lightgbm") == pytest.approx(result.best_value, rel=1e-12)


@pytest.mark.parametrize("method", ["shap", "none"])
def test_reasons_method_is_kept_in_the_bundle(tmp_path, method):
    cfg = load_config(tmp_path / "no-configs", [*_contract_sets(tmp_path, _contract_table(400)),
                                                 f"churn.reasons={method}"])
    train_churn(cfg)
    scores = score_customers(cfg, as_of="2024-01-01", pipelines=["churn"])
    assert len(scores) == 400 and scores["churn_probability"].between(0, 1).all()
    if method == "none":
        assert scores["churn_reason_1"].isna().all()
    else:
        assert scores["churn_reason_1"].str.match(r"^\w[\w=. -]* \([+-]\d+\.\d\d\)$").any()


def _linear_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Subscribers whose churn log-odds are a sum of many small linear effects: the world where a
    logistic regression is the right model and trees must approximate every slope with steps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 15))
    plan = rng.choice(["monthly", "yearly"], n)
    logit = 0.4 * x.sum(axis=1) + 0.5 * (plan == "monthly")
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    table = pd.DataFrame({"customer_id": [f"L{i:05d}" for i in range(n)], "plan": plan})
    for j in range(x.shape[1]):
        table[f"usage_{j}"] = x[:, j].round(4)
    table["churn"] = np.where(churn, "Yes", "No")
    return table


def test_the_logistic_regression_ships_when_it_ranks_better(tmp_path):
    """issue 18: the leaderboard decides, not a fixed model family. On a linear world the logistic
    regression beats LightGBM in the repeated cross-validation of the training part (and DeLong agrees on
    the test part); it is exported, refitted on every row, scores the customers as that refit does, and
    gives its own log-odds contributions as reasons."""
    cfg = load_config(tmp_path / "no-configs", _contract_sets(tmp_path, _linear_table(4000)))
    result = train_churn(cfg)
    board = result.leaderboard.set_index("model")
    assert board.loc["logistic", "lightgbm_gain_high"] < 0  # DeLong: LightGBM significantly worse here
    cv = result.cross_validation
    assert cv.compare("logistic", "lightgbm")["low"] > 0  # the corrected CV interval says so too
    assert result.shipped == "logistic" and "it beat LightGBM" in result.shipped_because
    assert board["shipped"].sum() == 1 and board.loc["logistic", "shipped"]
    assert result.metrics["roc_auc"] == pytest.approx(board.loc["logistic", "roc_auc"])
    assert result.metrics["cv_roc_auc_mean"] == pytest.approx(cv.mean("logistic"))
    bundle = load_bundle(result.bundle_path)
    assert bundle.params["model_kind"] == "logistic" and not (result.bundle_path / MODEL_FILE).exists()
    assert bundle.manifest["model"] == "logistic" and "it beat LightGBM" in bundle.manifest["shipped_because"]
    assert bundle.manifest["refit_on_all_rows"] and bundle.arrays["trained_rows"].size == 4000
    ds = result.dataset
    scores = score_churn(ds.X_valid.assign(customer_id=ds.ids_valid.to_numpy()), result.bundle_path)
    np.testing.assert_allclose(scores["churn_probability"], result.exported_model.predict_proba(ds.X_valid)[:, 1],
                               rtol=1e-12)
    first = scores["churn_reason_1"].dropna()
    assert len(first) > 0.9 * len(scores) and first.str.match(r"^(usage_\d+ (high|low)|plan=\w+) \(\+\d\.\d\d\)$").all()
    assert any(line.startswith("shipped: logistic") for line in result.summary())
    assert any(line.startswith("* logistic") for line in result.summary())  # the leaderboard marks it
    # the same table, LightGBM named: LightGBM ships, as the config says
    forced = train_churn(load_config(tmp_path / "no-configs", [*_contract_sets(tmp_path, _linear_table(4000)),
                                                                "churn.ship=lightgbm"]))
    assert forced.shipped == "lightgbm" and (forced.bundle_path / MODEL_FILE).is_file()


def _board(rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """A leaderboard by hand: model -> (ROC AUC, LightGBM's gain CI low, high)."""
    return pd.DataFrame([{"model": m, "roc_auc": auc, "lightgbm_gain": (low + high) / 2, "lightgbm_gain_low": low,
                          "lightgbm_gain_high": high, "lightgbm_gain_p": 0.01} for m, (auc, low, high) in rows.items()])


def test_transactions_ship_lightgbm_unless_another_model_ranks_significantly_better():
    tie = _board({"lightgbm": (0.80, np.nan, np.nan), "logistic": (0.81, -0.03, 0.01), "blend": (0.812, -0.02, 0.001),
                  "bgnbd": (0.70, 0.05, 0.15)})
    shipped, because = choose_shipped(tie, "auto")
    assert shipped == "lightgbm" and because.startswith("no model ranks significantly better than LightGBM")
    blend = _board({"lightgbm": (0.80, np.nan, np.nan), "logistic": (0.81, -0.03, 0.01), "blend": (0.82, -0.03, -0.01)})
    assert choose_shipped(blend, "auto")[0] == "blend"
    both = _board({"lightgbm": (0.80, np.nan, np.nan), "logistic": (0.83, -0.05, -0.01), "blend": (0.82, -0.03, -0.01)})
    assert choose_shipped(both, "auto")[0] == "logistic"  # both significantly better: the higher ROC AUC
    # BG/NBD is never shipped, however well it ranks; a named model is shipped as named
    assert choose_shipped(_board({"lightgbm": (0.7, np.nan, np.nan), "bgnbd": (0.9, -0.3, -0.1)}), "auto")[0] == "lightgbm"
    assert choose_shipped(tie, "blend") == ("blend", "churn.ship=blend")
    with pytest.raises(ConfigError, match="no blend on the leaderboard"):
        choose_shipped(_board({"lightgbm": (0.8, np.nan, np.nan), "logistic": (0.8, -0.1, 0.1)}), "blend")


def test_contract_ships_the_best_cross_validated_model(tmp_path):
    result = train_churn(load_config(tmp_path / "no-configs", _contract_sets(tmp_path, _contract_table(600))))
    cv = result.cross_validation
    assert len(cv.aucs) == 3 * 3  # churn.cv_folds=3, repeated 3x (auto below 20,000 rows)
    assert result.shipped == max(("lightgbm", "logistic", "blend"), key=cv.mean)
    board = result.leaderboard.set_index("model")
    assert board.loc[result.shipped, "cv_roc_auc"] == pytest.approx(cv.mean(result.shipped))
    assert f"{cv.mean(result.shipped):.4f}" in result.shipped_because


