"""Lifecycle stages: each rule on a customer made by hand, the transition matrix of six customers
between two dates, and the stages in crmlab kpis, crmlab score and crmlab lifecycle migrate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.config import LifecycleConfig, load_config
from crmlab.data.io import Tables
from crmlab.lifecycle import (
    NOT_A_CUSTOMER,
    RULE_ORDER,
    STAGES,
    lifecycle_inputs,
    lifecycle_stages,
    migrate_lifecycle,
    typical_gap_days,
)

BASE = pd.Timestamp("2024-01-01")
#: typical gap 10 days (so new_days = 10), the other thresholds at their defaults
CFG = LifecycleConfig(typical_gap_days=10)


def _tx(purchases: dict[str, list]) -> pd.DataFrame:
    """customer -> [day offsets] or [(day offset, amount)] (amount 10 by default)."""
    rows = [(c, BASE + pd.Timedelta(days=int(p[0] if isinstance(p, tuple) else p)),
             float(p[1] if isinstance(p, tuple) else 10.0)) for c, ps in purchases.items() for p in ps]
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])


def _day(d: int) -> pd.Timestamp:
    return BASE + pd.Timedelta(days=d)


EVERY_10 = list(range(0, 101, 10))  # 11 purchase days, gap 10: usual gap (100 + 10) / (10 + 1) = 10

#: one customer per rule, cut-off day 100 (comments: the rule that decides and its numbers)
HAND_MADE = {
    # recency 80, usual gap (20 + 10) / 3 = 10: overdue 8 >= 3
    "lapsed": [0, 10, 20],
    # recency 20, usual gap 10: overdue 2 >= 1.5
    "at_risk_silent": [60, 70, 80],
    # W = 3 x 10 = 30: spend 30 in (70, 100] vs 300 in (40, 70]: trend 0.1 <= 0.5
    "at_risk_declining": [(d, 100.0 if d <= 70 else 10.0) for d in EVERY_10],
    # one purchase 5 days ago: tenure 5 <= new_days 10 (its overdue 5 / 10 = 0.5)
    "new": [95],
    # gaps 10, 10, 75: last gap 75 >= 3 x prior gap (20 + 10) / 3 = 10; overdue 5 / 26.25
    "reactivated": [0, 10, 20, 95],
    # spend 60 in (70, 100] vs 30 in (40, 70]: trend 2 >= 1.25
    "growing_spend": [(d, 20.0 if d > 70 else 10.0) for d in EVERY_10],
    # tenure 20 < 2 W = 60: too young for a trend
    "growing_young": [80, 90, 100],
    # old enough, at its rhythm, spend steady (trend 1)
    "mature": EVERY_10,
}


def test_each_rule_decides_its_hand_made_customer():
    out = lifecycle_stages(_tx(HAND_MADE), as_of=_day(100), cfg=CFG)
    got = dict(zip(out["customer_id"], out["lifecycle_stage"], strict=True))
    assert got == {name: name.split("_")[0] if not name.startswith("at_risk") else "at_risk" for name in HAND_MADE}
    row = out.set_index("customer_id")
    assert row.loc["lapsed", "overdue"] == pytest.approx(8.0)
    assert row.loc["at_risk_declining", "spend_trend"] == pytest.approx(0.1)
    assert row.loc["reactivated", ["usual_gap_days", "last_gap_days", "prior_gap_days"]].tolist() == \
        pytest.approx([26.25, 75.0, 10.0])
    assert row.loc["growing_spend", "spend_trend"] == pytest.approx(2.0)
    assert np.isnan(row.loc["growing_young", "spend_trend"])  # younger than two windows
    assert out.attrs["new_days"] == 10.0


def test_p_alive_rules_come_first():
    """The mature customer of the hand-made table, judged with a CLV model's P(alive)."""
    tx = _tx({"m": EVERY_10, "n": [95]})
    for p, stage in ((0.05, "lapsed"), (0.3, "at_risk"), (0.9, "mature")):
        out = lifecycle_stages(tx, as_of=_day(100), cfg=CFG, p_alive=pd.Series({"m": p, "n": 1.0}))
        assert out.set_index("customer_id").loc["m", "lifecycle_stage"] == stage
        assert out.set_index("customer_id").loc["n", "lifecycle_stage"] == "new"


