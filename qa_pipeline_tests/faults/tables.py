"""Published tables as comparable values, read straight from a DuckDB warehouse file.

Independent of the pipeline's own readers: a snapshot copies the file (and its WAL) aside, opens
the copy with `duckdb`, and reads every table of `qa_core` and `qa_reporting`. Rows become tuples
of canonical values, compared regardless of order; run-specific columns (ids and times of a run)
are left out; monthly tables are split into partitions by `month`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pandas as pd

SCHEMAS = ("qa_core", "qa_reporting")
RUN_SPECIFIC = {"run_id", "previous_run_id", "published_at", "generated_at", "staged_at", "snapshot_at", "previous_published_at",
                "started_at", "finished_at", "created_at", "updated_at"}
"""Columns that name or time one run: different on every run by design, never compared."""
RUN_SPECIFIC_BY_TABLE = {"qa_reporting.report_runs": {"sha256"}}
"""The report's hash: the report states when it was generated, so its bytes differ on every run."""
LOG_TABLES = {"qa_core.publications", "qa_reporting.publication_history", "qa_core.publication_fingerprints",
              "qa_reporting.corrections"}
"""Append-only logs: a re-run after a publication adds rows that repeat the last ones (the same
figures, the same fingerprint; no correction when nothing changed), so they are compared as sets of
distinct rows."""
WRITTEN_AFTER_PUBLICATION = {"qa_reporting.report_runs"}
"""Written by the report after the publishing transaction (README, write–audit–publish): a kill
between the two leaves the new month with the previous report's row."""
WHOLE = "*"


