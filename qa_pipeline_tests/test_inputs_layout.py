"""The raw folder's layout (issue 10, item 6): suffixes in any case, `.csv.gz` read like `.csv`,
and every file or folder no input reads reported with its reason — never skipped silently."""

from __future__ import annotations

import gzip
from datetime import date

import pandas as pd

from qa_pipeline.resources.raw_store import RawStore, data_suffix, is_month_folder
from qa_pipeline_tests.conftest import VALID_AUDIT, audit, write_csv

MARCH = date(2026, 3, 1)


def _tree(root):
    """A raw folder holding every kind of entry the layout must classify."""
    march = root / "audits" / "2026-03"
    write_csv(march / "a.CSV", [audit(audit_id="A-1")], list(VALID_AUDIT))
    write_csv(march / "c.Parquet.csv", [audit(audit_id="C-0")], list(VALID_AUDIT))  # a CSV, whatever its name
    pd.DataFrame([audit(audit_id="B-1")]).to_parquet(march / "b.Parquet", index=False)
    (march / "d.csv.gz").write_bytes(gzip.compress(write_csv(root.parent / "d.csv", [audit(audit_id="D-1")],
                                                             list(VALID_AUDIT)).read_bytes()))
    (march / "notes.txt").write_text("not data")
    (march / ".~lock.a.CSV#").write_text("")
    (march / ".hidden.csv").write_text("audit_id\n")
    (march / "old").mkdir()
    write_csv(march / "old" / "x.csv", [audit()])
    write_csv(root / "audits" / "2026-3" / "x.csv", [audit()])
    write_csv(root / "audits" / "2026-03-old" / "x.csv", [audit()])
    write_csv(root / "audits" / "2026-13" / "x.csv", [audit()])
    write_csv(root / "audits" / "stray.csv", [audit()])
    write_csv(root / "calibration" / "2026-03" / "Ratings_1.csv", [{"x": 1}])
    write_csv(root / "calibration" / "2026-03" / "gold.CSV.GZ", [{"x": 1}])
    write_csv(root / "calibration" / "2026-03" / "summary.csv", [{"x": 1}])
    write_csv(root / "calibration" / "2026-04" / "other.csv", [{"x": 1}])
    write_csv(root / "roster" / "roster.CSV", [{"moderator_id": "M1"}])
    write_csv(root / "roster" / "roster.parquet", [{"moderator_id": "M1"}])  # a second copy (not Parquet inside)
    write_csv(root / "roster" / "roster_old.csv", [{"moderator_id": "M1"}])
    write_csv(root / "appeals" / "2026-03" / "r.csv", [{"x": 1}])
    write_csv(root / "stuff" / "y.csv", [{"x": 1}])
    (root / "README.md").write_text("# sample")
    (root / "notes.md").write_text("# notes")


def test_suffixes_in_any_case_and_gzipped_csv_are_read_in_name_order(tmp_path):
    root = tmp_path / "raw"
    _tree(root)
    store = RawStore(raw_dir=str(root))
    assert [p.name for p in store.month_files("audits", MARCH)] == ["a.CSV", "b.Parquet", "c.Parquet.csv", "d.csv.gz"]
    assert [p.name for p in store.month_files("calibration", MARCH, "ratings")] == ["Ratings_1.csv"]
    assert [p.name for p in store.month_files("calibration", MARCH, "gold")] == ["gold.CSV.GZ"]
    assert store.available_months("audits") == ["2026-03"]  # 2026-3, 2026-03-old, 2026-13 are not months
    files = store.read_month("audits", MARCH)
    assert [f.frame.audit_id.iloc[0] for f in files] == ["A-1", "B-1", "C-0", "D-1"]
    assert [f.rows_counted for f in files] == [1, 1, 1, 1]
    # a snapshot input: any case, the first in name order
    assert store.snapshot_path("roster/roster.csv").name == "roster.CSV"
    assert store.read_single("roster/roster.csv")[0].path == "roster/roster.CSV"
    assert data_suffix("x.CSV.GZ") == ".csv.gz" and data_suffix("x.parquet.gz") is None and data_suffix(".csv") is None
    assert is_month_folder("2026-03") and not is_month_folder("2026-3") and not is_month_folder("２０２６-03")


def test_every_entry_no_input_reads_is_reported_with_its_reason(tmp_path):
    root = tmp_path / "raw"
    _tree(root)
    report = RawStore(raw_dir=str(root)).layout_report(known_extras=("README.md",))
    got = {e.path: (e.month, e.known_extra, e.reason) for e in report}
    march, april = MARCH, date(2026, 4, 1)
    expected_paths = {
        "README.md": (None, True),
        "notes.md": (None, False),
        "audits/2026-03/notes.txt": (march, False),
        "audits/2026-03/.~lock.a.CSV#": (march, False),
        "audits/2026-03/.hidden.csv": (march, False),
        "audits/2026-03/old/": (march, False),
        "audits/2026-3/": (None, False),
        "audits/2026-03-old/": (None, False),
        "audits/2026-13/": (None, False),
        "audits/stray.csv": (None, False),
        "calibration/2026-03/summary.csv": (march, False),
        "calibration/2026-04/other.csv": (april, False),
        "roster/roster.parquet": (None, False),
        "roster/roster_old.csv": (None, False),
        "appeals/": (None, False),
        "stuff/": (None, False),
    }
    assert {p: v[:2] for p, v in got.items()} == expected_paths
    reasons = {p: v[2] for p, v in got.items()}
    assert reasons["audits/2026-3/"] == "not a month folder (YYYY-MM): nothing in audits/2026-3/ is read"
    assert reasons["audits/2026-03/notes.txt"] == "not a .csv, .csv.gz or .parquet file"
    assert reasons["audits/2026-03/.hidden.csv"] == "a hidden file"
    assert reasons["calibration/2026-03/summary.csv"] == "not a file this input reads (file names ratings* or gold*)"
    assert reasons["roster/roster.parquet"] == ("another copy of the same input: roster/roster.CSV is read "
                                                "(the first in name order)")
    assert reasons["appeals/"].startswith("not an input folder of the raw layout")
    assert reasons["audits/stray.csv"] == "a file directly in audits/: its files are read from audits/YYYY-MM/ only"


def test_a_clean_layout_reports_nothing(tmp_path):
    root = tmp_path / "raw"
    write_csv(root / "audits" / "2026-03" / "a.csv", [audit()])
    write_csv(root / "roster" / "roster.csv", [{"moderator_id": "M1"}])
    write_csv(root / "experiments" / "experiments.csv", [{"experiment_id": "E"}])
    write_csv(root / "experiments" / "assignments.csv", [{"experiment_id": "E"}])
    write_csv(root / "policies" / "policies.csv", [{"policy": "P1"}])
    assert RawStore(raw_dir=str(root)).layout_report() == []
