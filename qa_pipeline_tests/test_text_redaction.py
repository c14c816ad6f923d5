"""Redaction on a corpus: obfuscated e-mails and short phone numbers go, ordinary text stays."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from qa_pipeline.domain.redaction import RULES, redact_series, redact_text

CORPUS_PATH = Path(__file__).parent / "data" / "text_redaction_corpus.csv"
CORPUS = list(csv.DictReader(CORPUS_PATH.open(encoding="utf-8")))
REDACT = [r for r in CORPUS if r["kind"] == "redact"]
KEEP = [r for r in CORPUS if r["kind"] == "keep"]


def test_the_corpus_is_large_enough_and_covers_every_rule():
    assert len(REDACT) >= 40 and len(KEEP) >= 20, (len(REDACT), len(KEEP))
    assert {r.name for r in RULES} <= {r["rule"] for r in REDACT}
    assert {r["kind"] for r in CORPUS} == {"redact", "keep"}


@pytest.mark.parametrize("row", REDACT, ids=[r["text"] for r in REDACT])
def test_personal_data_in_the_corpus_is_redacted(row):
    assert redact_text(row["text"]) == row["expected"]


@pytest.mark.parametrize("row", KEEP, ids=[r["text"] for r in KEEP])
def test_ordinary_text_in_the_corpus_survives(row):
    assert redact_text(row["text"]) == row["text"]


def test_no_digits_of_a_phone_or_part_of_an_address_survive():
    for row in REDACT:
        out = redact_text(row["text"])
        assert not re.search(r"\d{3}", out), out
        assert not re.search(r"(?i)\bexample\b|\bjane\b|\bdoe\b", out), out


def test_the_vectorised_redaction_equals_the_per_value_one_on_the_corpus():
    texts = [r["text"] for r in CORPUS]
    values = pd.Series([*texts, None, "", "é 555-1234"], dtype="str")
    out = redact_series(values)
    expected = [redact_text(t) for t in texts] + [None, "", "é [phone]"]
    assert out.iloc[:-3].tolist() == expected[:-3]
    assert pd.isna(out.iloc[-3]) and out.iloc[-2] == "" and out.iloc[-1] == "é [phone]"


def test_redaction_is_idempotent():
    for row in CORPUS:
        once = redact_text(row["text"])
        assert redact_text(once) == once


@pytest.mark.parametrize("unit", ["a dot ", "a.", "1.", "(1.", "x at a.", "a(dot)", "a dot b at ", "1 ", "call 1 "])
def test_a_hostile_comment_costs_linear_time(unit):
    # 256 KB of a repeated fragment: quadratic patterns took minutes here, linear ones well under a second
    import time

    text = unit * (256_000 // len(unit)) + "x"
    start = time.perf_counter()
    redact_text(text)
    redact_series(pd.Series([text], dtype="str"))
    assert time.perf_counter() - start < 10
