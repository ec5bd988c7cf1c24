"""Input that used to pass cleaning silently and change the numbers (issue 15, items 3, 4, 6, 13, 14).

Each test fails on the cleaner before this change: day/month order was decided per value (the first
format that parsed won), implausible dates and amounts were kept, near-identical ids were four
customers with no note, /dev/zero was read until memory ran out, and a ';'-separated file was one column.
"""

from __future__ import annotations

import os
from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.config import CleaningConfig, TableSource
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables, detect_sep, read_table
from crmlab.errors import DataError
from crmlab.kpis import overall_kpis, period_kpis

TODAY = date(2025, 12, 31)


def _text(data: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v, dtype="str") for k, v in data.items()})


def _clean(tx: pd.DataFrame, **cfg):
    return clean_tables(Tables(transactions=tx), CleaningConfig(**cfg), today=TODAY)


def _uk_and_truth(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    days = pd.Series(pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"))
    tx = _text({"customer_id": [f"c{i % 80}" for i in range(n)], "ts": days.dt.strftime("%d/%m/%Y").tolist(),
                "amount": ["10"] * n})
    return tx, days


# --------------------------------------------------------------------------- 3. day and month, per column


@pytest.mark.parametrize("order", ["as shipped", "reversed"])
def test_a_uk_export_is_read_day_first_whatever_the_order_of_formats(order):
    # The case: %m/%d/%Y used to win for every date whose day is 12 or less (714 of 2,000 swapped).
    tx, truth = _uk_and_truth()
    formats = list(CleaningConfig().date_formats)
    assert formats.index("%m/%d/%Y") < formats.index("%d/%m/%Y")
    res = _clean(tx, date_formats=formats if order == "as shipped" else formats[::-1])
    got = res.tables.transactions["ts"]
    ambiguous = truth.dt.day <= 12
    assert ambiguous.sum() > 600  # the dates a per-value rule would swap
    assert (got.to_numpy() == truth.to_numpy().astype(got.dtype)).all()
    assert res.report.tables["transactions"].date_formats == {"ts": {"%d/%m/%Y": 2000}}
    assert any("%d/%m/%Y, not %m/%d/%Y" in n for n in res.report.tables["transactions"].notes)


def test_a_us_export_stays_month_first():
    tx, truth = _uk_and_truth(seed=1)
    tx["ts"] = truth.dt.strftime("%m/%d/%Y").tolist()
    got = _clean(tx).tables.transactions["ts"]
    assert (got.to_numpy() == truth.to_numpy().astype(got.dtype)).all()


def test_a_column_no_date_decides_is_refused_naming_both_readings():
    tx = _text({"customer_id": ["a", "b", "c"], "ts": ["03/04/2024", "01/02/2024", "2024-05-06"], "amount": ["1"] * 3})
    with pytest.raises(DataError) as err:
        _clean(tx)
    msg = str(err.value)
    assert "column 'ts'" in msg and "'03/04/2024'" in msg
    assert "4 March 2024 (%m/%d/%Y)" in msg and "3 April 2024 (%d/%m/%Y)" in msg
    assert "project.cleaning.day_first" in msg
    # the user says which: both answers are honoured, the ISO date is read either way
    first = _clean(tx, day_first=True).tables.transactions["ts"].dt.strftime("%Y-%m-%d").tolist()
    second = _clean(tx, day_first=False).tables.transactions["ts"].dt.strftime("%Y-%m-%d").tolist()
    assert first == ["2024-04-03", "2024-02-01", "2024-05-06"]
    assert second == ["2024-03-04", "2024-01-02", "2024-05-06"]


def test_a_column_of_both_orders_is_refused():
    tx = _text({"customer_id": ["a", "b", "c"], "ts": ["31/01/2024", "01/31/2024", "05/05/2024"], "amount": ["1"] * 3})
    with pytest.raises(DataError, match=r"mixes dates of two orders.*'31/01/2024'|mixes dates of two orders.*'01/31/2024'"):
        _clean(tx)


def test_dates_that_read_alike_both_ways_need_no_decision():
    # 05/05/2024 and 07/07/2024 are the same day in either order: nothing to refuse.
    tx = _text({"customer_id": ["a", "b"], "ts": ["05/05/2024", "07/07/2024"], "amount": ["1", "2"]})
    assert _clean(tx).tables.transactions["ts"].dt.day.tolist() == [5, 7]


# --------------------------------------------------------------------------- 4. impossible values


def _log(n: int = 60) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=n, freq="5D" if n <= 60 else "D").strftime("%Y-%m-%d").tolist()
    return _text({"customer_id": [f"c{i % 12}" for i in range(n)], "ts": days, "amount": ["20"] * n})


def test_placeholder_and_1600s_dates_are_rejected_with_their_reason():
    tx = _log()
    tx.loc[0, "ts"] = "1900-01-01"
    tx.loc[1, "ts"] = "1600101"  # 7 digits that %Y%m%d reads as 1600-10-01
    tx.loc[2, "ts"] = "2019-06-01"  # five years before the bulk: plausible, kept
    res = _clean(tx)
    why = res.rejects["transactions"]["_reason"].tolist()
    assert len(why) == 2 and all(w.startswith("date implausibly early: ") for w in why)
    assert "1900-01-01 <" in why[0] and "1600-10-01 <" in why[1] and "project.cleaning.min_date" in why[0]
    assert res.tables.transactions["ts"].min() == pd.Timestamp("2019-06-01")


def test_min_date_can_be_set():
    tx = _log()
    res = _clean(tx, min_date=date(2024, 3, 1))
    assert len(res.rejects["transactions"]) == 12  # 2024-01-01 ... 2024-02-25, every fifth day
    assert res.tables.transactions["ts"].min() >= pd.Timestamp("2024-03-01")


def test_a_typed_parquet_date_in_the_year_1600_is_rejected(tmp_path):
    tx = pd.DataFrame({"customer_id": [f"c{i}" for i in range(30)],
                       "ts": np.array(["2024-03-01"] * 29 + ["1600-03-01"], dtype="datetime64[us]"),
                       "amount": np.full(30, 5.0)})
    path = tmp_path / "tx.parquet"
    tx.to_parquet(path)
    res = clean_tables(Tables(transactions=read_table(TableSource(path=path), "transactions")), CleaningConfig(),
                       today=TODAY)
    assert res.rejects["transactions"]["_reason"].tolist()[0].startswith("date implausibly early: 1600-03-01")
    assert len(res.tables.transactions) == 29


def test_infinite_and_overflowing_amounts_are_rejected_and_kpis_stay_finite(tmp_path):
    tx = pd.DataFrame({"customer_id": [f"c{i % 10}" for i in range(40)],
                       "ts": pd.date_range("2024-01-01", periods=40, freq="D"), "amount": np.full(40, 10.0)})
    tx.loc[:2, "amount"] = 1e308  # three of them overflow every sum
    tx.loc[3, "amount"] = np.inf
    path = tmp_path / "tx.parquet"
    tx.to_parquet(path)
    res = clean_tables(Tables(transactions=read_table(TableSource(path=path), "transactions")), CleaningConfig(),
                       today=TODAY)
    assert res.report.tables["transactions"].rejected == {"amount out of range": 3, "unparseable amount": 1}
    t = res.tables.transactions
    by_period = period_kpis(t, as_of=date(2024, 2, 29))
    kpis = overall_kpis(t, by_period, as_of=date(2024, 2, 29))
    values = pd.to_numeric(kpis["value"], errors="coerce").dropna().to_numpy(dtype=float)
    assert len(values) > 3 and np.isfinite(values).all()
    assert np.isfinite(by_period.select_dtypes("number").to_numpy(dtype=float)[~by_period.select_dtypes(
        "number").isna().to_numpy()]).all()


def test_a_customer_with_an_extreme_share_gets_a_note_not_a_reject():
    tx = _log(240)
    extra = _text({"customer_id": ["TEST"] * 3, "ts": ["2024-02-01"] * 3, "amount": ["2000000"] * 3})
    res = _clean(pd.concat([tx, extra], ignore_index=True))
    notes = res.report.tables["transactions"].notes
    assert len(res.tables.transactions) == 243
    assert any("TEST" in n and "of the spend" in n for n in notes), notes
    assert not any("of the rows" in n for n in notes)
    assert not _clean(tx).report.tables["transactions"].notes


# --------------------------------------------------------------------------- 6. customer ids


def _ids_log() -> pd.DataFrame:
    ids = ["123", "00123", "123.0", "1.23E+02", "C123", "c123", "123", "7", "8", "9"]
    return _text({"customer_id": ids, "ts": ["2024-03-01"] * 10, "amount": [str(i) for i in range(10)]})


def test_ids_that_differ_only_by_zeros_suffix_notation_or_case_are_reported_and_kept_apart():
    res = _clean(_ids_log())
    assert (res.report.similar_id_groups, res.report.similar_ids, res.report.similar_ids_merged) == (2, 6, 0)
    assert res.tables.transactions["customer_id"].nunique() == 9
    assert "merge_similar_ids" in res.report.to_text()


def test_similar_ids_merge_when_configured_into_the_id_with_most_rows():
    res = _clean(_ids_log(), merge_similar_ids=True)
    counts = res.tables.transactions["customer_id"].value_counts().to_dict()
    assert counts == {"123": 5, "c123": 2, "7": 1, "8": 1, "9": 1}
    assert dict(zip(res.id_map["source_id"], res.id_map["customer_id"], strict=True)) == {
        "00123": "123", "1.23E+02": "123", "123.0": "123", "C123": "c123"}
    assert res.report.invariant_ok


def test_parquet_float_ids_are_read_as_whole_numbers(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": [123.0, 45.0, np.nan], "ts": pd.to_datetime(["2024-01-01"] * 3),
                  "amount": [1.0, 2.0, 3.0]}).to_parquet(path)
    res = clean_tables(Tables(transactions=read_table(TableSource(path=path), "transactions")), CleaningConfig(),
                       today=TODAY)
    assert res.tables.transactions["customer_id"].tolist() == ["123", "45"]


