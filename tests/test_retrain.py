"""The retraining job on a real MLflow registry: first model, no better challenger, better challenger,
failed data checks."""

from __future__ import annotations

import json

import mlflow
import pytest

from crmlab.cli import main
from crmlab.clv.pipeline import train_clv
from crmlab.config import load_config
from crmlab.errors import DataCheckError
from crmlab.export import load_bundle
from crmlab.registry import get_champion
from crmlab.retrain import check_data, retrain, with_overrides
from crmlab.workflow import prepare_data

from .conftest import synthetic_project


@pytest.fixture
def sets(tmp_path):
    return [*synthetic_project(tmp_path, n_customers=800, seed=4), "clv.challenger=false"]


def _decision(tracking_uri: str, run_id: str) -> dict:
    client = mlflow.MlflowClient(tracking_uri)
    path = client.download_artifacts(run_id, "retrain_decision.json")
    return json.loads(open(path).read())


def test_retrain_promotes_only_a_better_challenger(sets, tmp_path):
    cfg = load_config(tmp_path / "none", sets)
    tracking = cfg.project.tracking
    # a deliberately poor champion: a strong penalty shrinks the BG/NBD parameters
    poor = train_clv(load_config(tmp_path / "none", [*sets, "clv.penalizer=5"]))
    assert get_champion(tracking, "clv").version == "1"
    poor_hash = load_bundle(tmp_path / "models" / "clv").manifest["bundle_hash"]

    better = retrain(cfg, "clv")
    assert better.promoted and better.challenger_version == "2" and better.champion_version == "1"
    assert better.challenger_value < better.champion_value  # purchases_mae, lower is better
    # the champion was judged on the challenger's holdout, by the same code
    assert better.champion_metrics["holdout_customers"] == better.challenger_metrics["holdout_customers"]
    # the champion's specification, fitted on the same calibration period: its own holdout figure
    assert better.champion_value == pytest.approx(poor.metrics["purchases_mae"], rel=1e-9)
    assert get_champion(tracking, "clv").version == "2"
    assert load_bundle(tmp_path / "models" / "clv").manifest["bundle_hash"] != poor_hash
    decision = _decision(better.tracking_uri, better.run_id)
    assert decision["decision"] == "promoted" and decision["champion"]["version"] == "1"

    # the same data and settings again: the challenger equals the champion, which stays
    same = retrain(cfg, "clv")
    assert not same.promoted and same.challenger_version == "3" and same.champion_version == "2"
    assert same.challenger_value == pytest.approx(same.champion_value, rel=1e-9)
    assert get_champion(tracking, "clv").version == "2"
    assert _decision(same.tracking_uri, same.run_id)["decision"] == "kept_champion"
    assert not (tmp_path / "outputs" / "candidates" / "clv").exists()


def test_first_retrain_with_no_champion_promotes(sets, tmp_path):
    first = retrain(load_config(tmp_path / "none", sets), "clv")
    assert first.promoted and "no champion" in first.reason
    assert (tmp_path / "models" / "clv" / "manifest.json").is_file()


def test_failed_data_checks_exit_3_and_promote_nothing(sets, tmp_path, capsys):
    (tmp_path / "none").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    flags = ["-c", str(tmp_path / "none"), *[a for s in sets for a in ("--set", s)]]
    code = main([*flags, "--set", "project.retrain.min_customers=1000000", "retrain", "clv"])
    err = capsys.readouterr().err
    assert code == 3 and "data checks failed" in err and "min_customers" in err
    assert get_champion(load_config(tmp_path / "none", sets).project.tracking, "clv") is None
    assert not (tmp_path / "models" / "clv").exists()
    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("crmlab").experiment_id])
    assert [r.data.tags["crmlab.decision"] for r in runs] == ["data_checks_failed"]


def test_data_checks(sets, tmp_path):
    cfg = load_config(tmp_path / "none", sets)
    prepared = prepare_data(cfg.project)
    assert check_data(prepared, cfg) == []
    strict = with_overrides(cfg, {"project": {"retrain": {"max_reject_share": 0.0, "max_staleness_days": 1},
                                              "as_of": "2025-06-30"}})
    problems = check_data(prepare_data(strict.project), strict)
    assert any("rejected" in p for p in problems)  # the synthetic data has dirty rows
    assert any("stale" in p for p in problems)
    with pytest.raises(DataCheckError):
        retrain(strict, "clv")


def test_a_failed_retrain_leaves_no_candidate_folder(sets, tmp_path):
    """issue 15 item 9 (temporary folders): the challenger's bundle folder under outputs/candidates was
    removed only when the job succeeded; a champion that cannot be loaded left it behind."""
    from crmlab.errors import ModelError

    cfg = load_config(tmp_path / "none", sets)
    train_clv(cfg)
    for params in (tmp_path / "mlartifacts").rglob("params.json"):  # the champion's files, edited in the store
        params.write_text(params.read_text() + " ")
    with pytest.raises(ModelError, match="checksum"):
        retrain(cfg, "clv")
    assert [p.name for p in (tmp_path / "outputs" / "candidates").iterdir()] == []
    assert get_champion(cfg.project.tracking, "clv").version == "1"
