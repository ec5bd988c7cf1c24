from __future__ import annotations

import json
import re
import warnings
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from crmlab.data.synth import (
    CATEGORIES,
    CHANNELS,
    DIRTY_KINDS,
    INTERACTION_KINDS,
    SynthParams,
    generate_synthetic,
    true_churn_probability,
    write_synthetic,
)

PARAMS = SynthParams()
END = pd.Timestamp(PARAMS.end)
WEEK = pd.Timedelta(days=7)


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(3000, seed=11)


@pytest.fixture(scope="module")
def large():
    """20,000 people: enough for the parameters to be pinned down (standard errors of a few %)."""
    return generate_synthetic(20_000, seed=0)


def _purchases(data) -> pd.DataFrame:
    tx = data.clean_transactions
    return tx.loc[~tx["is_return"], ["customer_id", "ts", "amount"]]


def _fit(fitter, *arrays):
    # numpy arrays, not Series: lifetimes' input check breaks on pandas 3 Series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter.fit(*[np.asarray(a, dtype=float) for a in arrays])


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_other_data():
    one, two, other = generate_synthetic(400, seed=5), generate_synthetic(400, seed=5), generate_synthetic(400, seed=6)
    for name in ("customers", "transactions", "interactions", "truth", "duplicate_ids", "clean_transactions"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))
    assert one.dirty_counts == two.dirty_counts
    assert not one.truth["lambda"].equals(other.truth["lambda"])
    assert not one.transactions.equals(other.transactions)


def test_dirty_rates_do_not_change_the_truth():
    base = generate_synthetic(300, seed=2)
    dirtier = generate_synthetic(300, seed=2, params=SynthParams(exact_duplicate_rate=0.2, date_format_rate=0.5))
    pd.testing.assert_frame_equal(base.truth, dirtier.truth)
    pd.testing.assert_frame_equal(base.clean_transactions, dirtier.clean_transactions)
    assert dirtier.dirty_counts["transactions"]["exact_duplicate"] > base.dirty_counts["transactions"]["exact_duplicate"]


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="n_customers=0"):
        generate_synthetic(0, seed=1)
    with pytest.raises(ValueError, match="q=1.0"):
        SynthParams(q=1.0)
    with pytest.raises(ValueError, match="return_rate=1.5"):
        SynthParams(return_rate=1.5)


def test_one_customer_is_enough():
    data = generate_synthetic(1, seed=0)
    assert len(data.truth) == 1 and data.truth["n_transactions"].iloc[0] >= 1


# --------------------------------------------------------------------------- the process


def test_clean_history_matches_the_truth(small):
    truth = small.truth.set_index("customer_id")
    tx = _purchases(small)
    assert tx["customer_id"].isin(truth.index).all()
    assert (small.clean_transactions["ts"] < END).all() and (small.clean_interactions["ts"] < END).all()
    n_tx = tx.groupby("customer_id").size().reindex(truth.index, fill_value=0)
    assert (n_tx == truth["n_transactions"]).all()
    first = tx.groupby("customer_id")["ts"].min().reindex(truth.index)
    assert (first == truth["signup_ts"]).all()  # the first purchase is at signup
    assert truth["signup_ts"].min() >= pd.Timestamp(PARAMS.start)
    assert truth["signup_ts"].max() < END - 26 * WEEK + pd.Timedelta(days=1)
    # a person who dropped out made their last purchase at the dropout time and none after it
    last = tx.groupby("customer_id")["ts"].max().reindex(truth.index)
    gone = truth["dropout_ts"].notna()
    assert (last[gone] == truth.loc[gone, "dropout_ts"]).all()
    assert (truth["alive_at_end"] == ~gone).all()
    assert (truth.loc[truth["n_transactions"] == 1, "alive_at_end"]).all()  # dropout only after a repeat purchase
    assert truth["mean_spend"].to_numpy() == pytest.approx(PARAMS.p / truth["nu"].to_numpy())
    assert set(small.clean_transactions["category"]) == set(CATEGORIES)
    assert set(small.clean_transactions["channel"]) == set(CHANNELS)
    assert set(small.clean_interactions["kind"]) == set(INTERACTION_KINDS)


