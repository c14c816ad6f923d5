"""Personal data is replaced; ordinary moderation text survives untouched."""

import pandas as pd
import pytest

from qa_pipeline.domain.redaction import redact_series, redact_text


@pytest.mark.parametrize(("text", "expected"), [
    ("wrote to jane.doe12@example.com today", "wrote to [email] today"),
    ("mail J.Smith+qa@sub.example.co.uk.", "mail [email]."),
    ("call +1 415 555 0123 now", "call [phone] now"),
    ("office (020) 7946-0958", "office [phone]"),
    ("ph 415.555.0123", "ph [phone]"),
    ("tagged @victim_12 twice", "tagged [handle] twice"),
    ("from 203.0.113.7 per log", "from [ip] per log"),
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 seen", "v6 [ip] seen"),
    ("see https://spam1.example.net/promo?x=1 now", "see [url] now"),
    ("see www.example.org/page", "see [url]"),
])
def test_personal_data_is_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "HS.2 applied on 2026-03-10 at 12:30:00, 12.5% of 1,234 cases",
    "moderator missed the coded slur exception in HR.3",
    "content C5803771086 re-reviewed; version 10.0.1",
    "score 0.95 vs target 0.97",
    "<b>bold claim</b> in caption",
])
def test_ordinary_text_survives(text):
    assert redact_text(text) == text


def test_series_redaction_keeps_missing_values_missing():
    out = redact_series(pd.Series(["a @b", None, "+44 20 7946 0958"], dtype="str"))
    assert out.iloc[0] == "a [handle]"
    assert pd.isna(out.iloc[1])
    assert out.iloc[2] == "[phone]"


def test_ui_previews_redact_free_text():
    from qa_pipeline.assets.common import preview

    frame = pd.DataFrame({"audit_id": ["A1", "A2"],
                          "auditor_comment": ["mail jane@example.com", "call +1 415 555 0123 re @victim_9"]})
    text = preview(frame).value
    assert "jane@example.com" not in text and "415 555" not in text and "@victim_9" not in text
    assert "[email]" in text and "[phone]" in text and "[handle]" in text
