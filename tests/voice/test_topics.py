"""Sentiment by period, complaint keywords and topics, and the report's customer voice section."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from crmlab.config import CleaningConfig, CrmlabConfig
from crmlab.data.clean import clean_tables
from crmlab.data.io import Tables
from crmlab.data.synth import generate_synthetic
from crmlab.kpis import compute_kpis
from crmlab.report import build_figures, render_html
from crmlab.voice.topics import period_keywords, tokenize


@pytest.fixture(scope="module")
def kpis():
    data = generate_synthetic(600, seed=4, texts="mixed")
    tables = clean_tables(Tables(transactions=data.transactions, customers=data.customers,
                                 interactions=data.interactions), CleaningConfig(), today=date(2025, 1, 1)).tables
    cfg = CrmlabConfig().model_copy(update={"kpis": CrmlabConfig().kpis.model_copy(update={"period": "Q"})})
    return compute_kpis(cfg, tables.transactions, as_of=date(2024, 12, 30), customers=tables.customers,
                        interactions=tables.interactions)


def test_complaint_keywords_follow_the_drift_put_into_the_synthetic_data(kpis):
    # the generator's negative texts are mostly about delivery in 2022, the app in 2023 and price in 2024
    top = kpis.voice.keywords[kpis.voice.keywords["rank"] <= 5].groupby("period")["term"].apply(set)
    assert {"快递", "包裹", "arrived", "late", "courier", "damaged"} & top["2022Q3"]
    assert {"app", "闪退", "登录不了"} & top["2023Q3"]
    assert {"太贵", "expensive", "prices"} & top["2024Q3"]


def test_voice_tables_are_written_with_the_kpis(kpis):
    tables = kpis.tables()
    assert {"voice_by_period", "voice_keywords", "voice_topics", "voice_topics_by_period"} <= set(tables)
    by = tables["voice_by_period"]
    assert by["texts"].sum() == kpis.voice.n_texts and by["negative_share"].between(0, 1).all()
    assert len(tables["voice_topics"]) == 5 and tables["voice_topics"]["share"].sum() == pytest.approx(1.0)


def test_the_report_has_a_customer_voice_section(kpis):
    figs = build_figures(kpis, {})
    assert "voice.png" in figs
    html = render_html(kpis, {}, {name: "" for name in figs}, title="t", show_customer_ids=False, top_customers=5)
    assert "Customer voice" in html and "Complaint topics" in html


def test_terms_leave_out_numbers_and_addresses():
    assert tokenize("Order 12345 late, mail me at a@b.com", "en") == ["order", "late", "mail"]
    assert all(not any(ch.isdigit() for ch in t) for t in tokenize("订单1234号还没发货，电话13812345678", "zh"))


def test_no_negative_text_gives_no_keywords():
    scored = pd.DataFrame({"text": ["great"], "language": ["en"], "sentiment": [0.6], "period": ["2024-01"],
                           "customer_id": ["a"]})
    assert period_keywords(scored).empty