def test_bgnbd_parameters_recovered_from_daily_history(large):
    """The brief's summary: distinct purchase days, recency and T in whole days / 7.

    Standard errors at n=20,000 are about 1.4% (r), 2.5% (alpha), 4% (a) and 6% (b). Counting
    purchase *days* merges purchases made on the same day, which raises alpha by about 5% (heavy
    buyers, at ~0.3 purchases/week, buy twice in a day a few % of the time). Tolerances: that bias
    plus about 3 standard errors.
    """
    from lifetimes import BetaGeoFitter

    tx = _purchases(large)
    day = tx["ts"].dt.floor("D")
    g = pd.DataFrame({"id": tx["customer_id"], "day": day}).groupby("id")["day"]
    first, last = g.min(), g.max()
    frequency = g.nunique() - 1
    recency = (last - first).dt.days / 7
    T = (END - first).dt.days / 7
    fitted = _fit(BetaGeoFitter(), frequency, recency, T).params_
    tolerance = {"r": 0.10, "alpha": 0.15, "a": 0.15, "b": 0.20}
    for name, tol in tolerance.items():
        assert fitted[name] == pytest.approx(getattr(PARAMS, name), rel=tol), (name, fitted[name])


def test_bgnbd_parameters_recovered_within_four_standard_errors(large):
    """With exact purchase times the model is the one simulated: no bias, so 4 standard errors."""
    from lifetimes import BetaGeoFitter

    tx = _purchases(large)
    g = tx.groupby("customer_id")["ts"]
    first, last = g.min(), g.max()
    fitter = _fit(BetaGeoFitter(), g.size() - 1, (last - first) / WEEK, (END - first) / WEEK)
    summary = fitter.summary
    for name in ("r", "alpha", "a", "b"):
        z = (summary.loc[name, "coef"] - getattr(PARAMS, name)) / summary.loc[name, "se(coef)"]
        assert abs(z) < 4, (name, summary.loc[name, "coef"], z)


def test_gamma_gamma_parameters_recovered(large):
    """Every purchase's spend is Gamma(p, nu): fit on (purchases, mean spend) per person.

    p and v trade off along a ridge (their estimates are strongly correlated) and have standard
    errors of 4-5% here, so each within 4 standard errors; the mean spend E[z] = p v / (q - 1) they
    imply is pinned much more tightly (within 2%).
    """
    from lifetimes import GammaGammaFitter

    tx = _purchases(large)
    g = tx.groupby("customer_id")["amount"]
    fitter = _fit(GammaGammaFitter(), g.size(), g.mean())
    summary = fitter.summary
    for name in ("p", "q", "v"):
        z = (summary.loc[name, "coef"] - getattr(PARAMS, name)) / summary.loc[name, "se(coef)"]
        assert abs(z) < 4, (name, summary.loc[name, "coef"], z)
    est = fitter.params_
    assert est["p"] * est["v"] / (est["q"] - 1) == pytest.approx(PARAMS.mean_spend, rel=0.02)
    assert tx["amount"].mean() == pytest.approx(PARAMS.mean_spend, rel=0.02)


