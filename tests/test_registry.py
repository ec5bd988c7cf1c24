"""The registry: a model that could not be evaluated is never exported or made champion (issue 15 item 4);
``crmlab compare`` ranks the runs and shows what differs, a version says what it is, a run names its data
and nothing is copied to register or score (issue 20)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from crmlab.errors import ModelError
from crmlab.registry import ensure_champion, get_champion, promote

from .conftest import synthetic_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cutoff")
    sets = [*synthetic_project(root, n_customers=300, seed=11, tables=("transactions", "customers")),
            "clv.challenger=false"]
    (root / "no-configs").mkdir()
    return root, sets


def _train(root, sets, pipeline, *extra):
    from crmlab.cli import main

    flags = [a for s in [*sets, *extra] for a in ("--set", s)]
    return main(["-c", str(root / "no-configs"), *flags, "train", pipeline])


@pytest.mark.parametrize("pipeline", ["clv", "churn", "forecast"])
def test_a_cut_off_after_the_data_is_refused_and_nothing_is_exported(project, pipeline, capsys):
    """--set project.as_of=2030-01-01 (the data end in 2024) used to train CLV and forecast on an
    empty holdout (`+nan%`, Gini nan; MASE 0 on padded zeros), export them and make them champion."""
    root, sets = project
    assert _train(root, sets, pipeline, "project.as_of=2030-01-01") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error:" in err and "2030-01-01" in err
    assert "after the last transaction" in err or "holds no transaction" in err
    assert "last one is on 2024-" in err or "the last transaction (2024-" in err  # the date to use instead
    assert not (root / "models" / pipeline).exists()
    from crmlab.config import load_config
    from crmlab.registry import _client

    cfg = load_config(root / "no-configs", sets)
    assert _client(cfg.project.tracking).search_model_versions(f"name = 'crmlab-{pipeline}'") == []


def test_a_cut_off_after_the_data_is_said_when_it_is_not_refused(project, capsys):
    """Segmentation has no holdout: it trains at a later cut-off, but the run says how far after the data it is."""
    root, sets = project
    assert _train(root, sets, "segmentation", "project.as_of=2025-03-01") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "project.as_of=2025-03-01 is 62 days after the last transaction (2024-12-29)" in err


def _version(tracking, pipeline, metrics):
    """A registered version of crmlab-<pipeline> whose run logged ``metrics`` (as a failed evaluation would)."""
    mlflow.set_tracking_uri(tracking.uri)
    exp = mlflow.set_experiment(tracking.experiment)
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_text("a model", "model/MLmodel")
    return mlflow.register_model(f"runs:/{run.info.run_id}/model", f"crmlab-{pipeline}").version


def test_a_version_without_a_usable_primary_metric_is_never_champion(tracking):
    nan = _version(tracking, "clv", {"purchases_mae": float("nan"), "spend_mae": 3.0})
    ensure_champion("crmlab-clv", nan)  # the first version: champion by itself, unless its evaluation failed
    assert get_champion(tracking, "clv") is None
    with pytest.raises(ModelError,
                       match=r"clv \(crmlab-clv version 1\): the evaluation gave no usable purchases_mae \(nan\)"):
        promote(tracking, "clv", nan)
    missing = _version(tracking, "clv", {"spend_mae": 3.0})
    with pytest.raises(ModelError, match=r"no usable purchases_mae \(missing\)"):
        promote(tracking, "clv", missing)
    good = _version(tracking, "clv", {"purchases_mae": 0.4})
    ensure_champion("crmlab-clv", good)
    assert get_champion(tracking, "clv").version == str(good)


def test_check_evaluation_names_the_metric():
    from crmlab.registry import check_evaluation

    check_evaluation("churn", {"roc_auc": 0.7})
    check_evaluation("segmentation", {"k": 1.0})  # one segment by configuration: nothing to evaluate
    for bad in ({}, {"roc_auc": float("nan")}, {"roc_auc": float("inf")}, {"roc_auc": None}):
        with pytest.raises(ModelError, match="roc_auc"):
            check_evaluation("churn", bad)


# --- issue 20: compare shows what differs, versions say what they are, runs name their data ----------------------


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two CLV trainings through the command line, BG/NBD (version 1, the champion) then Pareto/NBD
    (version 2), with what each printed on stderr."""
    from crmlab.cli import main

    root = tmp_path_factory.mktemp("compare")
    sets = [*synthetic_project(root, n_customers=300, seed=11, tables=("transactions", "customers")),
            "clv.challenger=false"]
    (root / "no-configs").mkdir()
    flags = ["-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)]]
    import contextlib
    import io

    said = []
    for model in ("bgnbd", "pareto_nbd"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*flags, "--set", f"clv.model={model}", "train", "clv"]) == 0
        said.append(err.getvalue())
    from crmlab.config import load_config

    return root, flags, load_config(root / "no-configs", sets).project.tracking, said


