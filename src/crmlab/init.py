"""``crmlab init``: a project's configs from its own files, every guess written down with its reason.

The first five minutes on a user's data: read the file(s), guess what each one is (a transaction
log, a customer table, an aggregated sales table), the encoding and the separator, map the columns
to crmlab's canonical names (by header, English or Chinese, then by content: an id column of
repeating values, a date-like column, a money-like column), measure the span of the data and derive
every pipeline's windows from it, and write ``configs/``. Nothing guessed is hidden: each guess is a
YAML value with a comment saying why; what cannot be guessed is a placeholder with a comment naming
the key to fill.

The functions here are pure (they read files, never prompt or print); ``crmlab init`` in
:mod:`crmlab.cli` wires them to the terminal.

* :func:`sniff_file` -> encoding and separator; :func:`read_sample` -> the file as text columns;
* :func:`guess_kind` -> transactions, customers or sales; :func:`guess_mapping` -> canonical name ->
  :class:`ColumnGuess` (column and reason);
* :func:`profile_span` -> :class:`Span` (first and last date, customers, repeat customers, gaps);
* :func:`plan_pipelines` -> the windows of each pipeline and a line on what the data can support;
* :func:`write_configs` -> ``project.yaml`` and one YAML per pipeline.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab import pipelines
from crmlab.config import CleaningConfig
from crmlab.errors import ConfigError, DataError

__all__ = [
    "ColumnGuess",
    "InitResult",
    "PipelineVerdict",
    "Span",
    "TableGuess",
    "guess_kind",
    "guess_mapping",
    "guess_table",
    "parse_dates",
    "parse_money",
    "plan_pipelines",
    "profile_span",
    "read_sample",
    "run_init",
    "sniff_file",
    "write_configs",
]

#: Rows read to guess the mapping and measure the span (a larger file is read up to this many rows).
MAX_ROWS = 2_000_000
#: Share of a column's values that must parse for a content guess (dates, amounts).
MIN_PARSE_SHARE = 0.8
PLACEHOLDER = "FILL_IN"

# --------------------------------------------------------------------------- names


def normalise(name: str) -> str:
    """Lower case without spaces, punctuation or underscores: 'Customer ID', 'customer_id' -> 'customerid'.
    Chinese characters are kept ('客户ID' -> '客户id')."""
    return re.sub(r"[\W_]+", "", str(name).strip().lower())


#: Canonical name -> usual headers (normalised), English and Chinese, most specific first.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "customer_id": ("customerid", "custid", "customerno", "customernumber", "custno", "customercode",
                        "clientid", "accountid", "accountno", "accountnumber", "memberid", "userid", "buyerid",
                        "customer", "client", "account", "member", "buyer",
                        "客户id", "客户编号", "会员id", "会员编号", "用户id", "客户号", "买家id", "客户代码", "客户"),
        "ts": ("invoicedate", "orderdate", "transactiondate", "purchasedate", "saledate", "orderdatetime",
               "ordertime", "paymentdate", "paiddate", "date", "ts", "timestamp", "datetime", "createdat",
               "下单时间", "订单日期", "下单日期", "交易时间", "交易日期", "付款时间", "支付时间", "订单时间",
               "购买日期", "日期", "时间"),
        "amount": ("revenue", "sales", "total", "amount", "amt", "totalamount", "netamount", "ordervalue",
                   "ordertotal", "grandtotal", "totalprice", "linetotal", "value", "spend", "paid", "payment",
                   "实付金额", "订单金额", "支付金额", "交易金额", "销售额", "总金额", "消费金额", "实收金额",
                   "付款金额", "金额"),
        "order_id": ("invoiceno", "invoice", "invoiceid", "invoicenumber", "orderid", "orderno", "ordernumber",
                     "transactionid", "txnid", "receiptno", "receiptid", "订单号", "订单编号", "订单id", "交易号",
                     "流水号"),
        "product_id": ("stockcode", "productid", "sku", "itemid", "productcode", "itemcode", "product", "item",
                       "商品id", "商品编号", "商品编码", "产品id", "产品编号"),
        "quantity": ("quantity", "qty", "units", "unitssold", "数量", "购买数量", "件数"),
        "category": ("category", "productcategory", "department", "dept", "品类", "类别", "商品类别", "分类"),
        "channel": ("channel", "saleschannel", "orderchannel", "渠道", "销售渠道"),
        "region": ("region", "country", "province", "state", "city", "area", "地区", "区域", "省份", "城市", "国家"),
    },
    "customers": {
        "customer_id": (),  # filled below from the transactions synonyms
        "signup_date": ("signupdate", "signup", "registrationdate", "registered", "joindate", "joined",
                        "customersince", "startdate", "contractstart", "createdat", "created", "opened",
                        "注册日期", "注册时间", "开户日期", "入会日期", "创建时间", "签约日期"),
        "churn": ("churn", "churned", "exited", "attrition", "churnflag", "ischurn", "ischurned", "left",
                  "cancelled", "canceled", "是否流失", "流失", "已流失", "流失标记", "是否退订"),
        "name": ("name", "fullname", "customername", "clientname", "姓名", "客户姓名", "客户名称", "会员姓名"),
        "email": ("email", "emailaddress", "mail", "邮箱", "电子邮件", "电子邮箱"),
        "phone": ("phone", "phonenumber", "mobile", "mobilephone", "telephone", "tel", "cellphone",
                  "手机", "手机号", "手机号码", "电话", "联系电话"),
    },
    "sales": {
        "series_id": ("seriesid", "series", "store", "storeid", "shop", "sku", "item", "product", "dept",
                      "department", "门店", "店铺", "系列", "商品"),
        "period": ("period", "week", "weekstart", "month", "date", "ds", "周", "月份", "日期"),
        "value": ("value", "sales", "weeklysales", "units", "volume", "revenue", "y", "销量", "销售额"),
    },
}
SYNONYMS["customers"]["customer_id"] = SYNONYMS["transactions"]["customer_id"]

REQUIRED = {"transactions": ("customer_id", "ts", "amount"), "customers": ("customer_id",),
            "sales": ("period", "value")}
#: Kind of each canonical column's content, checked before a header match is accepted.
CONTENT = {"ts": "date", "signup_date": "date", "period": "date", "amount": "money", "value": "money",
           "quantity": "number"}

# --------------------------------------------------------------------------- parsing values

_MONEY_JUNK = re.compile(r"[\s¥￥$€£,，元円RMBCNYUSD]+", re.IGNORECASE)
_DATE_LIKE = re.compile(
    r"^\s*(\d{4}[-/.年]\d{1,2}([-/.月]\d{1,2}日?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{8}|"
    r"\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})"
)
#: Date formats tried on top of crmlab's cleaning defaults (the first that parses most values wins).
EXTRA_DATE_FORMATS = ("%Y年%m月%d日", "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y/%m/%d %H:%M:%S",
                      "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%d/%m/%Y", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
                      "%d-%m-%Y", "%Y-%m", "%Y%m")


def parse_money(values: pd.Series) -> pd.Series:
    """Numbers from text such as '1,234.50', '¥1,234.50', '￥1234.5', '1,234.50元', '(12.00)' (negative)."""
    text = values.astype("string").str.strip()
    negative = text.str.match(r"^\(.*\)$", na=False)
    text = text.str.replace(r"^\((.*)\)$", r"\1", regex=True).str.replace(_MONEY_JUNK, "", regex=True)
    out = pd.to_numeric(text, errors="coerce")
    return out.where(~negative.to_numpy(), -out)


def _date_formats() -> list[str]:
    defaults = list(CleaningConfig().date_formats)
    return defaults + [f for f in EXTRA_DATE_FORMATS if f not in defaults]


def parse_dates(values: pd.Series) -> tuple[pd.Series, str | None, float]:
    """(dates, the format that parses most values, share parsed). Tries crmlab's cleaning formats and
    a few more (Chinese '2024年3月4日', day-first '04/03/2024'); text that does not look like a date
    (plain numbers, amounts) is never read as one."""
    text = values.dropna().astype("string").str.strip()
    text = text[text != ""]
    if text.empty or text.str.match(_DATE_LIKE).mean() < MIN_PARSE_SHARE:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"), None, 0.0
    sample = text.drop_duplicates().head(5000)
    best, best_n = None, 0
    for fmt in _date_formats():
        n = int(pd.to_datetime(sample, format=fmt, errors="coerce").notna().sum())
        if n > best_n:
            best, best_n = fmt, n
    if best is None:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"), None, 0.0
    parsed = pd.to_datetime(values.astype("string").str.strip(), format=best, errors="coerce")
    return parsed, best, float(parsed.notna().sum() / max(1, len(text)))


# --------------------------------------------------------------------------- files


def sniff_file(path: Path) -> tuple[str, str, str]:
    """(encoding, separator, reason) of a CSV: UTF-8 when the bytes decode as UTF-8, else GB18030
    (Chinese exports), tried in that order; the separator by :class:`csv.Sniffer` on the first lines."""
    raw = path.read_bytes()[: 4 << 20]
    encoding, why = None, ""
    for enc, label in (("utf-8", "utf-8"), ("gb18030", "gb18030")):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as exc:
            if enc == "utf-8" and exc.start > len(raw) - 4:  # a multi-byte character cut by the 4 MB window
                text = raw[: exc.start].decode(enc)
            else:
                continue
        encoding = label
        why = "the bytes decode as UTF-8" if enc == "utf-8" else "not UTF-8; the bytes decode as GB18030 (GBK)"
        break
    if encoding is None:
        raise DataError("cannot decode the file as UTF-8 or GB18030", file=str(path),
                        expected="a text CSV; set project.data.<table>.encoding to its encoding")
    if text.startswith("\ufeff"):
        encoding, text = "utf-8-sig", text[1:]
        why = "UTF-8 with a byte-order mark"
    head = "\n".join(text.splitlines()[:50])
    try:
        sep = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    return encoding, sep, why


def read_sample(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The file's columns as text (up to :data:`MAX_ROWS` rows) and how it was read
    (``format``, ``encoding``, ``sep`` and the reasons)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected="an existing CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
        return df.head(MAX_ROWS), {"format": "parquet"}
    encoding, sep, why = sniff_file(path)
    try:
        df = pd.read_csv(path, sep=sep, encoding=encoding, dtype=str, nrows=MAX_ROWS, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=str(path), expected="a header row and data rows") from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot read the file ({str(exc).splitlines()[0]})", file=str(path)) from None
    if df.empty:
        raise DataError("the file has a header but no rows", file=str(path), expected="data rows")
    names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
    return df, {"format": "csv", "encoding": encoding, "encoding_why": why, "sep": sep,
                "sep_why": f"{names.get(sep, repr(sep))}-separated header of {df.shape[1]} columns"}


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class ColumnGuess:
    """One canonical column: the file's column (``None``: not found) and why."""

    canonical: str
    column: str | None
    reason: str