def test_interactions_relate_to_purchases_and_churn(small):
    truth = small.truth.set_index("customer_id")
    alive_until = truth["dropout_ts"].fillna(END)
    alive_weeks = (alive_until - truth["signup_ts"]) / WEEK
    ev = small.clean_interactions
    assert (ev["ts"] >= truth["signup_ts"].reindex(ev["customer_id"]).to_numpy()).all()
    assert (ev["ts"] <= alive_until.reindex(ev["customer_id"]).to_numpy()).all()  # nothing after dropout
    per_person = ev.groupby(["customer_id", "kind"]).size().unstack(fill_value=0).reindex(truth.index, fill_value=0)

    # visits at 2 * lambda per week alive, email opens at 1 * lambda
    exposure = (truth["lambda"] * alive_weeks).sum()
    assert per_person["visit"].sum() / exposure == pytest.approx(PARAMS.visit_rate_per_lambda, rel=0.05)
    assert per_person["email_open"].sum() / exposure == pytest.approx(PARAMS.email_open_rate_per_lambda, rel=0.05)

    # complaints: far more frequent among people who drop out (they cluster before the dropout)
    gone = ~truth["alive_at_end"]
    rate_gone = per_person.loc[gone, "complaint"].sum() / alive_weeks[gone].sum()
    rate_alive = per_person.loc[~gone, "complaint"].sum() / alive_weeks[~gone].sum()
    assert rate_gone > 3 * rate_alive
    assert per_person.loc[gone, "complaint"].mean() > 3 * per_person.loc[~gone, "complaint"].mean()
    complaints = ev[ev["kind"] == "complaint"]
    assert complaints["pre_dropout"].mean() > 0.5  # most complaints come in the weeks before a dropout


# --------------------------------------------------------------------------- dirty rows

_FORMATS = {
    "date_iso_datetime": r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}",
    "date_iso_date": r"\d{4}-\d{2}-\d{2}",
    "date_slash": r"\d{4}/\d{2}/\d{2}",
    "date_day_month_name": r"\d{2} [A-Z][a-z]{2} \d{4}",
    "date_month_name_day": r"[A-Z][a-z]{2} \d{2}, \d{4}",
    "date_compact": r"\d{8}",
}


def _date_counts(col: pd.Series, main: str) -> dict[str, int]:
    text = col.dropna()
    future = text.str.startswith("2099")
    bad = (text == "not a date") | text.str.fullmatch(r"\d{4}-13-45")
    out = {"date_future": int(future.sum()), "date_unparseable": int(bad.sum())}
    rest = text[~future & ~bad]
    for kind, pattern in _FORMATS.items():
        n = int(rest.str.fullmatch(pattern).sum())
        if kind == main:
            assert n + sum(int(rest.str.fullmatch(p).sum()) for k, p in _FORMATS.items() if k != main) == len(rest)
        else:
            out[kind] = n
    return out


def test_dirty_counts_match_the_transactions(small):
    raw, counts = small.transactions, small.dirty_counts["transactions"]
    assert set(counts) <= set(DIRTY_KINDS)
    amount = raw["amount"]
    found = {
        "amount_dollar": amount.str.startswith("$").sum(),
        "amount_usd": amount.str.startswith("USD ").sum(),
        "amount_padded": amount.str.startswith(" ").sum(),
        "amount_thousands": (amount.str.contains(",", regex=False) & ~amount.str.startswith("$")).sum(),
        "amount_unparseable": ((amount == "abc") | amount.str.contains("..", regex=False)).sum(),
        "return": amount.str.startswith("-").sum(),
        "empty_customer_id": raw["customer_id"].isna().sum(),
        "exact_duplicate": raw.duplicated().sum(),
        "category_variant": (raw["category"].notna() & ~raw["category"].isin(CATEGORIES)).sum(),
        "missing_category": raw["category"].isna().sum(),
        "missing_quantity": raw["quantity"].isna().sum(),
        "missing_channel": raw["channel"].isna().sum(),
        "duplicate_id": raw["customer_id"].isin(small.duplicate_ids["duplicate_id"]).sum(),
        **_date_counts(raw["ts"], "date_iso_datetime"),
    }
    assert {k: int(v) for k, v in found.items()} == counts
    assert all(counts[k] > 0 for k in counts if k != "amount_thousands")  # every kind present (spends >= 1000 are rare)
    assert raw["amount"].notna().all() and raw["ts"].notna().all()
    variants = set(raw.loc[~raw["category"].isin(CATEGORIES), "category"].dropna())
    assert {v.strip().lower() for v in variants} <= set(CATEGORIES)
    assert {"Books", " books ", "BOOKS"} & variants


