"""Dimensions and segments, as the analyst names them (contract §5), as ibis expressions.

A *dimension* is `overall`, one audit column (`site`) or a pair joined with `×` (`site×queue`); a
*segment* is the value (`all` for overall, pair values joined with `|`). `per_segment` counts a
month of audits for every segment of several dimensions in the engine (one GROUP BY per
dimension, UNION ALL), so only one small row per dimension × segment comes back to Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ibis
import ibis.expr.types as ir
import pandas as pd

PAIR = "×"
PAIR_VALUE = "|"
OVERALL = "overall"
ALL = "all"

Dimension = tuple[str, ...]


def dimension_name(columns: Dimension) -> str:
    return PAIR.join(columns) if columns else OVERALL


def segment_label(audits: ir.Table, columns: Dimension) -> ir.StringValue:
    """The segment of each audit for a dimension: `all` for overall, pair values joined by `|`.
    NULL when a value is missing (SQL `||` propagates NULL)."""
    if not columns:
        return ibis.literal(ALL, type="string")
    out = audits[columns[0]].cast("string")
    for c in columns[1:]:
        out = out.concat(PAIR_VALUE, audits[c].cast("string"))
    return out


def per_segment(audits: ir.Table, dimensions: Sequence[Dimension],
                aggregates: Callable[[ir.Table], dict[str, ir.Scalar]]) -> ir.Table:
    """One row per dimension × segment: `dimension`, `segment` and `aggregates(t)` (a dict of
    named reductions of the table it is given), as one UNION ALL of a GROUP BY per dimension.

    An audit whose segment value is missing is left out of that dimension (as pandas' groupby
    left out a NaN key), and kept in the others. Rows come back in no particular order: see
    `in_dimension_order`.
    """
    parts = []
    for columns in dimensions:
        t = audits.mutate(dimension=ibis.literal(dimension_name(columns), type="string"),
                          segment=segment_label(audits, columns))
        if columns:
            t = t.filter(t.segment.notnull())
        parts.append(t.group_by(["dimension", "segment"]).aggregate(**aggregates(t)))
    return parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)


def in_dimension_order(frame: pd.DataFrame, dimensions: Sequence[Dimension]) -> pd.DataFrame:
    """Rows ordered as the dimensions are listed, segments by code point within each (as
    pandas sorts strings; no database collation involved), with a fresh index."""
    order = {dimension_name(c): i for i, c in enumerate(dimensions)}
    rank = frame["dimension"].map(order)
    if rank.isna().any():
        raise ValueError(f"unknown dimension(s): {sorted(set(frame['dimension'][rank.isna()]))}")
    out = frame.assign(_dim=rank.astype("int64"), segment=frame["segment"].astype("str"))
    return out.sort_values(["_dim", "segment"], kind="stable", ignore_index=True).drop(columns="_dim")
