"""The pipeline records (crmlab.pipelines) are the one place that lists the pipelines (issue 16 item 1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import crmlab
from crmlab import pipelines
from crmlab.config import PIPELINES, CrmlabConfig

SRC = Path(crmlab.__file__).parent


@pytest.mark.parametrize("record", pipelines.records(), ids=lambda r: r.name)
def test_every_reference_of_a_record_is_a_function(record):
    for role in ("trainer", "evaluator", "scorer", "tuner", "score_inputs"):
        if getattr(record, role) is not None:
            assert callable(record.load(role)), (record.name, role)
    assert record.primary_metric not in record.key_metrics


def test_the_rest_of_crmlab_reads_the_records():
    assert PIPELINES == pipelines.names()
    assert set(CrmlabConfig.model_fields) >= set(pipelines.names())  # each pipeline has its config section
    assert pipelines.training_order()[0] == "clv" and set(pipelines.training_order()) == set(pipelines.names())
    assert {"score_" + name for name in pipelines.names()} <= set(crmlab.__all__)
    with pytest.raises(LookupError, match="the clv pipeline has no tuner"):
        pipelines.get("clv").load("tuner")
    with pytest.raises(KeyError, match="unknown pipeline 'churm'; choose one of churn, clv"):
        pipelines.get("churm")


def test_no_module_keeps_its_own_list_of_pipelines():
    """A line naming three or more pipelines outside crmlab/pipelines.py is a list kept by hand (the
    issue counted 15 of them in 8 files): it would miss the next pipeline."""
    quoted = [re.compile(rf"""["']{name}["']""") for name in pipelines.names()]
    lists = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
             for path in sorted(SRC.rglob("*.py")) if path.name != "pipelines.py"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if sum(bool(q.search(line)) for q in quoted) >= 3]
    assert lists == []


def test_the_command_line_has_a_train_command_per_record():
    from typer.main import get_command

    from crmlab.cli import train_app

    commands = get_command(train_app).commands
    assert set(commands) == {"all", *pipelines.names()}
    tuned = {name for name, cmd in commands.items() if any(p.name == "tuned" for p in cmd.params)}
    assert tuned == set(pipelines.tunable())


def test_a_new_package_with_a_record_is_a_pipeline(tmp_path, monkeypatch):
    """Adding a pipeline is a package with its record: no list anywhere names it."""
    import sys

    import crmlab

    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "record.py").write_text(
        "from crmlab.pipelines import Pipeline\n"
        "RECORD = Pipeline(name='toy', title='Toy', summary='a toy', trainer='m:f', evaluator='m:f', scorer='m:f',\n"
        "                  primary_metric='x', higher_is_better=True, key_metrics=(), scores_customers=False,\n"
        "                  position=2)\n")
    monkeypatch.setattr(crmlab, "__path__", [*crmlab.__path__, str(tmp_path)])
    pipelines._by_name.cache_clear()
    try:
        assert pipelines.names() == ("churn", "clv", "segmentation", "toy", "forecast", "crosssell")  # position
        assert pipelines.get("toy").summary == "a toy" and "toy" not in pipelines.customer_models()
    finally:
        monkeypatch.undo()
        pipelines._by_name.cache_clear()
        sys.modules.pop("crmlab.toy.record", None)
        sys.modules.pop("crmlab.toy", None)
    assert "toy" not in pipelines.names()


def test_finding_the_records_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from crmlab import pipelines; pipelines.records(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'lightgbm', 'sklearn', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
