"""Seeded synthetic CRM data with known ground truth.

:func:`generate_synthetic` draws a customer base from the BG/NBD purchase process with Gamma-Gamma
spend (Fader, Hardie and Lee 2005, "Counting your customers the easy way"; Fader, Hardie and Lee
2005, "RFM and CLV"), then writes it out the way a real CRM export looks: every cell text, dates and
amounts in several formats, missing values, repeated rows, invalid rows and the same person under
several customer ids. The latent values of every person are kept (:attr:`SynthData.truth`), so tests
can check that the models recover the parameters and that the cleaner finds exactly the rows that
were made dirty (:attr:`SynthData.dirty_counts`).

The process, for each person (time unit: weeks):

* signup, which is also the first purchase, uniform over ``[start, end - signup_margin_weeks]``;
* purchase rate ``lambda ~ Gamma(shape r, rate alpha)``; repeat purchases follow a Poisson process
  with rate ``lambda`` in continuous time;
* after each repeat purchase the person drops out for good with probability
  ``p ~ Beta(a, b)``; ``dropout_ts`` is the time of that last purchase;
* spend per purchase ``z ~ Gamma(shape p, rate nu)`` with ``nu ~ Gamma(shape q, rate v)``
  (lifetimes' naming), so ``E[z | nu] = p / nu`` and ``E[z] = p v / (q - 1)``;
* interactions while alive: visits and email opens at rates proportional to ``lambda``; support
  tickets and complaints at a low baseline rate, and at a much higher rate during the
  ``pre_dropout_weeks`` before a person's dropout, so recent complaints foreshadow churn.

``end`` is the extraction date: the observation covers ``[start, end)``, i.e. every clean row is
dated strictly before ``end`` (the last observed day is ``end - 1 day``). Nothing is generated at or
after ``end`` except the injected future-dated dirty rows (year 2099).

Raw tables (all text; main formats, before dirt):

* ``customers.csv``: ``customer_id`` (``C000123``, numbered in order of signup), ``name``
  (``John Smith``), ``email`` (``john.smith123@example.com``, unique per person), ``phone``
  (``295-123-4567``: reserved N9X area codes, so fictitious; unique per person), ``signup_date``
  (``2023-04-05``), ``age``, ``gender`` (female/male/other), ``region``
  (northeast/midwest/south/west), ``plan`` (basic/plus/premium), ``acquisition_channel``
  (search/social/referral/email/affiliate), ``acquisition_cost`` (``31.20``, channel-dependent).
* ``transactions.csv``: ``order_id`` (``O00000042``, in time order; a return is ``O00000042-R``),
  ``customer_id``, ``ts`` (``2023-04-05 14:03:00``), ``amount`` (``12.50``), ``quantity`` (1-5),
  ``category`` (:data:`CATEGORIES`, a favourite per person), ``channel`` (:data:`CHANNELS`).
* ``interactions.csv``: ``customer_id``, ``ts``, ``kind`` (:data:`INTERACTION_KINDS`), ``value``
  (pages for a visit, hours to resolve for a ticket, severity 1-5 for a complaint, empty for an
  email open).

Two names clash between the two models: :class:`SynthParams` ``p`` is the Gamma-Gamma shape, while
the ``p`` column of :attr:`SynthData.truth` is each person's BG/NBD dropout probability.

Dirty rows come in the formats listed in :data:`DIRTY_KINDS`. Each row carries at most one kind of
dirt (plus, independently, possibly a duplicate customer id), so every count is exact and can be
checked against the tables. Rows that a cleaner must reject (unparseable or future dates,
unparseable amounts, empty customer ids, exact repeats) are *extra* rows; rows that a cleaner can
repair are real rows written differently. Hence cleaning the raw tables perfectly gives back exactly
the clean history (:attr:`SynthData.clean_transactions`, :attr:`SynthData.clean_interactions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from crmlab.utils import write_json_atomic, write_table_atomic

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "DIRTY_KINDS",
    "INTERACTION_KINDS",
    "SynthData",
    "SynthParams",
    "generate_synthetic",
    "true_churn_probability",
    "write_synthetic",
]

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

_FEMALE = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra "
    "Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Rebecca Laura "
    "Sharon Cynthia Kathleen Amy Angela Anna Brenda Emma Olivia Sophia Grace Chloe Hannah"
).split()
_MALE = (
    "James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew "
    "Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason "
    "Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon"
).split()
_LAST = (
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
_DATE_FORMATS = {
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

_TABLE_KINDS: dict[str, tuple[str, ...]] = {
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

_CLEAN = ""  # label of a row without dirt

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


@dataclass(frozen=True)
class SynthData:
    """A generated CRM: raw (dirty, all-text) tables and the ground truth behind them.

    * ``customers``, ``transactions``, ``interactions``: raw tables, every cell text (pandas ``str``
      dtype) and missing cells NaN, exactly as ``pd.read_csv(path, dtype=str)`` reads the written files.
    * ``truth``: one row per true person: ``customer_id``, ``signup_ts`` (first purchase), ``lambda``
      (purchases/week), ``p`` (dropout probability), ``nu``, ``mean_spend`` (``E[z] = p_gg / nu``),
      ``dropout_ts`` (NaT if alive at end), ``alive_at_end``, ``n_transactions`` (purchases, the
      first one included, returns excluded).
    * ``duplicate_ids``: ``duplicate_id`` -> ``customer_id`` (true id) for every extra id of a person.
    * ``dirty_counts``: ``{table: {kind: rows}}`` for the kinds in :data:`DIRTY_KINDS`.
    * ``clean_transactions``: every valid transaction row (purchases and returns) before it was
      written out: ``order_id``, ``customer_id`` (true id), ``raw_customer_id`` (id in the raw table),
      ``ts``, ``amount``, ``quantity``, ``category``, ``channel``, ``is_return``.
    * ``clean_interactions``: every valid interaction: ``customer_id``, ``raw_customer_id``, ``ts``,
      ``kind``, ``value``, ``pre_dropout`` (whether it fell in the elevated window before dropout).
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame
    interactions: pd.DataFrame
    truth: pd.DataFrame
    duplicate_ids: pd.DataFrame
    dirty_counts: dict[str, dict[str, int]]
    clean_transactions: pd.DataFrame
    clean_interactions: pd.DataFrame
    params: SynthParams


