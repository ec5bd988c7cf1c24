"""The ranking metrics and the paired tests on small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.crosssell.baskets import binary_csr
from crmlab.crosssell.evaluate import compare_paired, paired_bootstrap, per_customer_metrics, sign_test, summarise


def test_hit_rate_precision_recall_and_map_by_hand():
    # items 0..5; three customers, k = 3
    recommended = np.array([[0, 1, 2],     # relevant {1, 3}: one hit, at rank 2
                            [4, 5, -1],    # relevant {4, 5}: two hits, ranks 1 and 2 (one slot empty)
                            [0, 1, 2]])    # relevant {3}: no hit
    relevant = binary_csr(np.array([0, 0, 1, 1, 2]), np.array([1, 3, 4, 5, 3]), (3, 6))
    per = per_customer_metrics(recommended, relevant, 3)
    assert per["hit"].tolist() == [1, 1, 0]
    assert per["precision"].tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    assert per["recall"].tolist() == pytest.approx([1 / 2, 1, 0])
    # AP@3 = sum of precision@i at the hits / min(|R|, 3): (1/2) / 2; (1 + 1) / 2; 0
    assert per["ap"].tolist() == pytest.approx([0.25, 1.0, 0.0])
    m = summarise(per, recommended, 3, n_candidates=6)
    assert m["hit_rate"] == pytest.approx(2 / 3) and m["map"] == pytest.approx(1.25 / 3)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(0.5)
    assert m["coverage"] == pytest.approx(5 / 6)  # items 0, 1, 2, 4, 5 shown
    # at k = 1 only the first recommendation counts
    at1 = per_customer_metrics(recommended, relevant, 1)
    assert at1["hit"].tolist() == [0, 1, 0] and at1["ap"].tolist() == pytest.approx([0, 1, 0])


def test_sign_test_by_hand():
    # three customers hit with the model only, none with the baseline only: p = 2 * (1/2)^3
    out = sign_test([1, 1, 1, 0, 1], [0, 0, 0, 0, 1])
    assert (out["wins"], out["losses"]) == (3, 0) and out["p_value"] == pytest.approx(0.25)
    assert sign_test([1, 0], [1, 0])["p_value"] == 1.0  # no discordant pair: no evidence


def test_paired_bootstrap_sees_a_consistent_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = paired_bootstrap(base + 0.05, base, n_boot=500, seed=1)
    assert better["mean_diff"] == pytest.approx(0.05) and better["p_value"] == 0.0
    same = paired_bootstrap(base, base[::-1].copy(), n_boot=500, seed=1)
    assert same["ci_low"] < 0 < same["ci_high"] and same["p_value"] > 0.05
    out = compare_paired(pd.DataFrame({"hit": [1, 1, 0], "ap": [1, 0.5, 0]}),
                         pd.DataFrame({"hit": [0, 1, 0], "ap": [0, 0.5, 0]}), n_boot=200, seed=0)
    assert out["hit_wins"] == 1 and out["hit_losses"] == 0 and out["ap_diff"] == pytest.approx(1 / 3)