def test_dirty_counts_match_customers_and_interactions(small):
    cust, counts = small.customers, small.dirty_counts["customers"]
    found = {
        "missing_age": cust["age"].isna().sum(),
        "missing_gender": cust["gender"].isna().sum(),
        "missing_region": cust["region"].isna().sum(),
        "exact_duplicate": cust.duplicated().sum(),
        "duplicate_person": cust["customer_id"].isin(small.duplicate_ids["duplicate_id"]).sum(),
        **{k: v for k, v in _date_counts(cust["signup_date"], "date_iso_date").items() if k.startswith("date_")
           and k not in ("date_future", "date_unparseable")},
    }
    assert {k: int(v) for k, v in found.items()} == counts
    assert cust["customer_id"].notna().all() and cust.drop_duplicates()["customer_id"].is_unique

    inter, counts = small.interactions, small.dirty_counts["interactions"]
    found = {
        "exact_duplicate": inter.duplicated().sum(),
        "duplicate_id": inter["customer_id"].isin(small.duplicate_ids["duplicate_id"]).sum(),
        **_date_counts(inter["ts"], "date_iso_datetime"),
    }
    assert {k: int(v) for k, v in found.items()} == counts
    assert set(inter["kind"]) == set(INTERACTION_KINDS)


def _parse_date(text: str) -> pd.Timestamp | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y/%m/%d", "%d %b %Y", "%b %d, %Y", "%Y%m%d"):
        try:
            return pd.Timestamp(datetime.strptime(text, fmt))
        except ValueError:
            continue
    return None


def test_a_perfect_cleaner_gets_the_clean_history_back(small):
    """Drop exact repeats, reject what does not parse, is in the future or has no id, map duplicate ids:
    what remains is exactly the clean history, row for row."""
    raw = small.transactions.drop_duplicates()
    ts = raw["ts"].map(_parse_date)
    amount = pd.to_numeric(raw["amount"].str.replace(r"^\s*(USD |\$)?|,|\s*$", "", regex=True), errors="coerce")
    ok = ts.notna() & amount.notna() & raw["customer_id"].notna()
    ok &= ts.map(lambda t: t is not None and t < END).astype(bool)
    kept = raw[ok]
    to_true = dict(zip(small.duplicate_ids["duplicate_id"], small.duplicate_ids["customer_id"], strict=True))
    person = kept["customer_id"].map(lambda c: to_true.get(c, c))
    got = pd.DataFrame({"order_id": kept["order_id"], "customer_id": person, "amount": amount[ok],
                        "day": pd.to_datetime(ts[ok]).dt.floor("D")}).sort_values("order_id", ignore_index=True)
    clean = small.clean_transactions
    want = pd.DataFrame({"order_id": clean["order_id"], "customer_id": clean["customer_id"], "amount": clean["amount"],
                         "day": clean["ts"].dt.floor("D")}).sort_values("order_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert len(small.transactions) - len(kept) == sum(
        small.dirty_counts["transactions"][k]
        for k in ("exact_duplicate", "date_unparseable", "date_future", "amount_unparseable", "empty_customer_id")
    )
    assert len(small.transactions.dropna(subset=["customer_id"])) == len(small.transactions) - small.dirty_counts[
        "transactions"]["empty_customer_id"]


def test_returns_reference_a_purchase(small):
    tx = small.clean_transactions.set_index("order_id")
    returns = tx[tx["is_return"]]
    bought = tx.loc[returns.index.str.removesuffix("-R")]
    assert (returns["amount"] < 0).all() and (-returns["amount"].to_numpy() <= bought["amount"].to_numpy()).all()
    assert (returns["ts"].to_numpy() > bought["ts"].to_numpy()).all()
    assert (returns["customer_id"].to_numpy() == bought["customer_id"].to_numpy()).all()


