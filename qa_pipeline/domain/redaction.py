"""Personal data out of free text before it leaves `qa_core` (reports, themes, UI previews).

Emails, URLs, IP addresses, phone numbers and @handles become typed placeholders, so that the
text stays readable ("reporter wrote to [email]") and nothing identifying survives.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


# What an ASCII text must contain for each pattern above (then PHONE_CANDIDATE) to match in it,
# as RE2 patterns that pyarrow checks in C++: only texts that pass, or hold any non-ASCII
# character (where `\d`, `\w` and case folding go beyond ASCII), meet the Python pattern.
ASCII_NEEDS = [r"(?i)https?://|www\.", "@", r"[0-9]\.[0-9]", ":", "@"]
PHONE_NEEDS = "[0-9]"


def redact_series(values: pd.Series) -> pd.Series:
    """Vectorised redaction of a text column; missing values stay missing.

    The same substitutions, in the same order, as `redact_text` on each value; each one runs only
    on the values it can change (a C++ pre-test over the whole column), so that most comments
    never reach a Python regex.
    """
    out = values.astype("str")
    for (placeholder, pattern), needs in zip(PATTERNS, ASCII_NEEDS, strict=True):
        out = _substitute(out, pattern, placeholder, needs)
    out = _substitute(out, PHONE_CANDIDATE, _phone, PHONE_NEEDS)
    return out.where(values.notna())


def _substitute(text: pd.Series, pattern: re.Pattern, replacement, needs: str) -> pd.Series:
    arr = pa.array(text.array, type=pa.large_string()) if len(text) else pa.array([], pa.large_string())
    maybe = pc.or_(pc.invert(pc.string_is_ascii(arr)), pc.match_substring_regex(arr, needs))
    maybe = np.asarray(maybe.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    if not maybe.any():
        return text
    out = text.copy()
    out[maybe] = text[maybe].str.replace(pattern, replacement, regex=True)
    return out
