"""Figures recorded before the refactors of issue 16, that a refactor must leave as they are.

Every pipeline is trained on a fixed synthetic CRM and the whole base is scored; each pipeline's
metrics and a hash of the score file's values are compared with ``pins/synthetic.json``, recorded on
main before the pipeline code was moved around (``CRMLAB_RECORD_PINS=1 pytest tests/test_behaviour_pins.py``
writes the file again; do that only for a change that is meant to change the numbers, and say so).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from crmlab import pipelines
from crmlab.config import load_config
from crmlab.errors import NotApplicable

from .conftest import synthetic_project

pytestmark = pytest.mark.slow

PINS = Path(__file__).with_name("pins") / "synthetic.json"
RECORD = os.environ.get("CRMLAB_RECORD_PINS") == "1"


def _numbers(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and not k.endswith(("_seconds", "seconds")) and "time" not in k:
            out[k] = x
    return out


def _score_hash(scores: pd.DataFrame) -> str:
    values = scores.drop(columns=[c for c in scores.columns if c.endswith("_model_version")])
    rounded = values.apply(lambda s: s.round(9) if pd.api.types.is_float_dtype(s) else s)
    return f"{int(pd.util.hash_pandas_object(rounded, index=False).sum()) & 0xFFFFFFFFFFFF:012x}"


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    from crmlab.scoring import score_customers

    root = tmp_path_factory.mktemp("pins")
    sets = [*synthetic_project(root, n_customers=600, seed=17, tables=("transactions", "customers")),
            "project.tracking.enabled=false"]
    cfg = load_config(None, sets)
    out: dict[str, dict] = {}
    for name in pipelines.training_order():
        try:
            result = pipelines.get(name).load("trainer")(cfg)
        except NotApplicable:  # crosssell: this log has no product column (the pins predate the pipeline)
            continue
        out[name] = _numbers(result.metrics)
    scores = score_customers(cfg, source="models")
    out["scores"] = {"rows": len(scores), "columns": list(scores.columns), "hash": _score_hash(scores)}
    return out


def test_the_figures_are_those_recorded_before_the_refactor(figures):
    if RECORD:
        PINS.parent.mkdir(exist_ok=True)
        PINS.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PINS.read_text())
    assert set(figures) == set(pinned)
    for name in [n for n in pipelines.names() if n in pinned]:
        assert set(figures[name]) == set(pinned[name]), name
        for metric, value in pinned[name].items():
            assert figures[name][metric] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, metric)
    assert figures["scores"] == pinned["scores"]
