"""Deliveries into the raw folder start runs: which month(s) a new, changed or removed file touches.

The sensor watches exactly the files a run reads (the raw store's `LAYOUT`, read at every tick, so an
input added later is watched without a change here) and requests, per month it touches:

| file | months requested |
| --- | --- |
| `<input>/YYYY-MM/…` (audits, calibration, re-audits, disputes, …) | that month (the folder month) |
| `disputes/YYYY-MM/…` | also the restatement cascade: every earlier published month holding an audit that a dispute resolved in YYYY-MM overturned (`restatement_months`, the schedule's rule) — requested at once, even while YYYY-MM itself is still running |
| a snapshot (`roster`, `policy_changes`, `experiments`, `assignments`, `policies`) | the latest complete month with audit files: the contract keeps only the latest snapshot, and that month's run recomputes the whole-table figures (policy-change impact, experiment readouts) from every published month; earlier months keep the snapshot they were published with (re-run them by hand to apply a corrected snapshot to history) |

A month is requested only once it is a partition (it has ended) and it has audit files: a
calibration or disputes file that arrives before its month's audits waits in the cursor and goes
with the audits' request. Later months that read a re-run month are refreshed by
`month_refresh_sensor` once the run published it.

The run key is a digest of the month and of the checksums (before → after) of the files that make the
request, so the same delivery never runs twice, even when the sensor is evaluated again after a
failure; a file withdrawn and delivered again is a new request. Files are hashed only when their size
or modification time changed (`size, mtime → sha256` is kept in the cursor); a file modified less
than `QA_RAW_SETTLE_SECONDS` ago is still being written, and the whole month waits for the next tick.

On its first tick (no cursor) the sensor takes the folder as it finds it: files of months already
published start nothing, months never published are requested.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.domain import months as months_of
from qa_pipeline.domain.months import month_key, month_start, partition_key
from qa_pipeline.domain.restatement import months_to_restate
from qa_pipeline.resources.raw_store import LAYOUT, MonthlyInput, RawStore
from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import PARTITIONS_START, Operations

SENSOR_NAME = "raw_delivery_sensor"
HASH_SECONDS_PER_TICK = 30.0
"""Hashing stops after this long in one tick (a first tick over years of history); the files not
hashed yet, and their months, wait for the next tick (a tick must end within Dagster's 60 s)."""
REMOVED = "removed:"
"""The cursor's mark of a file withdrawn after it was handled (followed by its last checksum)."""


def restatement_months(raw_store: RawStore, warehouse: Warehouse, month: date) -> list[date]:
    """Earlier months holding audits overturned by the disputes resolved in `month`."""
    from qa_pipeline.assets.disputes import validated_disputes

    if not warehouse.has_table("qa_core.audits_clean"):
        return []
    # the same per-file handling as a run's: a file that cannot be used is left out, not fatal here
    everything = validated_disputes(raw_store, check_audits=False).frame
    new = everything[pd.to_datetime(everything["month"]).dt.date == month] if len(everything) else everything
    if new.empty:
        return []
    ids = new.loc[new["outcome"] == "overturned", "audit_id"].drop_duplicates().tolist()
    if not ids:
        return []
    t = wh.audits_clean
    audit_months = warehouse.read(sa.select(t.c.audit_id, t.c.month).where(t.c.audit_id.in_(ids)))
    return months_to_restate(new, audit_months, month)


@dataclass(frozen=True)
class WatchedFile:
    """A file a run reads: its input, and its folder month (None for a snapshot input)."""

    path: str  # relative to QA_RAW_DIR, POSIX
    input: str
    month: date | None


def watched_files(raw_store: RawStore) -> dict[str, WatchedFile]:
    """Every file the runs read, by relative path (the layout's monthly folders and snapshots)."""
    root = raw_store.root
    out: dict[str, WatchedFile] = {}
    for name, spec in LAYOUT.items():
        if isinstance(spec, MonthlyInput):
            for folder in raw_store.available_months(name):
                month = month_start(folder)
                for prefix in spec.prefixes:
                    for p in raw_store.month_files(name, month, prefix):
                        rel = p.relative_to(root).as_posix()
                        out[rel] = WatchedFile(rel, name, month)
        else:
            for stem in spec.stems:
                p = raw_store.snapshot_path(f"{name}/{stem}.csv")
                if p is not None:
                    rel = p.relative_to(root).as_posix()
                    out[rel] = WatchedFile(rel, name, None)
    return out


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass
class DeliveryCursor:
    """What the sensor keeps between ticks (JSON in the sensor's cursor)."""

    hashes: dict[str, list] = field(default_factory=dict)  # path -> [size, mtime_ns, sha256]
    seen: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the version handled, or REMOVED + it
    waiting: dict[str, dict] = field(default_factory=dict)  # YYYY-MM -> {"changes": {path: [old, new]}, "restated_by": [...]}

    @classmethod
    def parse(cls, raw: str | None) -> DeliveryCursor | None:
        if not raw:
            return None
        data = json.loads(raw)
        return cls(hashes=data.get("hashes", {}), seen=data.get("seen", {}), waiting=data.get("waiting", {}))

    def dump(self) -> str:
        return json.dumps({"hashes": self.hashes, "seen": self.seen, "waiting": self.waiting},
                          sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Delivery:
    """One month to run: the file changes that touch it."""

    month: date
    changes: dict[str, tuple[str | None, str | None]]  # path -> (checksum before, after); None: absent
    restated_by: tuple[str, ...] = ()  # disputes folders whose overturned disputes restate this month

    @property
    def run_key(self) -> str:
        lines = "\n".join(f"{p} {old or '-'} {new or '-'}" for p, (old, new) in sorted(self.changes.items()))
        return f"raw:{month_key(self.month)}:{hashlib.sha256(lines.encode()).hexdigest()[:24]}"

    def describe(self, limit: int = 240) -> str:
        parts = []
        for p, (old, new) in sorted(self.changes.items()):
            what = ("removed" if new is None else "new" if old is None
                    else "delivered again" if old.startswith(REMOVED) else "changed")
            parts.append(f"{p} ({what})")
        text = f"{len(parts)} file(s): " + ", ".join(parts)
        return text if len(text) <= limit else text[:limit - 1] + "…"

    def run_request(self) -> dg.RunRequest:
        tags = {"qa/launched_by": SENSOR_NAME, "qa/delivery": self.describe()}
        if self.restated_by:
            tags |= {"qa/restatement": "true", "qa/restated_by_disputes_of": ",".join(self.restated_by)}
        return dg.RunRequest(run_key=self.run_key, partition_key=partition_key(self.month), tags=tags)


@dataclass
class TickOutcome:
    deliveries: list[Delivery]
    cursor: DeliveryCursor
    notes: list[str]


def last_complete_month(now: datetime) -> date:
    return months_of.previous_month(month_start(now.date()))


def fingerprint(root: Path, files: Iterable[str], cursor: DeliveryCursor, now: float, settle_seconds: float,
                budget_seconds: float = HASH_SECONDS_PER_TICK) -> tuple[dict[str, str], set[str], dict[str, list]]:
    """sha256 of every settled file (from the cache when size and mtime are unchanged); the files
    still being written or not hashed within the budget; the new cache."""
    current: dict[str, str] = {}
    unsettled: set[str] = set()
    cache: dict[str, list] = {}
    started = time.monotonic()
    for rel in sorted(files):
        try:
            st = (root / rel).stat()
        except FileNotFoundError:  # removed since the listing
            continue
        cached = cursor.hashes.get(rel)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            current[rel], cache[rel] = cached[2], cached
            continue
        if (settle_seconds > 0 and now - st.st_mtime < settle_seconds) or time.monotonic() - started > budget_seconds:
            unsettled.add(rel)
            continue
        sha = sha256_of(root / rel)
        current[rel], cache[rel] = sha, [st.st_size, st.st_mtime_ns, sha]
    return current, unsettled, cache


def evaluate(raw_store: RawStore, warehouse: Warehouse, previous: DeliveryCursor | None, now: datetime,
             settle_seconds: float, published: set[date] | None = None) -> TickOutcome:
    """One tick: the months to request and the next cursor (pure apart from reading the folder, the
    published months and, for a disputes delivery, the audits it overturns)."""
    first_tick = previous is None
    cursor = previous or DeliveryCursor()
    notes: list[str] = []
    watched = watched_files(raw_store)
    current, unsettled, cache = fingerprint(raw_store.root, watched, cursor, now.timestamp(), settle_seconds)
    last = last_complete_month(now)
    with_audits = sorted(m for m in (f.month for f in watched.values() if f.input == "audits" and f.month)
                         if m <= last)
    latest = with_audits[-1] if with_audits else None
    audit_months = set(with_audits)

    def own_month(path: str) -> date | None:
        f = watched.get(path)
        if f is not None:
            return f.month if f.month is not None else latest
        # a removed file: its month from the cursor's path (`<input>/YYYY-MM/<name>`), snapshots: latest
        parts = path.split("/")
        monthly = len(parts) == 3 and isinstance(LAYOUT.get(parts[0]), MonthlyInput)
        return month_start(parts[1]) if monthly else latest

    blocked = {own_month(p) for p in unsettled}
    if first_tick and published is None:
        from qa_pipeline.refresh import published_months

        published = published_months(warehouse)
    published = published or set()

    paths = set(current) | set(cursor.seen)
    seen = dict(cursor.seen)
    waiting = {m: {"changes": dict(w["changes"]), "restated_by": list(w.get("restated_by", []))}
               for m, w in cursor.waiting.items()}
    changed_disputes: set[date] = set()
    for path in sorted(paths):
        if path in unsettled:
            continue
        old, new = cursor.seen.get(path), current.get(path)
        if old == new or (new is None and (old is None or old.startswith(REMOVED))):
            continue
        month = own_month(path)
        if month in blocked:
            continue
        # a withdrawn file leaves a tombstone: delivered again, it is a change of its own (a new run key)
        seen[path] = new if new is not None else REMOVED + (old or "")
        if month is None:  # a snapshot while no month has audits yet: the first month's run reads it
            continue
        if first_tick and month in published:
            continue
        _merge(waiting, month, path, old, new)
        if path.startswith("disputes/") and month is not None:
            changed_disputes.add(month)
    if changed_disputes and warehouse is not None:
        for folder in sorted(changed_disputes):
            for restated in restatement_months(raw_store, warehouse, folder):
                w = waiting.setdefault(month_key(restated), {"changes": {}, "restated_by": []})
                for path, (old, new) in waiting[month_key(folder)]["changes"].items():
                    if path.startswith("disputes/"):
                        w["changes"][path] = [old, new]
                if month_key(folder) not in w["restated_by"]:
                    w["restated_by"].append(month_key(folder))
                notes.append(f"{month_key(restated)}: restated by overturned disputes resolved in {month_key(folder)}")

    deliveries = []
    for key in sorted(waiting):
        month = month_start(key)
        entry = waiting[key]
        if not entry["changes"]:
            del waiting[key]
            continue
        if month in blocked:
            notes.append(f"{key}: a file is still being written or hashed; waiting")
            continue
        start = month_start(PARTITIONS_START)
        if month < start:
            notes.append(f"{key}: before the first partition ({PARTITIONS_START}); not requested")
            del waiting[key]
            continue
        if month > last or month not in audit_months:
            why = "has not ended" if month > last else "has no audit file yet"
            notes.append(f"{key}: {why}; {len(entry['changes'])} file change(s) wait for it")
            continue
        deliveries.append(Delivery(month, {p: (o, n) for p, (o, n) in entry["changes"].items()},
                                   tuple(entry["restated_by"])))
        del waiting[key]
    return TickOutcome(deliveries, DeliveryCursor(hashes=cache, seen=seen, waiting=waiting), notes)


def _merge(waiting: dict, month: date, path: str, old: str | None, new: str | None) -> None:
    entry = waiting.setdefault(month_key(month), {"changes": {}, "restated_by": []})
    before = entry["changes"].get(path, [old, None])[0]
    if before == new:  # back to the version already handled
        entry["changes"].pop(path, None)
    else:
        entry["changes"][path] = [before, new]


def build_raw_delivery_sensor(job) -> dg.SensorDefinition:
    """The sensor over `QA_RAW_DIR` that requests `job` for the months a delivery touches."""
    ops = Operations.from_env()

    @dg.sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=ops.raw_sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the raw folder (QA_RAW_DIR): a new, changed or withdrawn file requests the month(s) it "
            "touches — its folder month; for disputes also the earlier months whose audits they overturn "
            "(restatements); for a snapshot (roster, policy changes, experiments, policy catalogue) the "
            "latest complete month with audits. A month runs once it has ended and has audit files. The "
            "run key is a digest of the files' checksums, so the same delivery never runs twice."
        ),
    )
    def raw_delivery_sensor(context: dg.SensorEvaluationContext, raw_store: RawStore, warehouse: Warehouse):
        from dagster._time import get_current_datetime  # frozen by dagster's test clock

        if not raw_store.root.is_dir():
            return dg.SkipReason(f"the raw folder {raw_store.root} does not exist")
        try:
            outcome = evaluate(raw_store, warehouse, DeliveryCursor.parse(context.cursor), get_current_datetime(),
                               Operations.from_env().raw_settle_seconds)
        finally:
            if warehouse.url.startswith("duckdb"):
                dispose_engines()  # DuckDB has one writing process: never hold the file between ticks
        for note in outcome.notes:
            context.log.info(note)
        for d in outcome.deliveries:
            context.log.info(f"{month_key(d.month)}: {d.describe()} → run key {d.run_key}")
        if not outcome.deliveries:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new delivery" + (
                ": " + "; ".join(outcome.notes[:3]) if outcome.notes else "")), cursor=outcome.cursor.dump())
        return dg.SensorResult(run_requests=[d.run_request() for d in outcome.deliveries],
                               cursor=outcome.cursor.dump())

    return raw_delivery_sensor