def test_p_alive_in_the_rows_order_by_id_or_partial_gives_the_same_stages():
    """Scoring passes P(alive) in the stage rows' own order (taken as it is); any other order, extra or
    repeated ids, or a missing customer go by id: the same stages either way."""
    from crmlab.features.frames import day_number
    from crmlab.features.past import past_transactions

    tx = _tx(HAND_MADE)
    ids = sorted(HAND_MADE)
    p = pd.Series(np.linspace(0.05, 0.95, len(ids)), index=pd.Index(ids, dtype="str"))
    aligned = lifecycle_stages(tx, as_of=_day(100), cfg=CFG, p_alive=p)
    assert list(aligned["customer_id"]) == ids
    by_id = lifecycle_stages(tx, as_of=_day(100), cfg=CFG, p_alive=p.iloc[::-1])
    extra = pd.concat([p, pd.Series({"stranger": 0.0, ids[0]: 0.5})])
    repeated = lifecycle_stages(tx, as_of=_day(100), cfg=CFG, p_alive=extra)
    pd.testing.assert_frame_equal(aligned, by_id)
    pd.testing.assert_frame_equal(aligned, repeated)  # the first of a repeated id counts
    assert aligned.set_index("customer_id").loc[ids[0], "lifecycle_stage"] == "lapsed"  # P(alive) 0.05
    partial = lifecycle_stages(tx, as_of=_day(100), cfg=CFG, p_alive=p.drop(ids[0]))
    assert np.isnan(partial["p_alive"].iloc[0]) and partial["lifecycle_stage"].iloc[0] != "lapsed"
    # the past rows made once by the caller (as scoring shares them with the features): the same frame
    past = past_transactions(tx, day_number(_day(100).date()))
    pd.testing.assert_frame_equal(lifecycle_stages(None, as_of=_day(100), cfg=CFG, p_alive=p, past=past), aligned)


def test_the_first_rule_that_holds_wins():
    """A customer that is both silent for 1.5 gaps and new (first purchase 9 days ago, bought again 1
    day later: its shrunk gap is (1 + 10) / 2 = 5.5, so 8 silent days are 1.45 gaps, at 2 purchases 1 day
    apart and a silence of 9 days: 1.64 gaps) is at_risk, which is tried before new."""
    tx = _tx({"c": [90, 91]})
    out = lifecycle_stages(tx, as_of=_day(100), cfg=CFG)
    assert out["tenure_days"].iloc[0] == 10 and out["overdue"].iloc[0] == pytest.approx(9 / 5.5)
    assert out["lifecycle_stage"].iloc[0] == "at_risk"
    assert RULE_ORDER.index("at_risk") < RULE_ORDER.index("new")
    assert set(RULE_ORDER) == set(STAGES)


def test_rows_after_the_cut_off_change_nothing():
    tx = _tx(HAND_MADE)
    later = pd.concat([tx, _tx({"lapsed": [101, 150], "new2": [120]})], ignore_index=True)
    a = lifecycle_stages(tx, as_of=_day(100), cfg=CFG)
    b = lifecycle_stages(later, as_of=_day(100), cfg=CFG)
    pd.testing.assert_frame_equal(a, b)


def test_typical_gap_is_the_median_of_the_repeat_customers_mean_gaps():
    tx = _tx({"a": [0, 10, 20], "b": [0, 30], "c": [0, 2, 4, 6], "one": [5], "late": [0, 500]})
    # mean gaps: a 10, b 30, c 2; one-time and after-cut-off rows do not count ("late" has one day by 100)
    assert typical_gap_days(tx, as_of=_day(100)) == 10.0
    auto = lifecycle_inputs(tx, as_of=_day(100), typical_gap=10.0, prior_gaps=0)
    assert auto.set_index("customer_id").loc["one", "usual_gap_days"] == 10.0  # one-time buyer: the typical gap


#: six customers, cut-offs day 100 and day 200 (stages worked out as in the rules test)
SIX = {
    "A": list(range(0, 201, 10)),              # mature -> mature, spends 10 x 10 between the dates
    "B": EVERY_10,                             # mature -> lapsed (silent from day 100)
    "C": [95, 195],                            # new -> reactivated (a 100-day gap after a typical one)
    "D": [0, 10, 20],                          # lapsed -> lapsed
    "E": [150, 160, 170, 180, 190],            # not a customer -> growing (young)
    "F": [80, 90, 100, 110, 120, 130],         # growing (young) -> lapsed (silent 70 days, gap 10)
}


