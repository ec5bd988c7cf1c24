"""Satisfaction: NPS and CSAT worked out by hand with their intervals, by period and lifecycle stage with
small-sample notes, and the tables in crmlab kpis and the report. (The surveys table's cleaning and
synthetic generator: tests/data/test_surveys.py; the survey features: tests/features/test_surveys.py.)"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from crmlab.config import load_config
from crmlab.satisfaction import csat_figure, nps_figure, satisfaction_table, wilson_interval

TEN = [10, 10, 9, 9, 9, 8, 7, 6, 3, 0]


def test_nps_of_ten_answers_by_hand():
    # 5 promoters (9-10), 2 passives, 3 detractors (0-6): NPS = 100 (0.5 - 0.3) = 20 points;
    # Var = (0.5 + 0.3 - 0.2^2) / 10 = 0.076, so the 95% margin is 1.959964 x 100 x sqrt(0.076) = 54.03 points
    fig = nps_figure(TEN)
    assert fig["answers"] == 10 and fig["value"] == pytest.approx(20.0)
    assert fig["margin"] == pytest.approx(1.959964 * 100 * math.sqrt(0.076), rel=1e-6)
    assert (round(fig["margin"], 2), round(fig["low"], 2), round(fig["high"], 2)) == (54.03, -34.03, 74.03)
    assert (fig["top_share"], fig["bottom_share"]) == (0.5, 0.3)
    # at 90%, z = 1.644854
    assert nps_figure(TEN, level=0.9)["margin"] == pytest.approx(164.4854 * math.sqrt(0.076), rel=1e-6)
    # every answer a promoter: NPS 100, no spread, and the interval stays within [-100, 100]
    assert nps_figure([9, 10, 10])["low"] == 100.0


def test_csat_by_hand_with_wilson_interval():
    # 5 of 8 answers are 4-5: CSAT 0.625. Wilson at 95%, z^2 = 3.841459:
    # centre (0.625 + 3.841459/16) / (1 + 3.841459/8) = 0.584449,
    # half 1.959964 sqrt(0.625 x 0.375 / 8 + 3.841459 / 256) / 1.480182 = 0.278707
    fig = csat_figure([5, 5, 4, 4, 4, 3, 2, 1])
    assert fig["value"] == 0.625 and fig["bottom_share"] == 0.25
    assert (round(fig["low"], 4), round(fig["high"], 4)) == (0.3057, 0.8632)
    # no satisfied answer of 10: the interval is [0, z^2 / (n + z^2)] = [0, 0.2775], never below 0
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(3.841459 / 13.841459, rel=1e-6)


def _surveys(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "ts": pd.to_datetime([r[1] for r in rows]),
                         "score": [float(r[2]) for r in rows], "scale": [r[3] for r in rows]})


def test_satisfaction_table_by_period_stage_and_segment_with_small_n_notes():
    rows = [(f"c{i}", "2024-01-15", s, "nps") for i, s in enumerate(TEN)]
    rows += [("c0", "2024-02-10", 2, "nps"), ("c1", "2024-02-11", 10, "nps"), ("c0", "2024-06-01", 0, "nps")]
    rows += [("c2", "2024-02-01", 5, "csat"), ("c3", "2024-02-02", 2, "csat")]
    stages = pd.Series({"c0": "lapsed", "c1": "mature"} | {f"c{i}": "growing" for i in range(2, 10)})
    sat = satisfaction_table(_surveys(rows), as_of=pd.Timestamp("2024-03-31").date(), period="M", small_n=100,
                             stages=stages, stage_order=["growing", "mature", "lapsed"])
    by = sat.set_index(["by", "group", "metric"])
    # overall: the ten answers plus 2 and 10 in February (the June answer is after as_of)
    overall = by.loc[("overall", "all", "nps")]
    assert overall["answers"] == 12 and overall["value"] == pytest.approx(100 * (6 - 4) / 12)
    assert by.loc[("period", "2024-01", "nps"), "value"] == pytest.approx(20.0)
    assert by.loc[("period", "2024-01", "nps"), "note"] == "NPS of 10 answers: ±54 points"
    assert by.loc[("period", "2024-02", "csat"), "value"] == 0.5
    # by stage, each customer's latest NPS answer: c0's 2 (lapsed), c1's 10 (mature), 8 others' first answers
    assert by.loc[("lifecycle_stage", "lapsed", "nps"), "value"] == -100.0
    assert by.loc[("lifecycle_stage", "mature", "nps"), "value"] == 100.0
    growing = by.loc[("lifecycle_stage", "growing", "nps")]
    assert growing["answers"] == 8 and growing["value"] == pytest.approx(100 * (3 - 3) / 8)
    assert list(sat.loc[sat["by"] == "lifecycle_stage", "group"].unique()) == ["growing", "mature", "lapsed"]
    assert "segment" not in set(sat["by"])  # no segments given: no rows


def test_kpis_and_report_show_nps_and_lifecycle(tmp_path):
    from crmlab.data.synth import write_synthetic
    from crmlab.data.synth_surveys import write_synthetic_surveys
    from crmlab.report import write_report

    paths = write_synthetic(tmp_path / "synth", n_customers=300, seed=9)
    surveys = write_synthetic_surveys(tmp_path / "synth", n_customers=300, seed=9)
    cfg = load_config(None, [f"project.data.transactions.path={paths['transactions']}",
                             f"project.data.customers.path={paths['customers']}",
                             f"project.data.surveys.path={surveys}", "project.cleaning.max_date=2024-12-31",
                             "project.tracking.enabled=false", f"project.output.dir={tmp_path / 'out'}",
                             f"project.output.models_dir={tmp_path / 'models'}", "kpis.clv_source=none"])
    result = write_report(cfg, log_run=False)
    k = result.kpis
    sat = k.satisfaction
    overall = sat[(sat["by"] == "overall") & (sat["metric"] == "nps")].iloc[0]
    assert overall["low"] < overall["value"] < overall["high"] and overall["answers"] > 100
    assert {"overall", "period", "lifecycle_stage"} <= set(sat["by"])
    assert (tmp_path / "out" / "kpis" / "satisfaction.csv").is_file()
    assert (tmp_path / "out" / "kpis" / "lifecycle_stages.csv").is_file()
    assert any(line.startswith("NPS ") for line in k.summary())
    html = result.path.read_text()
    assert 'id="satisfaction"' in html and 'id="lifecycle"' in html and 'data-chart="satisfaction.png"' in html