# --------------------------------------------------------------------------- 13, 14. what is read


def test_devices_and_pipes_are_refused_before_reading(tmp_path):
    with pytest.raises(DataError, match="not a regular file"):
        read_table(TableSource(path="/dev/zero"), "transactions")
    fifo = tmp_path / "tx.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # would block forever if opened
        read_table(TableSource(path=fifo), "transactions")


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe"), (",", "comma")])
def test_the_separator_is_detected(tmp_path, sep, name):
    path = tmp_path / "tx.csv"
    rows = [["customer_id", "ts", "amount", "note"], ["c1", "2024-01-01", '"1,234.50"', '"a;b|c\td"'],
            ["c2", "2024-01-02", "7", "x"]]
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    assert detect_sep(path, "utf-8") == (sep, f"{name}-separated header of 4 columns")
    df = read_table(TableSource(path=path), "transactions")
    assert df["amount"].tolist() == ["1,234.50", "7"] and df["note"].tolist() == ["a;b|c\td", "x"]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_wrong_separator_names_the_right_one(tmp_path, sep):
    path = tmp_path / "tx.csv"
    path.write_text(sep.join(["customer_id", "ts", "amount"]) + "\n" + sep.join(["c1", "2024-01-01", "5"]) + "\n")
    with pytest.raises(DataError) as err:
        read_table(TableSource(path=path, sep=","), "transactions")
    assert f"project.data.transactions.sep: {sep!r}" in str(err.value)