def _digits(phone: str) -> str:
    d = re.sub(r"\D", "", phone)
    return d[1:] if len(d) == 11 and d.startswith("1") else d


def test_duplicate_persons_differ_only_in_case_spacing_and_phone_format(small):
    cust = small.customers.drop_duplicates().set_index("customer_id")
    assert len(small.duplicate_ids) > 0
    assert not small.duplicate_ids["customer_id"].isin(small.duplicate_ids["duplicate_id"]).any()
    for dup, true in small.duplicate_ids.itertuples(index=False):
        a, b = cust.loc[dup], cust.loc[true]
        assert a["email"] != b["email"] and a["email"].strip().lower() == b["email"].strip().lower()
        assert a["phone"] != b["phone"] and _digits(a["phone"]) == _digits(b["phone"])
        assert len(_digits(b["phone"])) == 10
        assert a["name"] == b["name"]
        assert _parse_date(a["signup_date"]) > _parse_date(b["signup_date"]).floor("D")
    # distinct people never share an email or a phone, so matching on them is safe
    true_rows = cust.drop(small.duplicate_ids["duplicate_id"])
    assert true_rows["email"].str.strip().str.lower().is_unique
    assert true_rows["phone"].map(_digits).is_unique
    assert true_rows["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.com").all()
    # later rows of a person use the duplicate id, never a row before the duplicate signed up
    tx = small.clean_transactions
    used = tx[tx["raw_customer_id"] != tx["customer_id"]]
    assert len(used) > 0
    since = pd.to_datetime(cust.loc[used["raw_customer_id"], "signup_date"]).to_numpy()
    assert (used["ts"].to_numpy() >= since).all()


# --------------------------------------------------------------------------- the true churn score


def test_true_churn_probability_by_hand():
    truth = pd.DataFrame({"customer_id": ["A", "B"], "lambda": [0.5, 0.5], "p": [0.2, 0.2],
                          "signup_ts": pd.to_datetime(["2024-01-01", "2024-01-01"])})
    summary = pd.DataFrame({"customer_id": ["A", "B"], "frequency": [0, 2], "recency": [0.0, 10.0], "T": [20.0, 20.0]})
    got = true_churn_probability(truth, summary, as_of="2024-05-20", horizon_days=28)
    h = 4.0
    alive_b = 0.8 * np.exp(-5) / (0.8 * np.exp(-5) + 0.2)
    assert got["A"] == pytest.approx(np.exp(-0.5 * h))  # x = 0: alive for sure
    assert got["B"] == pytest.approx(1 - alive_b * (1 - np.exp(-0.5 * h)))
    assert got.name == "p_no_purchase" and got.index.name == "customer_id"
    # T from the signup date when the summary lacks it: 2024-01-01 -> 2024-05-20 is 20 weeks
    no_t = true_churn_probability(truth, summary.drop(columns="T"), as_of=date(2024, 5, 20), horizon_days=28)
    pd.testing.assert_series_equal(no_t, got)
    with pytest.raises(ValueError, match="'Z'"):
        true_churn_probability(truth, summary.assign(customer_id=["A", "Z"]), as_of="2024-05-20", horizon_days=28)


def test_true_churn_probability_is_calibrated(small):
    """The true mechanism's probability matches what then happens: mean and by decile."""
    as_of, horizon = END - 26 * WEEK, 91
    tx = _purchases(small)
    before = tx[tx["ts"] < as_of]
    g = before.groupby("customer_id")["ts"]
    first, last = g.min(), g.max()
    summary = pd.DataFrame({"frequency": g.size() - 1, "recency": (last - first) / WEEK, "T": (as_of - first) / WEEK})
    score = true_churn_probability(small.truth, summary, as_of, horizon)
    after = tx[(tx["ts"] >= as_of) & (tx["ts"] < as_of + pd.Timedelta(days=horizon))]
    churned = ~score.index.isin(after["customer_id"])
    assert score.mean() == pytest.approx(churned.mean(), abs=0.02)
    deciles = pd.qcut(score.rank(method="first"), 10, labels=False)
    table = pd.DataFrame({"p": score.to_numpy(), "y": churned, "d": deciles.to_numpy()}).groupby("d").mean()
    assert (table["p"] - table["y"]).abs().max() < 0.06