def _header_matches(header: str, synonym: str, exact: bool) -> bool:
    if exact:
        return header == synonym
    long_enough = len(synonym) >= 4 or (len(synonym) >= 2 and not synonym.isascii())
    return long_enough and synonym in header and header != synonym


def _content_share(series: pd.Series, kind: str) -> tuple[float, str]:
    nonnull = series.dropna()
    if nonnull.empty:
        return 0.0, "empty"
    if kind == "date":
        _, fmt, share = parse_dates(nonnull)
        return share, f"{share:.0%} of values parse as dates ({fmt})" if fmt else "no value looks like a date"
    num = parse_money(nonnull)
    share = float(num.notna().mean())
    return share, f"{share:.0%} of values are numbers"


def _is_id_like(s: pd.Series, n: int) -> bool:
    nonnull = s.dropna()
    if len(nonnull) < max(2, 0.9 * n):
        return False
    nun = nonnull.nunique()
    return 1 < nun and nonnull.astype("string").str.len().max() <= 64


def guess_mapping(df: pd.DataFrame, kind: str = "transactions") -> dict[str, ColumnGuess]:
    """Canonical name -> :class:`ColumnGuess` for one table of ``kind`` (transactions, customers or
    sales). By header first (usual English and Chinese names, normalised; a header match whose
    values do not look right is not taken), then by content for the required columns still missing:
    a date-like column, a money-like column, an id column (repeating values in a transaction log,
    near-unique ones in a customer table)."""
    if kind not in SYNONYMS:
        raise ValueError(f"kind must be one of {list(SYNONYMS)}, got {kind!r}")
    n = len(df)
    norm = {col: normalise(col) for col in df.columns}
    taken: set[str] = set()
    out: dict[str, ColumnGuess] = {}
    # exact headers first, for every canonical name; then headers that contain a usual name
    for exact in (True, False):
        for canonical, names in SYNONYMS[kind].items():
            if canonical in out:
                continue
            hits = sorted((min(i for i, syn in enumerate(names) if _header_matches(nm, syn, exact)), col)
                          for col, nm in norm.items()
                          if col not in taken and any(_header_matches(nm, syn, exact) for syn in names))
            for _, col in hits:
                content = CONTENT.get(canonical)
                text = f"a usual name for {canonical}"
                if content is not None:
                    share, text = _content_share(df[col], content)
                    if share < MIN_PARSE_SHARE:
                        continue
                why = f"header {col!r}" + ("" if exact else f" contains a usual name for {canonical}") + f", {text}"
                out[canonical] = ColumnGuess(canonical, col, why)
                taken.add(col)
                break
    # content guesses for the required columns still missing; never for the churn label: a 0/1
    # attribute (SeniorCitizen) taken for it would train a model of the wrong question silently
    free = [c for c in df.columns if c not in taken]
    for canonical in REQUIRED[kind]:
        if canonical in out:
            continue
        guess = _guess_by_content(df, canonical, [c for c in free if c not in taken], kind, n)
        out[canonical] = guess
        if guess.column is not None:
            taken.add(guess.column)
    return out