def test_transition_matrix_of_six_customers_across_two_dates():
    cfg = load_config(None, ["lifecycle.typical_gap_days=10", "lifecycle.use_p_alive=false"])
    result = migrate_lifecycle(cfg, _day(100).date(), _day(200).date(), tables=Tables(transactions=_tx(SIX)))
    counts = result.counts()
    assert list(counts.index) == [NOT_A_CUSTOMER, "new", "growing", "mature", "lapsed"]
    assert list(counts.columns) == ["growing", "mature", "lapsed", "reactivated"]
    assert counts.to_numpy().tolist() == [
        [1, 0, 0, 0],  # E
        [0, 0, 0, 1],  # C
        [0, 0, 1, 0],  # F
        [0, 1, 1, 0],  # A, B
        [0, 0, 1, 0],  # D
    ]
    assert result.shares().loc["mature"].tolist() == [0.0, 0.5, 0.5, 0.0]
    rev = result.revenue_by_stage().set_index("stage_at_from")
    assert rev["customers"].to_dict() == {NOT_A_CUSTOMER: 1, "new": 1, "growing": 1, "mature": 2, "lapsed": 1}
    # revenue in (day 100, day 200]: A 100, B 0, C 10, D 0, E 50, F 30
    assert rev["revenue"].to_dict() == {NOT_A_CUSTOMER: 50.0, "new": 10.0, "growing": 30.0, "mature": 100.0,
                                        "lapsed": 0.0}
    cell = result.table.set_index(["from_stage", "to_stage"])
    assert cell.loc[("mature", "mature"), "revenue"] == 100.0 and cell.loc[("mature", "lapsed"), "revenue"] == 0.0
    assert result.summary()[0].startswith("5 customers at 2024-04-10, 1 more by 2024-07-19; 2 (40.0%) kept")


def test_migrate_refuses_dates_in_the_wrong_order():
    from crmlab.errors import ConfigError

    cfg = load_config(None, ["lifecycle.typical_gap_days=10"])
    with pytest.raises(ConfigError, match="--to 2024-04-10 must be after --from 2024-07-19"):
        migrate_lifecycle(cfg, _day(200).date(), _day(100).date(), tables=Tables(transactions=_tx(SIX)))


def _project(tmp_path) -> list[str]:
    path = tmp_path / "tx.csv"
    tx = _tx(SIX)
    tx.assign(ts=tx["ts"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return ["--set", f"project.data.transactions.path={path}", "--set", "project.tracking.enabled=false",
            "--set", f"project.output.dir={tmp_path / 'out'}", "--set", f"project.output.models_dir={tmp_path / 'm'}",
            "--set", "lifecycle.typical_gap_days=10"]


def test_cli_migrate_prints_and_writes_the_transitions(tmp_path, capsys):
    code = main([*_project(tmp_path), "lifecycle", "migrate", "--from", "2024-04-10", "--to", "2024-07-19",
                 "--out", str(tmp_path / "moves.csv")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "row shares" in printed and "revenue by stage at --from" in printed
    moves = pd.read_csv(tmp_path / "moves.csv")
    assert list(moves.columns) == ["from_stage", "to_stage", "customers", "row_share", "revenue"]
    assert moves["customers"].sum() == 6 and moves["revenue"].sum() == 190.0


@pytest.mark.parametrize(("dates", "fragment"), [
    (["--from", "2024-02-30", "--to", "2024-07-19"], "--from: '2024-02-30' is not a date YYYY-MM-DD"),
    (["--from", "2024-04-10", "--to", "July"], "--to: 'July' is not a date"),
    (["--from", "2024-07-19", "--to", "2024-04-10"], "must be after --from"),
    (["--from", "2023-01-01", "--to", "2024-04-10"], "no transaction on or before 2023-01-01"),
])
def test_cli_migrate_bad_dates_are_one_line_exit_2(tmp_path, capsys, dates, fragment):
    code = main([*_project(tmp_path), "lifecycle", "migrate", *dates])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "cleaned" not in line
           and "INFO" not in line]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_kpis_count_customers_and_revenue_by_stage():
    from crmlab.kpis import compute_kpis

    cfg = load_config(None, ["lifecycle.typical_gap_days=10", "kpis.clv_source=none"])
    k = compute_kpis(cfg, _tx(HAND_MADE), as_of=_day(100).date())
    lc = k.lifecycle.set_index("stage")
    assert list(lc.index) == list(STAGES)
    assert lc["customers"].to_dict() == {"new": 1, "growing": 2, "mature": 1, "at_risk": 2, "lapsed": 1,
                                         "reactivated": 1}
    # revenue up to as_of: growing 8 x 10 + 3 x 20 + 3 x 10; at_risk 3 x 10 + 8 x 100 + 3 x 10
    assert lc.loc["growing", "revenue"] == 170.0 and lc.loc["at_risk", "revenue"] == 860.0
    # the period holding as_of (April 2024, from day 91): only day 100, 20 (growing_spend) + 10 (growing_young)
    assert lc.loc["growing", "revenue_last_period"] == 30.0
    assert "lifecycle_stages" in k.tables()
    assert any(line.startswith("lifecycle stages at 2024-04-10: new 1 (12%)") for line in k.summary())