def _compare(flags, capsys, *extra):
    import json

    from crmlab.cli import main

    capsys.readouterr()
    assert main([*flags, "compare", "clv", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out) if "--json" in extra else out


def test_compare_ranks_by_the_primary_metric_and_shows_the_parameters_that_differ(two_models, capsys):
    from crmlab.registry import _client

    root, flags, tracking, _ = two_models
    board = _compare(flags, capsys, "--json")
    runs = board["runs"]
    assert board["primary_metric"] == "purchases_mae" and board["higher_is_better"] is False
    assert [r["version"] for r in runs] != [] and len(runs) == 2
    maes = [r["metrics"]["purchases_mae"] for r in runs]
    assert maes == sorted(maes)  # lower is better: the best first
    by_version = {r["version"]: r for r in runs}
    assert by_version["1"]["params"]["clv.model"] == "bgnbd"
    assert by_version["2"]["params"]["clv.model"] == "pareto_nbd"
    assert [r["champion"] for r in runs] == [r["version"] == "1" for r in runs]
    # each MAE is the one its run logged; only the differing parameters are listed
    client = _client(tracking)
    for r in runs:
        assert r["metrics"]["purchases_mae"] == client.get_run(r["run_id"]).data.metrics["purchases_mae"]
    assert "clv.penalizer" not in by_version["1"]["params"] and "project.seed" not in by_version["1"]["params"]
    # the table: the same order, the differing parameter as a column, the champion starred
    text = _compare(flags, capsys)
    lines = text.splitlines()
    assert "best purchases_mae first (purchases_mae: lower is better)" in " ".join(lines[0].split())
    header, rows = lines[1].split(), [line.split() for line in lines[2:4]]
    assert "clv.model" in header
    assert [row[0] for row in rows] == [r["run_id"][:8] for r in runs]
    for row, r in zip(rows, runs):
        assert row[row.index(r["version"]) + 1 : row.index(r["version"]) + 2] == (["*"] if r["champion"] else [
            f"{r['metrics']['purchases_mae']:.4g}"])
        assert r["params"]["clv.model"] in row
    # newest first on request
    assert [r["version"] for r in _compare(flags, capsys, "--json", "--newest")["runs"]] == ["2", "1"]


def test_compare_follows_the_metric_direction_and_leaves_tuning_studies_out(tracking, capsys):
    """Churn's ROC AUC: higher is better; a run without it comes last; a tuning study is not a training."""
    from crmlab.registry import recent_runs

    mlflow.set_tracking_uri(tracking.uri)
    exp = mlflow.set_experiment(tracking.experiment)
    logged = [({"roc_auc": 0.71}, {"churn.model": "logistic", "project.seed": "7"}, {}),
              ({"roc_auc": 0.83}, {"churn.model": "lightgbm", "project.seed": "7"}, {}),
              ({"roc_auc": float("nan")}, {"churn.model": "lightgbm", "project.seed": "7"}, {}),
              ({"roc_auc": 0.99}, {"churn.model": "lightgbm", "project.seed": "7"}, {"crmlab.job": "tune"})]
    for metrics, params, tags in logged:
        with mlflow.start_run(experiment_id=exp.experiment_id, tags={"crmlab.pipeline": "churn", **tags}):
            mlflow.log_metrics(metrics)
            mlflow.log_params(params)
    board = recent_runs(tracking, "churn")
    assert board["roc_auc"].tolist()[:2] == [0.83, 0.71] and np.isnan(board["roc_auc"].iloc[2]) and len(board) == 3
    assert board["params.churn.model"].tolist() == ["lightgbm", "logistic", "lightgbm"]
    assert "params.project.seed" not in board.columns  # the same in every run


def test_a_registered_version_says_what_it_is(two_models):
    """Its description and tags: the pipeline, the model shipped, the primary metric and its value, the data."""
    from crmlab.export import manifest_sha256
    from crmlab.registry import _client

    root, _, tracking, _ = two_models
    client = _client(tracking)
    for version, model in (("1", "bgnbd"), ("2", "pareto_nbd")):
        mv = client.get_model_version("crmlab-clv", version)
        run = client.get_run(mv.run_id)
        tags = mv.tags
        assert tags["crmlab.pipeline"] == "clv" and tags["crmlab.model"] == model and tags["crmlab.shipped"] == model
        assert tags["crmlab.primary_metric"] == "purchases_mae"
        assert float(tags["crmlab.primary_metric_value"]) == pytest.approx(run.data.metrics["purchases_mae"], rel=1e-5)
        for table in ("transactions", "customers"):
            assert tags[f"crmlab.data.{table}.sha256"] == run.data.params[f"data.{table}.sha256"]
            assert tags[f"crmlab.data.{table}.rows"] == run.data.params[f"data.{table}.rows"]
        assert tags["crmlab.data.as_of"] == run.data.params["data.as_of"]
        assert mv.description.startswith(f"crmlab clv model: {model}. purchases_mae = "
                                          f"{tags['crmlab.primary_metric_value']} (lower is better")
        assert f"transactions ({int(run.data.params['data.transactions.rows']):,} rows" in mv.description
        # the manifest tag is the checksum of the bundle the version holds (and scoring checks it)
        from mlflow.utils.file_utils import local_file_uri_to_path

        stored = Path(local_file_uri_to_path(client.get_model_version_download_uri("crmlab-clv", version)))
        assert stored.is_relative_to(root / "mlartifacts")
        (bundle,) = [m.parent for m in (stored / "artifacts").glob("*/manifest.json")]
        assert tags["crmlab.manifest_sha256"] == manifest_sha256(bundle)


def test_a_training_run_names_its_data_as_mlflow_datasets(two_models):
    from crmlab.registry import _client

    root, _, tracking, _ = two_models
    client = _client(tracking)
    run = client.get_run(client.get_model_version("crmlab-clv", "1").run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"transactions", "customers"}
    import json

    for name, d in inputs.items():
        assert d.dataset.digest == run.data.params[f"data.{name}.sha256"]
        assert json.loads(d.dataset.source) == {"uri": str(root / "synth" / f"{name}.csv")}
        assert d.dataset.source_type == "local"
        assert json.loads(d.dataset.profile)["num_rows"] == int(run.data.params[f"data.{name}.rows"])
        assert [(t.key, t.value) for t in d.tags] == [("mlflow.data.context", "training")]
    schema = {c["name"]: c["type"] for c in json.loads(inputs["transactions"].dataset.schema)["mlflow_colspec"]}
    assert schema["customer_id"] == "string" and schema["ts"] == "datetime" and schema["amount"] == "double"


def test_training_and_scoring_from_the_champion_copy_nothing(two_models, tmp_path, capsys):
    """No "Downloading artifacts" bar: registering points the version at the logged model, and scoring
    reads the champion's bundle where it lies in the local artifact store."""
    from crmlab.cli import main
    from crmlab.registry import champion_bundle

    root, flags, tracking, said = two_models
    for err in said:
        assert "Downloading artifacts" not in err and "registered crmlab-clv version" in " ".join(err.split())
    dst = tmp_path / "dst"
    path, info = champion_bundle(tracking, "clv", dst)
    assert info.version == "1" and path.is_relative_to(root / "mlartifacts") and not dst.exists()
    capsys.readouterr()
    assert main([*flags, "score", "--out", str(tmp_path / "s.parquet")]) == 0
    err = capsys.readouterr().err
    assert "Downloading artifacts" not in err and "scoring clv with the registry's champion" in " ".join(err.split())
