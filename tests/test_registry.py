"""A model that could not be evaluated is never exported or made champion (issue 15 item 4)."""

from __future__ import annotations

import mlflow
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
