"""The shared Optuna tuning: a real SQLite study and a real MLflow store, on objectives whose optimum
is known, so the tests can check that tuning finds it, resumes, prunes and writes usable config."""

from __future__ import annotations

import math

import mlflow
import optuna
import pytest
import yaml
from pydantic import ValidationError

from crmlab.cli import main
from crmlab.config import ProjectConfig, SearchParam, TuningConfig, load_config
from crmlab.errors import ConfigError
from crmlab.tuning import load_overrides, nested_overrides, report, run_study


@pytest.fixture
def project(tmp_path):
    return ProjectConfig.model_validate({
        "seed": 7,
        "output": {"dir": str(tmp_path / "outputs")},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_dir": str(tmp_path / "art")},
    })


SPACE = [
    SearchParam(name="lightgbm.learning_rate", type="float", low=1e-3, high=1.0, log=True),
    SearchParam(name="lightgbm.num_leaves", type="int", low=4, high=128),
    SearchParam(name="mode", type="categorical", choices=["a", "b"]),
]


def bowl(trial, params):
    """Minimum 0 at learning_rate=0.1, num_leaves=32, mode='b'."""
    return (math.log10(params["lightgbm.learning_rate"]) + 1) ** 2 + ((params["lightgbm.num_leaves"] - 32) / 32) ** 2 \
        + (0.5 if params["mode"] == "a" else 0.0)


def test_study_finds_the_optimum_and_writes_config(project, tmp_path):
    tuning = TuningConfig(search_space=SPACE, trials=40, pruner="none")
    res = run_study("churn", bowl, tuning, project=project, direction="minimize", metric="loss")
    assert res.n_trials == 40 and res.n_complete == 40 and res.n_pruned == 0
    assert res.best_value < 0.08
    assert res.best_params["mode"] == "b"
    assert 0.04 < res.best_params["lightgbm.learning_rate"] < 0.25
    # the best parameters as a nested override of the pipeline's section
    assert res.overrides == {"churn": {"lightgbm": {"learning_rate": res.best_params["lightgbm.learning_rate"],
                                                    "num_leaves": res.best_params["lightgbm.num_leaves"]},
                                       "mode": "b"}}
    written = yaml.safe_load(res.best_file.read_text())
    assert written["_study"]["best_trial"] >= 0 and written["_study"]["loss"] == pytest.approx(res.best_value)
    assert load_overrides(res.best_file) == res.overrides

    # one parent run, one child run per trial, each with its parameters and value
    client = mlflow.MlflowClient(res.tracking_uri)
    exp = client.get_experiment_by_name("crmlab")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == res.run_id][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == res.run_id]
    assert len(children) == 40
    assert parent.data.metrics["best_loss"] == pytest.approx(res.best_value)
    assert {c.data.tags["optuna.state"] for c in children} == {"COMPLETE"}
    assert min(c.data.metrics["loss"] for c in children) == pytest.approx(res.best_value)


def test_second_call_resumes_the_study_with_new_trials(project):
    tuning = TuningConfig(search_space=SPACE, trials=6, pruner="none")
    first = run_study("forecast", bowl, tuning, project=project, direction="minimize", metric="loss")
    second = run_study("forecast", bowl, tuning, project=project, direction="minimize", metric="loss")
    assert (first.n_trials, second.n_trials) == (6, 12)
    assert second.best_value <= first.best_value
    seen = {tuple(sorted(h.items())) for h in first.history}
    # reseeded with the number of stored trials: the resumed call does not replay the first one's points
    assert not any(tuple(sorted(h.items())) in seen for h in second.history)
    # the same call on a fresh store is reproducible (seeded TPE)
    study = optuna.load_study(study_name="forecast", storage=first.storage)
    assert len(study.trials) == 12


def test_same_seed_same_trials(tmp_path, project):
    tuning = TuningConfig(search_space=SPACE, trials=5, pruner="none")
    a = run_study("churn", bowl, tuning, project=project, direction="minimize", metric="loss")
    other = project.model_copy(update={"output": project.output.model_copy(update={"dir": tmp_path / "o2"})})
    b = run_study("churn", bowl, tuning, project=other, direction="minimize", metric="loss")
    assert [h["lightgbm.num_leaves"] for h in a.history] == [h["lightgbm.num_leaves"] for h in b.history]


def test_pruning_stops_trials_that_trail(project):
    def learning_curve(trial, params):
        # a bad learning rate shows at the first steps already: the median rule cuts it
        final = bowl(trial, params)
        for step in range(1, 11):
            report(trial, final + 5.0 / step, step)
        return final

    tuning = TuningConfig(search_space=SPACE, trials=30, startup_trials=3)
    res = run_study("churn", learning_curve, tuning, project=project, direction="minimize", metric="loss")
    assert res.n_pruned > 0 and res.n_complete + res.n_pruned == 30
    states = {h["state"] for h in res.history}
    assert states == {"COMPLETE", "PRUNED"}


def test_direction_of_a_stored_study_cannot_flip(project):
    tuning = TuningConfig(search_space=SPACE, trials=2, pruner="none")
    run_study("churn", bowl, tuning, project=project, direction="minimize", metric="loss")
    with pytest.raises(ConfigError, match="created to minimize"):
        run_study("churn", bowl, tuning, project=project, direction="maximize", metric="auc")


def test_search_space_is_validated():
    with pytest.raises(ValidationError, match="low < high"):
        SearchParam(name="lightgbm.num_leaves", type="int", low=64, high=8)
    with pytest.raises(ValidationError, match="log scale needs low > 0"):
        SearchParam(name="lightgbm.learning_rate", low=0, high=1, log=True)
    with pytest.raises(ValidationError, match="needs choices"):
        SearchParam(name="mode", type="categorical")
    with pytest.raises(ValidationError, match="dotted name"):
        SearchParam(name="lightgbm..x", low=0, high=1)


def test_empty_space_and_failing_trials_say_so(project):
    with pytest.raises(ConfigError, match="search_space is empty"):
        run_study("churn", bowl, TuningConfig(), project=project, direction="minimize", metric="loss")
    nan = TuningConfig(search_space=SPACE, trials=3, pruner="none")
    with pytest.raises(ConfigError, match="no trial completed"):
        run_study("churn", lambda t, p: float("nan"), nan, project=project, direction="minimize", metric="loss")


def test_nested_overrides_and_checked_files(tmp_path):
    assert nested_overrides("clv", {"penalizer": 0.1, "a.b.c": 2}) == {"clv": {"penalizer": 0.1, "a": {"b": {"c": 2}}}}
    cfg = load_config(tmp_path / "none")
    good = tmp_path / "good.yaml"
    good.write_text("_study: {name: clv}\nclv: {penalizer: 0.1}\n")
    assert load_overrides(good, cfg) == {"clv": {"penalizer": 0.1}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("clv: {penalty: 0.1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'clv.penalty' \(did you mean 'penalizer'\?\)"):
        load_overrides(bad, cfg)
    with pytest.raises(ConfigError, match="no such tuned-parameters file"):
        load_overrides(tmp_path / "missing.yaml")


def test_cli_tune_names_the_tunable_pipelines(capsys):
    assert main(["tune", "clv"]) == 2
    assert "has no tuner" in capsys.readouterr().err
