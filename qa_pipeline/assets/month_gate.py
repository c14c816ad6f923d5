"""The month's audit files through the gate into staging, in bounded memory.

1. `stream_gate` reads the files in chunks and applies the row-local rules; each chunk's clean rows,
   quarantined rows and keys (every row read) are appended to the run's staging tables.
2. The cross-row rules run in the engine over the keys (`domain.cross_row_rules`); the rows they
   reject leave the staged clean rows for the staged quarantine (their raw records read again from
   the files), or add their rule to a row already quarantined.
3. The per-file counts are taken again from the staged tables, each on its own, so that
   `rows read = rows clean + rows quarantined` is checked, not assumed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from qa_pipeline.domain import cross_row_rules as cross
from qa_pipeline.domain.streaming_gate import raw_records, stream_gate
from qa_pipeline.domain.validation import (
    SOURCE_FILE,
    SOURCE_ROW,
    InputSpec,
    quarantine_rows,
)
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.schemas import warehouse as wh

READ_AHEAD_CHUNKS = 2
"""Chunks the gate may validate ahead while earlier ones are loaded (the engine releases the GIL,
so reading and loading overlap on two cores); bounds the memory to a few chunks."""
REJECT_BATCH_ROWS = 100_000
"""Rows rejected by a cross-row rule handled at a time (a whole file delivered twice is millions)."""


@dataclass(frozen=True)
class StagedGate:
    """What the gate staged for the month, counted in the warehouse."""

    files: pd.DataFrame  # per file: month, input, source_file, file_sha256, rows_read, rows_clean, rows_quarantined
    rule_counts: pd.DataFrame  # rule, rows
    sample: pd.DataFrame  # the first quarantined rows: source_file, row_number, rule, reason

    @property
    def rows_read(self) -> int:
        return int(self.files["rows_read"].sum())

    @property
    def rows_clean(self) -> int:
        return int(self.files["rows_clean"].sum())

    @property
    def rows_quarantined(self) -> int:
        return int(self.files["rows_quarantined"].sum())

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def stage_month_gate(attempt: Attempt, paths: list[Path], root: Path, spec: InputSpec,
                     chunk_rows: int) -> StagedGate:
    """Validate the month's files of `spec` (audits) into the run's staging tables."""
    clean = attempt.create("qa_staging.validated_audits", scope="internal")
    quarantine = attempt.create("qa_core.audits_quarantine", scope="input_month", scope_input=spec.name)
    keys = attempt.create("qa_staging.audit_keys", scope="internal")
    month_column = pa.array([attempt.month], pa.date32())
    stream = stream_gate(paths, root, spec, attempt.month, chunk_rows=chunk_rows)
    with attempt.loader() as append:
        for chunk in read_ahead(stream, depth=READ_AHEAD_CHUNKS):
            rows = chunk.clean
            append(clean, rows.append_column("month", pa.repeat(month_column[0], rows.num_rows))
                   .select([c.name for c in clean.columns]))
            append(quarantine, chunk.quarantine)
            append(keys, pa.Table.from_batches([chunk.keys]).select([c.name for c in keys.columns]))
    read = stream.files
    _apply_cross_row_rules(attempt, clean, quarantine, paths, root, spec, read)
    return _count(attempt, clean, quarantine, read)


def read_ahead(chunks: Iterable, depth: int) -> Iterator:
    """The items of `chunks`, produced by a background thread at most `depth` items ahead; an
    error in the producer is raised here, in order."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has stopped

    def produce() -> None:
        try:
            for item in chunks:
                if not hand_over(item):
                    return
            hand_over(done)
        except BaseException as exc:  # handed to the consumer
            hand_over(exc)

    worker = threading.Thread(target=produce, name="gate-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def _apply_cross_row_rules(attempt: Attempt, clean: sa.Table, quarantine: sa.Table, paths, root, spec,
                           read: pd.DataFrame) -> None:
    warehouse = attempt.warehouse
    key = spec.unique_key
    published = (warehouse.ibis.table(wh.audits_clean.name, database=wh.audits_clean.schema)
                 if warehouse.has_table(wh.audits_clean.fullname) else None)
    rejects = attempt.write_query("qa_staging.audit_rejects",
                                  cross.rejected_rows(attempt.staged("qa_staging.audit_keys"), published, key,
                                                      attempt.month), scope="internal")
    hits = attempt.staged("qa_staging.audit_rejects")
    if warehouse.value(hits.count()) == 0:
        return
    sha = dict(zip(read["source_file"], read["file_sha256"], strict=True))
    # rows the row-local rules had passed: out of the clean rows, into the quarantine
    fresh = hits.filter(hits.is_clean)
    for page in warehouse.pages(fresh, ["source_file", "source_row"], REJECT_BATCH_ROWS):
        frame = cross.rules_and_reasons(page, key)
        wanted = frame.groupby("source_file")["source_row"].apply(list).to_dict()
        records = raw_records(paths, root, wanted, expected_sha256={f: sha[f] for f in wanted})
        failures = pd.DataFrame([(i, rule, text) for i, (rules, texts) in
                                 enumerate(zip(frame["new_rules"], frame["new_reasons"], strict=True))
                                 for rule, text in zip(rules, texts, strict=True)], columns=["row", "rule", "reason"])
        rows = quarantine_rows(failures, frame.index.to_numpy(), frame["source_file"].to_numpy(object),
                               frame["source_row"].to_numpy(), [records[(f, int(r))] for f, r in
                                                                zip(frame["source_file"], frame["source_row"], strict=True)],
                               spec, attempt.month)
        attempt.append(quarantine, rows)
    with warehouse.engine.begin() as conn:
        conn.execute(sa.delete(clean).where(sa.exists().where(
            rejects.c.is_clean, rejects.c.source_file == clean.c[SOURCE_FILE],
            rejects.c.source_row == clean.c[SOURCE_ROW])))
    # rows already quarantined by a row-local rule: their cross-row rules are added after those
    stale = hits.filter(~hits.is_clean)
    if warehouse.value(stale.count()) == 0:
        return
    q = warehouse.ibis.table(quarantine.name, database=quarantine.schema)
    joined = q.inner_join(stale, [q.source_file == stale.source_file, q.row_number == stale.source_row])
    frame = cross.rules_and_reasons(warehouse.execute(joined.select(
        *[q[c] for c in q.columns], stale[key], stale.duplicate, stale.published_earlier, stale.published_later,
        stale.held_by)), key)
    frame["rules"] = ["; ".join(dict.fromkeys([*old.split("; "), *new]))
                      for old, new in zip(frame["rules"], frame["new_rules"], strict=True)]
    frame["reason"] = ["; ".join([old, *new]) for old, new in zip(frame["reason"], frame["new_reasons"], strict=True)]
    with warehouse.engine.begin() as conn:
        conn.execute(sa.delete(quarantine).where(sa.exists().where(
            ~rejects.c.is_clean, rejects.c.source_file == quarantine.c.source_file,
            rejects.c.source_row == quarantine.c.row_number)))
    attempt.append(quarantine, frame[[c.name for c in quarantine.columns]])