def _guess_by_content(df: pd.DataFrame, canonical: str, free: Sequence[str], kind: str, n: int) -> ColumnGuess:
    content = CONTENT.get(canonical)
    if content == "date":
        scored = [(_content_share(df[c], "date"), c) for c in free]
        scored = [(s, t, c) for (s, t), c in scored if s >= MIN_PARSE_SHARE]
        if scored:
            share, text, col = max(scored, key=lambda x: x[0])
            return ColumnGuess(canonical, col, f"by content: {text} (header {col!r} is not a usual name)")
        return ColumnGuess(canonical, None, "no column whose values parse as dates")
    if content == "money":
        best = None
        for c in free:
            num = parse_money(df[c].dropna())
            if num.empty or num.notna().mean() < MIN_PARSE_SHARE:
                continue
            num = num.dropna()
            fractional = float((num != num.round()).mean())
            score = (fractional > 0.05, num.nunique())
            if best is None or score > best[0]:
                best = (score, c, fractional, float(num.notna().mean()))
        if best is not None:
            _, col, frac, share = best
            return ColumnGuess(canonical, col, f"by content: {share:.0%} of values are numbers, {frac:.0%} with "
                               f"cents (header {col!r} is not a usual name)")
        return ColumnGuess(canonical, None, "no column whose values are numbers")
    if canonical in ("customer_id", "series_id"):
        best = None
        for c in free:
            s = df[c]
            if not _is_id_like(s, n) or parse_money(s.dropna()).notna().mean() >= MIN_PARSE_SHARE and \
                    (parse_money(s.dropna()).dropna() % 1 != 0).any():
                continue
            if _content_share(s, "date")[0] >= MIN_PARSE_SHARE:
                continue
            nun = s.nunique()
            if kind == "transactions" and not nun < 0.95 * s.notna().sum():
                continue  # unique per row: an order or line id, not a customer's
            score = nun if kind == "transactions" else (nun / max(1, s.notna().sum()), -list(df.columns).index(c))
            if best is None or score > best[0]:
                best = (score, c, nun)
        if best is not None:
            _, col, nun = best
            what = (f"{nun:,} distinct values repeating over {n:,} rows" if kind == "transactions"
                    else f"{nun:,} distinct values in {n:,} rows")
            return ColumnGuess(canonical, col, f"by content: an id-like column, {what} (header {col!r} is not a "
                               "usual name)")
        return ColumnGuess(canonical, None, "no id-like column (text or integers repeating per customer)")
    return ColumnGuess(canonical, None, "no column matched")