def test_an_outlier_note_reaches_the_kpis_and_the_report(tmp_path):
    from crmlab.config import PIPELINES, load_config
    from crmlab.kpis import run_kpis
    from crmlab.report import read_pipeline_outputs, render_html

    tx = _log(240)
    tx.loc[len(tx)] = ["TEST", "2024-02-01", "90000000"]
    path = tmp_path / "tx.csv"
    tx.to_csv(path, index=False)
    cfg = load_config(None, [f"project.data.transactions.path={path}", "project.cleaning.max_date=2025-12-31",
                             "kpis.clv_source=none", f"project.output.dir={tmp_path / 'out'}",
                             f"project.output.models_dir={tmp_path / 'models'}", "project.tracking.enabled=false"])
    k = run_kpis(cfg, log_run=False)
    assert any("of the spend" in n for n in k.data_notes)
    assert any(line.startswith("data: transactions: one customer (TEST)") for line in k.summary())
    pipelines = {p: read_pipeline_outputs(tmp_path / "models", p) for p in PIPELINES}
    assert "holds 100% of the spend" in render_html(k, pipelines, {})


def test_a_european_export_semicolons_and_decimal_commas(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Kunde;Datum;Betrag\nK1;31.01.2024;12,50\nK2;01.02.2024;1.234,50\nK1;05.02.2024;7\n"
                    "K3;06.02.2024;(2,00)\n", encoding="utf-8")
    raw = read_table(TableSource(path=path, columns={"customer_id": "Kunde", "ts": "Datum", "amount": "Betrag"}),
                     "transactions")
    res = clean_tables(Tables(transactions=raw), CleaningConfig(), today=TODAY)
    t = res.tables.transactions
    assert t["amount"].tolist() == [12.5, 1234.5, 7.0, -2.0]
    assert t["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-31", "2024-02-01", "2024-02-05", "2024-02-06"]
    assert res.report.tables["transactions"].standardised["amount: decimal comma read as a point"] == 3


