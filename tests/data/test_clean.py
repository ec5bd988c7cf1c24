"""Cleaning: every rule on tiny hand-made tables, the invariant, personal data kept out of the report."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.config import CleaningConfig, MissingPolicy
from crmlab.data.clean import CleanResult, clean_tables, write_clean_result
from crmlab.data.io import Tables, load_cdnow
from crmlab.errors import ConfigError, DataError

TODAY = date(2024, 12, 31)


def text(data: dict[str, list]) -> pd.DataFrame:
    """A raw table as read_table gives a CSV: every cell text, missing cells NaN."""
    return pd.DataFrame({k: pd.Series(v, dtype="str") for k, v in data.items()})


def tx(rows: list[tuple], columns=("order_id", "customer_id", "ts", "amount")) -> pd.DataFrame:
    return text({c: [r[i] for r in rows] for i, c in enumerate(columns)})


def clean(cfg: CleaningConfig | None = None, **tables) -> CleanResult:
    return clean_tables(Tables(**tables), cfg or CleaningConfig(), today=TODAY)


def reasons(result: CleanResult, table: str = "transactions") -> list[str]:
    return result.rejects[table]["_reason"].tolist()


# --------------------------------------------------------------------------- rule 1: exact duplicates


def test_exact_duplicate_rows_are_dropped_and_counted():
    raw = tx([("1", "a", "2024-01-01", "10"), ("2", "a", "2024-01-01", "10"), ("1", "a", "2024-01-01", "10")])
    res = clean(transactions=raw)
    t = res.report.tables["transactions"]
    assert (t.input_rows, t.exact_duplicates, t.clean_rows, t.rejected_rows) == (3, 1, 2, 0)
    assert res.tables.transactions["order_id"].tolist() == ["1", "2"]


def test_identical_transactions_without_order_id_are_kept_as_repeat_purchases():
    # No order id: two identical rows can be two same-day purchases (as in CDNOW), so both stay.
    raw = text({"customer_id": ["a", "a"], "ts": ["2024-01-01"] * 2, "amount": ["10"] * 2})
    res = clean(transactions=raw)
    t = res.report.tables["transactions"]
    assert (t.clean_rows, t.exact_duplicates, t.identical_rows_kept) == (2, 0, 1)
    forced = clean_tables(Tables(transactions=raw), CleaningConfig(), today=TODAY, exact_duplicates="drop")
    assert forced.report.tables["transactions"].exact_duplicates == 1


# --------------------------------------------------------------------------- rule 2: formats


def test_every_date_format_parses_to_the_same_day():
    written = ["2023-04-05", "2023-04-05 14:03:00", "2023/04/05", "05 Apr 2023", "Apr 05, 2023", "20230405"]
    raw = tx([(str(i), "a", d, "1") for i, d in enumerate(written)])
    res = clean(transactions=raw)
    ts = res.tables.transactions["ts"]
    assert pd.api.types.is_datetime64_any_dtype(ts.dtype)
    assert (ts.dt.normalize() == pd.Timestamp("2023-04-05")).all()
    assert ts.iloc[1] == pd.Timestamp("2023-04-05 14:03:00")
    t = res.report.tables["transactions"]
    assert t.standardised["ts: dates reformatted"] == 4  # slash, two month-name forms, compact
    assert sum(t.date_formats["ts"].values()) == 6


def test_amount_formats_and_returns():
    written = ["12.50", "$1,234.50", "1,234.50", "USD 45.00", " 12.5 ", "-15.00", "(15.00)", "€3", "GBP 1,000"]
    raw = tx([(str(i), "a", "2024-01-01", a) for i, a in enumerate(written)])
    res = clean(transactions=raw)
    assert res.tables.transactions["amount"].tolist() == [12.5, 1234.5, 1234.5, 45.0, 12.5, -15.0, -15.0, 3.0, 1000.0]
    assert res.tables.transactions["amount"].dtype == np.float64
    assert res.report.tables["transactions"].rejected_rows == 0


def test_unparseable_amounts_are_rejected_with_their_value():
    raw = tx([("1", "a", "2024-01-01", "abc"), ("2", "a", "2024-01-01", "12..5"), ("3", "a", "2024-01-01", "1,2,5"),
              *[(str(i), "a", "2024-01-02", "1") for i in range(4, 8)]])
    res = clean(transactions=raw)
    assert reasons(res) == ["unparseable amount: 'abc'", "unparseable amount: '12..5'", "unparseable amount: '1,2,5'"]
    assert res.report.tables["transactions"].rejected == {"unparseable amount": 3}


def test_label_spellings_are_normalised_then_aliased():
    raw = tx([(str(i), "a", "2024-01-01", "1", c, ch) for i, (c, ch) in
              enumerate([("Books", "Web"), (" books ", "web  shop"), ("BOOKS", " WEB SHOP "), ("Music  CDs", "www")])],
             columns=("order_id", "customer_id", "ts", "amount", "category", "channel"))
    cfg = CleaningConfig(category_aliases={"WWW": "web", "music cds": "music"})
    res = clean(cfg, transactions=raw)
    assert res.tables.transactions["category"].tolist() == ["books", "books", "books", "music"]
    assert res.tables.transactions["channel"].tolist() == ["web", "web shop", "web shop", "web"]
    t = res.report.tables["transactions"]
    assert t.standardised["category: alias applied"] == 1 and t.standardised["channel: alias applied"] == 1


# --------------------------------------------------------------------------- rule 3: one person, several ids


def customers_with_duplicates() -> pd.DataFrame:
    # c1 and c2: same email up to case/spaces; c2 and c3: same phone, other format -> one person, transitively.
    # c1 signed up first, so it is the canonical id. c9 is someone else.
    return text({
        "customer_id": ["c2", "c1", "c3", "c9"],
        "name": ["John Smith", "John Smith", "J. Smith", "Ann Lee"],
        "email": [" John.Smith@Example.COM ", "john.smith@example.com", "js@work.example", "ann@example.com"],
        "phone": ["555.123.4567", "+1 (555) 999-0000", "+1 (555) 123-4567", "555 000 1111"],
        "signup_date": ["2023-05-01", "2023-01-01", "2023-07-01", "2023-02-01"],
        "age": [np.nan, "40", "41", "30"],
        "region": ["West", np.nan, "south", "North"],
    })


def test_one_person_under_several_ids_is_merged_transitively():
    tr = tx([("1", "c1", "2024-01-01", "10"), ("2", "c2", "2024-01-02", "20"), ("3", "c3", "2024-01-03", "30"),
             ("4", "c9", "2024-01-04", "40")])
    res = clean(transactions=tr, customers=customers_with_duplicates())
    assert res.id_map.to_dict("list") == {"source_id": ["c2", "c3"], "customer_id": ["c1", "c1"]}
    cust = res.tables.customers.set_index("customer_id")
    assert sorted(cust.index) == ["c1", "c9"]
    # first non-missing value, canonical id first: age from c1, region from c2 (c1 has none), earliest signup
    assert cust.loc["c1", "age"] == 40.0 and cust.loc["c1", "region"] == "west"
    assert cust.loc["c1", "signup_date"] == pd.Timestamp("2023-01-01")
    assert res.tables.transactions["customer_id"].tolist() == ["c1", "c1", "c1", "c9"]
    c = res.report.tables["customers"]
    assert (c.input_rows, c.merged_rows, c.clean_rows) == (4, 2, 2)
    assert res.report.tables["transactions"].ids_remapped == 2
    assert (res.report.ids_merged, res.report.persons_merged) == (2, 1)


def test_merging_ids_keeps_every_transaction_and_its_amount():
    tr = tx([(str(i), cid, "2024-01-01", f"{i}.25") for i, cid in enumerate(["c1", "c2", "c3", "c2", "c9", "zz"])])
    merged = clean(transactions=tr, customers=customers_with_duplicates())
    separate = clean(CleaningConfig(dedupe_customers=False), transactions=tr, customers=customers_with_duplicates())
    assert len(merged.tables.transactions) == len(separate.tables.transactions) == 6
    assert merged.tables.transactions["amount"].sum() == separate.tables.transactions["amount"].sum()
    assert separate.id_map.empty and len(separate.tables.customers) == 4


def test_canonical_id_tie_on_signup_goes_to_the_smallest_id_numerically():
    cust = text({"customer_id": ["10", "9"], "email": ["a@x.org", "A@X.org"], "signup_date": ["2023-01-01"] * 2})
    res = clean(customers=cust)
    assert res.id_map.to_dict("list") == {"source_id": ["10"], "customer_id": ["9"]}


def test_match_on_email_only_ignores_shared_phones():
    cust = text({"customer_id": ["a", "b"], "email": ["a@x.org", "b@x.org"], "phone": ["5551234567", "555-123-4567"]})
    assert clean(CleaningConfig(match_on=["email"]), customers=cust).id_map.empty
    assert len(clean(customers=cust).id_map) == 1


def test_orphan_transactions_are_kept_and_counted():
    cust = text({"customer_id": ["a"], "signup_date": ["2023-01-01"]})
    tr = tx([("1", "a", "2024-01-01", "1"), ("2", "b", "2024-01-01", "1"), ("3", "b", "2024-01-02", "1")])
    res = clean(transactions=tr, customers=cust)
    t = res.report.tables["transactions"]
    assert (t.clean_rows, t.rejected_rows, t.orphan_rows, t.orphan_ids) == (3, 0, 2, 1)


# --------------------------------------------------------------------------- rule 4: missing values


def test_missing_value_policies_use_the_clean_rows():
    cust = text({
        "customer_id": ["a", "b", "c", "d", np.nan],
        "age": ["20", "30", np.nan, "70", "1000"],  # the rejected row's age must not move the median
        "gender": ["F", np.nan, "m", "f", "f"],
        "region": ["north", "south", "south", np.nan, "north"],
        "plan": [np.nan, "basic", "basic", "plus", "plus"],
    })
    cfg = CleaningConfig(missing={
        "customers.customer_id": MissingPolicy(strategy="reject"),
        "customers.age": MissingPolicy(strategy="median"),
        "customers.gender": MissingPolicy(strategy="constant", value="Unknown"),
        "customers.region": MissingPolicy(strategy="mode"),
    })
    res = clean(cfg, customers=cust)
    c = res.tables.customers
    assert c["age"].tolist() == [20.0, 30.0, 30.0, 70.0]
    assert c["gender"].tolist() == ["f", "unknown", "m", "f"]
    assert c["region"].tolist() == ["north", "south", "south", "south"]
    assert c["plan"].isna().tolist() == [True, False, False, False]  # not listed: kept missing
    imp = res.report.tables["customers"].imputed
    assert imp["age"] == {"strategy": "median", "count": 1, "value": 30.0}
    assert imp["region"] == {"strategy": "mode", "count": 1, "value": "south"}
    assert reasons(res, "customers") == ["missing customer_id"]


def test_default_policies_fill_transaction_details():
    raw = tx([("1", "a", "2024-01-01", "5", np.nan, np.nan, np.nan), ("2", "a", "2024-01-02", "5", "2", "Books", "web")],
             columns=("order_id", "customer_id", "ts", "amount", "quantity", "category", "channel"))
    out = clean(transactions=raw).tables.transactions
    assert out["quantity"].tolist() == [1.0, 2.0] and out["quantity"].dtype == np.float64
    assert out["category"].tolist() == ["unknown", "books"] and out["channel"].tolist() == ["unknown", "web"]


def test_median_of_a_text_column_is_a_config_error_naming_the_key():
    cust = text({"customer_id": ["a", "b"], "gender": ["f", np.nan]})
    cfg = CleaningConfig(missing={"customers.gender": MissingPolicy(strategy="median")})
    with pytest.raises(ConfigError, match=r"project\.cleaning\.missing\.customers\.gender"):
        clean(cfg, customers=cust)


# --------------------------------------------------------------------------- rule 5: rejects


def dirty_transactions() -> pd.DataFrame:
    return tx([
        ("1", "a", "2024-01-01", "10.00"),
        ("2", np.nan, "not a date", "abc"),       # missing id wins over the bad date and amount
        ("3", "b", "2023-13-45", "5"),
        ("4", "b", "2099-01-03 10:00:00", "5"),
        ("5", " ", "2024-01-01", "5"),            # blank id counts as missing
        ("6", "a", np.nan, "5"),
        ("7", "a", "2024-02-01", np.nan),
        ("8", "b", "2024-12-31 23:59:59", "(3.50)"),  # last day of the data: valid
        ("1", "a", "2024-01-01", "10.00"),        # exact duplicate of the first row
        ("9", "a", "Apr 05, 2024", "$1,234.50"),
        ("10", "c", "2024-03-01", "7"),
    ])


def test_rejects_keep_the_raw_cells_and_exactly_one_reason():
    raw = dirty_transactions()
    res = clean(transactions=raw)
    rej = res.rejects["transactions"]
    assert rej["_reason"].tolist() == [
        "missing customer_id",
        "unparseable date in ts: '2023-13-45'",
        "date in the future of the data: 2099-01-03 > 2024-12-31",
        "missing customer_id",
        "missing ts",
        "missing amount",
    ]
    assert rej["_row"].tolist() == [1, 2, 3, 4, 5, 6]
    # the original cells, untouched
    expected = raw.iloc[rej["_row"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(rej[list(raw.columns)], expected)
    assert list(rej.columns) == [*raw.columns, "_row", "_reason"]
    assert res.report.tables["transactions"].rejected == {
        "missing customer_id": 2, "unparseable date in ts": 1, "date in the future of the data": 1,
        "missing ts": 1, "missing amount": 1,
    }


def test_invariant_on_a_dirty_table():
    res = clean(transactions=dirty_transactions())
    t = res.report.tables["transactions"]
    assert (t.input_rows, t.clean_rows, t.rejected_rows, t.exact_duplicates) == (11, 4, 6, 1)
    assert t.input_rows == t.clean_rows + t.rejected_rows + t.exact_duplicates
    assert len(res.rejects["transactions"]) == t.rejected_rows and len(res.tables.transactions) == t.clean_rows
    assert res.report.check_invariant() == ["transactions: 11 input = 4 clean + 6 rejected + 1 exact duplicates: ok"]
    assert res.report.to_dict()["tables"]["transactions"]["invariant_ok"] is True


def test_max_date_from_config_wins_over_today():
    raw = tx([("1", "a", "2024-01-01", "1"), ("2", "a", "2024-06-02", "1"), ("3", "a", "2024-05-01", "1")])
    res = clean(CleaningConfig(max_date=date(2024, 6, 1)), transactions=raw)
    assert reasons(res) == ["date in the future of the data: 2024-06-02 > 2024-06-01"]


def test_input_tables_are_not_modified():
    raw = dirty_transactions()
    cust = customers_with_duplicates()
    before = (raw.copy(deep=True), cust.copy(deep=True))
    clean(transactions=raw, customers=cust)
    pd.testing.assert_frame_equal(raw, before[0])
    pd.testing.assert_frame_equal(cust, before[1])


# --------------------------------------------------------------------------- rule 6: a whole column fails


def test_mostly_unparseable_dates_raise_naming_file_column_and_example(tmp_path):
    raw = tx([("1", "a", "05/04/2023 14h03", "1"), ("2", "a", "06/04/2023 09h00", "1"), ("3", "a", "2023-04-07", "1")])
    raw.attrs["source"] = "exports/orders.csv"
    with pytest.raises(DataError) as err:
        clean_tables(Tables(transactions=raw), CleaningConfig(), today=TODAY)
    msg = str(err.value)
    assert "exports/orders.csv" in msg and "column 'ts'" in msg
    assert "%Y-%m-%d" in msg and "'05/04/2023 14h03'" in msg


def test_mostly_unparseable_amounts_raise_and_personal_data_is_redacted_from_the_example():
    cust = text({"customer_id": ["a", "b"], "email": ["ann@example.com", "bob@example.com"],
                 "signup_date": ["yesterday", "2023-01-01"], })
    # a customers table: a bad signup_date column also raises, and the example hides the email
    cust.loc[1, "signup_date"] = "last week"
    with pytest.raises(DataError) as err:
        clean(customers=cust)
    msg = str(err.value)
    assert "column 'signup_date'" in msg and "the customers table" in msg
    assert "ann@example.com" not in msg and "<personal data>" in msg
    raw = tx([("1", "a", "2024-01-01", "ten"), ("2", "a", "2024-01-01", "eleven")])
    with pytest.raises(DataError, match=r"column 'amount'.*not amounts"):
        clean(transactions=raw)


# --------------------------------------------------------------------------- report, writing


def test_report_contains_no_personal_data():
    cust = customers_with_duplicates()
    tr = tx([("1", "c1", "2024-01-01", "10"), ("2", "c2", "2099-01-01", "10"), ("3", "c3", "2024-01-01", "10"),
             ("4", "c9", "2024-01-01", "10")])
    res = clean(transactions=tr, customers=cust)
    blob = json.dumps(res.report.to_dict()) + res.report.to_text() + repr(res.report.rows())
    needles = set()
    for col in ("name", "email", "phone"):
        for v in cust[col].dropna():
            needles |= {v, v.strip(), v.strip().lower(), "".join(ch for ch in v if ch.isdigit())}
    needles |= {"Smith", "smith", "5551234567", "555"}
    assert not [n for n in needles if n and n in blob]
    # and personal data is left out of the clean table (it served matching only)
    assert not {"name", "email", "phone"} & set(res.tables.customers.columns)
    assert res.report.tables["customers"].dropped_columns == ["name", "email", "phone"]
    kept = clean_tables(Tables(customers=cust), CleaningConfig(), today=TODAY, keep_pii=True)
    assert "email" in kept.tables.customers.columns


def test_write_clean_result(tmp_path):
    res = clean(transactions=dirty_transactions(), customers=customers_with_duplicates())
    paths = write_clean_result(res, tmp_path / "clean")
    assert sorted(p.name for p in paths.values()) == sorted([
        "transactions.parquet", "customers.parquet", "rejects_transactions.csv", "rejects_customers.csv",
        "id_map.csv", "cleaning_report.json"])
    back = pd.read_parquet(paths["transactions"])
    assert len(back) == 4 and pd.api.types.is_datetime64_any_dtype(back["ts"])
    assert len(pd.read_csv(paths["rejects_transactions"])) == 6
    empty = pd.read_csv(paths["rejects_customers"])  # nothing rejected: header only
    assert empty.empty and list(empty.columns) == [*customers_with_duplicates().columns, "_row", "_reason"]
    assert pd.read_csv(paths["id_map"]).shape == (2, 2)
    report = json.loads(paths["report"].read_text())
    assert report["tables"]["customers"]["merged_rows"] == 2
    assert not list((tmp_path / "clean").glob("*.tmp"))


# --------------------------------------------------------------------------- real and typed data


def test_embedded_cdnow_passes_through_unchanged():
    raw = load_cdnow()
    res = clean_tables(Tables(transactions=raw), CleaningConfig())
    out = res.tables.transactions
    assert len(out) == len(raw) == 69_659 and res.rejects["transactions"].empty
    assert res.report.tables["transactions"].identical_rows_kept == 255  # same-day repeat purchases, kept
    assert out["amount"].sum() == pytest.approx(raw["amount"].sum())
    assert out["customer_id"].nunique() == 23_570
    assert (out["ts"] == raw["ts"]).all() and out["quantity"].dtype == np.float64


def test_typed_columns_take_the_fast_path():
    raw = pd.DataFrame({
        "order_id": pd.Series(["1", "2", "3"], dtype="str"),
        "customer_id": pd.Series(["a", "b", None], dtype="str"),
        "ts": pd.to_datetime(["2024-01-01", "2099-01-01", "2024-01-02"]),
        "amount": [1.5, 2.0, np.inf],
    })
    res = clean(transactions=raw)
    assert res.tables.transactions["amount"].tolist() == [1.5]
    assert reasons(res) == ["date in the future of the data: 2099-01-01 > 2024-12-31", "missing customer_id"]


# --------------------------------------------------------------------------- the synthetic CRM


def test_synthetic_crm_is_cleaned_back_to_its_ground_truth():
    synth = pytest.importorskip("crmlab.data.synth")
    data = synth.generate_synthetic(n_customers=2000, seed=1)
    res = clean_tables(Tables(transactions=data.transactions, customers=data.customers,
                              interactions=data.interactions), CleaningConfig())
    rep = res.report
    assert rep.invariant_ok
    dirty = data.dirty_counts
    # every injected duplicate id maps to its true id, and nothing else is merged
    got = res.id_map.set_index("source_id")["customer_id"].sort_index()
    want = data.duplicate_ids.set_index("duplicate_id")["customer_id"].sort_index()
    assert got.to_dict() == want.to_dict()
    assert rep.tables["customers"].merged_rows == dirty["customers"]["duplicate_person"]
    assert sorted(res.tables.customers["customer_id"]) == sorted(data.truth["customer_id"])
    # rejects and drops per reason match what was injected
    for name in ("transactions", "interactions"):
        t, d = rep.tables[name], dirty[name]
        assert t.exact_duplicates == d["exact_duplicate"]
        assert t.rejected.get("unparseable date in ts", 0) == d["date_unparseable"]
        assert t.rejected.get("date in the future of the data", 0) == d["date_future"]
        assert t.ids_remapped == d["duplicate_id"]
    t, d = rep.tables["transactions"], dirty["transactions"]
    assert t.rejected.get("unparseable amount", 0) == d["amount_unparseable"]
    assert t.rejected.get("missing customer_id", 0) == d["empty_customer_id"]
    assert t.rejected_rows == d["date_unparseable"] + d["date_future"] + d["amount_unparseable"] + d["empty_customer_id"]
    assert t.imputed["category"]["count"] == d["missing_category"]
    assert rep.tables["customers"].exact_duplicates == dirty["customers"]["exact_duplicate"]
    assert rep.tables["customers"].rejected_rows == 0
    # the clean transactions are the true history: same orders, true ids, days and amounts
    ours = res.tables.transactions.set_index("order_id").sort_index()
    truth = data.clean_transactions.set_index("order_id").sort_index()
    assert ours.index.equals(truth.index)
    assert (ours["customer_id"] == truth["customer_id"]).all()
    assert (ours["ts"].dt.normalize() == truth["ts"].dt.normalize()).all()
    np.testing.assert_allclose(ours["amount"].to_numpy(), truth["amount"].to_numpy())
    assert set(ours["category"]) == set(synth.CATEGORIES) | {"unknown"}
    assert len(res.tables.interactions) == len(data.clean_interactions)


def test_long_tables_find_exactly_the_repeated_rows():
    # Long tables go through row hashes; the result must equal a cell-by-cell comparison.
    rng = np.random.default_rng(0)
    n = 250_000
    base = pd.DataFrame({
        "order_id": pd.Series(np.arange(n).astype(str), dtype="str"),
        "customer_id": pd.Series(rng.integers(0, 5000, n).astype(str), dtype="str"),
        "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
        "amount": rng.integers(1, 10_000, n) / 100,
    })
    repeats = base.iloc[rng.choice(n, 1000, replace=False)]
    near = base.iloc[:500].assign(amount=lambda d: d["amount"] + 0.01)  # one cell differs: not a repeat
    raw = pd.concat([base, repeats, near], ignore_index=True).sample(frac=1, random_state=1, ignore_index=True)
    res = clean(transactions=raw)
    assert res.report.tables["transactions"].exact_duplicates == raw.duplicated().sum() == 1000
    assert len(res.tables.transactions) == n + 500


def test_unparseable_optional_numbers_become_missing_unless_their_policy_rejects():
    raw = tx([("1", "a", "2024-01-01", "5", "two"), ("2", "a", "2024-01-02", "5", " 3 "), ("3", "a", "2024-01-03", "5", "1")],
             columns=("order_id", "customer_id", "ts", "amount", "quantity"))
    res = clean(transactions=raw)
    assert res.tables.transactions["quantity"].tolist() == [1.0, 3.0, 1.0]  # 'two' -> missing -> default 1
    assert res.report.tables["transactions"].standardised["quantity: unparseable number set missing"] == 1
    strict = CleaningConfig(missing={"transactions.quantity": MissingPolicy(strategy="reject")})
    assert reasons(clean(strict, transactions=raw)) == ["unparseable number in quantity: 'two'"]


def test_personal_data_columns_are_recognised_whatever_their_case():
    cust = text({"customer_id": ["a", "b"], "Email": ["Ann@X.org", " ann@x.org"], "Phone": [np.nan, "555 000 1111"]})
    res = clean(customers=cust)
    assert res.id_map.to_dict("list") == {"source_id": ["b"], "customer_id": ["a"]}
    assert list(res.tables.customers.columns) == ["customer_id"]
    assert res.report.tables["customers"].dropped_columns == ["Email", "Phone"]


def test_duplicate_check_stays_exact_when_row_hashes_collide(monkeypatch):
    # Force the hash path on a small table and make most hashes collide: the answer must not change.
    import polars as pl

    import crmlab.data.clean as clean_module

    real = pl.DataFrame.hash_rows
    monkeypatch.setattr(clean_module, "_HASH_DEDUPE_ROWS", 1)
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *a, **k: real(self, *a, **k) % 3)
    raw = tx([(str(i % 10), "a" if i % 3 else "b", "2024-01-01", str(i % 5)) for i in range(60)])
    res = clean(transactions=raw)
    assert res.report.tables["transactions"].exact_duplicates == raw.duplicated().sum() > 0
    assert len(res.tables.transactions) == len(raw.drop_duplicates())
