"""``crmlab init``: the mapping, encoding, windows and configs it guesses from a user's files."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from crmlab.cli import main
from crmlab.config import load_config
from crmlab.errors import ConfigError
from crmlab.init import (
    guess_kind,
    guess_mapping,
    parse_money,
    plan_pipelines,
    profile_span,
    read_sample,
    run_init,
    sniff_file,
)
from crmlab.workflow import prepare_data

from .conftest import REPO
from .zoo import ZOO, make


def _orders(n_customers=40, n=400, seed=0, start="2023-02-01", days=300):
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, days, n), unit="D")
    return pd.DataFrame({"cid": [f"C{i:03d}" for i in rng.integers(0, n_customers, n)], "ts": ts,
                         "amount": rng.gamma(3, 20, n).round(2)})


def test_mapping_by_english_headers():
    tx = _orders()
    df = pd.DataFrame({"InvoiceNo": range(len(tx)), "CustomerID": tx["cid"], "InvoiceDate": tx["ts"].dt.strftime(
        "%Y-%m-%d %H:%M:%S"), "Revenue": tx["amount"].astype(str), "Qty": "1", "Country": "UK"}).astype(str)
    m = guess_mapping(df)
    assert {k: g.column for k, g in m.items()} == {"customer_id": "CustomerID", "ts": "InvoiceDate", "amount": "Revenue",
                                                   "order_id": "InvoiceNo", "quantity": "Qty", "region": "Country"}
    assert "100% of values parse as dates" in m["ts"].reason and "'InvoiceDate'" in m["ts"].reason


def test_mapping_by_chinese_headers_and_values():
    df = pd.DataFrame({"会员ID": ["A1", "A2", "A1"], "订单日期": ["2024年3月4日", "2024年3月5日", "2024年4月1日"],
                       "实付金额": ["¥1,234.50", "￥99", "(12.00)"]})
    m = guess_mapping(df)
    assert (m["customer_id"].column, m["ts"].column, m["amount"].column) == ("会员ID", "订单日期", "实付金额")
    assert "%Y年%m月%d日" in m["ts"].reason
    assert parse_money(df["实付金额"]).tolist() == [1234.5, 99.0, -12.0]


def test_mapping_by_content_when_headers_say_nothing():
    tx = _orders()
    df = pd.DataFrame({"Beleg": [f"B{i}" for i in range(len(tx))], "Kunde": tx["cid"],
                       "Datum": tx["ts"].dt.strftime("%d.%m.%Y"), "Betrag": tx["amount"].map("{:.2f}".format),
                       "Menge": np.random.default_rng(1).integers(1, 5, len(tx)).astype(str)})
    m = guess_mapping(df)
    assert (m["customer_id"].column, m["ts"].column, m["amount"].column) == ("Kunde", "Datum", "Betrag")
    assert all(m[k].reason.startswith("by content") for k in ("customer_id", "ts", "amount"))
    assert "40 distinct values repeating over 400 rows" in m["customer_id"].reason  # not the unique Beleg


def test_a_usual_header_whose_values_do_not_fit_is_not_taken():
    df = pd.DataFrame({"customer": ["a", "b", "a", "c"], "date": ["n/a", "soon", "later", "?"],
                       "created": ["2024-01-02", "2024-01-05", "2024-02-01", "2024-03-01"],
                       "amount": ["x", "y", "z", "w"], "paid": ["1.50", "2.00", "3.25", "4.00"]})
    m = guess_mapping(df)
    assert m["ts"].column == "created" and m["amount"].column == "paid"


def test_kind_of_a_file():
    tel = pd.DataFrame({"CustomerID": ["1", "2"], "Tenure": ["3", "40"], "Churn": ["Yes", "No"]})
    assert guess_kind(tel)[0] == "customers"
    no_label = pd.DataFrame({"CustomerID": ["1", "2"], "SignupDate": ["2024-01-01", "2024-02-01"],
                             "SeniorCitizen": ["0", "1"]})
    assert "churn" not in guess_mapping(no_label, "customers")  # a 0/1 attribute is not taken for the label
    sales = pd.DataFrame({"Store": ["s1", "s1", "s2"], "Week": ["2024-01-01", "2024-01-08", "2024-01-01"],
                          "Weekly_Sales": ["10.5", "11.0", "3.2"]})
    assert guess_kind(sales)[0] == "sales"
    tx = pd.DataFrame({"CustomerID": ["1", "2", "1"], "InvoiceDate": ["2024-01-01", "2024-01-02", "2024-01-05"],
                       "Revenue": ["1.5", "2", "3"]})
    assert guess_kind(tx)[0] == "transactions"


def test_encoding_and_separator_of_a_gb18030_semicolon_file(tmp_path):
    path = tmp_path / "导出.csv"
    pd.DataFrame({"客户编号": ["甲1", "乙2"], "下单时间": ["2024/3/4", "2024/3/5"], "金额": ["1,5", "2"]}).to_csv(
        path, index=False, sep=";", encoding="gb18030")
    encoding, sep, why = sniff_file(path)
    assert (encoding, sep) == ("gb18030", ";") and "GB18030" in why
    df, read = read_sample(path)
    assert list(df.columns) == ["客户编号", "下单时间", "金额"] and df.iloc[0, 0] == "甲1"


def test_profile_span_by_hand():
    tx = pd.DataFrame({"customer_id": ["a", "a", "a", "b", "c", "c"],
                       "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-11", "2024-02-01", "2024-01-05",
                                             "2024-03-05"])})
    s = profile_span(tx)
    assert (s.first, s.last, s.customers, s.repeat_customers) == (date(2024, 1, 1), date(2024, 3, 5), 3, 2)
    assert s.median_gap_days == 35.0  # gaps: a 10 days (same-day rows are one purchase day), c 60 days


def test_a_mistyped_year_does_not_become_as_of():
    """The cleaning rejects a date after today and one implausibly early for the column's bulk; init
    guesses as_of from the dates it keeps, and its comment counts and shows the rows left out."""
    days = pd.date_range("2024-01-01", periods=60, freq="7D")
    tx = pd.DataFrame({"customer_id": [f"c{i % 9}" for i in range(60)] + ["c1", "c2"],
                       "ts": [*days, pd.Timestamp("2099-11-28"), pd.Timestamp("1901-01-01")]})
    s = profile_span(tx, today=date(2026, 12, 4))
    assert (s.first, s.last, s.rows, s.left_out) == (days[0].date(), days[-1].date(), 60, 2)
    # the early bound, as the cleaning derives it from the other 61 dates: 10th percentile 2024-02-05
    # (the 7th date), 90th 2025-01-06, ten times their 336 days before the former: 2014-11-24
    assert s.left_out_why == "1 dated after 2026-12-04 (e.g. 2099-11-28); 1 before 2014-11-24 (e.g. 1901-01-01)"
    value, why = plan_pipelines(s).values["project"]["as_of"]
    assert value == days[-1].date() and "2 row(s) left out, which the cleaning will reject" in why
    # the clean log alone: nothing left out, the same span
    clean = profile_span(tx.iloc[:60], today=date(2026, 12, 4))
    assert (clean.first, clean.last, clean.left_out) == (s.first, s.last, 0)
    assert "left out" not in plan_pipelines(clean).values["project"]["as_of"][1]


def test_plan_of_eleven_months_and_few_accounts():
    from crmlab.init import Span

    plan = plan_pipelines(Span(date(2023, 1, 16), date(2023, 12, 18), 300, 30, 23, 41.0))
    verdicts = {v.pipeline: v for v in plan.verdicts}
    # the pipelines' own auto rules, said: 336 days leave no room for two 182-day training snapshots
    assert "horizon 91 days, 3 snapshots 91 days apart" in verdicts["churn"].reason
    assert "a 182-day horizon needs 485 days" in verdicts["churn"].reason
    assert "23 repeat customers, few for Gamma-Gamma" in verdicts["clv"].reason
    assert "seasonality off" in verdicts["forecast"].reason
    assert plan.values["forecast"]["season_length"][0] == 1
    # windows stay auto (they follow the data as it grows); the comment says what auto is today:
    # the CLV holdout ends on the last date, a third of the 48-week span (336 days) to judge on
    assert plan.values["clv"]["holdout_weeks"] == ("auto", "39 weeks, or a third of the span when shorter: 16 weeks "
                                                   "on this data")
    cal_end = date(2023, 12, 18) - timedelta(weeks=16)
    assert plan.values["clv"]["calibration_end"] == ("auto", f"as_of minus the holdout: {cal_end} on this data")
    assert plan.values["churn"]["horizon_days"][0] == "auto" and "91 days on this data" in plan.values["churn"]["horizon_days"][1]
    assert plan.values["project"]["as_of"][0] == date(2023, 12, 18)


def _yaml_lines_without_comment(path):
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        body = line.split("#", 1)[0].rstrip()
        if body and not body.endswith(":") and "#" not in line:
            out.append(line)
    return out


@pytest.mark.parametrize("name", list(ZOO))
def test_init_on_each_zoo_data_set_maps_it_and_writes_loadable_commented_configs(tmp_path, name):
    data = make(name, tmp_path / "data")
    result = run_init(data.files, customers=data.customers, config_dir=tmp_path / "configs")
    assert result.missing == []
    for t in result.tables:
        assert {k: t.columns.get(k) for k in data.mapping[t.kind]} == data.mapping[t.kind]
    cfg = load_config(tmp_path / "configs")
    for kind, expected in data.mapping.items():
        assert {k: getattr(cfg.project.data, kind).columns.get(k) for k in expected} == expected
    for path in result.written:
        assert _yaml_lines_without_comment(path) == [], path  # every guess says why
        assert not re.search(r"199[78]-", path.read_text(encoding="utf-8"))  # no demo dates


def test_day_first_dates_are_read_day_first_after_init(tmp_path):
    tx = _orders(n=200, start="2024-01-01", days=200)
    path = tmp_path / "orders.csv"
    pd.DataFrame({"CustomerID": tx["cid"], "OrderDate": tx["ts"].dt.strftime("%d/%m/%Y"),
                  "Total": tx["amount"]}).to_csv(path, index=False)
    run_init([path], config_dir=tmp_path / "configs")
    cfg = load_config(tmp_path / "configs", ["project.cleaning.max_date=2030-01-01"])
    assert cfg.project.cleaning.date_formats[0] == "%d/%m/%Y"
    clean = prepare_data(cfg.project).tables.transactions
    assert sorted(clean["ts"].dt.normalize().unique()) == sorted(tx["ts"].unique())  # 04/03 is 4 March


def test_chinese_dates_parse_after_init(tmp_path):
    data = make("chinese", tmp_path / "data")
    run_init(data.files, config_dir=tmp_path / "configs")
    cfg = load_config(tmp_path / "configs", ["project.cleaning.max_date=2030-01-01"])
    assert cfg.project.data.transactions.encoding == "gb18030"
    raw = pd.read_csv(data.files[0], encoding="gb18030", dtype=str)
    clean = prepare_data(cfg.project).tables.transactions
    assert len(clean) == len(raw)  # no date (or amount) went to the rejects
    first = raw["下单时间"].iloc[0]  # e.g. 2023年1月3日
    y, m, d = (int(v) for v in re.findall(r"\d+", first))
    row = clean[clean["order_id"] == raw["订单号"].iloc[0]]
    assert row["ts"].iloc[0] == pd.Timestamp(y, m, d)


def test_refuses_to_overwrite_configs_without_force(tmp_path):
    data = make("minimal", tmp_path / "data")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "project.yaml").write_text("name: mine\n")
    with pytest.raises(ConfigError, match=r"project\.yaml.*--force"):
        run_init(data.files, config_dir=tmp_path / "configs")
    assert (tmp_path / "configs" / "project.yaml").read_text() == "name: mine\n"
    run_init(data.files, config_dir=tmp_path / "configs", force=True)
    assert load_config(tmp_path / "configs").project.data.transactions.columns["customer_id"] == "Kunde"


def test_overrides_replace_a_guess(tmp_path):
    data = make("b2b", tmp_path / "data")
    result = run_init(data.files, config_dir=tmp_path / "configs",
                      overrides={"transactions": {"customer_id": "Sales Rep"}})
    assert result.tables[0].mapping["customer_id"].reason == "set by you"
    assert load_config(tmp_path / "configs").project.data.transactions.columns["customer_id"] == "Sales Rep"


def test_cli_init_without_a_tty_accepts_the_guesses_and_prints_the_table(tmp_path, capsys):
    data = make("b2b", tmp_path / "data")
    code = main(["init", str(data.files[0]), "--dir", str(tmp_path / "cfg")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "What your data can support" in captured.out and "horizon 91 days" in captured.out
    assert "few for Gamma-Gamma" in captured.out
    assert (tmp_path / "cfg" / "churn.yaml").is_file()
    assert yaml.safe_load((tmp_path / "cfg" / "churn.yaml").read_text())["horizon_days"] == "auto"
    code = main(["init", str(data.files[0]), "--dir", str(tmp_path / "cfg"), "--yes"])
    err = capsys.readouterr().err
    assert code == 2 and "--force" in err and "Traceback" not in err


def test_cli_init_writes_a_placeholder_and_names_the_key_to_fill(tmp_path, capsys):
    path = tmp_path / "notes.csv"
    pd.DataFrame({"Kunde": ["a", "b", "a"], "Notiz": ["hallo", "welt", "!"], "Wert": ["1.5", "2.5", "3.0"]}).to_csv(
        path, index=False)
    code = main(["init", str(path), "--dir", str(tmp_path / "cfg"), "--yes"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "project.data.transactions.columns.ts" in err and "FILL_IN" in err
    text = (tmp_path / "cfg" / "project.yaml").read_text(encoding="utf-8")
    assert re.search(r"ts: FILL_IN\s+# FILL IN: no column whose values parse as dates", text)
    assert load_config(tmp_path / "cfg").project.data.transactions.columns["ts"] == "FILL_IN"


def test_readme_own_data_section_starts_with_crmlab_init():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Your own data\n(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README has no '## Your own data' section"
    lines = [ln for ln in match.group(1).splitlines() if ln.strip() and not ln.startswith("```")]
    assert lines[0].startswith("crmlab init ")


@pytest.mark.slow
def test_on_a_terminal_init_asks_and_takes_a_correction(tmp_path):
    """A real pseudo-terminal: init shows the mapping, asks, and writes the column the user types."""
    import os
    import sys

    pexpect = pytest.importorskip("pexpect")
    data = make("b2b", tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = pexpect.spawn(sys.executable, ["-m", "crmlab", "init", str(data.files[0]), "--dir", str(tmp_path / "cfg")],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120)
    child.expect(r"Use this mapping\?")
    child.sendline("n")
    child.expect(r"transactions\.customer_id")
    child.sendline("Sales Rep")
    child.expect(r"transactions\.ts")
    child.sendline("")  # keeps the guess
    child.expect(r"transactions\.amount")
    child.sendline("")
    child.expect(r"transactions\.order_id")
    child.sendline("-")  # leaves the guess out
    while child.expect([r"transactions\.\w+ \(a column", pexpect.EOF]) == 0:
        child.sendline("")
    child.close()
    assert child.exitstatus == 0
    columns = load_config(tmp_path / "cfg").project.data.transactions.columns
    assert columns["customer_id"] == "Sales Rep" and columns["ts"] == "Invoice Date" and "order_id" not in columns
    assert "set by you" in (tmp_path / "cfg" / "project.yaml").read_text()


def test_iso_dates_leave_the_cleaning_formats_alone(tmp_path):
    data = make("minimal", tmp_path / "data")
    run_init(data.files, config_dir=tmp_path / "configs")
    assert "cleaning" not in yaml.safe_load((tmp_path / "configs" / "project.yaml").read_text(encoding="utf-8"))


def test_parquet_with_typed_columns(tmp_path):
    tx = _orders()
    path = tmp_path / "orders.parquet"
    pd.DataFrame({"client_id": tx["cid"], "order_ts": tx["ts"], "net_amount": tx["amount"]}).to_parquet(path)
    result = run_init([path], config_dir=tmp_path / "configs")
    assert result.tables[0].columns == {"customer_id": "client_id", "ts": "order_ts", "amount": "net_amount"}
    assert result.span.first == tx["ts"].min().date() and result.span.customers == tx["cid"].nunique()
    cfg = load_config(tmp_path / "configs")
    assert prepare_data(cfg.project).tables.transactions["amount"].sum() == pytest.approx(tx["amount"].sum())


def test_plan_says_whether_crosssell_has_items_to_recommend():
    from crmlab.init import Span

    span = Span(date(2023, 1, 16), date(2023, 12, 18), 3000, 300, 230, 41.0)
    with_items = plan_pipelines(span, item_column="category")
    assert {v.pipeline: v.status for v in with_items.verdicts}["crosssell"] == "ok"
    assert with_items.values["crosssell"]["item_column"][0] == "category"
    without = {v.pipeline: v for v in plan_pipelines(span).verdicts}["crosssell"]
    assert without.status == "no" and "no product_id or category column" in without.reason
