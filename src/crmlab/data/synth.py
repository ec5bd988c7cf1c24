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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.data.synth_base import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    CHANNELS,
    DAY_S,
    DEFAULT_PARAMS,
    DIRTY_KINDS,
    FEMALE_NAMES,
    GENDERS,
    INTERACTION_KINDS,
    LAST_NAMES,
    MALE_NAMES,
    PLANS,
    REGIONS,
    WEEK_S,
    SynthParams,
    draw_acquisition_cost,
    draw_categorical,
    epoch_seconds,
    numbered_ids,
    pick_some,
    rank01,
    seconds_to_datetime,
    unique_emails,
    unique_phones,
)
from crmlab.data.synth_text import SOURING_WEEKS, draw_texts, draw_tones, feedback_events
from crmlab.data.synth_products import ProductParams, expand_to_lines, planted_pairs, truth_tables
from crmlab.data.synth_dirt import dirty_customers, dirty_interactions, dirty_transactions, text_series
from crmlab.utils import write_json_atomic, write_table_atomic

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "DIRTY_KINDS",
    "INTERACTION_KINDS",
    "ProductParams",
    "SynthData",
    "SynthParams",
    "generate_synthetic",
    "true_churn_probability",
    "write_synthetic",
]


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
    * ``products``, ``planted_pairs``: with products only (None otherwise, see
      :mod:`crmlab.data.synth_products`): the catalogue (``product_id``, ``category``, ``weight``) and
      the planted complement pairs (``product_a``, ``product_b``, ``category_a``, ``category_b``), the
      cross-sell truth; the transactions then carry ``product_id`` and ``clean_transactions`` too.
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
    products: pd.DataFrame | None = None
    planted_pairs: pd.DataFrame | None = None


# --------------------------------------------------------------------------- helpers


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
    start_s, end_s = epoch_seconds(params.start), epoch_seconds(params.end)
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


# --------------------------------------------------------------------------- generation


