"""Texts from any table: empty texts skipped and counted; a wrong column is a one-line named error."""

from __future__ import annotations

import pandas as pd
import pytest

from crmlab.errors import DataError
from crmlab.voice import texts_frame


def _table(text, **attrs) -> pd.DataFrame:
    df = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "ts": pd.to_datetime(["2024-01-01"] * 4),
                       "kind": "feedback", "value": [1.0, 2.0, 3.0, 4.0], "text": text})
    df.attrs.update(attrs)
    return df


def test_empty_and_blank_texts_are_skipped_and_counted():
    out = texts_frame(_table(["fine", "", None, "  \n"]))
    assert out.frame["text"].tolist() == ["fine"] and out.n_empty == 3
    assert list(out.frame.columns) == ["customer_id", "ts", "text"]


def test_any_source_with_its_own_column_names():
    surveys = pd.DataFrame({"cust": ["a"], "answered": pd.to_datetime(["2024-02-01"]), "comment": ["不错"]})
    out = texts_frame(surveys, text_column="comment", id_column="cust", ts_column="answered", table_name="surveys")
    assert out.frame.iloc[0].to_dict() == {"customer_id": "a", "ts": pd.Timestamp("2024-02-01"), "text": "不错"}


def test_a_numeric_column_is_a_one_line_error_naming_file_and_column():
    with pytest.raises(DataError) as err:
        texts_frame(_table(["x"] * 4, source="data/interactions.csv"), text_column="value")
    message = str(err.value)
    assert "data/interactions.csv" in message and "'value'" in message and "not text" in message
    assert "\n" not in message


def test_a_missing_column_names_it():
    with pytest.raises(DataError, match="'comment'"):
        texts_frame(_table(["x"] * 4), text_column="comment")


def test_the_input_is_not_modified():
    df = _table(["a", "", None, "b"])
    before = df.copy()
    texts_frame(df)
    pd.testing.assert_frame_equal(df, before)


def test_voice_config_is_validated_with_the_key_named():
    from pydantic import ValidationError

    from crmlab.config import VoiceConfig

    with pytest.raises(ValidationError, match="language"):
        VoiceConfig(language="fr")
    with pytest.raises(ValidationError, match="recent_days"):
        VoiceConfig(recent_days=0)
    with pytest.raises(ValidationError, match="n_topicz"):
        VoiceConfig(n_topicz=3)
