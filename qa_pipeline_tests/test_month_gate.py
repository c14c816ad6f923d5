"""The month's audits through the streaming gate into staging, with the cross-row rules in SQL:
the same clean rows and quarantine rows as the whole-file gate (`run_gate`, pandas), on DuckDB
and PostgreSQL, in bounded chunks."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from qa_pipeline.assets.month_gate import stage_month_gate
from qa_pipeline.domain.validation import AUDITS, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline_tests.conftest import audit, write_csv

MARCH = date(2026, 3, 1)


def _raw(tmp_path):
    """Two files: duplicates within and across files, a malformed first copy whose valid second
    copy is still a duplicate, a row both malformed and duplicated, an id published in February."""
    raw = tmp_path / "raw"
    good = [audit(audit_id=f"A-{i}") for i in range(1, 9)]
    write_csv(raw / "audits" / "2026-03" / "a.csv", [
        *good[:4],
        audit(audit_id="A-2"),                                  # duplicate of a clean row
        audit(audit_id="M-1", queue="Bad Queue"),               # malformed first copy
        audit(audit_id="M-1"),                                  # valid, but a later copy: duplicate
        audit(audit_id="FEB-1"),                                # published for February
    ])
    write_csv(raw / "audits" / "2026-03" / "b.csv", [
        *good[4:],
        audit(audit_id="A-1", site=""),                         # malformed and a duplicate
        audit(audit_id="A-5"),                                  # duplicate within the second file
        audit(audit_id=""),                                     # no id: not a duplicate of anything
        audit(audit_id=""),
    ])
    return raw


def _publish_february(warehouse):
    from qa_pipeline.domain.validation import RawFile
    from qa_pipeline_tests.conftest import enrich_frame

    row = pd.DataFrame([audit(audit_id="FEB-1", audited_at="2026-02-10T12:00:00Z",
                              decision_at="2026-02-09T08:30:00Z")])
    feb = run_gate([RawFile("audits/2026-02/x.csv", row, "0")], AUDITS, date(2026, 2, 1)).clean
    roster = pd.DataFrame({"moderator_id": ["MOD-1"], "hire_date": pd.to_datetime(["2025-01-01"], utc=True)})
    attempt = Attempt(warehouse, date(2026, 2, 1), "february")
    attempt.write("qa_core.audits_clean", enrich_frame(feb, roster, date(2026, 2, 1)))
    attempt.publish()
    return feb


@pytest.mark.parametrize("chunk_rows", [1, 3, 100_000])
def test_the_staged_gate_equals_the_whole_file_gate(tmp_path, warehouse_url, chunk_rows):
    raw = _raw(tmp_path)
    warehouse = Warehouse(url=warehouse_url)
    _publish_february(warehouse)
    store = RawStore(raw_dir=str(raw))
    expected = run_gate(store.read_month("audits", MARCH), AUDITS, MARCH,
                        published_ids=pd.Series(["FEB-1"]))

    attempt = Attempt(warehouse, MARCH, f"march-{chunk_rows}")
    gate = stage_month_gate(attempt, store.month_paths("audits", MARCH), store.root, AUDITS, chunk_rows=chunk_rows)

    clean = warehouse.execute(attempt.staged("qa_staging.validated_audits"))
    assert sorted(zip(clean.source_file, clean.source_row)) == sorted(
        zip(expected.clean.source_file, expected.clean.source_row))
    q = warehouse.execute(attempt.staged("qa_core.audits_quarantine"))
    cols = ["source_file", "row_number", "rule", "rules", "reason", "raw_record"]
    got = q[cols].sort_values(["source_file", "row_number"], ignore_index=True)
    want = expected.quarantine[cols].sort_values(["source_file", "row_number"], ignore_index=True)
    pd.testing.assert_frame_equal(got.astype(object), want.astype(object))
    # the rules the case was built for
    by_row = got.set_index(["source_file", "row_number"])
    assert by_row.loc[("audits/2026-03/a.csv", 5), "rule"] == "audit_id:duplicate"
    assert by_row.loc[("audits/2026-03/a.csv", 7), "rule"] == "audit_id:duplicate"
    assert by_row.loc[("audits/2026-03/a.csv", 8), "rule"] == "audit_id:published_earlier"
    assert by_row.loc[("audits/2026-03/b.csv", 5), "rules"] == "site:required; audit_id:duplicate"
    # every row is accounted for, counted in the staged tables themselves
    files = gate.files.set_index("source_file")
    assert files.rows_read.tolist() == [8, 8]
    assert (files.rows_read == files.rows_clean + files.rows_quarantined).all()
    assert gate.rows_clean == len(clean) == 8
    assert gate.rows_quarantined == len(q) == 8