def _purchase_details(people: _People, params: SynthParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Spend (Gamma-Gamma), quantity, category and channel of every purchase."""
    n, owner = people.lam.size, people.owner
    m = owner.size
    amount = np.maximum(np.round(rng.gamma(params.p, 1.0 / people.nu[owner]), 2), 0.01)
    quantity = 1 + np.minimum(rng.poisson(amount / 40.0), 4)  # loosely tied to the amount
    favourite_category = draw_categorical(rng, np.tile([0.25, 0.2, 0.2, 0.2, 0.15], (n, 1)))
    favourite_channel = draw_categorical(rng, np.tile([0.5, 0.3, 0.2], (n, 1)))
    category = np.where(rng.random(m) < 0.7, favourite_category[owner], rng.integers(0, len(CATEGORIES), m))
    channel = np.where(rng.random(m) < 0.8, favourite_channel[owner], rng.integers(0, len(CHANNELS), m))
    return {"amount": amount, "quantity": quantity, "category": category, "channel": channel}


def _returns(ts_s: np.ndarray, purchase: Mapping[str, np.ndarray], params: SynthParams, end_s: int,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Returns of some purchases, 1-21 days later (always before ``end``): the whole amount or part of it."""
    eligible = np.flatnonzero(ts_s < end_s - 22 * DAY_S)
    k = min(int(round(params.return_rate * ts_s.size)), eligible.size)
    src = np.sort(pick_some(rng, eligible, k))
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


def _add_texts(events: dict[str, np.ndarray], people: _People, params: SynthParams, end_s: int, language: str,
               seed: int) -> dict[str, np.ndarray]:
    """The events plus feedback events, each with a text (None for visits and email opens), drawn
    from a stream of their own (:mod:`crmlab.data.synth_text`)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(101,)))
    dropped = people.dropout_s >= 0
    alive_end = np.where(dropped, people.dropout_s, end_s)
    pre_lo = np.where(dropped, np.maximum(people.first_s, people.dropout_s - int(SOURING_WEEKS * WEEK_S)),
                      end_s + 1)
    who, ts = feedback_events(people.lam.size, people.first_s, alive_end, rng)
    owner = np.concatenate([events["owner"], who])
    ts_s = np.concatenate([events["ts_s"], ts])
    kind = np.concatenate([events["kind"], np.full(who.size, "feedback", dtype=object)])
    pre = np.concatenate([events["pre"], (ts >= pre_lo[who]) & dropped[who]])
    value = np.concatenate([events["value"], np.full(who.size, np.nan)])
    order = np.lexsort((kind.astype(str), owner, ts_s))
    out = {"owner": owner[order], "ts_s": ts_s[order], "kind": kind[order], "value": value[order], "pre": pre[order]}
    tone = draw_tones(out["kind"], out["pre"], rng)
    year = seconds_to_datetime(out["ts_s"]).dt.year.to_numpy()
    out["text"] = draw_texts(tone, year, language, rng)
    return out


def _customer_attributes(people: _People, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Personal data (unique email and phone per person) and attributes, some tied to the latent values:
    frequent buyers are more often on higher plans; loyal people (low p) more often came by referral."""
    n = people.lam.size
    u_lam, u_p = rank01(people.lam), rank01(people.pdrop)
    gender = draw_categorical(rng, np.tile([0.49, 0.49, 0.02], (n, 1)))
    female = np.array(FEMALE_NAMES)[rng.integers(0, len(FEMALE_NAMES), n)]
    male = np.array(MALE_NAMES)[rng.integers(0, len(MALE_NAMES), n)]
    either = rng.random(n) < 0.5
    first_name = np.where((gender == 0) | ((gender == 2) & either), female, male)
    last_name = np.array(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)]
    email = unique_emails(rng, first_name, last_name)
    phone = unique_phones(rng, n)
    age = np.clip(np.round(rng.normal(42, 14, n)), 18, 90).astype(np.int64)
    region = draw_categorical(rng, np.tile([0.17, 0.21, 0.38, 0.24], (n, 1)))
    plan = draw_categorical(rng, np.column_stack([0.6 - 0.3 * u_lam, 0.3 + 0.05 * u_lam, 0.1 + 0.25 * u_lam]))
    acq = draw_categorical(rng, np.column_stack([  # search, social, referral, email, affiliate
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
        "acquisition_cost": draw_acquisition_cost(rng, acq),
    }


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
    ids = numbered_ids("C", rank + 1, width)

    slot = np.full((n, 2), -1, dtype=np.int64)
    since = np.full((n, 2), np.iinfo(np.int64).max, dtype=np.int64)
    first_of = np.ones(owner.size, dtype=bool)
    first_of[1:] = owner[1:] != owner[:-1]
    for column, rows in ((0, np.flatnonzero(first_of)), (1, np.flatnonzero(~first_of))):
        slot[owner[rows], column] = rows
        since[owner[rows], column] = signup[rows]
    return _Ids(ids[:n], ids[n:], owner, signup, slot, since)


def generate_synthetic(n_customers: int, seed: int, params: SynthParams = DEFAULT_PARAMS,
                       products: ProductParams | None = None, *, texts: str | None = None) -> SynthData:
    """Generate a dirty CRM export of ``n_customers`` true persons with known ground truth.

    Pure: the result depends only on the arguments. Independent random streams drive the latent
    process, the purchase details, the attributes, the interactions, the duplicate persons and the
    dirt of each table, so changing a dirty-row rate never changes the truth.

    ``texts`` (``'en'``, ``'zh'`` or ``'mixed'``) adds customer texts (:mod:`crmlab.data.synth_text`):
    a ``text`` column and ``feedback`` events in the interactions, negative before dropout. Without
    it (None) the output is exactly what it was before texts existed.
    ``products``: give every purchase product lines with planted complement pairs (see
    :mod:`crmlab.data.synth_products`); the transactions then have a ``product_id`` column and one row
    per line. None (the default): no product column, and the output is the same as it always was for
    the seed (the products' own random stream is a further child of the seed's, drawn only then).
    """
    if isinstance(n_customers, bool) or not isinstance(n_customers, (int, np.integer)) or n_customers < 1:
        raise ValueError(f"n_customers={n_customers!r} should be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} should be a non-negative integer")
    n = int(n_customers)
    (rng_latent, rng_process, rng_detail, rng_attr, rng_inter, rng_dup,
     rng_dirty_tx, rng_dirty_cust, rng_dirty_inter, rng_products) = np.random.default_rng(int(seed)).spawn(10)
    end_s = epoch_seconds(params.end)

    people = _simulate_people(n, params, rng_latent, rng_process)
    purchase = _purchase_details(people, params, rng_detail)
    line_owner, line_ts, purchase_no = people.owner, people.ts_s, np.arange(people.owner.size)
    product = pairs = None
    if products is not None:
        pairs = planted_pairs(products, rng_products)
        lines = expand_to_lines(products, pairs, people.owner, purchase["category"], purchase["amount"],
                                purchase["quantity"], rng_products)
        purchase_no, product = lines.purchase, lines.product
        line_owner, line_ts = people.owner[purchase_no], people.ts_s[purchase_no]
        purchase = {"amount": lines.amount, "quantity": lines.quantity, "category": lines.category,
                    "channel": purchase["channel"][purchase_no]}
    ret = _returns(line_ts, purchase, params, end_s, rng_detail)
    events = _simulate_interactions(people, params, end_s, rng_inter)
    if texts is not None:
        events = _add_texts(events, people, params, end_s, texts, int(seed))
    attrs = _customer_attributes(people, rng_attr)
    ids = _assign_ids(people.first_s, params, end_s, rng_dup)

    n_purch = line_owner.size  # purchase rows (product lines when there are products)
    tx_owner = np.concatenate([line_owner, line_owner[ret["src"]]])
    tx_ts = np.concatenate([line_ts, ret["ts_s"]])
    tx_raw_id, tx_uses_dup = ids.raw_ids(tx_owner, tx_ts, rng_dup)
    ev_raw_id, ev_uses_dup = ids.raw_ids(events["owner"], events["ts_s"], rng_dup)

    dropped = people.dropout_s >= 0
    truth = pd.DataFrame({
        "customer_id": text_series(ids.true_id),
        "signup_ts": seconds_to_datetime(people.first_s),
        "lambda": people.lam,
        "p": people.pdrop,
        "nu": people.nu,
        "mean_spend": params.p / people.nu,
        "dropout_ts": seconds_to_datetime(np.where(dropped, people.dropout_s, 0)).where(dropped),
        "alive_at_end": ~dropped,
        "n_transactions": np.bincount(people.owner, minlength=n).astype(np.int64),
    }).sort_values("customer_id", ignore_index=True)
    duplicate_ids = pd.DataFrame({
        "duplicate_id": text_series(ids.dup_id), "customer_id": text_series(ids.true_id[ids.dup_owner]),
    }).sort_values("duplicate_id", ignore_index=True)

    # order ids number the purchases in time order (the lines of a purchase share it); a return is
    # "<order_id>-R"
    width = max(8, len(str(2 * n_purch)))
    order_id = numbered_ids("O", purchase_no + 1, width)
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
    catalogue = planted = None
    if products is not None:
        catalogue, planted = truth_tables(products, pairs)
        ids_p = catalogue["product_id"].to_numpy(dtype=object)
        tx["product_id"] = ids_p[np.concatenate([product, product[src]])]
    clean_tx = pd.DataFrame({
        "order_id": text_series(tx["order_id"]),
        "customer_id": text_series(ids.true_id[tx_owner]),
        "raw_customer_id": text_series(tx_raw_id),
        "ts": seconds_to_datetime(tx_ts),
        "amount": tx["amount"],
        "quantity": tx["quantity"],
        "category": text_series(tx["category"]),
        "channel": text_series(tx["channel"]),
        **({"product_id": text_series(tx["product_id"])} if products is not None else {}),
        "is_return": np.r_[np.zeros(n_purch, bool), np.ones(src.size, bool)],
    })
    clean_inter = pd.DataFrame({
        "customer_id": text_series(ids.true_id[events["owner"]]),
        "raw_customer_id": text_series(ev_raw_id),
        "ts": seconds_to_datetime(events["ts_s"]),
        "kind": text_series(events["kind"]),
        "value": events["value"],
        "pre_dropout": events["pre"],
        **({"text": text_series(events["text"])} if "text" in events else {}),
    })

    counts: dict[str, dict[str, int]] = {}
    transactions = dirty_transactions(rng_dirty_tx, params, tx, tx_uses_dup, n_purch, counts)
    customers = dirty_customers(rng_dirty_cust, params, counts, true={"customer_id": ids.true_id, **attrs},
                                 dup={"owner": ids.dup_owner, "customer_id": ids.dup_id, "signup_s": ids.dup_signup_s})
    ev_cols = {"raw_customer_id": ev_raw_id, "ts_s": events["ts_s"], "kind": events["kind"], "value": events["value"],
               **({"text": events["text"]} if "text" in events else {})}
    interactions = dirty_interactions(rng_dirty_inter, params, ev_cols, ev_uses_dup, counts)
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
        products=catalogue,
        planted_pairs=planted,
    )


# --------------------------------------------------------------------------- dirt


# --------------------------------------------------------------------------- output


def write_synthetic(
    out_dir: str | Path, n_customers: int = 5000, seed: int = 0, params: SynthParams = DEFAULT_PARAMS,
    products: ProductParams | None = None, *, texts: str | None = None,
) -> dict[str, Path]:
    """Generate a synthetic CRM and write it under ``out_dir``.

    Files: ``customers.csv``, ``transactions.csv``, ``interactions.csv`` (raw, dirty text), and in
    ``ground_truth/``: ``params.json`` (every :class:`SynthParams` field), ``customers_truth.csv``
    (:attr:`SynthData.truth`), ``duplicate_ids.csv`` and ``dirty_counts.json``. Returns the paths
    under the keys ``customers``, ``transactions``, ``interactions``, ``params``, ``truth``,
    ``duplicate_ids`` and ``dirty_counts``. With ``products``, also ``ground_truth/products.csv`` and
    ``ground_truth/planted_pairs.csv`` (keys ``products`` and ``planted_pairs``). ``texts`` (``'en'``,
    ``'zh'``, ``'mixed'``): the interactions get a ``text`` column (:func:`generate_synthetic`).
    """
    data = generate_synthetic(n_customers, seed, params, products, texts=texts)
    out = Path(out_dir)
    truth_dir = out / "ground_truth"
    truth = data.truth.copy()
    for col in ("signup_ts", "dropout_ts"):
        truth[col] = truth[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    extra: dict[str, Path] = {}
    if data.products is not None and data.planted_pairs is not None:
        extra = {"products": write_table_atomic(data.products, truth_dir / "products.csv"),
                 "planted_pairs": write_table_atomic(data.planted_pairs, truth_dir / "planted_pairs.csv")}
    return {
        **extra,
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
