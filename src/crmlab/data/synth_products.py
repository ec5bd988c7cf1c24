"""Products for the synthetic base, with a planted affinity structure (the cross-sell ground truth).

Asked for (``generate_synthetic(..., products=ProductParams())``), every purchase of the base becomes an
order of one or more product lines sharing its ``order_id``, customer and time:

* a catalogue of ``n_products`` products ``P0001, P0002, ...``, product ``i`` in category
  ``CATEGORIES[i % 5]``, popular within its category by a Zipf law (weight ``1 / rank ** zipf``);
* the *anchor* line: a product of the purchase's category (the customer's favourite one 70% of the
  time, as without products), drawn by popularity;
* ``n_pairs`` planted complement pairs (A, B) of distinct products, drawn at random (some across
  categories): when an order's anchor is A, B is added with probability ``attach_rate`` (and A when
  the anchor is B);
* cross-sell over time: after an order whose anchor is A, the customer's next purchase (if any) also
  holds B with probability ``follow_rate`` (and A after an anchor B): the complement bought later;
* noise: with probability ``noise_rate`` one more product, drawn from the whole catalogue by
  popularity (its co-occurrence with the anchor has lift about 1).

The purchase's amount is split over its lines (the anchor keeps the rest, so an order's total is the
purchase's amount and the spend process is unchanged); extra lines have quantity 1. The planted pairs
are the truth a model must recover: their lift is far above 1, every other pair's near 1.
Without products nothing here runs and the generator's output is what it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmlab.data.synth_base import CATEGORIES, numbered_ids

__all__ = ["ProductLines", "ProductParams", "catalogue", "expand_to_lines", "planted_pairs"]


@dataclass(frozen=True)
class ProductParams:
    """The product catalogue and its planted affinity (see the module doc)."""

    n_products: int = 40
    n_pairs: int = 6
    attach_rate: float = 0.4
    follow_rate: float = 0.5
    noise_rate: float = 0.25
    zipf: float = 1.0

    def __post_init__(self) -> None:
        if self.n_products < len(CATEGORIES):
            raise ValueError(f"n_products={self.n_products} should be >= {len(CATEGORIES)} (one per category)")
        if not 0 <= 2 * self.n_pairs <= self.n_products:
            raise ValueError(f"n_pairs={self.n_pairs} should be in 0..n_products/2={self.n_products // 2}")
        for name in ("attach_rate", "follow_rate", "noise_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r} should be a fraction in [0, 1]")
        if not self.zipf >= 0:
            raise ValueError(f"zipf={self.zipf!r} should be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def catalogue(params: ProductParams) -> pd.DataFrame:
    """``product_id``, ``category`` and ``weight`` (popularity within the category, summing to 1 there)."""
    n = params.n_products
    idx = np.arange(n)
    cat = idx % len(CATEGORIES)
    rank = idx // len(CATEGORIES)  # 0 = the category's most popular product
    weight = 1.0 / (rank + 1.0) ** params.zipf
    weight = weight / np.bincount(cat, weights=weight)[cat]
    return pd.DataFrame({"product_id": numbered_ids("P", idx + 1, 4), "category": np.array(CATEGORIES)[cat],
                         "weight": weight})


def planted_pairs(params: ProductParams, rng: np.random.Generator) -> np.ndarray:
    """``(n_pairs, 2)`` product indices of the planted pairs, each pair sorted, rows sorted."""
    chosen = rng.choice(params.n_products, size=2 * params.n_pairs, replace=False)
    pairs = np.sort(chosen.reshape(-1, 2), axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@dataclass(frozen=True)
class ProductLines:
    """Purchases expanded into lines: ``purchase`` (index of each line's purchase), ``product`` (index in
    the catalogue), ``category`` (index in CATEGORIES), ``amount``, ``quantity``; lines grouped by purchase."""

    purchase: np.ndarray
    product: np.ndarray
    category: np.ndarray
    amount: np.ndarray
    quantity: np.ndarray


def _draw_in_category(rng: np.random.Generator, cat: np.ndarray, weights: np.ndarray, n_cat: int) -> np.ndarray:
    """One product per row of ``cat``, drawn by popularity among the products of that category."""
    n = weights.size
    per = -(-n // n_cat)
    table = np.zeros((n_cat, per))
    members = np.full((n_cat, per), -1, dtype=np.int64)
    for c in range(n_cat):
        ids = np.arange(c, n, n_cat)
        table[c, :ids.size] = weights[ids]
        members[c, :ids.size] = ids
    cum = np.cumsum(table, axis=1)
    u = rng.random(cat.size) * cum[cat, -1]
    pos = np.minimum((u[:, None] >= cum[cat]).sum(axis=1), per - 1)
    return members[cat, pos]


def expand_to_lines(params: ProductParams, pairs: np.ndarray, owner: np.ndarray, category: np.ndarray,
                    amount: np.ndarray, quantity: np.ndarray, rng: np.random.Generator) -> ProductLines:
    """Each purchase (its person, category index, amount and quantity; purchases in time order) as its
    anchor line plus its complement, follow-up and noise lines (module doc)."""
    cat_table = catalogue(params)
    weights = cat_table["weight"].to_numpy()
    n_cat = len(CATEGORIES)
    m = category.size
    anchor = _draw_in_category(rng, category, weights, n_cat)
    partner = np.full(params.n_products, -1, dtype=np.int64)
    partner[pairs[:, 0]], partner[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    big = amount >= 1.0  # extra lines only where the amount can be split into cents
    comp = partner[anchor]
    add_comp = big & (comp >= 0) & (rng.random(m) < params.attach_rate)
    # the same person's next purchase (-1: none), purchases being in time order
    by_owner = np.lexsort((np.arange(m), owner))
    following = np.full(m, -1, dtype=np.int64)
    same = owner[by_owner[1:]] == owner[by_owner[:-1]]
    following[by_owner[:-1][same]] = by_owner[1:][same]
    src = np.flatnonzero((comp >= 0) & (following >= 0) & (rng.random(m) < params.follow_rate))
    dst = following[src]
    keep = big[dst] & (anchor[dst] != comp[src]) & ~(add_comp[dst] & (comp[dst] == comp[src]))
    src, dst = src[keep], dst[keep]
    first = np.unique(dst, return_index=True)[1]  # one follow-up line per purchase
    src, dst = src[first], dst[first]
    follow = np.full(m, -1, dtype=np.int64)
    follow[dst] = comp[src]
    overall = weights / weights.sum()
    noise = rng.choice(params.n_products, size=m, p=overall)
    add_noise = big & (rng.random(m) < params.noise_rate) & (noise != anchor) & (noise != comp) & (noise != follow)
    purchase = np.concatenate([np.arange(m), np.flatnonzero(add_comp), dst, np.flatnonzero(add_noise)])
    product = np.concatenate([anchor, comp[add_comp], follow[dst], noise[add_noise]])
    line_no = np.concatenate([np.zeros(m, np.int64), np.ones(int(add_comp.sum()), np.int64),
                              np.full(dst.size, 2, np.int64), np.full(int(add_noise.sum()), 3, np.int64)])
    order = np.lexsort((line_no, purchase))
    purchase, product, line_no = purchase[order], product[order], line_no[order]
    # extra lines take 10%-40% of the purchase each; the anchor keeps the rest
    share = np.where(line_no > 0, rng.uniform(0.1, 0.4, purchase.size), 0.0)
    line_amount = np.maximum(np.round(amount[purchase] * share, 2), 0.01)
    extra_total = np.bincount(purchase, weights=np.where(line_no > 0, line_amount, 0.0), minlength=m)
    anchor_rows = line_no == 0
    line_amount[anchor_rows] = np.round(amount - extra_total, 2)
    line_qty = np.where(anchor_rows, quantity[purchase], 1)
    return ProductLines(purchase, product, product % n_cat, line_amount, line_qty.astype(np.int64))


def truth_tables(params: ProductParams, pairs: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The catalogue and the planted pairs (``product_a``, ``product_b``, ``category_a``, ``category_b``)."""
    cat = catalogue(params)
    ids, cats = cat["product_id"].to_numpy(), cat["category"].to_numpy()
    planted = pd.DataFrame({"product_a": ids[pairs[:, 0]], "product_b": ids[pairs[:, 1]],
                            "category_a": cats[pairs[:, 0]], "category_b": cats[pairs[:, 1]]})
    return cat, planted
