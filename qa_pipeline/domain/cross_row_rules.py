"""The gate's rules that compare rows with each other, as SQL over every row read.

The row-local rules run per chunk in Python (`streaming_gate`); these two need the whole month
(and the published months), so they run in the engine over `qa_staging.audit_keys` — one row per
row read, clean or not, with its place in the read order — and never bring a list of ids into Python:

- `<key>:duplicate`: a key already read earlier in the month (files in name order, rows in file
  order): the first read is kept, the later ones are quarantined;
- `<key>:published_earlier`: a key already published for an earlier month (an anti-join).
"""

from __future__ import annotations

from datetime import date

import ibis
import ibis.expr.types as ir
import pandas as pd

DUPLICATE = "duplicate"
PUBLISHED_EARLIER = "published_earlier"


def rejected_rows(keys: ir.Table, published: ir.Table | None, key: str, month: date) -> ir.Table:
    """One row per row read that a cross-row rule rejects: source_file, source_row, the key, whether
    the row-local rules had passed it (`is_clean`), and which rules it breaks."""
    known = keys.filter(keys[key].notnull())
    # read order (files in name order as Python sorts them, rows in file order), not the engine's
    # collation of file names
    ranked = known.mutate(_nth=ibis.row_number().over(group_by=key, order_by=known.read_order))
    if published is not None:
        earlier = published.filter(published.month < month).select(_published=published[key]).distinct()
        ranked = ranked.left_join(earlier, ranked[key] == earlier._published)
        is_published = ranked._published.notnull()
    else:
        is_published = ibis.literal(False)
    flagged = ranked.mutate(duplicate=ranked._nth > 0, published_earlier=is_published)
    flagged = flagged.filter(flagged.duplicate | flagged.published_earlier)
    return flagged.select("source_file", "source_row", key, "is_clean", "duplicate", "published_earlier")


def duplicate_reason(key: str, value) -> str:
    return f"{key} {value!r} repeats an earlier row (the first read is kept)"


def published_reason(key: str, value) -> str:
    return f"{key} {value!r} is already published for an earlier month"


def rules_and_reasons(rejected: pd.DataFrame, key: str) -> pd.DataFrame:
    """For each rejected row: its cross-row rules in order (duplicate, then published earlier) and
    their readable reasons, worded as `validation.run_gate` words them."""
    rules, reasons = [], []
    for value, dup, pub in zip(rejected[key], rejected["duplicate"], rejected["published_earlier"], strict=True):
        r, t = [], []
        if dup:
            r.append(f"{key}:{DUPLICATE}")
            t.append(duplicate_reason(key, value))
        if pub:
            r.append(f"{key}:{PUBLISHED_EARLIER}")
            t.append(published_reason(key, value))
        rules.append(r)
        reasons.append(t)
    return rejected.assign(new_rules=rules, new_reasons=reasons)