def guess_kind(df: pd.DataFrame) -> tuple[str, str]:
    """(kind, reason): ``customers`` when the file has a churn label and no date-and-amount pair of a
    transaction log, ``sales`` when it has a period and a value but no customer id, else
    ``transactions``."""
    tx = guess_mapping(df, "transactions")
    cust_label = guess_mapping(df, "customers").get("churn")
    id_by_name = tx["customer_id"].column is not None and not tx["customer_id"].reason.startswith("by content")
    has_tx = tx["ts"].column is not None and tx["amount"].column is not None
    if cust_label is not None and not (has_tx and id_by_name):
        return "customers", f"a churn label column {cust_label.column!r} and no transaction log columns"
    if not id_by_name:
        sales = guess_mapping(df, "sales")
        by_name = [g for g in sales.values() if g.column is not None and not g.reason.startswith("by content")]
        if sales["period"].column is not None and sales["value"].column is not None and len(by_name) >= 2:
            return "sales", (f"no customer id header; period {sales['period'].column!r} and value "
                             f"{sales['value'].column!r}: an aggregated sales table")
    return "transactions", "a transaction log: " + ", ".join(
        f"{k} {g.column!r}" for k, g in tx.items() if k in REQUIRED["transactions"] and g.column is not None)


@dataclass
class TableGuess:
    """One file: its kind, how it reads, the mapping and the required columns not found."""

    kind: str
    path: Path
    frame: pd.DataFrame
    read: dict[str, str]
    mapping: dict[str, ColumnGuess]
    kind_reason: str = ""

    @property
    def missing(self) -> list[str]:
        return [k for k in REQUIRED[self.kind] if self.mapping.get(k) is None or self.mapping[k].column is None]

    @property
    def columns(self) -> dict[str, str]:
        return {k: g.column for k, g in self.mapping.items() if g.column is not None}

    def canonical(self) -> pd.DataFrame:
        """The mapped columns under canonical names, dates and amounts parsed (for profiling only)."""
        out = pd.DataFrame({k: self.frame[c] for k, c in self.columns.items()})
        for k in out.columns:
            if CONTENT.get(k) == "date":
                out[k] = parse_dates(out[k])[0]
            elif CONTENT.get(k) in ("money", "number"):
                out[k] = parse_money(out[k])
        return out


def guess_table(path: str | Path, kind: str | None = None, *, overrides: Mapping[str, str] | None = None
                ) -> TableGuess:
    """Read one file and guess its kind (unless given) and mapping; ``overrides`` (canonical ->
    column) replace guesses, e.g. from the interactive prompt."""
    path = Path(path)
    df, read = read_sample(path)
    reason = "given"
    if kind is None:
        kind, reason = guess_kind(df)
    mapping = guess_mapping(df, kind)
    for canonical, col in (overrides or {}).items():
        if col == "-":
            mapping[canonical] = ColumnGuess(canonical, None, "left out by you")
            continue
        if col not in df.columns:
            raise ConfigError(f"{path}: column {col!r} (for {canonical}) is not in the file; its columns: "
                              f"{list(df.columns)}")
        mapping[canonical] = ColumnGuess(canonical, col, "set by you")
    return TableGuess(kind, path, df, read, mapping, reason)


# --------------------------------------------------------------------------- span and plans


@dataclass(frozen=True)
class Span:
    """What the transaction log covers."""

    first: date
    last: date
    rows: int
    customers: int
    repeat_customers: int
    median_gap_days: float | None
    #: rows left out of the span because the cleaning will reject their dates, and why (else "")
    left_out: int = 0
    left_out_why: str = ""

    @property
    def days(self) -> int:
        return (self.last - self.first).days

    @property
    def weeks(self) -> float:
        return self.days / 7

    @property
    def months(self) -> float:
        return self.days / 30.4375


