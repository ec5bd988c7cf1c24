"""Personal-data columns: found by name (English, Chinese) and content, matched on, never features."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.config import CleaningConfig
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables
from crmlab.data.pii import find_personal_columns, normalise_column_name
from crmlab.features import build_features

N = 60
FEATURES = ["age", "plan", "region", "tenure", "monthly_charges", "gender", "acquisition_channel", "email_opt_in",
            "is_mobile", "plan_name", "city", "signup_source", "churn"]


def export(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A customers export as a CRM writes it: text cells, PII under the CRM's own headers."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    surnames, given = np.array(list("王李张刘陈杨黄赵")), np.array(["伟", "芳", "娜", "敏", "静", "强", "磊", "洋"])
    return pd.DataFrame({
        "customer_id": [f"C{k:04d}" for k in i],
        "Full Name": [f"Person{k} Lastname{k % 7}" for k in i],
        "E-mail Address": [f"person{k}@example.com" for k in i],
        "Mobile Phone": [f"+1 (555) {100 + k:03d}-{1000 + 7 * k:04d}" for k in i],
        "客户姓名": [surnames[k % 8] + given[(k // 8) % 8] + given[k % 5] for k in i],
        "手机号": [f"13{k % 10}{10_000_000 + 37 * k:08d}" for k in i],
        "邮箱": [f"kh{k}@qq.com" for k in i],
        "地址": [f"北京市朝阳区{k}号" for k in i],
        "身份证号": [f"11010519{80 + k % 20}0{1 + k % 9}1{k % 10}{k:03d}X" for k in i],
        "contact": [f"{13_900_000_000 + 101 * k}" for k in i],  # phones under a neutral header: by content
        "ref": [f"user{k}@mail.cn" for k in i],  # e-mails under a neutral header
        "notes": [f"called on day {k}, wants invoice {k * 13}" for k in i],  # near-unique free text
        "age": rng.integers(18, 80, n).astype(str),
        "plan": rng.choice(["basic", "pro", "team"], n),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "tenure": rng.integers(0, 72, n).astype(str),
        "monthly_charges": np.round(rng.uniform(10, 120, n), 2).astype(str),
        "gender": rng.choice(["f", "m"], n),
        "acquisition_channel": rng.choice(["search", "email", "referral"], n),
        "email_opt_in": rng.choice(["yes", "no"], n),
        "is_mobile": rng.choice(["true", "false"], n),
        "plan_name": rng.choice(["Basic 10", "Pro 50"], n),
        "city": rng.choice(["北京", "上海", "广州", "深圳", "杭州"], n),
        "signup_source": rng.choice(["app", "web"], n),
        "churn": rng.choice(["yes", "no"], n),
    })


PERSONAL = {"Full Name": "name", "E-mail Address": "email", "Mobile Phone": "phone", "客户姓名": "name",
            "手机号": "phone", "邮箱": "email", "地址": "address", "身份证号": "id_number", "contact": "phone",
            "ref": "email", "notes": "identifier"}


def test_the_detector_flags_every_personal_column_and_no_ordinary_feature():
    found = {p.column: p.kind for p in find_personal_columns(export().drop(columns="customer_id"))}
    assert found == PERSONAL
    assert not set(found) & set(FEATURES)


@pytest.mark.parametrize("header, kind", [
    ("Customer Name", "name"), ("customer_name", "name"), ("First-Name", "name"), ("Last_Name", "name"),
    ("name", "name"), ("姓名", "name"), ("客户姓名", "name"), ("E-mail", "email"), ("email_address", "email"),
    ("电话", "phone"), ("手机号", "phone"), ("Tel.", "phone"), ("Phone 2", "phone"), ("邮箱", "email"),
    ("地址", "address"), ("Street Address", "address"), ("身份证号", "id_number"), ("SSN", "id_number"),
    ("Date of Birth", "identifier"), ("WeChat ID", "identifier"),
])
def test_names_are_recognised_whatever_case_spaces_underscores_and_hyphens(header, kind):
    df = pd.DataFrame({header: ["x", "y", "x"]})  # content says nothing: the name alone decides
    assert [(p.column, p.kind) for p in find_personal_columns(df)] == [(header, kind)]


@pytest.mark.parametrize("header", ["email_opt_in", "email_opens", "is_mobile", "n_phone_calls", "plan_name",
                                    "product_name", "hotel", "membership", "tenure", "monthly_charges", "region",
                                    "电话回访次数", "是否有邮箱", "last_login"])
def test_ordinary_headers_that_contain_a_personal_word_are_not_flagged(header):
    assert find_personal_columns(pd.DataFrame({header: ["a", "b", "a"]})) == []


def test_normalised_names():
    assert normalise_column_name(" E-mail_Address ") == "emailaddress"
    assert normalise_column_name("Mobile-Phone (home)") == "mobilephonehome"


def test_near_unique_numbers_dates_and_few_rows_are_not_identifiers():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "spend": [f"¥{v:,.2f}" for v in rng.uniform(1000, 9000, 40)],
        "last_login": [f"2024-0{1 + k % 9}-{10 + k % 19}" for k in range(40)],
        "float_col": rng.normal(size=40),
    })
    assert find_personal_columns(df) == []
    few = pd.DataFrame({"company": [f"firm {k}" for k in range(10)]})  # 10 rows: too few to call it an id
    assert find_personal_columns(few) == []


def test_phone_numbers_read_as_numbers_are_still_phone_numbers():
    df = pd.DataFrame({"c": np.arange(30, dtype=np.float64) * 1_001 + 13_812_345_678.0})
    assert [p.kind for p in find_personal_columns(df)] == ["phone"]


def test_cleaning_matches_persons_on_detected_columns_and_drops_them_without_logging_values(caplog):
    raw = export().astype("str")
    # C0001 registered again as C0100 with the same 手机号 (written differently), new e-mails and other phones
    dup = raw.iloc[[1]].copy()
    dup["customer_id"] = "C0100"
    dup["手机号"] = "+86 " + raw.loc[1, "手机号"][:3] + "-" + raw.loc[1, "手机号"][3:]
    dup["E-mail Address"] = "other@example.org"
    dup["邮箱"] = "other@qq.com"
    dup["ref"] = "other@mail.cn"
    dup["Mobile Phone"] = "+1 (555) 999-9999"
    dup["contact"] = "13999999999"  # only 手机号 links the two ids
    raw = pd.concat([raw, dup], ignore_index=True)
    with caplog.at_level("INFO"):
        res = clean_tables(Tables(customers=raw), CleaningConfig(), today=date(2024, 12, 31))
    clean = res.tables.customers
    assert res.id_map.to_dict("records") == [{"source_id": "C0100", "customer_id": "C0001"}]
    assert len(clean) == N and res.report.tables["customers"].merged_rows == 1
    assert not set(PERSONAL) & set(clean.columns)
    assert set(res.report.tables["customers"].personal_columns) == set(PERSONAL)
    values = {str(v) for c in PERSONAL for v in raw[c]}
    logged = caplog.text + res.report.to_text() + str(res.report.to_dict())
    assert "'Mobile Phone'" in caplog.text and not [v for v in values if v in logged]


def test_features_never_take_personal_columns_even_from_an_uncleaned_table(caplog):
    customers = export()
    with caplog.at_level("INFO"):
        feats = build_features(None, customers, as_of="2024-06-30", label_column="churn")
    assert not set(PERSONAL) & set(feats.columns)
    assert {"age", "plan", "region", "tenure", "monthly_charges", "is_mobile", "city"} <= set(feats.columns)
    assert "'手机号' (phone numbers, by the column name)" in caplog.text
    assert not [v for v in customers["手机号"] if v in caplog.text]


def test_error_example_rows_leave_personal_cells_out(tmp_path):
    from crmlab.config import TableSource
    from crmlab.data.io import read_table
    from crmlab.errors import DataError

    path = tmp_path / "customers.csv"
    path.write_text("客户编号,手机号,Full Name,备注,plan\nK1,13812345678,Wang Wei,wang.wei@163.com,pro\n",
                    encoding="utf-8")
    with pytest.raises(DataError) as err:  # customer_id not mapped: the error shows the first row
        read_table(TableSource(path=path), "customers")
    msg = str(err.value)
    assert "'pro'" in msg and "'K1'" in msg and msg.count("<personal data>") == 3
    assert "13812345678" not in msg and "Wang Wei" not in msg and "wang.wei@163.com" not in msg
