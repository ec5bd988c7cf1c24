from __future__ import annotations

import pandas as pd
import pytest

from crmlab.config import DataConfig, TableSource
from crmlab.data.io import load_cdnow, load_cdnow_sample_summary, load_tables, read_table
from crmlab.errors import DataError


def test_embedded_cdnow_is_the_full_log():
    tx = load_cdnow()
    assert len(tx) == 69_659
    assert tx["customer_id"].nunique() == 23_570
    assert list(tx.columns[:3]) == ["customer_id", "ts", "amount"]
    assert tx["ts"].min() == pd.Timestamp("1997-01-01") and tx["ts"].max() == pd.Timestamp("1998-06-30")
    # first line of the file: customer 00001 bought 1 CD for $11.77 on 1997-01-01
    first = tx.iloc[0]
    assert (first["customer_id"], first["quantity"], first["amount"]) == ("00001", 1, 11.77)
    assert tx["amount"].sum() == pytest.approx(2_500_315.63, abs=0.01)


def test_paper_sample_summary():
    s = load_cdnow_sample_summary()
    assert len(s) == 2357
    assert (s["recency"] <= s["T"]).all()
    assert (s.loc[s["frequency"] == 0, "monetary_value"] == 0).all()


def test_column_mapping_reads_a_users_file_unedited(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("CustomerID,InvoiceDate,Revenue,Extra\n12,2024-01-05,10.5,x\n13,2024-01-06,$7.00,y\n")
    src = TableSource(path=path, columns={"customer_id": "CustomerID", "ts": "InvoiceDate", "amount": "Revenue"})
    df = read_table(src, "transactions")
    assert list(df.columns) == ["customer_id", "ts", "amount", "Extra"]
    assert df["amount"].tolist() == ["10.5", "$7.00"]  # text stays text: cleaning parses it
    assert df.attrs["source"] == str(path)


def test_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"cid": ["a"], "ts": [pd.Timestamp("2024-01-01")], "amount": [1.0]}).to_parquet(path)
    df = read_table(TableSource(path=path, columns={"customer_id": "cid"}), "transactions")
    assert df["amount"].dtype == "float64" and df["customer_id"].tolist() == ["a"]


def test_missing_required_column_names_file_column_and_example(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("CustomerID,InvoiceDate,Revenue\n12,2024-01-05,10.5\n")
    src = TableSource(path=path, columns={"customer_id": "CustomerID", "ts": "InvoiceDate"})
    with pytest.raises(DataError) as err:
        read_table(src, "transactions")
    msg = str(err.value)
    assert str(path) in msg and "'amount'" in msg and "Revenue" in msg and "'10.5'" in msg


def test_mapped_column_absent(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"column 'CustID'.*not in the file"):
        read_table(TableSource(path=path, columns={"customer_id": "CustID"}), "transactions")


def test_empty_and_header_only_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_table(TableSource(path=empty), "transactions")
    header = tmp_path / "header.csv"
    header.write_text("customer_id,ts,amount\n")
    with pytest.raises(DataError, match="header.csv: the table has a header but no rows"):
        read_table(TableSource(path=header), "transactions")
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_table(TableSource(path=tmp_path / "nope.csv"), "transactions")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet: cannot read the file"):
        read_table(TableSource(path=bad), "transactions")


def test_customers_only_project(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,churn\n1,Yes\n2,No\n")
    tables = load_tables(DataConfig(transactions=None, customers=TableSource(path=path, columns={"customer_id": "id"})))
    assert tables.transactions is None and len(tables.customers) == 2
    with pytest.raises(DataError, match="no input tables"):
        load_tables(DataConfig(transactions=None))