def profile_span(tx: pd.DataFrame, *, today: date | None = None) -> Span:
    """The span of a transaction log with canonical ``customer_id`` and parsed ``ts``: first and last
    date, customers, repeat customers (purchases on two or more distinct days) and the median gap
    between a customer's purchase days. Dates the cleaning will reject with its default bounds (after
    ``today``, default the current date; implausibly early for the column's bulk) are left out and
    counted: one mistyped year must not become the project's ``as_of``."""
    from crmlab.data.clean import derived_min_date

    tx = tx.dropna(subset=["customer_id", "ts"])
    if tx.empty:
        raise DataError("no row with both a customer id and a date", column="ts")
    ts = tx["ts"].dt.tz_localize(None) if getattr(tx["ts"].dt, "tz", None) is not None else tx["ts"]
    today = today or date.today()
    future = (ts >= pd.Timestamp(today) + pd.Timedelta(days=1)).to_numpy(dtype=bool)
    lower, _ = derived_min_date(ts, ~future, None)
    early = (ts < pd.Timestamp(lower)).to_numpy(dtype=bool) if lower is not None else np.zeros(len(ts), dtype=bool)
    why = []
    if future.any():
        why.append(f"{int(future.sum()):,} dated after {today} (e.g. {ts[future].iloc[0].date()})")
    if early.any():
        why.append(f"{int(early.sum()):,} before {lower} (e.g. {ts[early].iloc[0].date()})")
    left_out = int((future | early).sum())
    tx = tx[~(future | early)]
    if tx.empty:
        raise DataError(f"every dated row is outside the dates the cleaning keeps: {'; '.join(why)}", column="ts")
    days = tx.assign(day=tx["ts"].dt.normalize())[["customer_id", "day"]].drop_duplicates().sort_values(
        ["customer_id", "day"])
    per = days.groupby("customer_id")["day"].count()
    gaps = days.groupby("customer_id")["day"].diff().dt.days.dropna()
    return Span(first=tx["ts"].min().date(), last=tx["ts"].max().date(), rows=len(tx), customers=int(len(per)),
                repeat_customers=int((per >= 2).sum()),
                median_gap_days=float(gaps.median()) if len(gaps) else None, left_out=left_out,
                left_out_why="; ".join(why))


@dataclass(frozen=True)
class PipelineVerdict:
    """One row of the table ``crmlab init`` prints: can the data support the pipeline, and why."""

    pipeline: str
    status: str  # "ok", "limited" or "no"
    reason: str


@dataclass
class Plan:
    """Values to write (section -> key -> (value, comment)) and the verdicts."""

    values: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)
    verdicts: list[PipelineVerdict] = field(default_factory=list)

    def set(self, section: str, key: str, value: Any, why: str) -> None:
        self.values.setdefault(section, {})[key] = (value, why)


def _clv_window(s: Span) -> tuple[date, int] | None:
    """(calibration end, holdout weeks) that ``crmlab train clv`` will use on this span with the
    shipped auto settings; ``None`` when the span is too short for any."""
    from crmlab.clv.window import resolve_window
    from crmlab.config import ClvConfig

    try:
        w = resolve_window(ClvConfig(), pd.DataFrame({"ts": pd.to_datetime([s.first, s.last])}), s.last, "W")
    except (DataError, ConfigError):
        return None
    return w.calibration_end, int(round((w.holdout_end - w.calibration_end).days / 7))


