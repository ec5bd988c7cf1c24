"""Finding the columns of a table that hold personal data or identifiers, by name and by content.

A real CRM export carries its customers' names, e-mail addresses, phone numbers, addresses and ID
numbers under whatever headers the CRM uses (``E-mail Address``, ``Mobile Phone``, ``客户姓名``,
``手机号``). Such a column must never become a model feature: the values would end up in the
LightGBM text model, in ``preprocessing.json`` and in the MLflow artifacts. :func:`find_personal_columns`
flags them

* **by name** (English and Chinese; case, spaces, underscores, hyphens and dots ignored): names,
  e-mail addresses, phone numbers, addresses, ID/passport/social-security numbers, birth dates,
  messenger handles (WeChat, QQ);
* **by content**: e-mail addresses, phone numbers (Chinese mobiles ``1[3-9]xxxxxxxxx`` with or without
  ``+86``, ``+`` international numbers, ``(555) 123-4567``, landlines ``010-12345678``), Chinese resident ID numbers
  (17 digits and a check character) and US social security numbers, when at least half the values of
  the column look so; with ``near_unique=True`` also free text with almost one distinct value per
  row (at least 20 values, 90 % distinct, not numbers): an identifier, not a category.

A column flagged by name whose values are e-mail addresses or phone numbers takes that kind (a
``contact`` column of phone numbers is a phone column). Each finding carries a ``kind`` (``email``, ``phone``, ``name``, ``address``, ``id_number``,
``identifier``) and a reason that names the rule, never a value. ``email`` and ``phone`` columns can
be used to match one person under several ids (:mod:`crmlab.data.clean`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["REDACTED", "PersonalColumn", "find_personal_columns", "normalise_column_name", "redact_row"]

REDACTED = "<personal data>"

# Values inspected per column for the content rules (distinct values, in order of appearance).
_SAMPLE = 2000
# Rows read for the content rules when distinct values need not be counted (long transaction tables).
_SAMPLE_ROWS = 100_000
# Share of the inspected values that must look personal for a content rule to flag the column.
_CONTENT_SHARE = 0.5
# Near-unique free text: at least this many values, this share of them distinct.
_NEAR_UNIQUE_MIN_ROWS = 20
_NEAR_UNIQUE_SHARE = 0.9

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_CN_MOBILE = re.compile(r"^(?:\+?86|0086)?1[3-9]\d{9}$")
_INTL_PHONE = re.compile(r"^\+\d[\d\s\-().]{6,18}\d$")
_FORMATTED_PHONE = re.compile(r"^\(?\d{2,4}\)?[\s\-.]?\d{3,4}[\s\-.]\d{3,5}$|^\(?0\d{2,3}\)?[\s\-]\d{7,8}$")
_CN_ID = re.compile(r"^\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]$")
_US_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_NUMBER = re.compile(r"^[\s(]*[+-]?[$€£¥￥]?\s*\d[\d,]*(?:\.\d+)?\s*[)%元]?$")
_DATE_LIKE = re.compile(r"^\d{2,4}[-/.年]\d{1,2}[-/.月]\d{1,4}")

# English names, after normalise_column_name; a column whose name ends with one of these is flagged.
_NAME_SUFFIXES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "emailaddr", "mail", "mailaddress", "emailid"),
    "phone": ("phone", "phonenumber", "phoneno", "phonenum", "mobile", "mobilenumber", "mobileno",
              "mobilephone", "cellphone", "cell", "cellnumber", "tel", "telephone", "telno", "telnumber",
              "fax", "msisdn", "contactnumber", "whatsapp"),
    "name": ("fullname", "firstname", "lastname", "surname", "forename", "givenname", "familyname",
             "middlename", "customername", "clientname", "contactname", "contactperson", "membername",
             "username", "nickname", "displayname", "accountname", "companyname", "personname",
             "buyername", "recipient", "recipientname", "ownername", "holdername", "cardholder"),
    "address": ("address", "streetaddress", "street", "addressline1", "addressline2", "homeaddress",
                "shippingaddress", "billingaddress", "ipaddress", "ip"),
    "id_number": ("ssn", "socialsecuritynumber", "nationalid", "nationalidnumber", "idnumber", "idno",
                  "idcard", "idcardnumber", "passport", "passportnumber", "passportno", "taxid",
                  "driverslicense", "licensenumber", "iban", "creditcard", "cardnumber"),
    "identifier": ("birthdate", "dateofbirth", "dob", "birthday", "wechat", "wechatid", "weixin", "qq",
                   "qqnumber", "loginname", "loginid"),
}
# Exactly these (normalised) names are personal too (``name`` alone, but not ``plan_name``).
_NAME_EXACT = {"name": "name", "contact": "name", "customer": "name", "client": "name"}
# Chinese headers: a column whose name contains one of these is flagged.
_CHINESE: dict[str, tuple[str, ...]] = {
    "email": ("邮箱", "邮件", "电邮"),
    "phone": ("手机", "电话", "联系方式", "座机", "传真", "联系电话"),
    "name": ("姓名", "名字", "客户名称", "客户名", "联系人", "收货人", "收件人", "昵称", "户名", "持卡人"),
    "address": ("地址", "住址", "住所"),
    "id_number": ("身份证", "证件号", "证件号码", "护照", "银行卡", "卡号", "社保号"),
    "identifier": ("出生日期", "生日", "微信", "ＱＱ", "QQ号"),
}
# Chinese words that make a count, a flag or a duration of the thing, not the thing.
_CHINESE_FLAG_WORDS = ("次数", "数量", "个数", "是否", "有无", "时长", "频次", "率")
# A first word that makes a count or a flag of the thing, not the thing (``is_mobile``, ``n_email``).
_FLAG_PREFIXES = ("is", "has", "n", "num", "count", "nb", "no", "total", "uses", "opt", "can", "allow")

_KIND_TEXT = {
    "email": "e-mail addresses",
    "phone": "phone numbers",
    "name": "names of persons",
    "address": "addresses",
    "id_number": "ID numbers",
    "identifier": "identifiers",
}


@dataclass(frozen=True)
class PersonalColumn:
    """One flagged column: its name, the kind of personal data and why (a rule, never a value)."""

    column: str
    kind: str
    reason: str

    def note(self) -> str:
        return f"{self.column!r} ({self.reason})"


def normalise_column_name(name: object) -> str:
    """Lower case without spaces, underscores, hyphens, dots, slashes, colons or brackets:
    ``'E-mail Address'`` -> ``'emailaddress'``, ``'Mobile_Phone'`` -> ``'mobilephone'``."""
    return re.sub(r"[\s_\-.:/\\()（）\[\]#]+", "", str(name)).lower()


def _words(name: object) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    return [w for w in re.split(r"[^0-9A-Za-z]+", text.lower()) if w]


def _by_name(column: object) -> str | None:
    raw = str(column)
    if any(w in raw for w in _CHINESE_FLAG_WORDS):
        return None  # '电话回访次数', '是否有邮箱': a count or a flag, not the thing
    for kind, parts in _CHINESE.items():
        if any(p in raw for p in parts):
            return kind
    words = [w for w in _words(raw) if not w.isdigit()]  # 'Phone 2' is a phone
    if not words or (words[0] in _FLAG_PREFIXES and len(words) > 1):
        return None  # 'is_mobile', 'n_email': a flag or a count, not the thing
    norm = "".join(words)
    if norm in _NAME_EXACT:
        return _NAME_EXACT[norm]
    for kind, suffixes in _NAME_SUFFIXES.items():
        for suffix in suffixes:
            # a short suffix must be the whole last word: 'tel' but not 'hotel', 'ip' but not 'membership'
            if norm.endswith(suffix) and (len(suffix) > 4 or words[-1] == suffix):
                return kind
    return None


def _distinct_text(s: pd.Series, *, count: bool) -> tuple[pd.Series, int]:
    """(the first distinct non-missing values as text, the number of distinct values, or of those
    among the first rows only unless ``count``). Whole floats lose their ``.0`` (a phone column read
    as numbers); other numbers, booleans and dates give none."""
    if not count:
        s = s.iloc[:_SAMPLE_ROWS]
    s = s.dropna()
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return pd.Series([], dtype=object), 0
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.to_numpy(dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0 or not np.array_equal(vals, np.round(vals)) or np.abs(vals).max() >= 1e18:
            return pd.Series([], dtype=object), 0
        s = pd.Series(vals.astype(np.int64))
    distinct = s.unique()
    text = pd.Series(np.asarray(distinct[:_SAMPLE], dtype=object), dtype=object).astype(str).str.strip()
    return text[text != ""].reset_index(drop=True), len(distinct)


def _share(values: pd.Series, pattern: re.Pattern[str]) -> float:
    return float(values.map(lambda v: bool(pattern.match(v))).mean()) if len(values) else 0.0


def _by_content(s: pd.Series, *, near_unique: bool) -> tuple[str, str] | None:
    sample, n_distinct = _distinct_text(s, count=near_unique)
    if sample.empty:
        return None
    if _share(sample, _EMAIL) >= _CONTENT_SHARE:
        return "email", "values look like e-mail addresses"
    compact = sample.str.replace(r"[\s\-]", "", regex=True)
    phone = (compact.map(lambda v: bool(_CN_MOBILE.match(v)))
             | sample.map(lambda v: bool(_INTL_PHONE.match(v) or _FORMATTED_PHONE.match(v))))
    if float(phone.mean()) >= _CONTENT_SHARE:
        return "phone", "values look like phone numbers"
    if float(sample.map(lambda v: bool(_CN_ID.match(v) or _US_SSN.match(v))).mean()) >= _CONTENT_SHARE:
        return "id_number", "values look like ID numbers"
    text_dtype = (pd.api.types.is_string_dtype(s.dtype) or pd.api.types.is_object_dtype(s.dtype)
                  or isinstance(s.dtype, pd.CategoricalDtype))
    if near_unique and text_dtype:
        present = int(s.notna().sum())
        if present >= _NEAR_UNIQUE_MIN_ROWS and n_distinct >= _NEAR_UNIQUE_SHARE * present:
            numeric = _share(sample, _NUMBER) >= _CONTENT_SHARE
            dates = _share(sample, _DATE_LIKE) >= _CONTENT_SHARE
            if not numeric and not dates:
                return "identifier", (f"free text with {n_distinct:,} distinct values in {present:,} rows: "
                                      "an identifier, not a category")
    return None


def find_personal_columns(
    df: pd.DataFrame,
    *,
    columns: Iterable[object] | None = None,
    near_unique: bool = True,
) -> list[PersonalColumn]:
    """The columns of ``df`` (or of ``columns``, a subset) that hold personal data or identifiers.

    Name rules are checked first, then content rules (see the module doc); ``near_unique`` adds the
    near-unique free-text rule, meant for a customers table whose columns may become features.
    The reasons name rules, never values, so they are safe to log.
    """
    out: list[PersonalColumn] = []
    for col in (df.columns if columns is None else columns):
        kind = _by_name(col)
        found = _by_content(df[col], near_unique=near_unique and kind is None)
        if kind is not None and found is not None and found[0] in ("email", "phone") and found[0] != kind:
            # 'contact' holding phone numbers: a phone column (so persons can be matched on it)
            out.append(PersonalColumn(str(col), found[0], f"{found[1]}, under a personal column name"))
        elif kind is not None:
            out.append(PersonalColumn(str(col), kind, f"{_KIND_TEXT[kind]}, by the column name"))
        elif found is not None:
            out.append(PersonalColumn(str(col), found[0], found[1]))
    return out


def redact_row(cells: Mapping[Any, Any], personal: Iterable[object] = ()) -> dict[Any, Any]:
    """An example row for an error message with its personal data replaced by ``<personal data>``:
    the cells of ``personal`` columns, of columns personal by name, and values that are themselves an
    e-mail address, a phone number or an ID number."""
    hidden = {str(c).lower() for c in personal}
    out: dict[Any, Any] = {}
    for key, value in cells.items():
        personal_cell = str(key).lower() in hidden or _by_name(key) is not None
        if not personal_cell and isinstance(value, str | int | float) and not isinstance(value, bool):
            personal_cell = _by_content(pd.Series([value]), near_unique=False) is not None
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        out[key] = REDACTED if personal_cell and not missing else value
    return out