# --------------------------------------------------------------------------- files


def test_write_synthetic_round_trips(tmp_path):
    paths = write_synthetic(tmp_path / "synth", n_customers=300, seed=4)
    data = generate_synthetic(300, seed=4)
    assert set(paths) == {"customers", "transactions", "interactions", "params", "truth", "duplicate_ids", "dirty_counts"}
    for name in ("customers", "transactions", "interactions"):
        assert paths[name] == tmp_path / "synth" / f"{name}.csv"
        pd.testing.assert_frame_equal(pd.read_csv(paths[name], dtype=str), getattr(data, name))
    assert SynthParams.from_dict(json.loads(paths["params"].read_text())) == SynthParams()
    assert json.loads(paths["dirty_counts"].read_text()) == data.dirty_counts
    truth = pd.read_csv(paths["truth"], parse_dates=["signup_ts", "dropout_ts"])
    assert list(truth.columns) == ["customer_id", "signup_ts", "lambda", "p", "nu", "mean_spend", "dropout_ts",
                                   "alive_at_end", "n_transactions"]
    assert truth["customer_id"].tolist() == data.truth["customer_id"].tolist()
    assert truth["lambda"].to_numpy() == pytest.approx(data.truth["lambda"].to_numpy())
    assert (truth["dropout_ts"].isna() == truth["alive_at_end"]).all()
    dups = pd.read_csv(paths["duplicate_ids"], dtype=str)
    pd.testing.assert_frame_equal(dups, data.duplicate_ids)


def test_texts_on_request_leave_every_other_output_unchanged():
    plain = generate_synthetic(300, seed=5)
    voiced = generate_synthetic(300, seed=5, texts="en")
    for name in ("transactions", "customers", "truth", "duplicate_ids", "clean_transactions"):
        pd.testing.assert_frame_equal(getattr(plain, name), getattr(voiced, name))
    assert "text" not in plain.interactions.columns and "text" in voiced.interactions.columns
    clean = voiced.clean_interactions
    has_text = clean["text"].notna()
    assert (has_text == clean["kind"].isin(["complaint", "support_ticket", "feedback"])).all()
    # the old kinds keep their events: every event of the plain data is there
    old = clean[clean["kind"] != "feedback"][["customer_id", "kind"]].value_counts().sort_index()
    assert old.equals(plain.clean_interactions[["customer_id", "kind"]].value_counts().sort_index())


def test_products_are_lines_of_the_same_purchases_with_planted_pairs():
    from crmlab.data.synth import ProductParams

    plain = generate_synthetic(300, 4)
    assert "product_id" not in plain.transactions.columns and plain.planted_pairs is None
    data = generate_synthetic(300, 4, products=ProductParams(n_pairs=4))
    tx = data.clean_transactions
    bought = tx[~tx["is_return"]]
    # each purchase became an order of lines: the same orders, customers and totals as without products
    before = plain.clean_transactions[~plain.clean_transactions["is_return"]]
    assert bought["order_id"].nunique() == len(before) and bought["product_id"].notna().all()
    totals = bought.groupby("order_id")["amount"].sum().round(2)
    pd.testing.assert_series_equal(totals, before.set_index("order_id")["amount"].round(2), check_names=False)
    assert (data.truth["n_transactions"] == plain.truth["n_transactions"]).all()
    # a line's category is its product's; four planted pairs of distinct products
    cat = data.products.set_index("product_id")["category"]
    assert (bought["category"].to_numpy() == cat[bought["product_id"]].to_numpy()).all()
    pairs = data.planted_pairs
    assert len(pairs) == 4 and len(set(pairs["product_a"]) | set(pairs["product_b"])) == 8
