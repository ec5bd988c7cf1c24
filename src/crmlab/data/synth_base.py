"""The synthetic base's vocabulary and parameters (SynthParams), with the small helpers its generator and its dirt share: dates and amounts in text, numbered ids, e-mail addresses and phone numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

DAY_S = 86_400


WEEK_S = 7 * DAY_S


CATEGORIES = ("books", "music", "electronics", "home", "toys")


CHANNELS = ("web", "store", "app")


INTERACTION_KINDS = ("support_ticket", "complaint", "visit", "email_open")


PLANS = ("basic", "plus", "premium")


ACQUISITION_CHANNELS = ("search", "social", "referral", "email", "affiliate")


ACQUISITION_COST = {"search": 30.0, "social": 22.0, "referral": 12.0, "email": 6.0, "affiliate": 40.0}


REGIONS = ("northeast", "midwest", "south", "west")


GENDERS = ("female", "male", "other")


FEMALE_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra "
    "Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Rebecca Laura "
    "Sharon Cynthia Kathleen Amy Angela Anna Brenda Emma Olivia Sophia Grace Chloe Hannah"
).split()


MALE_NAMES = (
    "James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew "
    "Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason "
    "Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon"
).split()


LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
    "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James"
).split()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# Date formats: kind -> example. The main format is "2023-04-05 14:03:00" for transactions and
# interactions and "2023-04-05" for customers; the others are the dirty variants.
DATE_FORMATS = {
    "date_iso_datetime": "2023-04-05 14:03:00",
    "date_iso_date": "2023-04-05",
    "date_slash": "2023/04/05",
    "date_day_month_name": "05 Apr 2023",
    "date_month_name_day": "Apr 05, 2023",
    "date_compact": "20230405",
}


DIRTY_KINDS: dict[str, str] = {
    "date_iso_datetime": "valid date written '2023-04-05 14:03:00' (customers.signup_date only; main elsewhere)",
    "date_iso_date": "valid date written '2023-04-05' (transactions/interactions ts only; main in customers)",
    "date_slash": "valid date written '2023/04/05'",
    "date_day_month_name": "valid date written '05 Apr 2023'",
    "date_month_name_day": "valid date written 'Apr 05, 2023'",
    "date_compact": "valid date written '20230405'",
    "date_unparseable": "extra row whose date is 'not a date' or like '2023-13-45' (reject)",
    "date_future": "extra row dated in year 2099, like '2099-04-05 14:03:00' (reject)",
    "amount_dollar": "valid amount written '$45.00' ('$1,234.50' from 1000 up)",
    "amount_thousands": "valid amount of 1000 or more written '1,234.50' (rare: spends that large are rare)",
    "amount_usd": "valid amount written 'USD 45.00'",
    "amount_padded": "valid amount written ' 12.5 ' (spaces, trailing zeros dropped)",
    "amount_unparseable": "extra row whose amount is 'abc' or like '12..50' (reject)",
    "return": "extra valid row: a return, negative amount like '-15.00', order_id '<purchase order_id>-R'",
    "category_variant": "valid category in other case/spacing: 'Books', ' books ' or 'BOOKS'",
    "missing_category": "real row with an empty category (repairable)",
    "missing_quantity": "real row with an empty quantity (repairable)",
    "missing_channel": "real row with an empty channel (repairable)",
    "missing_age": "customer row with an empty age (repairable)",
    "missing_gender": "customer row with an empty gender (repairable)",
    "missing_region": "customer row with an empty region (repairable)",
    "empty_customer_id": "extra transaction row with an empty customer_id (reject)",
    "exact_duplicate": "extra row repeating another row cell for cell (drop)",
    "duplicate_person": "extra customer row: a known person under a new id, email differing only in "
    "case/spaces, phone formatted differently (merge)",
    "duplicate_id": "valid row whose customer_id is a duplicate id of its person (map via duplicate_ids)",
}


TABLE_KINDS: dict[str, tuple[str, ...]] = {
    "transactions": (
        "date_iso_date", "date_slash", "date_day_month_name", "date_month_name_day", "date_compact",
        "date_unparseable", "date_future", "amount_dollar", "amount_thousands", "amount_usd", "amount_padded",
        "amount_unparseable", "return", "category_variant", "missing_category", "missing_quantity",
        "missing_channel", "empty_customer_id", "exact_duplicate", "duplicate_id",
    ),
    "customers": (
        "date_iso_datetime", "date_slash", "date_day_month_name", "date_month_name_day", "date_compact",
        "missing_age", "missing_gender", "missing_region", "exact_duplicate", "duplicate_person",
    ),
    "interactions": (
        "date_iso_date", "date_slash", "date_day_month_name", "date_month_name_day", "date_compact",
        "date_unparseable", "date_future", "exact_duplicate", "duplicate_id",
    ),
}


CLEAN_LABEL = ""  # label of a row without dirt


_INTERACTION_RATES = (
    "visit_rate_per_lambda", "email_open_rate_per_lambda", "support_ticket_rate", "complaint_rate",
    "support_ticket_rate_pre_dropout", "complaint_rate_pre_dropout",
)


_DIRTY_RATES = (
    "date_format_rate", "unparseable_date_rate", "future_date_rate", "amount_format_rate",
    "unparseable_amount_rate", "return_rate", "category_variant_rate", "missing_category_rate",
    "missing_quantity_rate", "missing_channel_rate", "empty_customer_id_rate", "exact_duplicate_rate",
    "duplicate_person_rate", "second_duplicate_share", "missing_age_rate", "missing_gender_rate",
    "missing_region_rate",
)


@dataclass(frozen=True)
class SynthParams:
    """Ground-truth parameters of the synthetic CRM (time unit: weeks; rates are fractions).

    BG/NBD: ``lambda ~ Gamma(r, rate alpha)``, ``p ~ Beta(a, b)``. Gamma-Gamma (lifetimes' naming):
    ``z ~ Gamma(p, rate nu)``, ``nu ~ Gamma(q, rate v)``, so ``E[z] = p v / (q - 1)`` (30.0 by default).
    """

    # BG/NBD purchase process
    r: float = 0.25
    alpha: float = 4.0
    a: float = 0.8
    b: float = 2.5
    # Gamma-Gamma spend per purchase
    p: float = 6.0
    q: float = 4.0
    v: float = 15.0
    # calendar
    start: date = date(2022, 1, 1)
    end: date = date(2024, 12, 31)
    signup_margin_weeks: float = 26.0
    # interactions (events per week while alive)
    visit_rate_per_lambda: float = 2.0
    email_open_rate_per_lambda: float = 1.0
    support_ticket_rate: float = 0.01
    complaint_rate: float = 0.003
    pre_dropout_weeks: float = 8.0
    support_ticket_rate_pre_dropout: float = 0.15
    complaint_rate_pre_dropout: float = 0.12
    # dirty rows, as fractions of the clean rows of their table
    date_format_rate: float = 0.10
    unparseable_date_rate: float = 0.005
    future_date_rate: float = 0.003
    amount_format_rate: float = 0.06
    unparseable_amount_rate: float = 0.003
    return_rate: float = 0.02
    category_variant_rate: float = 0.03
    missing_category_rate: float = 0.01
    missing_quantity_rate: float = 0.01
    missing_channel_rate: float = 0.01
    empty_customer_id_rate: float = 0.003
    exact_duplicate_rate: float = 0.01
    duplicate_person_rate: float = 0.02
    second_duplicate_share: float = 0.2
    missing_age_rate: float = 0.03
    missing_gender_rate: float = 0.02
    missing_region_rate: float = 0.02

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b", "p", "q", "v", "signup_margin_weeks", "pre_dropout_weeks"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} should be > 0")
        if not self.q > 1:
            raise ValueError(f"q={self.q!r} should be > 1 (E[z] = p*v/(q-1) must exist)")
        if self.start + timedelta(weeks=self.signup_margin_weeks) >= self.end:
            raise ValueError(
                f"start={self.start} + signup_margin_weeks={self.signup_margin_weeks} should be before end={self.end}"
            )
        for name in _INTERACTION_RATES:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} should be >= 0")
        for name in _DIRTY_RATES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} should be a fraction in [0, 1]")
        in_place = (
            self.date_format_rate + self.amount_format_rate + self.category_variant_rate
            + self.missing_category_rate + self.missing_quantity_rate + self.missing_channel_rate
        )
        if in_place > 1:
            raise ValueError(f"in-place dirty rates of transactions add up to {in_place:.3f}, should be <= 1")

    @property
    def mean_spend(self) -> float:
        """Population mean spend per purchase, ``E[z] = p v / (q - 1)``."""
        return self.p * self.v / (self.q - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO text); :meth:`from_dict` reads it back."""
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SynthParams field(s) {unknown}")
        values = dict(data)
        for key in ("start", "end"):
            if isinstance(values.get(key), str):
                values[key] = date.fromisoformat(values[key])
        return cls(**values)


DEFAULT_PARAMS = SynthParams()


def epoch_seconds(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY_S


def seconds_to_datetime(seconds: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]").astype("datetime64[ns]"))


def format_dates(seconds: np.ndarray, kind: str) -> np.ndarray:
    """Text dates (object array) from epoch seconds in one of the :data:`DATE_FORMATS`."""
    seconds = np.asarray(seconds, dtype=np.int64)
    if seconds.size == 0:
        return np.empty(0, dtype=object)
    if kind == "date_iso_datetime":
        return seconds_to_datetime(seconds).dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)
    if kind == "date_iso_date":
        return seconds_to_datetime(seconds).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    ts = pd.DatetimeIndex(seconds_to_datetime(seconds))
    ymd = zip(ts.year.tolist(), ts.month.tolist(), ts.day.tolist(), strict=True)
    if kind == "date_slash":
        out = [f"{y:04d}/{m:02d}/{d:02d}" for y, m, d in ymd]
    elif kind == "date_day_month_name":
        out = [f"{d:02d} {_MONTHS[m - 1]} {y:04d}" for y, m, d in ymd]
    elif kind == "date_month_name_day":
        out = [f"{_MONTHS[m - 1]} {d:02d}, {y:04d}" for y, m, d in ymd]
    elif kind == "date_compact":
        out = [f"{y:04d}{m:02d}{d:02d}" for y, m, d in ymd]
    else:  # pragma: no cover - internal misuse
        raise ValueError(f"unknown date format kind {kind!r}")
    return np.array(out, dtype=object)


def numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Ids like ``C000123`` (object array): ``prefix`` and the numbers zero-padded to ``width``."""
    if numbers.size == 0:
        return np.empty(0, dtype=object)
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width)).astype(object)


def int_text(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as text (object array), through a lookup table."""
    values = np.asarray(values, dtype=np.int64)
    table = np.array([str(i) for i in range(int(values.max(initial=0)) + 1)], dtype=object)
    return table[values]


def format_amounts(values: np.ndarray) -> np.ndarray:
    return np.array([f"{x:.2f}" for x in np.asarray(values, dtype=float).tolist()], dtype=object)


def assign_kinds(rng: np.random.Generator, labels: np.ndarray, rows: np.ndarray, rates: Mapping[str, float]) -> None:
    """Give disjoint random subsets of ``rows`` the kinds in ``rates`` (``round(rate * len(rows))`` each)."""
    order = rng.permutation(rows)
    pos = 0
    for kind, rate in rates.items():
        k = min(int(round(rate * rows.size)), order.size - pos)
        labels[order[pos : pos + k]] = kind
        pos += k


def pick_some(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """``k`` rows of ``pool``, without replacement while the pool lasts."""
    if k <= 0 or pool.size == 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(pool, size=k, replace=k > pool.size)


def draw_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of probabilities (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def rank01(x: np.ndarray) -> np.ndarray:
    return (np.argsort(np.argsort(x, kind="stable"), kind="stable") + 0.5) / x.size


def unique_emails(rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``first.last<number>@example.com`` (lower case), the number redrawn until every address is unique."""
    stem = np.strings.add(np.strings.add(np.strings.lower(first), "."), np.strings.lower(last))
    number = rng.integers(1, 10_000, first.size)
    while True:
        email = np.strings.add(np.strings.add(stem, number.astype(str)), "@example.com").astype(object)
        clash = pd.Series(email).duplicated().to_numpy()
        if not clash.any():
            return email
        number[clash] = rng.integers(1, 100_000, int(clash.sum()))


def unique_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ten-digit numbers with N9X area codes (reserved, never assigned): US-like but fictitious."""
    def draw(k: int) -> np.ndarray:
        area = rng.integers(2, 10, k) * 100 + 90 + rng.integers(0, 10, k)
        return area * 10_000_000 + rng.integers(200, 1000, k) * 10_000 + rng.integers(0, 10_000, k)

    digits = draw(n)
    while True:
        clash = pd.Series(digits).duplicated().to_numpy()
        if not clash.any():
            return digits
        digits[clash] = draw(int(clash.sum()))


PHONE_STYLES = ("{a}-{e}-{l}", "+1 ({a}) {e}-{l}", "{a}.{e}.{l}", "({a}) {e}-{l}", "{a}{e}{l}", "+1 {a} {e} {l}")


def format_phone(digits: int, style: int) -> str:
    s = f"{digits:010d}"
    return PHONE_STYLES[style].format(a=s[:3], e=s[3:6], l=s[6:])


def email_variant(email: str, style: int) -> str:
    """The same address differing only in letter case and/or surrounding spaces (never identical)."""
    local, domain = email.split("@")
    title = ".".join(part[:1].upper() + part[1:] for part in local.split("."))
    return (
        f"{title}@{domain.capitalize()}",
        email.upper(),
        f"  {email} ",
        f" {title}@{domain.split('.')[0].capitalize()}.{domain.split('.')[1].upper()} ",
    )[style]


def draw_acquisition_cost(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    base = np.array([ACQUISITION_COST[c] for c in ACQUISITION_CHANNELS])
    return np.round(base[channel] * rng.lognormal(0.0, 0.35, channel.size), 2)
