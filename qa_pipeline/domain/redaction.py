"""Text that leaves `qa_core`: personal data out of free text, and no spreadsheet formulas.

**Redaction** (`redact_text`, `redact_series`). E-mail addresses, URLs, IP addresses, phone numbers
and @handles become typed placeholders, so that the text stays readable ("reporter wrote to
[email]") and nothing identifying survives. It runs on comments before themes are counted, on every
free-text value of a report, and on UI previews. The rules run in this order (earlier placeholders
cannot be matched again by later rules):

| rule | placeholder | caught (examples) | deliberately kept (examples) |
| --- | --- | --- | --- |
| url | `[url]` | `https://spam1.example.net/promo?x=1`, `http://x`, `www.example.org/page` | bare `example.com` (see e-mail) |
| email | `[email]` | `jane.doe12@example.com`, `J.Smith+qa@sub.example.co.uk` | `a@b` (no domain), `user@host` (no dot) |
| email, obfuscated | `[email]` | `jane dot doe at example dot com`, `jane(at)example(dot)com`, `jane [at] example [dot] com`, `jane {at} example {dot} com`, `jane<at>example<dot>com`, `jane at example.com`, `jane @ example . com`, `jane AT example DOT co DOT uk`, `jane(@)example.com` | `looked at HS.2`, `at 12:30`, `at 10.0.1`, `at e.g. noon`, `jane at home` (no domain), `the dot at the end` |
| ip | `[ip]` | `203.0.113.7`, `2001:0db8:85a3:0000:0000:8a2e:0370:7334` | `10.0.1` (version), `12.5` |
| handle | `[handle]` | `@victim_12`, `@jane.doe` | `a@b` inside a word |
| phone, after a cue | `[phone]` (the cue stays) | `tel: 5551234`, `phone 555.1234`, `call 555 1234`, `mobile 07700900123`, `WhatsApp +44 7700 900123`, `fax (020) 7946-0958` | `call 3 of 5`, `phone 1234` (fewer than 7 digits) |
| phone | `[phone]` | 9–15 digits in groups: `+1 415 555 0123`, `(020) 7946-0958`, `(555) 123-4567`, `415.555.0123`, `+44 20 7946 0958`; 7–8 digits after `+` or `(`: `+1 555 1234`, `(555) 1234` | dates `2026-03-10`, `10.03.2026`, times `12:30:00`, decimals `0.95`, `1,234`, ids `C5803771086`, `A-1234`, `AUD-07` |
| phone, local | `[phone]` | `555-1234`, `555 1234`, `5555-1234`, `ring 555-1234.` | year ranges `2024-2026`, clock ranges `0930-1730`, round ascending ranges `100-2000`, `4-digit 4-digit` with a space (`in 2026 1500 audits`), ids `A-555-1234` (joined to a word), policy codes `HS.1`, percentages `12.5 %` |

Known limits, chosen: a word, ` at ` and a dotted name ending in letters is taken for an address
(`looked at index.html` → `[email]`: over-redaction is the safe error); a list of figures
longer than 40 characters (`12 15 18 20 …`) is not a phone number; numbers written in words ("five
five five …") and names are not caught — names are kept out of the published themes by the
k-anonymity rule of `domain.themes`. Every pattern is bounded, so a hostile comment of megabytes
costs linear time.

**Formula neutralisation** (`neutralise_formula`, `neutralise_formulas`). A text value that a
spreadsheet would run as a formula when an analyst exports a `qa_reporting` table or a report table
to CSV/Excel gets a leading apostrophe (OWASP CSV injection guidance; ASVS requirement 1.2.10): values whose first
character is `=`, `+`, `-`, `@` (or their full-width forms `＝＋－＠`), also after leading
whitespace, and values that start with a tab, CR, LF or NUL. A plain number written as text (`-0.5`,
`+3`, `1e-3`, `-12 %`) is left alone: a spreadsheet reads it as that number and runs nothing.
Anything else, a site or queue name that happens to start with `-` or `+` included, is neutralised
the same way everywhere (`'+Plus Ops`), so that values stay equal across `qa_reporting` tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# -- e-mail, obfuscated ---------------------------------------------------------------------------
# Every repetition is bounded (at most 3 spaces, 64-character atoms, 6 parts on each side of the
# @), so that a hostile comment ("a dot a dot …" over megabytes) costs linear time, not quadratic.
_OPEN, _CLOSE, _SP, _OSP = r"[(\[{<]", r"[)\]}>]", r"\s{1,3}", r"\s{0,3}"
# "ping @jane.doe" is a handle: a spaced @ needs a space on both sides
_AT = rf"(?:{_OSP}{_OPEN}{_OSP}(?:at|@){_OSP}{_CLOSE}{_OSP}|{_SP}at{_SP}|{_SP}@{_SP}|@)"
# a real dot only when a label follows at once ("home. Then" is a sentence, not a domain)
_DOT = rf"(?:{_OSP}{_OPEN}{_OSP}(?:dot|\.){_OSP}{_CLOSE}{_OSP}|{_SP}dot{_SP}|\.(?=[a-z0-9])|{_SP}\.{_SP})"
_ATOM = r"[a-z0-9](?:[a-z0-9_%+-]{0,62}[a-z0-9])?"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
EMAIL_OBFUSCATED = re.compile(
    rf"(?<![\w.@]){_ATOM}(?:{_DOT}{_ATOM}){{0,5}}{_AT}(?:{_LABEL}{_DOT}){{1,6}}[a-z]{{2,24}}(?![\w@]|\.[a-z0-9])",
    re.IGNORECASE)

# -- phone numbers --------------------------------------------------------------------------------
# A phone number: 9 to 15 digits in groups (spaces, dots, dashes, parentheses), optional +; 7 or 8
# digits when it starts with + or (. Dates, times and decimals have the wrong shape and survive.
# (at most 40 characters: any phone number fits, and a long run of digits costs linear time)
PHONE_CANDIDATE = re.compile(r"(?<![\w.+])(?:\+|\()?\d[\d\s().-]{6,40}\d(?![\w.])")
DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b")
# a word that says a number is a phone number; the number after it needs 7 to 15 digits
PHONE_CUE = re.compile(
    r"(?<![\w])((?:tel|telephone|phone|ph|mobile|mob|cell|cellphone|fax|whatsapp|sms|call|text|dial)"
    r"(?:\s{0,3}(?:no\.?|number|nr\.?|#))?\s{0,3}[:.#]?\s{0,3})(\+?\(?\d[\d\s().-]{0,40}\d)(?![\w])",
    re.IGNORECASE)
# a local number: 3 or 4 digits, a dash or space, 4 digits, not joined to a word or another number
PHONE_LOCAL = re.compile(r"(?<![\w+/:.,-])(\d{3,4})([ -])(\d{4})(?![\w]|[.,/:-]\d|[ -]\d)")


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


_RUN_BEFORE = re.compile(r"\d[\s().-]{1,3}$")
_RUN_AFTER = re.compile(r"[\s().-]{1,3}\d")


def _phone(match: re.Match) -> str:
    candidate, text = match.group(0), match.string
    if _RUN_BEFORE.search(text, max(0, match.start() - 4), match.start()) or _RUN_AFTER.match(text, match.end()):
        return candidate  # a window of a longer run of numbers (a list of figures, not a phone)
    digits = _digits(candidate)
    shortest = 7 if candidate[0] in "+(" else 9
    if shortest <= digits <= 15 and not DATE_LIKE.search(candidate):
        return "[phone]"
    return candidate


def _phone_after_cue(match: re.Match) -> str:
    cue, number = match.group(1), match.group(2)
    if 7 <= _digits(number) <= 15 and not DATE_LIKE.search(number):
        return cue + "[phone]"
    return match.group(0)


def _is_clock(group: str) -> bool:
    return len(group) == 4 and int(group[:2]) <= 23 and int(group[2:]) <= 59


def _phone_local(match: re.Match) -> str:
    a, sep, b = match.group(1), match.group(2), match.group(3)
    x, y = int(a), int(b)
    if len(a) == 4:
        if sep == " ":  # "in 2026 1500 audits": too ambiguous without a cue
            return match.group(0)
        if (1900 <= x <= 2099 and 1900 <= y <= 2099) or (_is_clock(a) and _is_clock(b)):
            return match.group(0)  # a year range, a clock range
    if x < y and x % 10 == 0 and y % 10 == 0:
        return match.group(0)  # a range of round numbers ("100-2000 words")
    return "[phone]"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern
    replacement: str | Callable[[re.Match], str]
    needs: str
    """An RE2 pattern that every ASCII text the rule can change contains (checked in C++ by
    pyarrow over a whole column first); texts with a non-ASCII character always go to Python, where
    `\\d`, `\\w` and case folding go beyond ASCII."""


# Order matters: URLs and e-mails before handles (an e-mail holds an @), IPs before phones, the
# numbers a cue names before the shapes that need no cue.
RULES: list[Rule] = [
    Rule("url", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE), "[url]", r"(?i)https?://|www\."),
    # (from the start of a run of address characters only: one scan per run, linear time)
    Rule("email", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "[email]",
         "@"),
    Rule("email_obfuscated", EMAIL_OBFUSCATED, "[email]", r"(?i)[\s(\[{<]at[\s)\]}>]|@"),
    Rule("ip", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"), "[ip]",
         r"[0-9]\.[0-9]"),
    Rule("ip", re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b"), "[ip]", ":"),
    Rule("handle", re.compile(r"(?<![\w@])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?"), "[handle]", "@"),
    Rule("phone_cue", PHONE_CUE, _phone_after_cue, r"(?i)(?:tel|ph|mob|cell|fax|whatsapp|sms|call|text|dial)"),
    Rule("phone", PHONE_CANDIDATE, _phone, "[0-9]"),
    Rule("phone_local", PHONE_LOCAL, _phone_local, "[0-9]{3}[ -][0-9]{4}"),
]


def redact_text(text: str | None) -> str | None:
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return text
    for rule in RULES:
        text = rule.pattern.sub(rule.replacement, text)
    return text


def redact_series(values: pd.Series) -> pd.Series:
    """Vectorised redaction of a text column; missing values stay missing.

    The same substitutions, in the same order, as `redact_text` on each value; each one runs only
    on the values it can change (a C++ pre-test over the whole column), so that most comments
    never reach a Python regex.
    """
    out = values.astype("str")
    for rule in RULES:
        out = _substitute(out, rule.pattern, rule.replacement, rule.needs)
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


# -- formulas -------------------------------------------------------------------------------------
FORMULA_STARTS = frozenset("=+-@＝＋－＠")
CONTROL_STARTS = frozenset("\t\r\n\0")
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d+)*|[.,]\d+)(?:[eE][+-]?\d+)?\s*%?")


def runs_as_formula(value) -> bool:
    """Whether a spreadsheet would evaluate this cell value (a text) instead of showing it."""
    if not isinstance(value, str) or not value:
        return False
    if value[0] in CONTROL_STARTS:
        return True
    text = value.lstrip()
    return bool(text) and text[0] in FORMULA_STARTS and PLAIN_NUMBER.fullmatch(text) is None


def neutralise_formula(value):
    """`'` + the value when a spreadsheet would run it as a formula; anything else unchanged
    (numbers, missing values, ordinary text). Idempotent: a neutralised value starts with `'`."""
    return "'" + value if runs_as_formula(value) else value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """`neutralise_formula` on every text value of the frame; numeric, date and boolean columns,
    and text columns with nothing to neutralise, are returned as they are. The input is never
    modified; when nothing needs neutralising the same frame is returned."""
    out = frame
    for i, column in enumerate(frame.columns):
        values = frame.iloc[:, i]
        categorical = isinstance(values.dtype, pd.CategoricalDtype)
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype) or categorical):
            continue
        hit = np.fromiter((runs_as_formula(v) for v in values.array), dtype=bool, count=len(values))
        if not hit.any():
            continue
        if out is frame:
            out = frame.copy()
        fixed = values.astype(object) if categorical else values.copy()
        fixed[hit] = ["'" + v for v in np.asarray(values.array, dtype=object)[hit]]
        out.isetitem(i, fixed)
    return out