def snapshot(db: Path) -> dict[str, pd.DataFrame]:
    """Every table of the published schemas, from a copy of the DuckDB file (a killed run's WAL is
    replayed on the copy, never on the file itself)."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="qa_faults_snap_") as scratch:
        copy = Path(scratch) / db.name
        shutil.copyfile(db, copy)
        wal = db.with_name(db.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        con = duckdb.connect(str(copy))
        try:
            names = con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                f"WHERE table_schema IN {SCHEMAS} AND table_type = 'BASE TABLE'").fetchall()
            return {f"{s}.{t}": con.execute(f'SELECT * FROM "{s}"."{t}"').df() for s, t in names}
        finally:
            con.close()


def canonical_value(v, exact: bool = False, folder: tuple[str, ...] | None = None):
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, float | Decimal):
        v = float(v)
        if math.isnan(v):
            return None
        return repr(v) if exact else float(f"{v:.12g}")
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return v
    if hasattr(v, "item") and not isinstance(v, str | bytes):  # numpy scalars
        return canonical_value(v.item(), exact, folder)
    if isinstance(v, int):
        return v
    v = str(v)
    for prefix in folder or ():
        if prefix in v:  # a path under one of the runs' folders: the same for every folder
            v = re.sub(re.escape(prefix) + r"/[^/]+", "<folder>", v)
    return v


def partitions(name: str, frame: pd.DataFrame, exact: bool = False, ignore: set[str] = frozenset(),
               folder: tuple[str, ...] | None = None) -> dict[str, tuple]:
    """{partition: rows}: by `month` for monthly tables, one partition for the others; rows as a
    sorted tuple (a set of distinct rows for the append-only logs)."""
    ignore = set(ignore) | RUN_SPECIFIC_BY_TABLE.get(name, set())
    drop = [c for c in frame.columns if c in RUN_SPECIFIC or c in ignore]
    frame = frame.drop(columns=drop)
    cols = list(frame.columns)
    month_i = cols.index("month") if "month" in cols else None
    out: dict[str, list] = {}
    for row in frame.itertuples(index=False, name=None):
        values = tuple(canonical_value(v, exact, folder) for v in row)
        key = str(values[month_i])[:10] if month_i is not None else WHOLE
        out.setdefault(key, []).append(values)
    if name in LOG_TABLES:
        return {k: tuple(sorted(set(v), key=repr)) for k, v in out.items()}
    return {k: tuple(sorted(v, key=repr)) for k, v in out.items()}


def canonical(snap: dict[str, pd.DataFrame], exact: bool = False, ignore: dict[str, set] | None = None,
              folder: Path | None = None) -> dict:
    """Every table as partitions; a path in a sub-folder of `folder` (the runs' folders, where they
    write their reports) is written `<folder>`, so that runs in different folders compare."""
    ignore = ignore or {}
    prefixes = tuple(dict.fromkeys([str(folder.resolve()), str(folder)])) if folder else None
    return {name: partitions(name, frame, exact, ignore.get(name, set()), prefixes) for name, frame in snap.items()}


def diff(left: dict, right: dict) -> list[str]:
    """Where two canonical snapshots differ: `table[partition]: n rows only left, m only right`."""
    out = []
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            out.append(f"{name}: only in {'right' if name not in left else 'left'}")
            continue
        for key in sorted(set(left[name]) | set(right[name])):
            a, b = Counter(left[name].get(key, ())), Counter(right[name].get(key, ()))
            if a != b:
                out.append(f"{name}[{key}]: {sum((a - b).values())} row(s) only left, {sum((b - a).values())} only right")
    return out


def rows_differing(left: dict, right: dict, names: list[str]) -> int:
    """Rows of `names` in one snapshot and not the other (both ways), over all partitions."""
    n = 0
    for name in names:
        for key in set(left.get(name, {})) | set(right.get(name, {})):
            a, b = Counter(left.get(name, {}).get(key, ())), Counter(right.get(name, {}).get(key, ()))
            n += sum((a - b).values()) + sum((b - a).values())
    return n


def publication_groups() -> list[set[str]]:
    """The tables published together, in the order a run publishes them (`assets/publication.py`:
    the month's own figures, then the figures that read other months), each in one transaction."""
    from qa_pipeline.assets import publication

    own = set(getattr(publication, "MONTH_TABLES", []))
    cross = set(getattr(publication, "CROSS_MONTH_TABLES", {}).values())
    return [g for g in (own, cross) if g]


def judge_state(state: dict, a: dict, b: dict) -> tuple[dict, list[str]]:
    """Each (table, partition) of `state` is A's, B's, or neither (`X`). Problems: a partition that is
    neither, a table missing, a publication seen half done (inside one publishing transaction's
    tables, some changed partitions at A and some at B), or the publications out of order (a later
    group at B while an earlier one is at A). An append-only log may hold A's rows and some of B's."""
    verdicts, problems = {}, []
    for name in sorted(set(a) | set(b)):
        if name not in state:
            if name in a:
                problems.append(f"{name}: missing")
            continue
        for key in sorted(set(a.get(name, {})) | set(b.get(name, {})) | set(state[name])):
            s, va, vb = state[name].get(key, ()), a.get(name, {}).get(key, ()), b.get(name, {}).get(key, ())
            if va == vb:
                verdict = "AB" if s == va else "X"
            else:
                verdict = "A" if s == va else "B" if s == vb else "X"
            if verdict == "X" and name in LOG_TABLES and set(va) <= set(s) <= set(vb):
                verdict = "A+"  # between: some of B's entries logged (B publishes in several transactions)
            verdicts[(name, key)] = verdict
            if verdict == "X":
                problems.append(f"{name}[{key}]: neither A's nor B's ({len(s)} rows; A {len(va)}, B {len(vb)})")
    groups = publication_groups()
    grouped = set().union(*groups) if groups else set()
    rest = {t for t, _ in verdicts} - grouped - LOG_TABLES - WRITTEN_AFTER_PUBLICATION
    states = []
    for group in [*groups, rest]:
        changed = {k: v for k, v in verdicts.items() if k[0] in group and v in ("A", "B")}
        seen = set(changed.values())
        if {"A", "B"} <= seen:
            at_a = sorted(f"{t}[{p}]" for (t, p), v in changed.items() if v == "A")
            at_b = sorted(f"{t}[{p}]" for (t, p), v in changed.items() if v == "B")
            problems.append(f"half published: at A {at_a[:6]}, at B {at_b[:6]}")
        states.append(seen.pop() if len(seen) == 1 else None)
    ordered = [x for x in states[:len(groups)] if x]
    if "A" in ordered and "B" in ordered and ordered.index("B") > ordered.index("A"):
        problems.append(f"a later publication is at B while an earlier one is at A: {states[:len(groups)]}")
    return verdicts, problems


def state_label(verdicts: dict) -> str:
    """`A`, `B`, or which publication is at which version (`month's own B, cross-month A`)."""
    groups = publication_groups()
    names = ["month's own", "cross-month"][:len(groups)]
    parts = []
    for name, group in zip(names, groups, strict=True):
        seen = {v for (t, _), v in verdicts.items() if t in group and v in ("A", "B", "X")}
        parts.append((name, "/".join(sorted(seen)) or "A=B"))
    report = {v for (t, _), v in verdicts.items() if t in WRITTEN_AFTER_PUBLICATION and v in ("A", "B", "X")}
    values = {v for _, v in parts}
    label = values.pop() if len(values) == 1 else ", ".join(f"{n} {v}" for n, v in parts)
    if report and report != {label}:
        label += f" (report row {'/'.join(sorted(report))})"
    return label


def copy_warehouse(src: Path, dest_dir: Path) -> str:
    """A copy of a DuckDB warehouse file (and its WAL), as a URL."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.copyfile(src, dest)
    wal = src.with_name(src.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))
    return f"duckdb:///{dest}"