# --------------------------------------------------------------------------- helpers


def _epoch_s(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY_S


def _to_datetime(seconds: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]").astype("datetime64[ns]"))


def _format_dates(seconds: np.ndarray, kind: str) -> np.ndarray:
    """Text dates (object array) from epoch seconds in one of the :data:`_DATE_FORMATS`."""
    seconds = np.asarray(seconds, dtype=np.int64)
    if seconds.size == 0:
        return np.empty(0, dtype=object)
    if kind == "date_iso_datetime":
        return _to_datetime(seconds).dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)
    if kind == "date_iso_date":
        return _to_datetime(seconds).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    ts = pd.DatetimeIndex(_to_datetime(seconds))
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


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Ids like ``C000123`` (object array): ``prefix`` and the numbers zero-padded to ``width``."""
    if numbers.size == 0:
        return np.empty(0, dtype=object)
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width)).astype(object)


def _int_text(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as text (object array), through a lookup table."""
    values = np.asarray(values, dtype=np.int64)
    table = np.array([str(i) for i in range(int(values.max(initial=0)) + 1)], dtype=object)
    return table[values]


def _format_amounts(values: np.ndarray) -> np.ndarray:
    return np.array([f"{x:.2f}" for x in np.asarray(values, dtype=float).tolist()], dtype=object)


def _assign_kinds(rng: np.random.Generator, labels: np.ndarray, rows: np.ndarray, rates: Mapping[str, float]) -> None:
    """Give disjoint random subsets of ``rows`` the kinds in ``rates`` (``round(rate * len(rows))`` each)."""
    order = rng.permutation(rows)
    pos = 0
    for kind, rate in rates.items():
        k = min(int(round(rate * rows.size)), order.size - pos)
        labels[order[pos : pos + k]] = kind
        pos += k


