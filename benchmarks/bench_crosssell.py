"""Benchmark: the cross-sell pipeline's work on a synthetic log the size of CDNOW x144 (~10 million rows).

    .venv/bin/python benchmarks/bench_crosssell.py [--replicas 72] [--products 5000] [--score]

The log: CDNOW replicated ``--replicas`` times with distinct customer ids gives the orders (72
replicas: 5,015,448 orders of 1,697,040 customers, with CDNOW's dates and amounts); each order gets
1 + Poisson(1) product lines (at most 6), about 10 million rows in all. Products: ``--products``
products of Zipf popularity; 500 planted complement pairs, the partner added to an order whose anchor
is in a pair with probability 0.5. Columns: ``order_id`` (integer), ``customer_id``, ``ts``,
``amount`` (the order's split over its lines) and ``product_id`` (text).

Timed, each with its peak RSS (the kernel's counter reset before each step, as in bench_features.py):

1. ``basket_matrix``: the baskets x items and customers x items sparse matrices up to as_of;
2. ``Recommender.fit`` (item-item: the co-occurrence counts) and ``association_rules``;
3. the time holdout as ``crmlab train crosssell`` runs it: ``make_holdout`` (90 days),
   ``fit_models`` (item-item and popularity), ``evaluate_models`` (k = 1, 3, 5, 10) and the paired tests;
4. with ``--score``: top-3 recommendations for every customer (what ``crmlab score`` computes).

It also reports how many planted pairs are among the top rules by lift (a check that the numbers
mean something).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_features import GB, measure  # noqa: E402

from crmlab.config import CrosssellConfig  # noqa: E402
from crmlab.crosssell.baskets import basket_matrix  # noqa: E402
from crmlab.crosssell.evaluate import compare_paired  # noqa: E402
from crmlab.crosssell.models import Recommender, association_rules  # noqa: E402
from crmlab.crosssell.pipeline import evaluate_models, fit_models, make_holdout  # noqa: E402
from crmlab.data.io import load_cdnow  # noqa: E402

AS_OF = pd.Timestamp("1998-06-30").date()
N_PAIRS = 500


def make_log(replicas: int, n_products: int, seed: int = 0) -> tuple[pd.DataFrame, set[frozenset[str]]]:
    rng = np.random.default_rng(seed)
    base = load_cdnow()
    ids = pa.array(base["customer_id"].to_numpy(dtype=object), type=pa.string())
    width = len(str(replicas - 1))
    orders_customer = pa.concat_arrays([pc.binary_join_element_wise(pa.scalar(f"{r:0{width}d}-"), ids, "")
                                        for r in range(replicas)])
    n_orders = len(orders_customer)
    ts = np.tile(base["ts"].to_numpy(), replicas)
    amount = np.tile(base["amount"].to_numpy(), replicas)
    lines = 1 + np.minimum(rng.poisson(1.0, n_orders), 5)
    order = np.repeat(np.arange(n_orders, dtype=np.int64), lines)
    first = np.r_[True, order[1:] != order[:-1]]
    weights = 1.0 / np.arange(1, n_products + 1)
    weights /= weights.sum()
    product = rng.choice(n_products, size=order.size, p=weights)
    chosen = rng.choice(n_products, size=2 * N_PAIRS, replace=False).reshape(-1, 2)
    partner = np.full(n_products, -1)
    partner[chosen[:, 0]], partner[chosen[:, 1]] = chosen[:, 1], chosen[:, 0]
    second = np.flatnonzero(~first & np.r_[False, first[:-1]])  # the second line of an order
    anchor = product[second - 1]
    attach = (partner[anchor] >= 0) & (rng.random(second.size) < 0.5)
    product[second[attach]] = partner[anchor[attach]]
    names = np.array([f"P{i:05d}" for i in range(n_products)], dtype=object)
    customer = pd.Series(orders_customer.take(pa.array(order)).to_pandas(), dtype="str")
    log = pd.DataFrame({"order_id": order, "customer_id": customer, "ts": ts[order],
                        "amount": np.round(amount[order] / lines[order], 2),
                        "product_id": pd.Series(names[product], dtype="str")})
    return log, {frozenset((names[a], names[b])) for a, b in chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=72)
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--score", action="store_true", help="also recommend to every customer")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tx, planted = make_log(args.replicas, args.products)
    print(f"log: {len(tx):,} rows, {tx['customer_id'].nunique():,} customers, {tx['order_id'].nunique():,} orders, "
          f"{args.products:,} products (made in {time.perf_counter() - t0:.1f} s)", flush=True)
    cfg = CrosssellConfig()

    _, baskets = measure("basket_matrix (all purchases up to as_of)",
                         lambda: basket_matrix(tx, item_column="product_id", as_of=AS_OF))
    print(f"  {baskets.n_baskets:,} baskets x {len(baskets.items):,} items, {baskets.matrix.nnz:,} lines")

    def fit_and_rules():
        model = Recommender(min_item_count=cfg.min_item_count, min_pair_count=cfg.min_pair_count,
                            min_lift=cfg.min_lift)
        model.fit(baskets.matrix, baskets.items)
        return model, association_rules(model.co_, baskets.items, min_item_count=cfg.min_item_count,
                                        min_pair_count=cfg.min_pair_count)

    _, (model, rules) = measure("item-item fit (co-occurrence) + association rules", fit_and_rules)
    top = list(dict.fromkeys(frozenset(p) for p in zip(rules["antecedent"], rules["consequent"], strict=True)))
    print(f"  {model.co_.pairs.nnz // 2:,} pairs counted, {len(rules):,} rules; planted pairs among the top "
          f"{N_PAIRS} pairs by lift: {len(set(top[:N_PAIRS]) & planted)} of {N_PAIRS}")

    def holdout():
        cut = AS_OF - timedelta(days=90)
        train, h = make_holdout(tx, item_column="product_id", cutoff=cut, as_of=AS_OF)
        models = fit_models(train, cfg)
        board, per = evaluate_models(models, h, 5)
        return h, board, compare_paired(per["itemitem"], per["popularity"], n_boot=cfg.bootstrap, seed=0)

    _, (h, board, comparison) = measure("time holdout: baskets, both models, leaderboard, paired tests", holdout)
    at5 = board[board["k"] == 5].set_index("model")["hit_rate"]
    print(f"  {h.n_customers:,} customers judged; hit rate@5 item-item {at5['itemitem']:.3f}, popularity "
          f"{at5['popularity']:.3f}; sign test p={comparison['hit_p_value']:.3g}")
    if args.score:
        _, _ = measure(f"top-3 recommendations for {baskets.history.shape[0]:,} customers",
                       lambda: model.recommend(baskets.history, 3))
    print(f"(GB = {GB:,} bytes)")


if __name__ == "__main__":
    main()
