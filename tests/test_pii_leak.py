"""A real customer export's personal data never leaves the input files.

A CRM export (GB18030, Chinese and English headers, none of them mapped to name/email/phone) with a
churn label, and an order log, go through ``crmlab train churn`` (from the orders, then from the
label), ``train clv``, ``score``, ``kpis``
and ``report``; then every file under tmp_path that crmlab wrote (MLflow store and artifacts, bundles,
outputs) and everything printed or logged is searched for every personal value.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from .conftest import empty_config_dir

N = 240
PERSONAL_HEADERS = ["Full Name", "E-mail Address", "Mobile Phone", "Customer Name", "客户姓名", "姓名", "手机号",
                    "电话", "邮箱", "地址", "身份证号"]


def write_export(root: Path, seed: int = 7) -> tuple[Path, Path, list[str]]:
    """customers.csv and orders.csv (GB18030) and the personal values they hold."""
    rng = np.random.default_rng(seed)
    i = np.arange(N)
    surnames, given = list("王李张刘陈杨黄赵吴周"), list("伟芳娜敏静强磊洋艳勇军杰涛明超")
    cn_name = [surnames[k % 10] + given[(k // 10) % 15] + given[(k * 7) % 15] + "某" for k in i]
    customers = pd.DataFrame({
        "客户编号": [f"K{k:05d}" for k in i],
        "Full Name": [f"Fullname{k:04d} Smithson" for k in i],
        "E-mail Address": [f"person.{k:04d}@example.com" for k in i],
        "Mobile Phone": [f"+1 (555) {200 + k:03d}-{3000 + 11 * k:04d}" for k in i],
        "Customer Name": [f"Custname{k:04d} Jones" for k in i],
        "客户姓名": cn_name,
        "姓名": [n + "氏" for n in cn_name],
        "手机号": [f"13{k % 10}{20_000_000 + 4_099 * k:08d}" for k in i],
        "电话": [f"021-{60_000_000 + 7_919 * k:08d}" for k in i],
        "邮箱": [f"kehu{k:04d}@qq.com" for k in i],
        "地址": [f"上海市徐汇区漕溪北路{100 + k}号" for k in i],
        "身份证号": [f"3101041985{1 + k % 12:02d}{1 + k % 28:02d}{k:03d}X" for k in i],
        "注册日期": [f"{2022 + k % 2}年{1 + k % 12}月{1 + k % 28}日" for k in i],
        "age": rng.integers(18, 75, N).astype(str),
        "plan": rng.choice(["basic", "pro", "team"], N),
        "region": rng.choice(["华东", "华北", "华南"], N),
        "monthly_charges": [f"¥{v:,.2f}" for v in rng.uniform(20, 300, N)],
    })
    # orders: customers on 'pro'/'team' buy more often and keep buying; churn = no order in the last months
    start, end = date(2023, 1, 2), date(2024, 12, 30)
    rate = np.where(customers["plan"] == "basic", 0.04, 0.09) * rng.gamma(2.0, 0.5, N)
    spend = rng.lognormal(4.0, 0.6, N)  # each customer's own mean spend
    life = rng.uniform(0.3, 1.6, N) * (end - start).days * np.where(customers["plan"] == "basic", 0.5, 1.3)
    rows = []
    for k in i:
        day = rng.integers(0, 60)
        while day < min(life[k], (end - start).days):
            when = start + timedelta(days=int(day))
            rows.append((customers.at[k, "客户编号"], f"{when.year}年{when.month}月{when.day}日",
                         f"¥{spend[k] * rng.gamma(4.0, 0.25):,.2f}"))
            day += 1 + rng.exponential(1 / rate[k])
    orders = pd.DataFrame(rows, columns=["客户编号", "下单日期", "实付金额"])
    last = orders.assign(d=pd.to_datetime(orders["下单日期"], format="%Y年%m月%d日")).groupby("客户编号")["d"].max()
    gone = last.reindex(customers["客户编号"]).fillna(pd.Timestamp(start)) < pd.Timestamp(end - timedelta(days=120))
    customers["是否流失"] = np.where(gone.to_numpy(), "是", "否")
    cpath, opath = root / "customers.csv", root / "orders.csv"
    customers.to_csv(cpath, index=False, encoding="gb18030")
    orders.to_csv(opath, index=False, encoding="gb18030")
    values = [str(v) for c in PERSONAL_HEADERS for v in customers[c]]
    values += [v for v in customers["Mobile Phone"].str.replace(r"\D", "", regex=True)]  # digits only
    return cpath, opath, values


def found_in_files(root: Path, values: list[str], skip: set[Path]) -> dict[str, list[str]]:
    """Personal values found in any file under root (parquet decoded too), by file."""
    hits: dict[str, list[str]] = {}
    encoded = [(v, v.encode("utf-8")) for v in values]
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in skip):
        blob = path.read_bytes()
        texts = [blob]
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            texts.append((" ".join(map(str, df.columns)) + df.astype(str).to_csv()).encode("utf-8"))
        found = [v for v, b in encoded if any(b in t for t in texts)]
        if found:
            hits[str(path.relative_to(root))] = found[:3]
    return hits


@pytest.mark.slow
def test_no_personal_value_reaches_mlflow_bundles_outputs_or_logs(tmp_path, capfd, caplog):
    data = tmp_path / "data"
    data.mkdir()
    cpath, opath, values = write_export(data)
    sets = [
        f"project.tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"project.tracking.artifact_dir={tmp_path / 'mlartifacts'}",
        f"project.output.dir={tmp_path / 'outputs'}",
        f"project.output.models_dir={tmp_path / 'models'}",
        f"project.data.customers.path={cpath}",
        "project.data.customers.columns={customer_id: 客户编号, signup_date: 注册日期}",
        f"project.data.transactions.path={opath}",
        "project.data.transactions.columns={customer_id: 客户编号, ts: 下单日期, amount: 实付金额}",
        "project.as_of=2024-12-30",
        "project.cleaning.max_date=2024-12-31",
        "churn.label_column=是否流失",
        "clv.calibration_start=null",
        "clv.calibration_end=null",
        "clv.holdout_weeks=26",
        "clv.penalizer=0.01",
    ]
    printed = []
    with caplog.at_level(logging.DEBUG):
        # churn twice: from the order log with the customers' attributes, then from the label column
        for command in (["train", "churn", "--set", "churn.mode=transactions", "--set", "churn.horizon_days=120"],
                        ["train", "churn"], ["train", "clv"], ["score"], ["kpis"], ["report"]):
            args = ["-c", str(empty_config_dir(tmp_path)), "-v", *command]
            for s in sets:
                args += ["--set", s]
            code = main(args)
            out, err = capfd.readouterr()
            printed.append(out + err)
            assert code == 0, f"crmlab {' '.join(command)} failed: {err[-2000:]}"
    assert (tmp_path / "models" / "churn").is_dir() and (tmp_path / "outputs" / "scores.parquet").is_file()
    scores = pd.read_parquet(tmp_path / "outputs" / "scores.parquet")
    assert len(scores) == N and scores["churn_probability"].notna().all()

    hits = found_in_files(tmp_path, values, skip={cpath, opath})
    assert hits == {}, f"personal values found in files: {hits}"
    said = "\n".join(printed) + caplog.text
    assert [v for v in values if v in said] == []
    # the columns were named as left out, without their values
    assert "'手机号'" in said and "'E-mail Address'" in said
