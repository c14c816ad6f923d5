"""Personal data out of free text before it leaves `qa_core` (reports, themes, UI previews).

Emails, URLs, IP addresses, phone numbers and @handles become typed placeholders, so that the
text stays readable ("reporter wrote to [email]") and nothing identifying survives.
"""

from __future__ import annotations

import re

import pandas as pd

# Order matters: URLs and emails before handles (an email holds an @), IPs before phones.
PATTERNS: list[tuple[str, re.Pattern]] = [
    ("[url]", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)),
    ("[email]", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("[ip]", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("[ip]", re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b")),
    ("[handle]", re.compile(r"(?<![\w@])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?")),
]


# A phone number: 9 to 15 digits in groups (spaces, dots, dashes, parentheses), optional +.
# Dates (2026-03-10), times and decimals have too few digits or the wrong shape and survive.
PHONE_CANDIDATE = re.compile(r"(?<![\w.+])(?:\+|\()?\d[\d\s().-]{6,}\d(?![\w.])")
DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}")


def _phone(match: re.Match) -> str:
    candidate = match.group(0)
    digits = sum(ch.isdigit() for ch in candidate)
    if 9 <= digits <= 15 and not DATE_LIKE.search(candidate):
        return "[phone]"
    return candidate


def redact_text(text: str | None) -> str | None:
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return text
    for placeholder, pattern in PATTERNS:
        text = pattern.sub(placeholder, text)
    return PHONE_CANDIDATE.sub(_phone, text)


def redact_series(values: pd.Series) -> pd.Series:
    """Vectorised redaction of a text column; missing values stay missing."""
    out = values.astype("str")
    for placeholder, pattern in PATTERNS:
        out = out.str.replace(pattern, placeholder, regex=True)
    out = out.str.replace(PHONE_CANDIDATE, _phone, regex=True)
    return out.where(values.notna())
