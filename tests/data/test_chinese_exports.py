"""Chinese CRM exports: GB18030/GBK files, Chinese headers, 2024年3月4日 dates, ¥/元/RMB amounts."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from crmlab.config import CleaningConfig, TableSource, load_config
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables, detect_encoding, read_table
from crmlab.errors import ConfigError, DataError
from ..conftest import empty_config_dir

TODAY = date(2024, 12, 31)
MAPPING = {"customer_id": "客户编号", "ts": "下单日期", "amount": "金额"}
ROWS = [  # (id, date as exported, amount as exported, expected day, expected amount)
    ("C1", "2024年3月4日", "¥1,234.50", "2024-03-04 00:00", 1234.5),
    ("C2", "2024年03月04日 14:05", "￥1234.5", "2024-03-04 14:05", 1234.5),
    ("C3", "2024/3/4", "1,234.50元", "2024-03-04 00:00", 1234.5),
    ("C4", "２０２４年３月５日", "RMB 1,234.50", "2024-03-05 00:00", 1234.5),
    ("C5", "2024-03-06", "(12.00)", "2024-03-06 00:00", -12.0),
    ("C6", "2024/3/7 9:05", "（１２．００）", "2024-03-07 09:05", -12.0),
    ("C7", "2024年12月1日", "人民币 88", "2024-12-01 00:00", 88.0),
    ("C8", "2024/10/30", "CNY 7.5", "2024-10-30 00:00", 7.5),
]


def write_export(path, encoding: str, rows=ROWS) -> None:
    lines = ["客户编号,下单日期,金额"] + [f'{r[0]},{r[1]},"{r[2]}"' for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def load_and_clean(path, **source):
    raw = read_table(TableSource(path=path, columns=MAPPING, **source), "transactions")
    return raw, clean_tables(Tables(transactions=raw, sources={"transactions": str(path)}), CleaningConfig(),
                             today=TODAY)


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8", "utf-8-sig"])
def test_a_chinese_export_is_read_in_any_common_encoding_without_setting_it(tmp_path, encoding):
    rows = ROWS if encoding != "gbk" else [r for r in ROWS if "¥" not in r[2]]  # ¥ (U+00A5) is not in GBK
    path = tmp_path / "订单.csv"
    write_export(path, encoding, rows)
    raw, res = load_and_clean(path)
    assert raw.columns[:3].tolist() == ["customer_id", "ts", "amount"]  # Chinese headers through the mapping
    clean = res.tables.transactions
    assert clean["customer_id"].tolist() == [r[0] for r in rows]
    assert clean["ts"].tolist() == [pd.Timestamp(r[3]) for r in rows]
    assert clean["amount"].tolist() == [r[4] for r in rows]
    assert res.rejects["transactions"].empty and res.report.invariant_ok


def test_detect_encoding_names_gb18030_for_a_gbk_file_and_utf8_for_utf8(tmp_path):
    gbk, utf = tmp_path / "gbk.csv", tmp_path / "utf.csv"
    write_export(gbk, "gbk", ROWS[2:4])
    write_export(utf, "utf-8")
    assert detect_encoding(gbk) == "gb18030"
    assert detect_encoding(utf) == "utf-8"


def test_explicit_encoding_overrides_detection(tmp_path):
    path = tmp_path / "orders.csv"
    # Windows-1252 bytes that also decode as GB18030 (into wrong characters): only the setting gets them right
    path.write_bytes("customer_id,ts,amount,city\nC1,2024-01-02,5,Müller\n".encode("cp1252"))
    assert read_table(TableSource(path=path, encoding="cp1252"), "transactions")["city"].tolist() == ["Müller"]


def test_a_wrong_explicit_encoding_names_the_encoding_the_file_the_key_and_the_likely_one(tmp_path):
    path = tmp_path / "orders.csv"
    write_export(path, "gb18030")
    with pytest.raises(DataError) as err:
        load_and_clean(path, encoding="utf-8")
    msg = str(err.value)
    assert str(path) in msg and "'utf-8'" in msg and "project.data.transactions.encoding" in msg
    assert "gb18030" in msg and "\n" not in msg


def test_an_unknown_encoding_name_is_a_config_error_naming_the_file_and_key(tmp_path):
    cfg = tmp_path / "configs"
    cfg.mkdir()
    (cfg / "project.yaml").write_text("data:\n  transactions:\n    path: orders.csv\n    encoding: gbkk\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    msg = str(err.value)
    assert "project.yaml" in msg and "data.transactions.encoding" in msg and "'gbkk'" in msg and "\n" not in msg


def test_unparseable_chinese_dates_go_to_the_rejects_with_their_value_and_the_counts_add_up(tmp_path):
    path = tmp_path / "orders.csv"
    write_export(path, "gb18030", ROWS[:3] + [("C9", "2024年13月4日", "5元", None, None)])
    _, res = load_and_clean(path)
    assert res.tables.transactions["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert res.rejects["transactions"]["_reason"].tolist() == ["unparseable date in ts: '2024年13月4日'"]
    t = res.report.tables["transactions"]
    assert (t.input_rows, t.clean_rows, t.rejected_rows) == (4, 3, 1)


def test_rows_with_an_unquoted_thousands_separator_are_an_error_not_a_shifted_table(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes("客户编号,下单日期,金额\nC1,2024/3/4,¥1,234.50\nC2,2024/3/5,¥2,000.00\n".encode("gb18030"))
    with pytest.raises(DataError, match=r"orders.csv: the rows have more fields than the header.*quote"):
        read_table(TableSource(path=path, columns=MAPPING), "transactions")


# --------------------------------------------------------------------------- column mapping mistakes


def test_a_mapping_onto_a_name_the_file_already_has_is_refused_naming_both(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,ts,amount,gross\nC1,2024-01-02,5,6\n")
    with pytest.raises(DataError) as err:
        read_table(TableSource(path=path, columns={"amount": "gross"}), "transactions")
    msg = str(err.value)
    assert "orders.csv" in msg and "project.data.transactions.columns.amount='gross'" in msg
    assert "collides with the file's own column 'amount'" in msg


def test_two_canonical_names_mapped_to_one_file_column_are_refused(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("id,contact\nC1,a@b.cn\n")
    with pytest.raises(DataError, match=r"customers.csv: column 'contact': .*maps 'email', 'phone' to the same"):
        read_table(TableSource(path=path, columns={"customer_id": "id", "email": "contact", "phone": "contact"}),
                   "customers")


def test_a_mapping_that_moves_the_files_own_column_away_is_fine(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("id,plan,plan_2024\nC1,basic,pro\n")
    df = read_table(TableSource(path=path, columns={"customer_id": "id", "plan": "plan_2024", "old_plan": "plan"}),
                    "customers")
    assert df.iloc[0].to_dict() == {"customer_id": "C1", "old_plan": "basic", "plan": "pro"}


# --------------------------------------------------------------------------- attributes and labels


def test_customer_attributes_written_as_amounts_become_numbers():
    raw = pd.DataFrame({"customer_id": ["a", "b", "c"], "monthly_charges": ["¥1,234.50", "59.00元", "（１２．００）"],
                        "code": ["(12)", "(13)", "(14)"]}, dtype="str")
    res = clean_tables(Tables(customers=raw), CleaningConfig(), today=TODAY)
    assert res.tables.customers["monthly_charges"].tolist() == [1234.5, 59.0, -12.0]
    assert res.tables.customers["code"].tolist() == ["(12)", "(13)", "(14)"]  # no money sign: text stays text


def test_chinese_churn_labels():
    from crmlab.churn.data import parse_churn_labels

    labels = parse_churn_labels(pd.Series(["是", "否", " 流失 ", "未流失", "已流失", "正常"]))
    assert labels.tolist() == [1, 0, 1, 0, 1, 0]


# --------------------------------------------------------------------------- on the command line


def _cli(args, capsys):
    from crmlab.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_mapping_collision_and_unknown_encoding_are_one_line_errors_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,ts,amount,gross\nC1,2024-01-02,5,6\n")
    base = ["-c", str(empty_config_dir(tmp_path)), "--set", f"project.data.transactions.path={path}",
            "--set", f"project.output.dir={tmp_path / 'out'}", "data", "clean"]
    code, text = _cli([*base, "--set", "project.data.transactions.columns={amount: gross}"], capsys)
    assert code == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert "collides with the file's own column 'amount'" in text and "orders.csv" in text
    code, text = _cli([*base, "--set", "project.data.transactions.encoding=gbkk"], capsys)
    assert code == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert "project.data.transactions.encoding" in text and "'gbkk'" in text
