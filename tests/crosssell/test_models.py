"""Association rules and recommendations on examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.crosssell.baskets import basket_matrix, binary_csr, join_items, split_items
from crmlab.crosssell.models import Recommender, association_rules, count_cooccurrence
from crmlab.errors import DataError, ModelError


def _tx(rows):
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "ts", "amount", "product_id"])
    df["ts"] = pd.to_datetime(df["ts"])
    return df


#: four baskets {A,B}, {A,B,C}, {A,C}, {B}: n_A = 3, n_B = 3, n_C = 2; n_AB = 2, n_AC = 2, n_BC = 1
FOUR = _tx([
    ("c1", "o1", "2024-01-01", 10.0, "A"), ("c1", "o1", "2024-01-01", 5.0, "B"),
    ("c2", "o2", "2024-01-02", 10.0, "A"), ("c2", "o2", "2024-01-02", 5.0, "B"), ("c2", "o2", "2024-01-02", 1.0, "C"),
    ("c3", "o3", "2024-01-03", 10.0, "A"), ("c3", "o3", "2024-01-03", 2.0, "C"),
    ("c4", "o4", "2024-01-04", 5.0, "B"),
])


def test_support_confidence_and_lift_of_four_baskets_by_hand():
    b = basket_matrix(FOUR, item_column="product_id", as_of="2024-01-31")
    assert b.n_baskets == 4 and list(b.items) == ["A", "B", "C"]
    rules = association_rules(count_cooccurrence(b.matrix), b.items, min_pair_count=2)
    got = {(r.antecedent, r.consequent): (r.support, r.confidence, r.lift) for r in rules.itertuples()}
    assert set(got) == {("A", "B"), ("B", "A"), ("A", "C"), ("C", "A")}  # B-C is in one basket only
    assert got[("A", "B")] == pytest.approx((2 / 4, 2 / 3, (2 / 3) / (3 / 4)))  # lift 8/9: bought less together
    assert got[("B", "A")] == pytest.approx((2 / 4, 2 / 3, 8 / 9))
    assert got[("A", "C")] == pytest.approx((2 / 4, 2 / 3, (2 / 3) / (2 / 4)))  # lift 4/3
    assert got[("C", "A")] == pytest.approx((2 / 4, 1.0, 4 / 3))
    # by lift, then pair count, then names
    assert list(zip(rules["antecedent"], rules["consequent"], strict=True)) == [("A", "C"), ("C", "A"), ("A", "B"),
                                                                                ("B", "A")]
    every = association_rules(count_cooccurrence(b.matrix), b.items)
    bc = every[(every["antecedent"] == "B") & (every["consequent"] == "C")].iloc[0]
    assert (bc["support"], bc["confidence"], bc["lift"]) == pytest.approx((1 / 4, 1 / 3, 2 / 3))
    # an item in fewer baskets than min_item_count is ruled on by nobody
    assert set(association_rules(count_cooccurrence(b.matrix), b.items, min_item_count=3)["consequent"]) == {"A", "B"}


def test_baskets_are_orders_else_customer_days_and_returns_and_later_rows_are_out():
    tx = FOUR.drop(columns="order_id")
    tx.loc[len(tx)] = ["c1", pd.Timestamp("2024-01-01 18:00"), 3.0, "C"]  # same customer, same day: same basket
    tx.loc[len(tx)] = ["c1", pd.Timestamp("2024-01-05"), -5.0, "D"]  # a return: not a purchase
    tx.loc[len(tx)] = ["c1", pd.Timestamp("2024-02-01"), 5.0, "E"]  # after the cut-off
    b = basket_matrix(tx, item_column="product_id", as_of="2024-01-31")
    assert b.n_baskets == 4 and list(b.items) == ["A", "B", "C"]
    assert b.matrix.toarray().tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 1, 0]]
    assert list(b.customers) == ["c1", "c2", "c3", "c4"] and b.history.toarray()[0].tolist() == [1, 1, 1]
    later = basket_matrix(tx, item_column="product_id", as_of="2024-02-29", after="2024-01-31")
    assert list(later.items) == ["E"] and later.n_baskets == 1


def test_a_missing_item_column_or_a_separator_in_an_item_is_a_named_error():
    with pytest.raises(DataError, match="column 'product_id'.*crosssell.item_column"):
        basket_matrix(FOUR.drop(columns="product_id"), item_column="product_id", as_of="2024-01-31")
    bad = FOUR.copy()
    bad.loc[0, "product_id"] = "A|B"
    with pytest.raises(DataError, match="column 'product_id'.*holds '\\|'"):
        basket_matrix(bad, item_column="product_id", as_of="2024-01-31")


def _fitted(kind="itemitem", smoothing=1.0, min_lift=1.0):
    b = basket_matrix(FOUR, item_column="product_id", as_of="2024-01-31")
    return Recommender(kind, smoothing=smoothing, min_item_count=1, min_pair_count=1,
                       min_lift=min_lift).fit(b.matrix, b.items)


def test_item_item_scores_by_hand_and_bought_items_are_never_recommended():
    model = _fitted()
    history = split_items(pd.Series(["A", "A|B", "", None, "A|B|C"]), model.items_)
    idx, val = model.recommend(history, 2)
    names = np.append(model.items_, None)[idx]
    # bought {A}: p = (3/4, 3/4, 1/2). Pair A-B: expected 3*3/4 = 2.25 > 2 seen: no boost, B scores 3/4.
    # Pair A-C: expected 3*2/4 = 1.5, seen 2: lift~ = (2 + 1) / (1.5 + 1) = 1.2, C scores 1/2 * 1.2 = 0.6
    assert names[0].tolist() == ["B", "C"] and val[0] == pytest.approx([0.75, 0.6])
    # bought {A, B}: only C is left (B-C: (1 + 1) / (1.5 + 1) < 1, no boost)
    assert names[1].tolist() == ["C", None] and val[1][0] == pytest.approx(0.6) and np.isnan(val[1][1])
    # no history: the popularity list; A and B tie at 3/4 and the tie goes to the earlier name
    for row in (2, 3):
        assert names[row].tolist() == ["A", "B"] and val[row] == pytest.approx([0.75, 0.75])
    # everything bought: nothing to recommend
    assert names[4].tolist() == [None, None]
    # the A-C lift 1.2 is below the default min_lift 1.5: it adds nothing, C scores its popularity
    assert _fitted(min_lift=1.5).recommend(history, 2)[1][0] == pytest.approx([0.75, 0.5])
    # never an item of the history
    for row, bought in enumerate([{"A"}, {"A", "B"}, set(), set(), {"A", "B", "C"}]):
        assert not bought & {n for n in names[row] if n is not None}


def test_popularity_recommends_the_most_popular_items_not_bought():
    model = _fitted("popularity")
    history = split_items(pd.Series(["A", "B|C", ""]), model.items_)
    idx, val = model.recommend(history, 3)
    names = np.append(model.items_, None)[idx]
    assert names.tolist() == [["B", "C", None], ["A", None, None], ["A", "B", "C"]]
    assert val[2] == pytest.approx([0.75, 0.75, 0.5])


def test_a_complement_outranks_a_more_popular_item():
    # X in 20 of 30 baskets (p = 2/3); Y and Z together in the 10 others (p = 1/3 each). For a buyer of Y,
    # Z scores 1/3 * (1 + (10 + 1) / (10 * 10 / 30 + 1) - 1) = 0.846 > 2/3: the complement comes first
    rows = [(f"c{i}", f"o{i}", "2024-01-01", 1.0, "X") for i in range(20)]
    rows += [(f"c{i}", f"o{i}", "2024-01-01", 1.0, p) for i in range(20, 30) for p in ("Y", "Z")]
    b = basket_matrix(_tx(rows), item_column="product_id", as_of="2024-01-31")
    model = Recommender(smoothing=1.0, min_item_count=1, min_pair_count=2).fit(b.matrix, b.items)
    idx, val = model.recommend(split_items(pd.Series(["Y", "Q"]), model.items_), 2)
    assert model.items_[idx[0]].tolist() == ["Z", "X"] and val[0] == pytest.approx([11 / 13, 2 / 3])
    assert model.items_[idx[1]].tolist() == ["X", "Y"]  # unknown items are no history: popularity
    # with heavy smoothing the ten baskets are not enough evidence to beat popularity
    heavy = Recommender(smoothing=10.0, min_item_count=1, min_pair_count=2).fit(b.matrix, b.items)
    assert heavy.items_[heavy.recommend(split_items(pd.Series(["Y"]), heavy.items_), 2)[0][0]].tolist() == ["X", "Z"]


def test_items_join_and_split_back():
    items = np.array(["A", "B", "C"], dtype=object)
    h = binary_csr(np.array([0, 0, 2]), np.array([0, 2, 1]), (3, 3))
    texts = join_items(h, items)
    assert texts == ["A|C", "", "B"]
    assert (split_items(pd.Series(texts), items) != h).nnz == 0


def test_the_model_round_trips_through_its_bundle_parts_and_refuses_misuse():
    model = _fitted()
    params, arrays = model.to_bundle()
    again = Recommender.from_bundle(params, arrays)
    history = split_items(pd.Series(["A", "B", "C", ""]), model.items_)
    for a, b in zip(model.recommend(history, 2), again.recommend(history, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelError, match="not fitted"):
        Recommender().recommend(history, 2)
    with pytest.raises(ModelError, match="unreadable"):
        Recommender.from_bundle({**params, "items": ["A"]}, arrays)


def test_the_holdout_is_derived_from_the_span_and_a_bad_setting_names_its_key(tmp_path):
    from datetime import date

    from crmlab.config import load_config
    from crmlab.crosssell.pipeline import resolve_horizon
    from crmlab.errors import ConfigError

    assert resolve_horizon("auto", first=date(2020, 1, 1), as_of=date(2022, 1, 1)) == 90
    assert resolve_horizon("auto", first=date(2021, 11, 1), as_of=date(2022, 1, 1)) == 15  # a quarter of 61 days
    with pytest.raises(DataError, match="too short for a cross-sell holdout of 400 days"):
        resolve_horizon(400, first=date(2021, 1, 1), as_of=date(2022, 1, 1))
    (tmp_path / "crosssell.yaml").write_text("ship: best\nk: 3\n")
    with pytest.raises(ConfigError, match="crosssell.yaml: crosssell.ship"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'min_lift'"):
        load_config(tmp_path, ["crosssell.ship=auto", "crosssell.minlift=2"])