def test_a_column_of_both_decimal_marks_keeps_the_point_and_rejects_the_rest():
    tx = _text({"customer_id": ["a", "b", "c"], "ts": ["2024-01-01"] * 3, "amount": ["12.50", "3.25", "12,50"]})
    res = _clean(tx)
    assert res.tables.transactions["amount"].tolist() == [12.5, 3.25]
    assert res.rejects["transactions"]["_reason"].tolist() == ["unparseable amount: '12,50'"]


def test_id_key_strips_leading_zeros_as_the_lookahead_did():
    """id_key's RE2-friendly "^0+(\\d)" -> "\\1" (Arrow, no lookahead) against the "^0+(?=\\d)" it
    replaced, run with Python's re, on hand-picked ids and 20,000 random ones of zeros, digits,
    letters, signs and dots."""
    import re

    from crmlab.data.persons import id_key

    rng = np.random.default_rng(7)
    alphabet = np.array(list("0000123a.+-E"))
    random_ids = ["".join(rng.choice(alphabet, size=rng.integers(1, 7))) for _ in range(20_000)]
    ids = pd.Series(["000", "0012", "00a", "0", "0.0", "007x", "c007", "+0012", *random_ids], dtype="str")
    key = id_key(ids)
    # the old last step, applied with Python's re to what the earlier steps made of the ids
    before_last = key.copy()  # the last step is idempotent, so re-applying the old one to its output ...
    lookahead = [re.sub(r"^0+(?=\d)", "", k) for k in before_last]
    assert key.tolist() == lookahead  # ... changes nothing,
    assert key.iloc[:8].tolist() == ["0", "12", "0a", "0", "0", "7x", "c007", "+0012"]  # hand-worked
    # and on the raw lower-cased ids, the two regular expressions strip the same zeros
    lowered = [s.lower() for s in ids]
    arrow = pd.Series(lowered, dtype="str").str.replace(r"^0+(\d)", r"\1", regex=True).tolist()
    assert arrow == [re.sub(r"^0+(?=\d)", "", s) for s in lowered]