def _count(attempt: Attempt, clean: sa.Table, quarantine: sa.Table, read: pd.DataFrame) -> StagedGate:
    """Per file: rows clean and quarantined as staged (each counted in its own table)."""
    warehouse = attempt.warehouse
    c = warehouse.ibis.table(clean.name, database=clean.schema)
    q = warehouse.ibis.table(quarantine.name, database=quarantine.schema)
    n_clean = warehouse.execute(c.group_by("source_file").aggregate(rows_clean=c.count()))
    n_quarantined = warehouse.execute(q.group_by("source_file").aggregate(rows_quarantined=q.count()))
    files = (read.drop(columns=["rows_clean", "rows_quarantined"])
             .merge(n_clean, on="source_file", how="left").merge(n_quarantined, on="source_file", how="left"))
    files[["rows_clean", "rows_quarantined"]] = files[["rows_clean", "rows_quarantined"]].fillna(0).astype("int64")
    rule_counts = warehouse.execute(q.group_by("rule").aggregate(rows=q.count()))
    rule_counts = rule_counts.sort_values(["rows", "rule"], ascending=[False, True], ignore_index=True)
    sample = warehouse.execute(q.order_by(["source_file", "row_number"]).select(
        "source_file", "row_number", "rule", "reason").limit(10))
    return StagedGate(files=files, rule_counts=rule_counts, sample=sample)
