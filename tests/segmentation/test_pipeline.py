"""The segmentation pipeline end to end: real files, a real MLflow store, a real exported bundle."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from crmlab.cli import main
from crmlab.config import TrackingConfig, load_config
from crmlab.errors import ConfigError
from crmlab.export import load_bundle
from crmlab.features import build_features_from_tables
from crmlab.segmentation.bundle import OUTPUT_COLUMNS, evaluate_bundle, score_segmentation
from crmlab.segmentation.pipeline import migrate_segments, train_segmentation
from crmlab.workflow import prepare_data

from ..conftest import synthetic_project

FAST = ["segmentation.k_range=[2,5]", "segmentation.stability_runs=2", "segmentation.sample_size=2000",
        "segmentation.silhouette_sample=1000", "segmentation.n_init=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _empty_mlflow_db):
    root = tmp_path_factory.mktemp("seg")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    tracking = TrackingConfig(uri=f"sqlite:///{root / 'mlflow.db'}", artifact_dir=root / "mlartifacts",
                              experiment="test")
    sets = [*synthetic_project(root, n_customers=1200, seed=5), *FAST, f"project.tracking.uri={tracking.uri}",
            f"project.tracking.artifact_dir={tracking.artifact_dir}", "project.tracking.experiment=test"]
    cfg = load_config(root / "no-configs", sets)
    return cfg, sets, train_segmentation(cfg)


def test_train_segmentation_end_to_end(trained):
    cfg, _, result = trained
    # the run: the primary metric under its registry name, the sweep, profiles, plots, a registered model
    client = mlflow.MlflowClient(cfg.project.tracking.uri)
    run = client.get_run(result.run_id)
    for key in ("silhouette", "calinski_harabasz", "davies_bouldin", "stability_ari", "stability_ari_seeds",
                "stability_ari_bootstrap", "k", "inertia"):
        assert np.isfinite(run.data.metrics[key]), key
    assert run.data.metrics["k"] == result.k and 2 <= result.k <= 5
    assert run.data.params["chosen_by"] == "silhouette" and run.data.params["algorithm"] == "KMeans"
    history = client.get_metric_history(result.run_id, "sweep_silhouette")
    assert sorted(m.step for m in history) == [2, 3, 4, 5]
    plots = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/sweep.png", "plots/profiles.png"}
    assert client.get_model_version("crmlab-segmentation", "1").run_id == result.run_id
    assert result.registered_model_version is not None
    # which partition shipped and why, in the run's tags and the bundle's manifest (the report shows it)
    assert run.data.tags["crmlab.shipped"] == "kmeans"
    because = run.data.tags["crmlab.shipped_because"]
    assert because.startswith(f"k={result.k} chosen by silhouette; stable across bootstrap refits (ARI ")
    manifest = load_bundle(cfg.project.output.models_dir / "segmentation").manifest
    assert manifest["model"] == f"KMeans k={result.k}" and manifest["shipped_because"] == because

    # profiles: one row per segment, shares add up, readable names (no "cluster 3")
    prof = result.profiles
    assert len(prof) == result.k and prof["share"].sum() == pytest.approx(1.0)
    assert prof["revenue_share"].sum() == pytest.approx(1.0)
    assert prof["name"].is_unique and not prof["name"].str.contains(r"^\d|cluster").any()
    assert list(result.sweep["k"]) == [2, 3, 4, 5]

    # scores: every customer of the features frame, segments of the customers with a purchase
    assert list(result.scores.columns) == OUTPUT_COLUMNS
    assert set(result.scores["segment_name"]) <= {*prof["name"], "no_purchase"}
    assert len(result.scores) >= int(prof["customers"].sum())


def test_bundle_has_no_pickle_and_scores_like_sklearn(trained):
    cfg, _, result = trained
    files = {p.name for p in result.bundle_path.iterdir()}
    assert files == {"checksums.sha256", "manifest.json", "params.json", "arrays.npz", "report_profiles.csv", "sweep.csv"}
    with np.load(result.bundle_path / "arrays.npz", allow_pickle=False) as npz:
        assert npz["centres"].shape == (result.k, 3)
    bundle = load_bundle(result.bundle_path, pipeline="segmentation")
    assert bundle.manifest["features"] == ["recency_days", "frequency", "monetary_value"]
    assert bundle.manifest["metrics"]["silhouette"] == pytest.approx(result.metrics["silhouette"])
    report = pd.read_csv(result.bundle_path / "report_profiles.csv")
    assert {"segment", "name", "customers", "share"} <= set(report.columns)

    base = result.features
    scores = score_segmentation(base, result.bundle_path)
    pd.testing.assert_frame_equal(scores, result.scores[result.scores["segment_id"] >= 0].reset_index(drop=True))
    # the same centres as scikit-learn's KMeans with the same seed, and its predict, from disk
    seg = cfg.segmentation
    z = result.model.scaler.transform_rows(base[seg.features].to_numpy(dtype=np.float64))
    km = KMeans(n_clusters=result.k, random_state=cfg.project.seed, n_init=seg.n_init).fit(z)
    np.testing.assert_allclose(bundle.arrays["centres"][scores["segment_id"]], km.cluster_centers_[km.predict(z)])

    # the pyfunc gives the same answer and refuses an input without the model's columns
    model = mlflow.pyfunc.load_model(result.model_uri)
    example = base[result.model.input_columns].head(30).reset_index(drop=True)
    pd.testing.assert_frame_equal(model.predict(example).reset_index(drop=True), scores.head(30), check_dtype=False)
    with pytest.raises(mlflow.exceptions.MlflowException, match="monetary_value"):
        model.predict(example.drop(columns=["monetary_value"]))


def test_evaluating_the_own_bundle_gives_the_runs_metrics(trained):
    _, _, result = trained
    metrics = evaluate_bundle(result.bundle_path, result)
    for key in ("silhouette", "calinski_harabasz", "davies_bouldin"):
        assert metrics[key] == pytest.approx(result.metrics[key]), key


def test_a_future_row_cannot_change_an_assignment(trained):
    cfg, _, result = trained
    tables = prepare_data(cfg.project).tables
    as_of = result.as_of
    before = score_segmentation(build_features_from_tables(tables, as_of=as_of, cfg=cfg.project), result.bundle_path)
    tx = tables.transactions
    who = tx["customer_id"].iloc[0]
    future = tx.head(1).assign(ts=pd.Timestamp(as_of) + pd.Timedelta(days=1), amount=1e6)
    tables.transactions = pd.concat([tx, future], ignore_index=True)
    after = score_segmentation(build_features_from_tables(tables, as_of=as_of, cfg=cfg.project), result.bundle_path)
    pd.testing.assert_frame_equal(before, after)
    # nor can the other customers scored with it
    feats = build_features_from_tables(tables, as_of=as_of, cfg=cfg.project)
    alone = score_segmentation(feats[feats["customer_id"] == who], result.bundle_path)
    pd.testing.assert_frame_equal(alone, before[before["customer_id"] == who].reset_index(drop=True))


def test_migration_between_two_dates_counts_every_customer_once(trained):
    cfg, _, result = trained
    earlier = (pd.Timestamp(result.as_of) - pd.DateOffset(months=6)).date()
    mig = migrate_segments(cfg, earlier, result.as_of)
    m = mig.matrix
    union = set(mig.before["customer_id"]) | set(mig.after["customer_id"])
    assert m.to_numpy().sum() == len(union)
    assert m.drop(index="not_a_customer", errors="ignore").sum(axis=1).to_dict() == \
        mig.before["segment_name"].value_counts().to_dict()
    assert m.sum(axis=0).drop("not_a_customer", errors="ignore").to_dict() == \
        mig.after["segment_name"].value_counts().to_dict()
    with pytest.raises(ConfigError, match="after"):
        migrate_segments(cfg, result.as_of, earlier)


def test_unknown_feature_is_a_clear_error(tmp_path):
    sets = [*synthetic_project(tmp_path, n_customers=100, seed=1), "project.tracking.enabled=false",
            "segmentation.features=[recency_days, frequncy]"]
    with pytest.raises(ConfigError, match="'frequncy' is not a feature column; choose from .*frequency"):
        train_segmentation(load_config(tmp_path / "no-configs", sets))


def test_cli_train_segmentation_and_migrate(trained, tmp_path, capsys):
    _, sets, result = trained
    args = [a for s in sets for a in ("--set", s)]
    args += ["--set", f"project.output.models_dir={tmp_path / 'models'}", "--set", "segmentation.k=3",
             "--set", "segmentation.minibatch_threshold=100"]
    (tmp_path / "no-configs").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    code = main(["-c", str(tmp_path / "no-configs"), *args, "train", "segmentation"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "k=3 (fixed), MiniBatchKMeans" in captured.out and "stability" in captured.out
    assert load_bundle(tmp_path / "models" / "segmentation").manifest["algorithm"] == "MiniBatchKMeans"
    out_csv = tmp_path / "migration.csv"
    code = main(["-c", str(tmp_path / "no-configs"), *args, "segments", "migrate", "--from", "2024-06-30",
                 "--to", str(result.as_of), "--out", str(out_csv)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "kept their segment" in captured.out
    assert pd.read_csv(out_csv).set_index("from").to_numpy().sum() > 0
    # a misspelt feature: one line naming it, exit 2
    code = main(["-c", str(tmp_path / "no-configs"), *args, "--set", "segmentation.features=[recency_days,frequncy]",
                 "train", "segmentation"])
    err = capsys.readouterr().err
    assert code == 2 and "frequncy" in err and "Traceback" not in err


def test_batch_scoring_adds_the_segment_columns(trained):
    from crmlab.scoring import score_customers

    cfg, _, result = trained
    table = score_customers(cfg, pipelines=["segmentation"])
    assert list(table.columns) == ["customer_id", "as_of", *OUTPUT_COLUMNS[1:], "segmentation_model_version",
                                   "lifecycle_stage", "lifecycle_overdue", "lifecycle_spend_trend",
                                   "lifecycle_usual_gap_days"]
    expected = result.scores.set_index("customer_id")["segment_name"]
    assert (table.set_index("customer_id")["segment_name"] == expected.reindex(table["customer_id"])).all()


def test_retrain_compares_the_champion_on_the_same_customers(trained):
    from crmlab.retrain import retrain

    cfg, _, result = trained
    decision = retrain(cfg, "segmentation", trials=0)
    assert decision.metric == "silhouette" and decision.champion_version is not None
    # the same data and config: the champion's silhouette on the new sample equals the challenger's
    assert decision.champion_value == pytest.approx(decision.challenger_value)
    assert not decision.promoted