def _pick(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """``k`` rows of ``pool``, without replacement while the pool lasts."""
    if k <= 0 or pool.size == 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(pool, size=k, replace=k > pool.size)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of probabilities (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def _rank01(x: np.ndarray) -> np.ndarray:
    return (np.argsort(np.argsort(x, kind="stable"), kind="stable") + 0.5) / x.size


# --------------------------------------------------------------------------- the process


@dataclass(frozen=True)
class _People:
    first_s: np.ndarray  # epoch seconds of signup = first purchase
    lam: np.ndarray
    pdrop: np.ndarray
    nu: np.ndarray
    dropout_s: np.ndarray  # epoch seconds, -1 when alive at end
    owner: np.ndarray  # per purchase: person index
    ts_s: np.ndarray  # per purchase: epoch seconds


def _simulate_people(n: int, params: SynthParams, rng_latent: np.random.Generator,
                     rng_process: np.random.Generator) -> _People:
    start_s, end_s = _epoch_s(params.start), _epoch_s(params.end)
    last_day = (params.end - timedelta(weeks=params.signup_margin_weeks) - params.start).days
    signup_day = rng_latent.integers(0, last_day + 1, n)
    first_w = (signup_day + rng_latent.random(n)) / 7.0  # weeks since start
    lam = rng_latent.gamma(params.r, 1.0 / params.alpha, n)
    pdrop = rng_latent.beta(params.a, params.b, n)
    nu = rng_latent.gamma(params.q, 1.0 / params.v, n)
    T = (end_s - start_s) / WEEK_S - first_w

    owners = [np.arange(n)]
    times = [first_w]
    dropout_w = np.full(n, np.nan)
    t = np.zeros(n)
    active = np.arange(n)
    # One round = every still-active person's next repeat purchase; people leave the loop when their
    # next purchase would fall after `end` or when they drop out after a purchase.
    with np.errstate(divide="ignore", over="ignore"):
        while active.size:
            t_next = t[active] + rng_process.standard_exponential(active.size) / lam[active]
            inside = t_next < T[active]
            active = active[inside]
            t[active] = t_next[inside]
            owners.append(active)
            times.append(first_w[active] + t[active])
            drops = rng_process.random(active.size) < pdrop[active]
            dropout_w[active[drops]] = first_w[active[drops]] + t[active[drops]]
            active = active[~drops]

    def seconds(w: np.ndarray) -> np.ndarray:
        return np.minimum(start_s + np.floor(w * WEEK_S).astype(np.int64), end_s - 1)

    owner = np.concatenate(owners)
    ts_s = seconds(np.concatenate(times))
    dropped = ~np.isnan(dropout_w)
    dropout_s = np.full(n, -1, dtype=np.int64)
    dropout_s[dropped] = seconds(dropout_w[dropped])
    order = np.lexsort((owner, ts_s))
    return _People(seconds(first_w), lam, pdrop, nu, dropout_s, owner[order], ts_s[order])


# --------------------------------------------------------------------------- customers


def _unique_emails(rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``first.last<number>@example.com`` (lower case), the number redrawn until every address is unique."""
    stem = np.strings.add(np.strings.add(np.strings.lower(first), "."), np.strings.lower(last))
    number = rng.integers(1, 10_000, first.size)
    while True:
        email = np.strings.add(np.strings.add(stem, number.astype(str)), "@example.com").astype(object)
        clash = pd.Series(email).duplicated().to_numpy()
        if not clash.any():
            return email
        number[clash] = rng.integers(1, 100_000, int(clash.sum()))


def _unique_phones(rng: np.random.Generator, n: int) -> np.ndarray:
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


_PHONE_STYLES = ("{a}-{e}-{l}", "+1 ({a}) {e}-{l}", "{a}.{e}.{l}", "({a}) {e}-{l}", "{a}{e}{l}", "+1 {a} {e} {l}")


def _format_phone(digits: int, style: int) -> str:
    s = f"{digits:010d}"
    return _PHONE_STYLES[style].format(a=s[:3], e=s[3:6], l=s[6:])


def _email_variant(email: str, style: int) -> str:
    """The same address differing only in letter case and/or surrounding spaces (never identical)."""
    local, domain = email.split("@")
    title = ".".join(part[:1].upper() + part[1:] for part in local.split("."))
    return (
        f"{title}@{domain.capitalize()}",
        email.upper(),
        f"  {email} ",
        f" {title}@{domain.split('.')[0].capitalize()}.{domain.split('.')[1].upper()} ",
    )[style]


# --------------------------------------------------------------------------- generation


def _purchase_details(people: _People, params: SynthParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Spend (Gamma-Gamma), quantity, category and channel of every purchase."""
    n, owner = people.lam.size, people.owner
    m = owner.size
    amount = np.maximum(np.round(rng.gamma(params.p, 1.0 / people.nu[owner]), 2), 0.01)
    quantity = 1 + np.minimum(rng.poisson(amount / 40.0), 4)  # loosely tied to the amount
    favourite_category = _categorical(rng, np.tile([0.25, 0.2, 0.2, 0.2, 0.15], (n, 1)))
    favourite_channel = _categorical(rng, np.tile([0.5, 0.3, 0.2], (n, 1)))
    category = np.where(rng.random(m) < 0.7, favourite_category[owner], rng.integers(0, len(CATEGORIES), m))
    channel = np.where(rng.random(m) < 0.8, favourite_channel[owner], rng.integers(0, len(CHANNELS), m))
    return {"amount": amount, "quantity": quantity, "category": category, "channel": channel}


def _returns(ts_s: np.ndarray, purchase: Mapping[str, np.ndarray], params: SynthParams, end_s: int,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Returns of some purchases, 1-21 days later (always before ``end``): the whole amount or part of it."""
    eligible = np.flatnonzero(ts_s < end_s - 22 * DAY_S)
    k = min(int(round(params.return_rate * ts_s.size)), eligible.size)
    src = np.sort(_pick(rng, eligible, k))
    ts = ts_s[src] + rng.integers(DAY_S, 21 * DAY_S, src.size)
    full = rng.random(src.size) < 0.7
    part = np.maximum(np.round(purchase["amount"][src] * rng.uniform(0.2, 0.9, src.size), 2), 0.01)
    amount = np.where(full, purchase["amount"][src], part)
    return {"src": src, "ts_s": ts, "amount": amount, "quantity": np.where(full, purchase["quantity"][src], 1)}


def _simulate_interactions(people: _People, params: SynthParams, end_s: int,
                           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Interaction events (Poisson in time) from signup to dropout (or ``end``), sorted by time.

    Visits and email opens at rates proportional to ``lambda``; tickets and complaints at a baseline
    rate plus an elevated rate in the ``pre_dropout_weeks`` before dropout.
    """
    n = people.lam.size
    first_s = people.first_s
    dropped = people.dropout_s >= 0
    alive_end = np.where(dropped, people.dropout_s, end_s)
    pre_lo = np.where(dropped, np.maximum(first_s, people.dropout_s - int(params.pre_dropout_weeks * WEEK_S)), 0)
    pre_hi = np.where(dropped, people.dropout_s, 0)
    owner_parts, ts_parts, kind_parts, pre_parts = [], [], [], []
    for kind, rate, lo, hi, pre in (
        ("visit", params.visit_rate_per_lambda * people.lam, first_s, alive_end, False),
        ("email_open", params.email_open_rate_per_lambda * people.lam, first_s, alive_end, False),
        ("support_ticket", params.support_ticket_rate, first_s, alive_end, False),
        ("complaint", params.complaint_rate, first_s, alive_end, False),
        ("support_ticket", params.support_ticket_rate_pre_dropout, pre_lo, pre_hi, True),
        ("complaint", params.complaint_rate_pre_dropout, pre_lo, pre_hi, True),
    ):
        span = np.maximum(hi - lo, 0)
        who = np.repeat(np.arange(n), rng.poisson(np.broadcast_to(rate, (n,)) * span / WEEK_S))
        owner_parts.append(who)
        ts_parts.append(lo[who] + np.floor(rng.random(who.size) * span[who]).astype(np.int64))
        kind_parts.append(np.full(who.size, INTERACTION_KINDS.index(kind), dtype=np.int64))
        pre_parts.append(np.full(who.size, pre))
    owner, ts, kind, pre = (np.concatenate(x) for x in (owner_parts, ts_parts, kind_parts, pre_parts))
    # sorted by time; two events of one kind by one person in the same second are one event
    order = np.lexsort((kind, owner, ts))
    owner, ts, kind, pre = owner[order], ts[order], kind[order], pre[order]
    keep = np.ones(ts.size, dtype=bool)
    keep[1:] = (ts[1:] != ts[:-1]) | (owner[1:] != owner[:-1]) | (kind[1:] != kind[:-1])
    owner, ts, kind, pre = owner[keep], ts[keep], kind[keep], pre[keep]
    value = np.full(kind.size, np.nan)  # email opens have none
    visit = kind == INTERACTION_KINDS.index("visit")
    value[visit] = 1 + rng.poisson(3.0, int(visit.sum()))  # pages viewed
    ticket = kind == INTERACTION_KINDS.index("support_ticket")
    value[ticket] = np.round(rng.gamma(2.0, 12.0, int(ticket.sum())), 1)  # hours to resolve
    complaint = kind == INTERACTION_KINDS.index("complaint")
    value[complaint] = 1 + rng.binomial(4, np.where(pre[complaint], 0.6, 0.3))  # severity 1-5
    return {"owner": owner, "ts_s": ts, "kind": np.array(INTERACTION_KINDS, dtype=object)[kind], "value": value,
            "pre": pre}


def _customer_attributes(people: _People, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Personal data (unique email and phone per person) and attributes, some tied to the latent values:
    frequent buyers are more often on higher plans; loyal people (low p) more often came by referral."""
    n = people.lam.size
    u_lam, u_p = _rank01(people.lam), _rank01(people.pdrop)
    gender = _categorical(rng, np.tile([0.49, 0.49, 0.02], (n, 1)))
    female = np.array(_FEMALE)[rng.integers(0, len(_FEMALE), n)]
    male = np.array(_MALE)[rng.integers(0, len(_MALE), n)]
    either = rng.random(n) < 0.5
    first_name = np.where((gender == 0) | ((gender == 2) & either), female, male)
    last_name = np.array(_LAST)[rng.integers(0, len(_LAST), n)]
    email = _unique_emails(rng, first_name, last_name)
    phone = _unique_phones(rng, n)
    age = np.clip(np.round(rng.normal(42, 14, n)), 18, 90).astype(np.int64)
    region = _categorical(rng, np.tile([0.17, 0.21, 0.38, 0.24], (n, 1)))
    plan = _categorical(rng, np.column_stack([0.6 - 0.3 * u_lam, 0.3 + 0.05 * u_lam, 0.1 + 0.25 * u_lam]))
    acq = _categorical(rng, np.column_stack([  # search, social, referral, email, affiliate
        np.full(n, 0.3), 0.2 * (0.7 + 0.6 * u_p), 0.15 * (1.6 - 1.2 * u_p), np.full(n, 0.15), 0.2 * (0.4 + 1.2 * u_p),
    ]))
    return {
        "name": np.strings.add(np.strings.add(first_name, " "), last_name).astype(object),
        "email": email,
        "phone": phone,
        "signup_s": people.first_s,
        "age": age,
        "gender": np.array(GENDERS)[gender],
        "region": np.array(REGIONS)[region],
        "plan": np.array(PLANS)[plan],
        "acquisition_channel": np.array(ACQUISITION_CHANNELS)[acq],
        "acquisition_cost": _acquisition_cost(rng, acq),
    }


def _acquisition_cost(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    base = np.array([ACQUISITION_COST[c] for c in ACQUISITION_CHANNELS])
    return np.round(base[channel] * rng.lognormal(0.0, 0.35, channel.size), 2)


@dataclass(frozen=True)
class _Ids:
    """Customer ids of true persons and their duplicate records."""

    true_id: np.ndarray  # per person
    dup_id: np.ndarray  # per duplicate record
    dup_owner: np.ndarray  # per duplicate record: person index
    dup_signup_s: np.ndarray  # per duplicate record
    slot: np.ndarray  # (persons, 2): index of a person's first/second duplicate record, -1 if none
    since: np.ndarray  # (persons, 2): signup of that record, int64 max if none

    def raw_ids(self, who: np.ndarray, when: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Id written on a row of person ``who`` at ``when``: uniformly the true id or one of the
        duplicate ids registered by then. Also returns whether a duplicate id was used."""
        registered = (self.since[who] <= when[:, None]).sum(axis=1)
        pick = np.floor(rng.random(who.size) * (registered + 1)).astype(np.int64)
        ids = self.true_id[who].copy()
        uses_dup = pick > 0
        ids[uses_dup] = self.dup_id[self.slot[who[uses_dup], pick[uses_dup] - 1]]
        return ids, uses_dup


def _assign_ids(first_s: np.ndarray, params: SynthParams, end_s: int, rng: np.random.Generator) -> _Ids:
    """Pick the persons who register again (some twice), when, and number every customer record
    (true persons and duplicates alike) ``C000001, C000002, ...`` in order of signup."""
    n = first_s.size
    n_people = min(int(round(params.duplicate_person_rate * n)), n)
    person = np.sort(rng.choice(n, size=n_people, replace=False))
    twice = rng.random(n_people) < params.second_duplicate_share
    owner = np.concatenate([person, person[twice]])
    lo = first_s[owner] + DAY_S
    signup = lo + np.floor(rng.random(owner.size) * np.maximum(end_s - DAY_S - lo, 1)).astype(np.int64)
    order = np.lexsort((signup, owner))
    owner, signup = owner[order], signup[order]

    all_signup = np.concatenate([first_s, signup])
    rank = np.empty(all_signup.size, dtype=np.int64)
    rank[np.lexsort((np.arange(all_signup.size), all_signup))] = np.arange(all_signup.size)
    width = max(6, len(str(all_signup.size)))
    ids = _numbered("C", rank + 1, width)

    slot = np.full((n, 2), -1, dtype=np.int64)
    since = np.full((n, 2), np.iinfo(np.int64).max, dtype=np.int64)
    first_of = np.ones(owner.size, dtype=bool)
    first_of[1:] = owner[1:] != owner[:-1]
    for column, rows in ((0, np.flatnonzero(first_of)), (1, np.flatnonzero(~first_of))):
        slot[owner[rows], column] = rows
        since[owner[rows], column] = signup[rows]
    return _Ids(ids[:n], ids[n:], owner, signup, slot, since)


def generate_synthetic(n_customers: int, seed: int, params: SynthParams = DEFAULT_PARAMS) -> SynthData:
    """Generate a dirty CRM export of ``n_customers`` true persons with known ground truth.

    Pure: the result depends only on the arguments. Independent random streams drive the latent
    process, the purchase details, the attributes, the interactions, the duplicate persons and the
    dirt of each table, so changing a dirty-row rate never changes the truth.
    """
    if isinstance(n_customers, bool) or not isinstance(n_customers, (int, np.integer)) or n_customers < 1:
        raise ValueError(f"n_customers={n_customers!r} should be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} should be a non-negative integer")
    n = int(n_customers)
    (rng_latent, rng_process, rng_detail, rng_attr, rng_inter, rng_dup,
     rng_dirty_tx, rng_dirty_cust, rng_dirty_inter) = np.random.default_rng(int(seed)).spawn(9)
    end_s = _epoch_s(params.end)

    people = _simulate_people(n, params, rng_latent, rng_process)
    purchase = _purchase_details(people, params, rng_detail)
    ret = _returns(people.ts_s, purchase, params, end_s, rng_detail)
    events = _simulate_interactions(people, params, end_s, rng_inter)
    attrs = _customer_attributes(people, rng_attr)
    ids = _assign_ids(people.first_s, params, end_s, rng_dup)

    n_purch = people.owner.size
    tx_owner = np.concatenate([people.owner, people.owner[ret["src"]]])
    tx_ts = np.concatenate([people.ts_s, ret["ts_s"]])
    tx_raw_id, tx_uses_dup = ids.raw_ids(tx_owner, tx_ts, rng_dup)
    ev_raw_id, ev_uses_dup = ids.raw_ids(events["owner"], events["ts_s"], rng_dup)

    dropped = people.dropout_s >= 0
    truth = pd.DataFrame({
        "customer_id": _text(ids.true_id),
        "signup_ts": _to_datetime(people.first_s),
        "lambda": people.lam,
        "p": people.pdrop,
        "nu": people.nu,
        "mean_spend": params.p / people.nu,
        "dropout_ts": _to_datetime(np.where(dropped, people.dropout_s, 0)).where(dropped),
        "alive_at_end": ~dropped,
        "n_transactions": np.bincount(people.owner, minlength=n).astype(np.int64),
    }).sort_values("customer_id", ignore_index=True)
    duplicate_ids = pd.DataFrame({
        "duplicate_id": _text(ids.dup_id), "customer_id": _text(ids.true_id[ids.dup_owner]),
    }).sort_values("duplicate_id", ignore_index=True)

    # order ids number the purchases in time order; a return is "<order_id>-R"
    width = max(8, len(str(2 * n_purch)))
    order_id = _numbered("O", np.arange(1, n_purch + 1), width)
    src = ret["src"]
    category = np.concatenate([purchase["category"], purchase["category"][src]])
    channel = np.concatenate([purchase["channel"], purchase["channel"][src]])
    tx = {
        "order_id": np.concatenate([order_id, order_id[src] + "-R"]),
        "raw_customer_id": tx_raw_id,
        "ts_s": tx_ts,
        "amount": np.concatenate([purchase["amount"], -ret["amount"]]),
        "quantity": np.concatenate([purchase["quantity"], ret["quantity"]]).astype(np.int64),
        "category": np.array(CATEGORIES, dtype=object)[category],
        "channel": np.array(CHANNELS, dtype=object)[channel],
    }
    clean_tx = pd.DataFrame({
        "order_id": _text(tx["order_id"]),
        "customer_id": _text(ids.true_id[tx_owner]),
        "raw_customer_id": _text(tx_raw_id),
        "ts": _to_datetime(tx_ts),
        "amount": tx["amount"],
        "quantity": tx["quantity"],
        "category": _text(tx["category"]),
        "channel": _text(tx["channel"]),
        "is_return": np.r_[np.zeros(n_purch, bool), np.ones(src.size, bool)],
    })
    clean_inter = pd.DataFrame({
        "customer_id": _text(ids.true_id[events["owner"]]),
        "raw_customer_id": _text(ev_raw_id),
        "ts": _to_datetime(events["ts_s"]),
        "kind": _text(events["kind"]),
        "value": events["value"],
        "pre_dropout": events["pre"],
    })

    counts: dict[str, dict[str, int]] = {}
    transactions = _dirty_transactions(rng_dirty_tx, params, tx, tx_uses_dup, n_purch, counts)
    customers = _dirty_customers(rng_dirty_cust, params, counts, true={"customer_id": ids.true_id, **attrs},
                                 dup={"owner": ids.dup_owner, "customer_id": ids.dup_id, "signup_s": ids.dup_signup_s})
    ev_cols = {"raw_customer_id": ev_raw_id, "ts_s": events["ts_s"], "kind": events["kind"], "value": events["value"]}
    interactions = _dirty_interactions(rng_dirty_inter, params, ev_cols, ev_uses_dup, counts)
    return SynthData(
        customers=customers,
        transactions=transactions,
        interactions=interactions,
        truth=truth,
        duplicate_ids=duplicate_ids,
        dirty_counts=counts,
        clean_transactions=clean_tx,
        clean_interactions=clean_inter,
        params=params,
    )


# --------------------------------------------------------------------------- dirt


def _date_variant_rates(params: SynthParams, main: str) -> dict[str, float]:
    kinds = [k for k in _DATE_FORMATS if k != main]
    return {k: params.date_format_rate / len(kinds) for k in kinds}


def _unparseable_dates(rng: np.random.Generator, seconds: np.ndarray) -> np.ndarray:
    years = pd.DatetimeIndex(_to_datetime(seconds)).year.to_numpy()
    words = rng.random(seconds.size) < 0.5
    return np.array(["not a date" if w else f"{y}-13-45" for w, y in zip(words.tolist(), years.tolist(), strict=True)],
                    dtype=object)


def _future_dates(seconds: np.ndarray) -> np.ndarray:
    ts = pd.DatetimeIndex(_to_datetime(seconds))
    return np.array([
        f"2099-{m:02d}-{min(d, 28):02d} {h:02d}:{mi:02d}:{s:02d}"
        for m, d, h, mi, s in zip(ts.month, ts.day, ts.hour, ts.minute, ts.second, strict=True)
    ], dtype=object)


def _text(values: np.ndarray) -> pd.Series:
    """A pandas ``str`` column (what ``read_csv(dtype=str)`` gives) from an object array, NaN -> missing."""
    return pd.Series(pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True), dtype="str")


def _frame(columns: Mapping[str, np.ndarray], order: np.ndarray) -> pd.DataFrame:
    """Text columns, rows taken in ``order``."""
    take = pa.array(np.asarray(order, dtype=np.int64))
    return pd.DataFrame({
        k: pd.Series(pa.array(np.asarray(v, dtype=object), type=pa.string(), from_pandas=True).take(take),
                     dtype="str")
        for k, v in columns.items()
    })


def _count(table: str, labels: np.ndarray, extra: Mapping[str, int], counts: dict[str, dict[str, int]]) -> None:
    found = pd.Series(labels).value_counts().to_dict()
    counts[table] = {k: int(found.get(k, 0)) + int(extra.get(k, 0)) for k in _TABLE_KINDS[table]}


def _broken_copies(rng: np.random.Generator, cols: Mapping[str, np.ndarray], ts_s: np.ndarray, pool: np.ndarray,
                   base: int, rates: Mapping[str, float]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Copies of rows of ``pool`` (``round(rate * base)`` per kind) with one field broken: the date
    ('date_unparseable', 'date_future'), the amount ('amount_unparseable') or the customer id
    ('empty_customer_id'). Returns the copied columns and each copy's kind."""
    src_parts, label_parts = [], []
    for kind, rate in rates.items():
        src = _pick(rng, pool, int(round(rate * base)))
        src_parts.append(src)
        label_parts.append(np.full(src.size, kind, dtype=object))
    src = np.concatenate(src_parts)
    labels = np.concatenate(label_parts)
    extra = {k: v[src].copy() for k, v in cols.items()}
    rows = labels == "date_unparseable"
    extra["ts"][rows] = _unparseable_dates(rng, ts_s[src[rows]])
    rows = labels == "date_future"
    extra["ts"][rows] = _future_dates(ts_s[src[rows]])
    if "amount_unparseable" in rates:
        rows = np.flatnonzero(labels == "amount_unparseable")
        word = (rng.random(rows.size) < 0.5).tolist()
        extra["amount"][rows] = ["abc" if w else a.replace(".", "..") for w, a in
                                 zip(word, extra["amount"][rows].tolist(), strict=True)]
    extra["customer_id"][labels == "empty_customer_id"] = np.nan
    return extra, labels


def _dirty_transactions(rng: np.random.Generator, params: SynthParams, tx: Mapping[str, np.ndarray],
                        uses_dup: np.ndarray, n_purch: int, counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    m = tx["order_id"].size
    ts_s, amount = tx["ts_s"], tx["amount"]
    cols: dict[str, np.ndarray] = {
        "order_id": tx["order_id"].copy(),
        "customer_id": tx["raw_customer_id"].copy(),
        "ts": _format_dates(ts_s, "date_iso_datetime"),
        "amount": _format_amounts(amount),
        "quantity": _int_text(tx["quantity"]),
        "category": tx["category"].copy(),
        "channel": tx["channel"].copy(),
    }
    labels = np.full(m, _CLEAN, dtype=object)
    labels[n_purch:] = "return"
    purchases = np.arange(n_purch)
    amount_rates = {k: params.amount_format_rate / 3 for k in ("amount_dollar", "amount_usd", "amount_padded")}
    _assign_kinds(rng, labels, purchases, {
        **_date_variant_rates(params, "date_iso_datetime"), **amount_rates,
        "category_variant": params.category_variant_rate, "missing_category": params.missing_category_rate,
        "missing_quantity": params.missing_quantity_rate, "missing_channel": params.missing_channel_rate,
    })
    big = np.flatnonzero((labels[:n_purch] == _CLEAN) & (amount[:n_purch] >= 1000))
    labels[big[rng.random(big.size) < 0.5]] = "amount_thousands"

    for kind in _DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["ts"][rows] = _format_dates(ts_s[rows], kind)
    fmt = {
        "amount_dollar": lambda x: f"${x:,.2f}",
        "amount_thousands": lambda x: f"{x:,.2f}",
        "amount_usd": lambda x: f"USD {x:.2f}",
        "amount_padded": lambda x: " " + (f"{x:.2f}".rstrip("0").rstrip(".")) + " ",
    }
    for kind, f in fmt.items():
        rows = np.flatnonzero(labels == kind)
        cols["amount"][rows] = [f(x) for x in amount[rows].tolist()]
    rows = np.flatnonzero(labels == "category_variant")
    style = rng.integers(0, 3, rows.size)
    cols["category"][rows] = [
        (c.capitalize(), f" {c} ", c.upper())[i]
        for c, i in zip(cols["category"][rows].tolist(), style.tolist(), strict=True)
    ]
    for col in ("category", "quantity", "channel"):
        cols[col][labels == f"missing_{col}"] = np.nan

    # extra rows: copies of untouched purchases (true id) with one field broken, under new order ids
    pool = np.flatnonzero((labels[:n_purch] == _CLEAN) & ~uses_dup[:n_purch])
    extra, extra_labels = _broken_copies(rng, cols, ts_s, pool, n_purch, {
        "date_unparseable": params.unparseable_date_rate, "date_future": params.future_date_rate,
        "amount_unparseable": params.unparseable_amount_rate, "empty_customer_id": params.empty_customer_id_rate,
    })
    width = len(cols["order_id"][0]) - 1
    extra["order_id"] = _numbered("O", np.arange(n_purch + 1, n_purch + 1 + extra_labels.size), width)

    # exact repeats of untouched purchases
    dup_src = _pick(rng, pool, int(round(params.exact_duplicate_rate * m)))
    all_cols = {k: np.concatenate([cols[k], extra[k], cols[k][dup_src]]) for k in cols}
    all_labels = np.concatenate([labels, extra_labels, np.full(dup_src.size, "exact_duplicate", dtype=object)])
    order = rng.permutation(all_labels.size)
    _count("transactions", all_labels, {"duplicate_id": int(uses_dup.sum())}, counts)
    return _frame(all_cols, order)


def _dirty_customers(rng: np.random.Generator, params: SynthParams, counts: dict[str, dict[str, int]], *,
                     true: dict[str, np.ndarray], dup: dict[str, np.ndarray]) -> pd.DataFrame:
    n = true["customer_id"].size
    cols: dict[str, np.ndarray] = {
        "customer_id": true["customer_id"].astype(object),
        "name": true["name"].astype(object),
        "email": true["email"].astype(object),
        "phone": np.array([_format_phone(d, 0) for d in true["phone"].tolist()], dtype=object),
        "signup_date": _format_dates(true["signup_s"], "date_iso_date"),
        "age": _int_text(true["age"]),
        "gender": true["gender"].astype(object),
        "region": true["region"].astype(object),
        "plan": true["plan"].astype(object),
        "acquisition_channel": true["acquisition_channel"].astype(object),
        "acquisition_cost": _format_amounts(true["acquisition_cost"]),
    }
    labels = np.full(n, _CLEAN, dtype=object)
    _assign_kinds(rng, labels, np.arange(n), {
        **_date_variant_rates(params, "date_iso_date"), "missing_age": params.missing_age_rate,
        "missing_gender": params.missing_gender_rate, "missing_region": params.missing_region_rate,
    })
    for kind in _DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["signup_date"][rows] = _format_dates(true["signup_s"][rows], kind)
    for col in ("age", "gender", "region"):
        cols[col][labels == f"missing_{col}"] = np.nan

    # duplicate persons: same name, email in other case/spacing, phone in another format, later signup
    who = dup["owner"]
    k = who.size
    email_style = rng.integers(0, 4, k).tolist()
    phone_style = rng.integers(1, len(_PHONE_STYLES), k).tolist()  # never the main style 0
    dup_acq = rng.integers(0, len(ACQUISITION_CHANNELS), k)
    dup_cols = {
        "customer_id": dup["customer_id"].astype(object),
        "name": true["name"][who].astype(object),
        "email": np.array([_email_variant(e, i) for e, i in zip(true["email"][who].tolist(), email_style, strict=True)],
                          dtype=object),
        "phone": np.array([_format_phone(d, i) for d, i in zip(true["phone"][who].tolist(), phone_style, strict=True)],
                          dtype=object),
        "signup_date": _format_dates(dup["signup_s"], "date_iso_date"),
        "age": _int_text(true["age"][who]),
        "gender": true["gender"][who].astype(object),
        "region": true["region"][who].astype(object),
        "plan": np.array(PLANS, dtype=object)[rng.integers(0, len(PLANS), k)],
        "acquisition_channel": np.array(ACQUISITION_CHANNELS, dtype=object)[dup_acq],
        "acquisition_cost": _format_amounts(_acquisition_cost(rng, dup_acq)),
    }
    pool = np.flatnonzero(labels == _CLEAN)
    rep = _pick(rng, pool, int(round(params.exact_duplicate_rate * n)))
    all_cols = {c: np.concatenate([cols[c], dup_cols[c], cols[c][rep]]) for c in cols}
    all_labels = np.concatenate([labels, np.full(k, "duplicate_person", dtype=object),
                                 np.full(rep.size, "exact_duplicate", dtype=object)])
    _count("customers", all_labels, {}, counts)
    return _frame(all_cols, rng.permutation(all_labels.size))


def _format_values(value: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Interaction values as text: counts and severities as integers, ticket hours with one decimal."""
    out = np.full(value.size, np.nan, dtype=object)
    whole = ~np.isnan(value) & (kind != "support_ticket")
    out[whole] = _int_text(value[whole])
    hours = ~np.isnan(value) & (kind == "support_ticket")
    out[hours] = [f"{x:.1f}" for x in value[hours].tolist()]
    return out


def _dirty_interactions(rng: np.random.Generator, params: SynthParams, ev: Mapping[str, np.ndarray],
                        uses_dup: np.ndarray, counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    m = ev["ts_s"].size
    ts_s = ev["ts_s"]
    cols: dict[str, np.ndarray] = {
        "customer_id": ev["raw_customer_id"].copy(),
        "ts": _format_dates(ts_s, "date_iso_datetime"),
        "kind": ev["kind"].copy(),
        "value": _format_values(ev["value"], ev["kind"]),
    }
    labels = np.full(m, _CLEAN, dtype=object)
    _assign_kinds(rng, labels, np.arange(m), _date_variant_rates(params, "date_iso_datetime"))
    for kind in _DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["ts"][rows] = _format_dates(ts_s[rows], kind)
    # Interactions have no key of their own: a date written without its time can make two real events
    # look identical. Such rows keep the main format, so that every exact repeat is an injected one.
    # Only two rows written in the same alternative format can collide (every format differs).
    changed = np.flatnonzero(labels != _CLEAN)
    same = changed[_frame(cols, changed).duplicated(keep=False).to_numpy()]
    cols["ts"][same] = _format_dates(ts_s[same], "date_iso_datetime")
    labels[same] = _CLEAN

    pool = np.flatnonzero((labels == _CLEAN) & ~uses_dup)
    extra, extra_labels = _broken_copies(rng, cols, ts_s, pool, m, {
        "date_unparseable": params.unparseable_date_rate, "date_future": params.future_date_rate,
    })
    # Broken copies must not repeat one another by accident ("not a date" hides what told two rows
    # apart); real rows never hold these date strings, so they cannot be repeated by a broken copy.
    keep = ~_frame(extra, np.arange(extra_labels.size)).duplicated(keep="first").to_numpy()
    extra = {k: v[keep] for k, v in extra.items()}
    extra_labels = extra_labels[keep]

    rep = _pick(rng, pool, int(round(params.exact_duplicate_rate * m)))
    all_cols = {k: np.concatenate([cols[k], extra[k], cols[k][rep]]) for k in cols}
    all_labels = np.concatenate([labels, extra_labels, np.full(rep.size, "exact_duplicate", dtype=object)])
    _count("interactions", all_labels, {"duplicate_id": int(uses_dup.sum())}, counts)
    return _frame(all_cols, rng.permutation(all_labels.size))


# --------------------------------------------------------------------------- output


def write_synthetic(
    out_dir: str | Path, n_customers: int = 5000, seed: int = 0, params: SynthParams = DEFAULT_PARAMS
) -> dict[str, Path]:
    """Generate a synthetic CRM and write it under ``out_dir``.

    Files: ``customers.csv``, ``transactions.csv``, ``interactions.csv`` (raw, dirty text), and in
    ``ground_truth/``: ``params.json`` (every :class:`SynthParams` field), ``customers_truth.csv``
    (:attr:`SynthData.truth`), ``duplicate_ids.csv`` and ``dirty_counts.json``. Returns the paths
    under the keys ``customers``, ``transactions``, ``interactions``, ``params``, ``truth``,
    ``duplicate_ids`` and ``dirty_counts``.
    """
    data = generate_synthetic(n_customers, seed, params)
    out = Path(out_dir)
    truth_dir = out / "ground_truth"
    truth = data.truth.copy()
    for col in ("signup_ts", "dropout_ts"):
        truth[col] = truth[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "customers": write_table_atomic(data.customers, out / "customers.csv"),
        "transactions": write_table_atomic(data.transactions, out / "transactions.csv"),
        "interactions": write_table_atomic(data.interactions, out / "interactions.csv"),
        "params": write_json_atomic(params.to_dict(), truth_dir / "params.json"),
        "truth": write_table_atomic(truth, truth_dir / "customers_truth.csv"),
        "duplicate_ids": write_table_atomic(data.duplicate_ids, truth_dir / "duplicate_ids.csv"),
        "dirty_counts": write_json_atomic(data.dirty_counts, truth_dir / "dirty_counts.json"),
    }


# --------------------------------------------------------------------------- the true churn score


def true_churn_probability(
    truth: pd.DataFrame, history_summary: pd.DataFrame, as_of: Any, horizon_days: float
) -> pd.Series:
    """Probability of no purchase in ``(as_of, as_of + horizon]`` under the true mechanism.

    Uses each person's TRUE ``lambda`` and ``p`` (from ``truth``) and their observed history up to
    ``as_of`` (from ``history_summary``: ``frequency`` x = repeat purchases, ``recency`` t_x and
    ``T``, in weeks since the first purchase; ``customer_id`` as a column or the index, true ids).
    With ``h = horizon_days / 7``:

        P(alive | x, t_x, T, lambda, p) = 1                                              if x == 0
                                        = (1-p) e^{-lambda (T-t_x)} / ((1-p) e^{-lambda (T-t_x)} + p)   otherwise

        P(no purchase in h) = 1 - P(alive) (1 - e^{-lambda h})

    (a person alive makes a purchase in the next ``h`` weeks with probability ``1 - e^{-lambda h}``;
    dropout happens only right after a repeat purchase, so after no repeat purchase one is alive).
    When ``history_summary`` has no ``T`` column, ``T = (as_of - signup_ts) / 7 days`` from ``truth``.
    Returns a Series indexed by ``customer_id`` named ``p_no_purchase``; the score the churn model
    is compared with. Ids missing from ``truth`` (e.g. unmerged duplicate ids) raise ``ValueError``.
    """
    as_of_ts = pd.Timestamp(as_of)
    if pd.isna(as_of_ts):
        raise ValueError(f"as_of={as_of!r} is not a date")
    if not horizon_days > 0:
        raise ValueError(f"horizon_days={horizon_days!r} should be > 0")
    summary = history_summary
    ids = summary["customer_id"] if "customer_id" in summary.columns else pd.Series(summary.index, index=summary.index)
    lookup = truth.set_index("customer_id")
    missing = ~ids.isin(lookup.index)
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} customer id(s) of history_summary are not true ids of truth, "
            f"e.g. {ids[missing].iloc[0]!r} (map duplicate ids to their person first)"
        )
    lam = lookup["lambda"].reindex(ids).to_numpy(float)
    p = lookup["p"].reindex(ids).to_numpy(float)
    x = summary["frequency"].to_numpy(float)
    t_x = summary["recency"].to_numpy(float)
    if "T" in summary.columns:
        T = summary["T"].to_numpy(float)
    else:
        T = ((as_of_ts - lookup["signup_ts"].reindex(ids)) / pd.Timedelta(days=7)).to_numpy(float)
    if np.any(T < t_x - 1e-9) or np.any(t_x < 0):
        raise ValueError("history_summary should have 0 <= recency <= T for every customer")
    h = horizon_days / 7.0
    still = (1 - p) * np.exp(-lam * (T - t_x))
    p_alive = np.where(x > 0, still / (still + p), 1.0)
    out = 1.0 - p_alive * (1.0 - np.exp(-lam * h))
    return pd.Series(out, index=pd.Index(ids.to_numpy(), name="customer_id"), name="p_no_purchase")
