"""The raw-folder sensor: which months a delivery requests, once, with run keys made of checksums.

Evaluated through Dagster's sensor test utilities (`build_sensor_context`, the test clock
`freeze_time`) on a tiny generated raw folder; the daemon runs it for real in test_deployment.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import freeze_time

from qa_pipeline.operations import raw_deliveries
from qa_pipeline.operations.raw_deliveries import DeliveryCursor, evaluate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline_tests.conftest import write_csv

MARCH_10 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
APRIL_2 = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "raw"
    generate(SampleSpec(months=["2026-01", "2026-02"], audits_per_month=120, seed=5, with_hatecheck=False), out)
    return out


@pytest.fixture
def raw(tiny_raw, tmp_path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(tiny_raw, dest)
    old = datetime(2026, 3, 1, tzinfo=UTC).timestamp()  # delivered well before the test clock
    for p in dest.rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    return dest


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    yield Warehouse(url=f"duckdb:///{tmp_path}/wh.duckdb")
    dispose_engines()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # independent of the sensor's chunked reader


def tick(raw: Path, warehouse: Warehouse, cursor: DeliveryCursor | None, now=MARCH_10, settle=0.0, published=None):
    return evaluate(RawStore(raw_dir=str(raw)), warehouse, cursor, now, settle, published=published)


def deliver(path: Path, text: str, when: datetime = datetime(2026, 3, 9, tzinfo=UTC)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_a_delivery_requests_the_months_it_touches_once(raw, warehouse, monkeypatch):
    first = tick(raw, warehouse, None)
    assert [d.month for d in first.deliveries] == [date(2026, 1, 1), date(2026, 2, 1)]
    jan, feb = first.deliveries
    # the month's own files; the snapshots touch the latest complete month with audits only
    assert set(jan.changes) == {p.relative_to(raw).as_posix() for p in raw.glob("*/2026-01/*")}
    snapshots = {"roster/roster.csv", "policy_changes/policy_changes.csv", "experiments/experiments.csv",
                 "experiments/assignments.csv", "policies/policies.csv"}
    assert snapshots <= set(feb.changes) and not snapshots & set(jan.changes)
    assert feb.changes["roster/roster.csv"] == (None, sha(raw / "roster" / "roster.csv"))
    # the run key: the month and the files' checksums (before → after), sorted
    lines = "\n".join(f"{p} - {sha(raw / p)}" for p in sorted(jan.changes))
    assert jan.run_key == f"raw:2026-01:{hashlib.sha256(lines.encode()).hexdigest()[:24]}"
    assert tick(raw, warehouse, None).deliveries[0].run_key == jan.run_key  # the same delivery, the same key

    # nothing new: nothing requested, and no file is hashed again
    hashed = []
    real = raw_deliveries.sha256_of
    monkeypatch.setattr(raw_deliveries, "sha256_of", lambda p: hashed.append(p) or real(p))
    second = tick(raw, warehouse, first.cursor)
    assert second.deliveries == [] and hashed == []

    # the same bytes written again (new mtime): hashed again, but the same checksum requests nothing
    roster = raw / "roster" / "roster.csv"
    deliver(roster, roster.read_text())
    third = tick(raw, warehouse, second.cursor)
    assert third.deliveries == [] and hashed == [roster]

    # a second audit file for January: January only, keyed by that file alone
    extra = raw / "audits" / "2026-01" / "late_batch.csv"
    shutil.copy(raw / "audits" / "2026-01" / "audits_2026-01_in_house.csv", extra)
    fourth = tick(raw, warehouse, third.cursor)
    assert [(d.month, list(d.changes)) for d in fourth.deliveries] == [(date(2026, 1, 1), ["audits/2026-01/late_batch.csv"])]
    request = fourth.deliveries[0].run_request()
    assert request.partition_key == "2026-01-01"
    assert request.tags["qa/delivery"] == "1 file(s): audits/2026-01/late_batch.csv (new)"

    # withdrawn: January again (a removal is a change), and delivered again: a new key
    extra.unlink()
    fifth = tick(raw, warehouse, fourth.cursor)
    assert [d.changes for d in fifth.deliveries] == [{"audits/2026-01/late_batch.csv": (sha(roster.parent.parent / "audits" / "2026-01" / "audits_2026-01_in_house.csv"), None)}]
    shutil.copy(raw / "audits" / "2026-01" / "audits_2026-01_in_house.csv", extra)
    sixth = tick(raw, warehouse, fifth.cursor)
    assert len(sixth.deliveries) == 1
    assert sixth.deliveries[0].run_key not in {fourth.deliveries[0].run_key, fifth.deliveries[0].run_key}

    # a changed roster: the latest complete month with audits (February), not January
    deliver(roster, roster.read_text() + "\n")
    seventh = tick(raw, warehouse, sixth.cursor)
    assert [(d.month, list(d.changes)) for d in seventh.deliveries] == [(date(2026, 2, 1), ["roster/roster.csv"])]


def test_a_month_waits_for_its_end_and_its_audits(raw, warehouse):
    base = tick(raw, warehouse, None).cursor
    # calibration of March arrives on the 10th: March has not ended
    deliver(raw / "calibration" / "2026-03" / "ratings.csv", (raw / "calibration" / "2026-01" / "ratings.csv").read_text())
    waiting = tick(raw, warehouse, base)
    assert waiting.deliveries == [] and list(waiting.cursor.waiting) == ["2026-03"]
    assert any("2026-03: has not ended" in n for n in waiting.notes)
    # April 2nd: March has ended but has no audits yet
    still = tick(raw, warehouse, waiting.cursor, now=APRIL_2)
    assert still.deliveries == [] and any("has no audit file yet" in n for n in still.notes)
    # the audits arrive: March is requested with the calibration file that waited
    shutil.copytree(raw / "audits" / "2026-02", raw / "audits" / "2026-03")
    for p in (raw / "audits" / "2026-03").iterdir():
        os.utime(p, (APRIL_2.timestamp() - 3600,) * 2)
    march = tick(raw, warehouse, still.cursor, now=APRIL_2)
    assert [d.month for d in march.deliveries] == [date(2026, 3, 1)]
    assert "calibration/2026-03/ratings.csv" in march.deliveries[0].changes
    assert march.cursor.waiting == {}


def test_a_file_still_being_written_holds_its_month(raw, warehouse):
    base = tick(raw, warehouse, None).cursor
    fresh = raw / "audits" / "2026-02" / "part2.csv"
    deliver(fresh, (raw / "audits" / "2026-02" / "audits_2026-02_vendors.csv").read_text(), when=MARCH_10)
    held = tick(raw, warehouse, base, settle=120)
    assert held.deliveries == [] and fresh.relative_to(raw).as_posix() not in held.cursor.seen
    later = tick(raw, warehouse, held.cursor, now=datetime(2026, 3, 10, 9, 5, tzinfo=UTC), settle=120)
    assert [d.month for d in later.deliveries] == [date(2026, 2, 1)]


def test_the_first_tick_leaves_published_months_alone(raw, warehouse):
    outcome = tick(raw, warehouse, None, published={date(2026, 1, 1)})
    assert [d.month for d in outcome.deliveries] == [date(2026, 2, 1)]
    assert set(outcome.cursor.seen) >= {p.relative_to(raw).as_posix() for p in raw.glob("audits/2026-01/*")}


def _publish_audits(warehouse: Warehouse, rows: list[tuple[str, date]]) -> None:
    with warehouse.engine.begin() as conn:
        warehouse.ensure_table(wh.audits_clean, conn)
        conn.execute(sa.insert(wh.audits_clean), [{"audit_id": a, "month": m} for a, m in rows])


def test_late_disputes_restate_the_months_whose_audits_they_overturn(raw, warehouse):
    _publish_audits(warehouse, [("A-JAN-1", date(2026, 1, 1)), ("A-FEB-1", date(2026, 2, 1))])
    base = tick(raw, warehouse, None, published={date(2026, 1, 1), date(2026, 2, 1)}).cursor
    columns = ["dispute_id", "audit_id", "disputed_at", "resolved_at", "reason", "outcome"]
    write_csv(raw / "disputes" / "2026-03" / "late.csv", [
        {"dispute_id": "D-LATE-1", "audit_id": "A-JAN-1", "disputed_at": "2026-02-20T10:00:00Z",
         "resolved_at": "2026-03-05T10:00:00Z", "reason": "guideline", "outcome": "overturned"},
        {"dispute_id": "D-LATE-2", "audit_id": "A-FEB-1", "disputed_at": "2026-02-21T10:00:00Z",
         "resolved_at": "2026-03-06T10:00:00Z", "reason": "guideline", "outcome": "upheld"},
    ], columns)
    os.utime(raw / "disputes" / "2026-03" / "late.csv", (MARCH_10.timestamp() - 3600,) * 2)
    outcome = tick(raw, warehouse, base)
    # January (overturned) is restated now; February (upheld only) is not; March itself has not ended
    assert [d.month for d in outcome.deliveries] == [date(2026, 1, 1)]
    request = outcome.deliveries[0].run_request()
    assert request.tags["qa/restatement"] == "true" and request.tags["qa/restated_by_disputes_of"] == "2026-03"
    assert list(outcome.cursor.waiting) == ["2026-03"]


def test_the_sensor_in_the_definitions_requests_the_monthly_job(raw, warehouse, monkeypatch):
    from qa_pipeline.definitions import defs

    sensor = defs.resolve_sensor_def("raw_delivery_sensor")
    assert sensor.job_name == "monthly_quality"
    resources = {"raw_store": RawStore(raw_dir=str(raw)), "warehouse": warehouse}
    monkeypatch.setenv("QA_RAW_SETTLE_SECONDS", "0")
    with dg.instance_for_test() as instance, freeze_time(MARCH_10):
        result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert [r.partition_key for r in result.run_requests] == ["2026-01-01", "2026-02-01"]
        cursor = json.loads(result.cursor)
        assert cursor["seen"]["roster/roster.csv"] == sha(raw / "roster" / "roster.csv")
        again = sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
        assert again.run_requests == [] and again.skip_reason is not None