def plan_pipelines(tx_span: Span | None, *, has_label: bool = False, label_info: str = "",
                   customers_rows: int | None = None, sales_periods: int | None = None,
                   sales_freq: str | None = None, sales_series: int = 0, item_column: str | None = None) -> Plan:
    """Windows of every pipeline derived from the data's span, each with its reason, and a verdict
    per pipeline. Nothing here depends on any particular data set's dates. ``item_column``: the
    transactions' mapped ``product_id`` or else ``category`` (cross-sell recommends its values), or None."""
    plan = Plan()
    if tx_span is not None and item_column is not None:
        plan.set("crosssell", "item_column", item_column, f"the transactions have a {item_column} column")
        plan.verdicts.append(PipelineVerdict("crosssell", "ok" if tx_span.customers >= 200 else "limited",
                                             f"recommends {item_column} values; holdout 90 days or a quarter of "
                                             "the span"))
    elif tx_span is not None:
        plan.verdicts.append(PipelineVerdict("crosssell", "no", "no product_id or category column: `crmlab train "
                                             "crosssell` stops, `crmlab train all` skips it"))
    if tx_span is not None:
        s = tx_span
        plan.set("project", "as_of", s.last, f"guessed: the last transaction date ({s.first} .. {s.last}, "
                 f"{s.months:.1f} months"
                 + (f"; {s.left_out:,} row(s) left out, which the cleaning will reject: {s.left_out_why}"
                    if s.left_out else "")
                 + "); set null to follow the data as it grows")
        unit = "W" if s.days >= 112 else "D"
        plan.set("project", "time_unit", unit, "weeks: the BG/NBD convention" if unit == "W" else
                 f"days: the data span only {s.days} days")
        # CLV and churn: the windows are left to auto, resolved by the pipelines' own rules (the same
        # functions training calls), so that init says what training will do and they cannot disagree
        clv_window = _clv_window(s)
        if clv_window is None:
            plan.verdicts.append(PipelineVerdict("clv", "no", f"{s.days} days of data: too short for a "
                                                 "calibration period and a holdout"))
        else:
            cal_end, holdout = clv_window
            repeat = s.repeat_customers
            note = (f"{repeat} repeat customers, few for Gamma-Gamma (spend model)" if repeat < 50 else
                    f"{repeat:,} repeat customers of {s.customers:,}")
            plan.verdicts.append(PipelineVerdict(
                "clv", "limited" if repeat < 50 or s.customers < 100 else "ok",
                f"{note}; calibration to {cal_end}, holdout {holdout} weeks"
                + ("" if holdout == 39 else f" (a third of the {int(s.weeks)}-week span)")))
            plan.set("clv", "calibration_start", "auto", "from the first transaction")
            plan.set("clv", "calibration_end", "auto", f"as_of minus the holdout: {cal_end} on this data")
            plan.set("clv", "holdout_weeks", "auto", f"39 weeks, or a third of the span when shorter: {holdout} "
                     "weeks on this data")
        if not has_label:
            from crmlab.churn.data import resolve_windows

            try:
                w = resolve_windows("auto", "auto", "auto", first=s.first, last=s.last, as_of=s.last)
            except DataError as exc:
                plan.verdicts.append(PipelineVerdict("churn", "no", str(exc).split(" (expected")[0]))
            else:
                h, n, step = w.horizon_days, w.n_snapshots, w.step_days
                gap = (f"; the median gap between purchases is {s.median_gap_days:.0f} days"
                       + (", longer than half the horizon: many labels will be 'churned'"
                          if s.median_gap_days and s.median_gap_days > h / 2 else "")
                       if s.median_gap_days else "")
                plan.verdicts.append(PipelineVerdict(
                    "churn", "ok" if h >= 91 and s.customers >= 200 else "limited",
                    f"horizon {h} days, {n} snapshots {step} days apart"
                    + (f" ({w.note})" if w.note else "") + f"; {s.customers:,} customers" + gap))
                plan.set("churn", "horizon_days", "auto", f"{h} days on this data: the longest of 182/91/60/30 "
                         "days whose snapshots fit the span")
                plan.set("churn", "n_snapshots", "auto", f"{n} on this data: the validation snapshot plus "
                         "the training snapshots that fit")
                plan.set("churn", "snapshot_step_days", "auto", f"{step} days on this data: the horizon, at most 91")
            plan.set("churn", "mode", "auto", "auto = transactions here (no churn label in a customer table): "
                     "churned = no purchase in the next horizon")
        # segmentation
        k_max = int(min(10, max(2, s.customers // 15)))
        plan.set("segmentation", "k_range", [2, k_max], f"{s.customers:,} customers: at most one segment per "
                 "15 customers, at most 10")
        plan.verdicts.append(PipelineVerdict(
            "segmentation", "ok" if s.customers >= 200 else "limited" if s.customers >= 30 else "no",
            f"{s.customers:,} customers; k from 2 to {k_max}"
            + ("" if s.customers >= 200 else " (few customers: segments may be unstable)")))
        # forecast from the transactions
        if sales_periods is None:
            _plan_forecast(plan, periods=int(s.weeks) if unit == "W" else s.days, freq=unit, series=1)
    if has_label:
        plan.set("churn", "mode", "auto", "auto = contract here: the customer table has a churn label")
        plan.verdicts.insert(0 if tx_span is None else 1, PipelineVerdict(
            "churn", "ok" if (customers_rows or 0) >= 200 else "limited",
            f"contract table: {label_info}; stratified train/test split"))
    if sales_periods is not None:
        _plan_forecast(plan, periods=sales_periods, freq=sales_freq or "W", series=sales_series)
    if tx_span is None:
        for p in ("clv", "segmentation"):
            plan.verdicts.append(PipelineVerdict(p, "no", "no transaction log"))
        plan.verdicts.append(PipelineVerdict("crosssell", "no", "no transaction log"))
        if sales_periods is None:
            plan.verdicts.append(PipelineVerdict("forecast", "no", "no transaction log or sales table"))
        if not has_label:
            plan.verdicts.append(PipelineVerdict("churn", "no", "no transaction log and no churn label"))
    order = {name: i for i, name in enumerate(pipelines.names())}
    plan.verdicts.sort(key=lambda v: order.get(v.pipeline, len(order)))
    return plan


def _plan_forecast(plan: Plan, *, periods: int, freq: str, series: int) -> None:
    unit = {"D": "days", "W": "weeks", "M": "months"}[freq]
    season = {"D": 7, "W": 52, "M": 12}[freq]
    plan.set("forecast", "freq", freq, f"{periods} {unit} of history" if series <= 1 else
             f"{series} series, up to {periods} {unit} of history")
    horizon = max(1, min({"D": 28, "W": 13, "M": 6}[freq], periods // 6))
    plan.set("forecast", "horizon", horizon, f"at most a sixth of the {periods} periods")
    step = max(1, horizon // 4)
    origins = max(1, min(8, (periods - horizon - 8) // step + 1)) if periods > horizon + 8 else 1
    plan.set("forecast", "origins", origins, "rolling origins that leave 8 periods of history at the first")
    seasonal = periods >= 2 * season + 2
    plan.set("forecast", "season_length", None if seasonal else 1,
             f"{periods} {unit}: two full seasons of {season}" if seasonal else
             f"{periods} {unit} < two seasons of {season}: seasonality off")
    if periods < horizon + 4:
        plan.verdicts.append(PipelineVerdict("forecast", "no", f"{periods} {unit}: too short for a backtest"))
    else:
        plan.verdicts.append(PipelineVerdict(
            "forecast", "ok" if seasonal and origins >= 3 else "limited",
            f"{periods} {unit}, " + ("seasonality on" if seasonal else "seasonality off")
            + f"; horizon {horizon}, {origins} backtest origin(s)"
            + (f"; {series} series" if series > 1 else "")))


# --------------------------------------------------------------------------- writing


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _comment(text: str) -> str:
    return "  # " + " ".join(str(text).split())


def _table_yaml(t: TableGuess, indent: str = "    ") -> list[str]:
    lines = [f"{indent}path: {_yaml_scalar(str(t.path))}" + _comment(f"{t.kind}: {t.kind_reason}")]
    if t.read.get("format") == "csv":
        lines.append(f"{indent}encoding: {_yaml_scalar(t.read['encoding'])}" + _comment(f"guessed: {t.read['encoding_why']}"))
        lines.append(f"{indent}sep: {_yaml_scalar(t.read['sep'])}" + _comment(f"guessed: {t.read['sep_why']}"))
    lines.append(f"{indent}columns:")
    for canonical, g in t.mapping.items():
        if g.column is None:
            if canonical in REQUIRED[t.kind]:
                lines.append(f"{indent}  {canonical}: {PLACEHOLDER}" + _comment(
                    f"FILL IN: {g.reason}; one of {list(map(str, t.frame.columns))}"))
            continue
        lines.append(f"{indent}  {canonical}: {_yaml_scalar(g.column)}" + _comment(
            g.reason if g.reason == "set by you" else f"guessed: {g.reason}"))
    unmapped = [c for c in t.frame.columns if c not in t.columns.values()]
    if unmapped:
        lines.append(f"{indent}# not mapped (kept under their own names): {', '.join(map(str, unmapped))}")
    return lines


def _section_yaml(title: str, values: Mapping[str, tuple[Any, str]]) -> str:
    lines = [f"# {title}", "# Written by `crmlab init`: every value below was derived from your data; the",
             "# comment says how. Defaults of every other key: `crmlab config show <pipeline>`."]
    for key, (value, why) in values.items():
        lines.append(f"{key}: {_yaml_scalar(value)}" + _comment(why))
    return "\n".join(lines) + "\n"


def write_configs(config_dir: str | Path, tables: Sequence[TableGuess], plan: Plan, *,
                  date_formats: Sequence[str] | None = None, date_formats_why: str = "",
                  force: bool = False) -> list[Path]:
    """Write ``project.yaml`` (tables, mapping, as_of, time unit) and one YAML per pipeline.

    Refuses (:class:`ConfigError`) to overwrite a folder that already holds YAML files unless
    ``force``. Returns the files written."""
    cdir = Path(config_dir)
    if cdir.exists() and not cdir.is_dir():
        raise ConfigError(f"{cdir}: exists and is not a folder")
    existing = sorted(cdir.glob("*.yaml")) if cdir.is_dir() else []
    if existing and not force:
        raise ConfigError(f"{cdir} already holds {', '.join(p.name for p in existing)}: not overwritten; "
                          "use --force to replace them, or --dir to write elsewhere")
    cdir.mkdir(parents=True, exist_ok=True)
    project = plan.values.get("project", {})
    lines = ["# Project written by `crmlab init` from your files. Every guess is a value with a comment saying",
             "# why: check the mapping, then `crmlab train all` and `crmlab score`.", "", "data:"]
    for t in tables:
        lines.append(f"  {t.kind}:")
        lines.extend(_table_yaml(t))
    if not any(t.kind == "transactions" for t in tables):
        lines.append("  transactions: null  # no transaction log given (the embedded demo data is never used)")
    for key, (value, why) in project.items():
        lines.append(f"{key}: {_yaml_scalar(value)}" + _comment(why))
    if date_formats:
        lines += ["cleaning:", f"  date_formats: {_yaml_scalar(list(date_formats))}" + _comment(date_formats_why)]
    written = []
    path = cdir / "project.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(path)
    for section, title in ((p.name, p.title) for p in pipelines.records()):
        values = plan.values.get(section)
        if values:
            path = cdir / f"{section}.yaml"
            path.write_text(_section_yaml(title, values), encoding="utf-8")
            written.append(path)
    return written


# --------------------------------------------------------------------------- the whole job


@dataclass
class InitResult:
    tables: list[TableGuess]
    plan: Plan
    written: list[Path]
    span: Span | None
    missing: list[str]  # 'project.data.<table>.columns.<key>' still to fill


def _misread_by_defaults(values: pd.Series, fmt: str, defaults: Sequence[str]) -> bool:
    """Would the cleaner, trying ``defaults`` in order (the first that parses wins), read any value
    differently from ``fmt`` (or not at all)? E.g. '04/03/2024' is 3 April under %m/%d/%Y."""
    text = values.dropna().astype("string").str.strip().drop_duplicates().head(5000)
    want = pd.to_datetime(text, format=fmt, errors="coerce")
    got = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for f in defaults:
        todo = got.isna()
        if not todo.any():
            break
        got[todo] = pd.to_datetime(text[todo], format=f, errors="coerce")
    ok = want.notna()
    return bool((got[ok] != want[ok]).any())


def _best_date_format(tables: Sequence[TableGuess]) -> tuple[list[str] | None, str]:
    """crmlab's date formats with the data's own first, when the cleaning defaults would not read
    them the same way (e.g. '2024年3月4日', or day-first dates that month-first would misread)."""
    defaults = list(CleaningConfig().date_formats)
    found: dict[str, str] = {}
    for t in tables:
        for canonical, g in t.mapping.items():
            if g.column is not None and CONTENT.get(canonical) == "date" and t.kind != "sales":
                _, fmt, _ = parse_dates(t.frame[g.column])
                if fmt is not None and _misread_by_defaults(t.frame[g.column], fmt, defaults):
                    found[f"{t.kind}.{g.column}"] = fmt
    if not found:
        return None, ""
    extra = list(dict.fromkeys(found.values()))
    cols = ", ".join(f"{k} ({v})" for k, v in found.items())
    return extra + [f for f in defaults if f not in extra], (
        f"guessed: your dates {cols} first, since crmlab's default formats would not read them alike")


def _infer_freq(periods: pd.Series) -> str:
    days = pd.Series(sorted(periods.dropna().unique())).diff().dt.days.dropna()
    step = float(days.median()) if len(days) else 7.0
    return "D" if step < 4 else "W" if step < 20 else "M"


def run_init(files: Sequence[str | Path], *, customers: str | Path | None = None, config_dir: str | Path = "configs",
             force: bool = False, overrides: Mapping[str, Mapping[str, str]] | None = None) -> InitResult:
    """Guess, plan and write a project's configs (see the module doc). ``overrides``: kind ->
    canonical -> column, replacing guesses. Required columns that cannot be guessed are written as
    placeholders and listed in ``InitResult.missing``."""
    overrides = overrides or {}
    guesses: list[TableGuess] = []
    for f in files:
        g = guess_table(f)
        if g.kind in overrides:
            g = guess_table(f, g.kind, overrides=overrides[g.kind])
        guesses.append(g)
    if customers is not None:
        guesses.append(guess_table(customers, "customers", overrides=overrides.get("customers")))
    if not guesses:
        raise ConfigError("crmlab init needs a file: crmlab init data/orders.csv [--customers data/customers.csv]")
    kinds = [g.kind for g in guesses]
    dup = {k for k in kinds if kinds.count(k) > 1}
    if dup:
        raise ConfigError(f"more than one {', '.join(sorted(dup))} table among {[str(g.path) for g in guesses]}; "
                          "give one file of each kind (the customer table with --customers)")
    by_kind = {g.kind: g for g in guesses}
    tx = by_kind.get("transactions")
    span = None
    if tx is not None and not tx.missing:
        span = profile_span(tx.canonical())
    cust = by_kind.get("customers")
    has_label = cust is not None and cust.mapping.get("churn") is not None
    label_info = ""
    if has_label:
        col = cust.mapping["churn"].column
        vals = cust.frame[col].dropna().astype("string").str.strip().str.lower()
        label_info = (f"label {col!r} on {len(cust.frame):,} customers, values "
                      f"{ {str(k): int(v) for k, v in vals.value_counts().head(4).items()} }")
    sales = by_kind.get("sales")
    sales_periods = sales_freq = None
    n_series = 0
    if sales is not None and not sales.missing:
        canon = sales.canonical()
        sales_freq = _infer_freq(canon["period"])
        n_series = int(canon["series_id"].nunique()) if "series_id" in canon else 1
        per_series = canon.groupby(canon["series_id"] if "series_id" in canon else 0)["period"].nunique()
        sales_periods = int(per_series.max())
    items = [c for c in ("product_id", "category")
             if tx is not None and tx.mapping.get(c) is not None and tx.mapping[c].column is not None]
    plan = plan_pipelines(span, has_label=has_label, label_info=label_info,
                          customers_rows=len(cust.frame) if cust is not None else None,
                          sales_periods=sales_periods, sales_freq=sales_freq, sales_series=n_series,
                          item_column=items[0] if items else None)
    if tx is None and sales is None and not has_label:
        raise ConfigError("no transaction log, sales table or churn label found in "
                          f"{[str(g.path) for g in guesses]}: nothing a pipeline can train on")
    fmts, fmts_why = _best_date_format(guesses)
    written = write_configs(config_dir, guesses, plan, date_formats=fmts, date_formats_why=fmts_why, force=force)
    missing = [f"project.data.{g.kind}.columns.{k}" for g in guesses for k in g.missing]
    return InitResult(guesses, plan, written, span, missing)
