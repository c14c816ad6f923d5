"""The gate's rules that compare rows with each other, as SQL over every row read.

The row-local rules run per chunk in Python (`streaming_gate`); these two need the whole month
(and the published months), so they run in the engine over `qa_staging.audit_keys` — one row per
row read, clean or not, with its place in the read order — and never bring a list of ids into Python:

- `<key>:duplicate`: a key already read earlier in the month (files in name order, rows in file
  order): the first read is kept, the later ones are quarantined;
- `<key>:published_earlier` / `<key>:published_later`: a key already published for another month,
  earlier or later (a join on the key against the published months other than this one). An
  `audit_id` is published in at most one month whatever order the months run in: the month that
  publishes it first keeps it, and the reason names that month.
"""

from __future__ import annotations

from datetime import date

import ibis
import ibis.expr.types as ir
import pandas as pd

DUPLICATE = "duplicate"
PUBLISHED_EARLIER = "published_earlier"
PUBLISHED_LATER = "published_later"


def rejected_rows(keys: ir.Table, published: ir.Table | None, key: str, month: date) -> ir.Table:
    """One row per row read that a cross-row rule rejects: source_file, source_row, the key, whether
    the row-local rules had passed it (`is_clean`), and which rules it breaks."""
    known = keys.filter(keys[key].notnull())
    # read order (files in name order as Python sorts them, rows in file order), not the engine's
    # collation of file names
    ranked = known.mutate(_nth=ibis.row_number().over(group_by=key, order_by=known.read_order))
    if published is not None:
        other = published.filter(published.month != month)
        held = other.group_by(_published=other[key]).aggregate(held_by=other.month.min())
        ranked = ranked.left_join(held, ranked[key] == held._published)
        held_by = ranked.held_by
        published_earlier = held_by.notnull() & (held_by < month)
        published_later = held_by.notnull() & (held_by > month)
    else:
        held_by = ibis.null("date")
        published_earlier = published_later = ibis.literal(False)
    flagged = ranked.mutate(duplicate=ranked._nth > 0, published_earlier=published_earlier,
                            published_later=published_later, held_by=held_by)
    flagged = flagged.filter(flagged.duplicate | flagged.published_earlier | flagged.published_later)
    return flagged.select("source_file", "source_row", key, "is_clean", "duplicate", "published_earlier",
                          "published_later", "held_by")


def duplicate_reason(key: str, value) -> str:
    return f"{key} {value!r} repeats an earlier row (the first read is kept)"


def published_reason(key: str, value) -> str:
    return f"{key} {value!r} is already published for an earlier month"


def published_later_reason(key: str, value, month) -> str:
    return f"{key} {value!r} is already published for {pd.Timestamp(month):%Y-%m}, a later month (the month published first keeps it)"


def rules_and_reasons(rejected: pd.DataFrame, key: str) -> pd.DataFrame:
    """For each rejected row: its cross-row rules in order (duplicate, then published earlier) and
    their readable reasons, worded as `validation.run_gate` words them."""
    rules, reasons = [], []
    later = rejected["published_later"] if "published_later" in rejected else [False] * len(rejected)
    held_by = rejected["held_by"] if "held_by" in rejected else [None] * len(rejected)
    for value, dup, pub, lat, month in zip(rejected[key], rejected["duplicate"], rejected["published_earlier"],
                                           later, held_by, strict=True):
        r, t = [], []
        if dup:
            r.append(f"{key}:{DUPLICATE}")
            t.append(duplicate_reason(key, value))
        if pub:
            r.append(f"{key}:{PUBLISHED_EARLIER}")
            t.append(published_reason(key, value))
        if lat:
            r.append(f"{key}:{PUBLISHED_LATER}")
            t.append(published_later_reason(key, value, month))
        rules.append(r)
        reasons.append(t)
    return rejected.assign(new_rules=rules, new_reasons=reasons)
