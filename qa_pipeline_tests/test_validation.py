"""The validation gate: every contract rule quarantines a crafted row under its rule name."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from qa_pipeline.domain.validation import AUDITS, ROSTER, RawInputError, run_gate
from qa_pipeline.resources.raw_store import RawStore, read_raw_file
from qa_pipeline_tests.conftest import VALID_AUDIT, audit, write_csv

MARCH = date(2026, 3, 1)

ERROR_ROW = dict(action_moderator="approve", policy_moderator="NONE", error_severity="major",
                 root_cause="policy_knowledge")

RULE_CASES = [
    ("audit_id:required", audit(audit_id="")),
    ("audit_id:non_blank", audit(audit_id="   ")),
    ("audited_at:iso8601", audit(audited_at="yesterday")),
    ("audited_at:required", audit(audited_at="")),
    ("audited_at:in_folder_month", audit(audited_at="2026-04-02T00:00:00Z")),
    ("decision_at:iso8601", audit(decision_at="10/03/2026")),
    ("decision_before_audit", audit(decision_at="2026-03-11T00:00:00Z")),
    ("content_id:required", audit(content_id="")),
    ("content_type:allowed_values", audit(content_type="gif")),
    ("queue:pattern", audit(queue="Hate Speech")),
    ("site:non_blank", audit(site=" ")),
    ("team_type:allowed_values", audit(team_type="vendor")),
    ("market:required", audit(market="")),
    ("moderator_id:required", audit(moderator_id="")),
    ("auditor_id:required", audit(auditor_id="")),
    ("auditor_not_moderator", audit(auditor_id="MOD-1")),
    ("action_moderator:allowed_values", audit(action_moderator="delete")),
    ("action_auditor:allowed_values", audit(action_auditor="ban")),
    ("policy_moderator:non_blank", audit(policy_moderator="  ")),
    ("policy_auditor:null_literal", audit(policy_auditor="NULL")),
    ("policy_auditor:required", audit(policy_auditor="")),
    ("approve_iff_policy_none_moderator",
     audit(action_moderator="approve", error_severity="minor", root_cause="process")),
    ("approve_iff_policy_none_auditor",
     audit(action_auditor="approve", error_severity="minor", root_cause="process")),
    ("error_severity:allowed_values", audit(error_severity="severe")),
    ("severity_matches_error", audit(error_severity="minor")),
    ("severity_matches_error", audit(**{**ERROR_ROW, "error_severity": "none", "root_cause": ""})),
    ("root_cause:allowed_values", audit(**{**ERROR_ROW, "root_cause": "bad luck"})),
    ("root_cause_iff_error", audit(**{**ERROR_ROW, "root_cause": ""})),
    ("root_cause_iff_error", audit(root_cause="tooling")),
    ("handle_time_s:number", audit(handle_time_s="fast")),
    ("handle_time_s:min", audit(handle_time_s="-1")),
    ("sampling_weight:min", audit(sampling_weight="0")),
    ("sampling_weight:number", audit(sampling_weight="n/a")),
    ("sampling_weight:required", audit(sampling_weight="")),
    ("handle_time_s:non_finite", audit(handle_time_s="inf")),
    ("handle_time_s:non_finite", audit(handle_time_s="-inf")),
    ("handle_time_s:non_finite", audit(handle_time_s="NaN")),
    ("sampling_weight:non_finite", audit(sampling_weight="Infinity")),
    ("sampling_weight:non_finite", audit(sampling_weight="1e400")),
    ("sampling_weight:null_literal", audit(sampling_weight="None")),
    ("audit_id:null_literal", audit(audit_id="null")),
    ("market:null_literal", audit(market="N/A")),
    ("auditor_comment:nul_byte", audit(auditor_comment="fine\x00call")),
    ("moderator_id:nul_byte", audit(moderator_id="MOD-1\x00")),
]


def _gate(tmp_path, rows, month=MARCH, published=None, name="audits_a.csv"):
    folder = tmp_path / "raw" / "audits" / f"{month:%Y-%m}"
    write_csv(folder / name, rows, list(VALID_AUDIT))
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", month)
    return run_gate(files, AUDITS, month, published_ids=published)


@pytest.mark.parametrize(("rule", "bad"), RULE_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(RULE_CASES)])
def test_each_rule_quarantines_its_row(tmp_path, rule, bad):
    good = audit(audit_id="A-good")
    bad = {**bad, "audit_id": bad["audit_id"] if bad["audit_id"] != "A-1" else "A-bad"}
    gate = _gate(tmp_path, [good, bad])
    assert list(gate.clean["audit_id"]) == ["A-good"]
    assert len(gate.quarantine) == 1
    q = gate.quarantine.iloc[0]
    assert rule in q["rules"].split("; "), q["reason"]
    assert q["row_number"] == 2
    assert q["source_file"] == "audits/2026-03/audits_a.csv"
    assert json.loads(q["raw_record"])["content_type"] == bad["content_type"]
    assert q["reason"]  # readable text, never empty


def test_a_row_breaking_one_rule_names_exactly_that_rule(tmp_path):
    gate = _gate(tmp_path, [audit(audit_id="A-2", queue="Hate Speech!")])
    q = gate.quarantine.iloc[0]
    assert (q["rule"], q["rules"]) == ("queue:pattern", "queue:pattern")
    assert "'Hate Speech!'" in q["reason"]


def test_duplicates_keep_the_first_read_across_files_in_name_order(tmp_path):
    folder = tmp_path / "raw" / "audits" / "2026-03"
    write_csv(folder / "b_second.csv", [audit(audit_id="A-9", site="Austin")], list(VALID_AUDIT))
    write_csv(folder / "a_first.csv", [audit(audit_id="A-9", site="Dublin"), audit(audit_id="A-9", site="Bogota")],
              list(VALID_AUDIT))
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH)
    gate = run_gate(files, AUDITS, MARCH)
    assert gate.clean[["audit_id", "site"]].values.tolist() == [["A-9", "Dublin"]]
    q = gate.quarantine.sort_values(["source_file", "row_number"])
    assert q[["source_file", "row_number", "rule"]].values.tolist() == [
        ["audits/2026-03/a_first.csv", 2, "audit_id:duplicate"],
        ["audits/2026-03/b_second.csv", 1, "audit_id:duplicate"],
    ]


def test_an_id_published_for_an_earlier_month_is_quarantined(tmp_path):
    gate = _gate(tmp_path, [audit(audit_id="A-old"), audit(audit_id="A-new")],
                 published=pd.Series(["A-old"]))
    assert list(gate.clean.audit_id) == ["A-new"]
    assert gate.quarantine.iloc[0]["rule"] == "audit_id:published_earlier"


def test_rows_read_equal_clean_plus_quarantined_per_file(tmp_path):
    folder = tmp_path / "raw" / "audits" / "2026-03"
    write_csv(folder / "a.csv", [audit(audit_id=f"A-{i}") for i in range(5)] + [audit(audit_id="x", queue="?")])
    write_csv(folder / "b.csv", [audit(audit_id=f"B-{i}", market="") for i in range(3)])
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH)
    gate = run_gate(files, AUDITS, MARCH)
    log = gate.files.set_index("source_file")
    assert log.loc["audits/2026-03/a.csv", ["rows_read", "rows_clean", "rows_quarantined"]].tolist() == [6, 5, 1]
    assert log.loc["audits/2026-03/b.csv", ["rows_read", "rows_clean", "rows_quarantined"]].tolist() == [3, 0, 3]
    assert gate.quarantined_share == pytest.approx(4 / 9)


def test_parquet_is_accepted_with_typed_columns(tmp_path):
    rows = [audit(audit_id="P-1"), audit(audit_id="P-2", handle_time_s="-3")]
    frame = pd.DataFrame(rows)
    frame["audited_at"] = pd.to_datetime(frame["audited_at"], utc=True)
    frame["decision_at"] = pd.to_datetime(frame["decision_at"]).dt.tz_localize(None)  # naive = UTC
    frame["handle_time_s"] = frame["handle_time_s"].astype(float)
    frame["sampling_weight"] = frame["sampling_weight"].astype(float)
    folder = tmp_path / "raw" / "audits" / "2026-03"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "audits.parquet", index=False)
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH)
    gate = run_gate(files, AUDITS, MARCH)
    assert list(gate.clean.audit_id) == ["P-1"]
    assert gate.clean.decision_at.iloc[0] == pd.Timestamp("2026-03-09T08:30:00Z")
    assert gate.quarantine.iloc[0]["rule"] == "handle_time_s:min"


def test_missing_sampling_weight_column_defaults_to_one(tmp_path):
    cols = [c for c in VALID_AUDIT if c != "sampling_weight"]
    folder = tmp_path / "raw" / "audits" / "2026-03"
    write_csv(folder / "a.csv", [audit()], cols)
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH)
    gate = run_gate(files, AUDITS, MARCH)
    assert gate.clean.sampling_weight.tolist() == [1.0]


def test_a_missing_column_rejects_the_file_naming_file_and_column(tmp_path):
    cols = [c for c in VALID_AUDIT if c != "queue"]
    write_csv(tmp_path / "raw" / "audits" / "2026-03" / "short.csv", [audit()], cols)
    files = RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH)
    with pytest.raises(RawInputError, match=r"audits/2026-03/short\.csv: required column\(s\) missing: queue"):
        run_gate(files, AUDITS, MARCH)


def test_an_unreadable_file_is_rejected_by_name(tmp_path):
    folder = tmp_path / "raw" / "audits" / "2026-03"
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(RawInputError, match=r"audits/2026-03/broken\.parquet: cannot be read as PARQUET"):
        read_raw_file(folder / "broken.parquet", tmp_path / "raw")
    (folder / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RawInputError, match=r"audits/2026-03/broken\.csv\.gz: cannot be read as CSV"):
        read_raw_file(folder / "broken.csv.gz", tmp_path / "raw")


def test_a_quote_left_open_is_one_quarantined_line_not_a_rejected_file(tmp_path):
    """Formerly the whole file was rejected; the open quote now swallows the rest of the file into
    one record (as Python's csv module reads it), quarantined as `line:malformed`."""
    folder = tmp_path / "raw" / "audits" / "2026-03"
    folder.mkdir(parents=True)
    (folder / "ragged.csv").write_text('audit_id,queue\nA-0,hate_speech\n"A-1,hate_speech\nA-2,spam\n', encoding="utf-8")
    raw = read_raw_file(folder / "ragged.csv", tmp_path / "raw")
    assert raw.rows_counted == 2
    assert raw.frame["__line_rule"].tolist()[1] == "line:malformed"
    assert raw.frame["__line_text"].iloc[1] == '"A-1,hate_speech\nA-2,spam'


def test_a_month_without_audit_files_names_the_folder(tmp_path):
    (tmp_path / "raw" / "audits" / "2026-05").mkdir(parents=True)
    with pytest.raises(RawInputError, match=r"no audits file for 2026-05: .*audits/2026-05"):
        RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", date(2026, 5, 1))


def test_raw_files_are_never_modified(tmp_path):
    path = write_csv(tmp_path / "raw" / "audits" / "2026-03" / "a.csv", [audit(), audit(queue="?")])
    before = path.read_bytes()
    _ = run_gate(RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH), AUDITS, MARCH)
    assert path.read_bytes() == before


def test_roster_gate_quarantines_duplicates_and_bad_dates(tmp_path):
    rows = [
        {"moderator_id": "M1", "site": "Dublin", "team_type": "in_house", "hire_date": "2024-01-05",
         "language": "en", "status": "active"},
        {"moderator_id": "M1", "site": "Austin", "team_type": "in_house", "hire_date": "2024-01-05",
         "language": "en", "status": "active"},
        {"moderator_id": "M2", "site": "Dublin", "team_type": "bpo", "hire_date": "05/01/2024",
         "language": "en", "status": "active"},
        {"moderator_id": "M3", "site": "Dublin", "team_type": "bpo", "hire_date": "2024-02-01",
         "language": "en", "status": "on_leave"},
    ]
    write_csv(tmp_path / "raw" / "roster" / "roster.csv", rows)
    gate = run_gate(RawStore(raw_dir=str(tmp_path / "raw")).read_single("roster/roster.csv"), ROSTER, MARCH)
    assert gate.clean.moderator_id.tolist() == ["M1"]
    assert gate.clean.site.tolist() == ["Dublin"]
    assert gate.quarantine.set_index("row_number")["rule"].to_dict() == {
        2: "moderator_id:duplicate", 3: "hire_date:date", 4: "status:allowed_values"}


def test_a_row_lists_its_row_local_rules_before_the_cross_row_ones(tmp_path):
    rows = [audit(audit_id="A-1"),
            audit(audit_id="A-1", audited_at="2026-04-02T00:00:00Z"),  # outside March, and a repeat
            audit(audit_id="A-old", queue="?")]  # a bad queue, and published for an earlier month
    gate = _gate(tmp_path, rows, published=pd.Series(["A-old"]))
    q = gate.quarantine.set_index("row_number")
    assert q.loc[2, "rules"] == "audited_at:in_folder_month; audit_id:duplicate"
    assert q.loc[2, "rule"] == "audited_at:in_folder_month"
    assert q.loc[2, "reason"].index("outside the folder month") < q.loc[2, "reason"].index("repeats an earlier row")
    assert q.loc[3, "rules"] == "queue:pattern; audit_id:published_earlier"
    assert list(gate.clean.audit_id) == ["A-1"]


def test_an_optional_column_missing_from_one_file_defaults_in_that_file_only(tmp_path):
    folder = tmp_path / "raw" / "audits" / "2026-03"
    write_csv(folder / "a.csv", [audit(audit_id="A-1", sampling_weight="3.0"),
                                 audit(audit_id="A-2", sampling_weight="")])
    write_csv(folder / "b.csv", [audit(audit_id="B-1")], [c for c in VALID_AUDIT if c != "sampling_weight"])
    gate = run_gate(RawStore(raw_dir=str(tmp_path / "raw")).read_month("audits", MARCH), AUDITS, MARCH)
    assert gate.clean[["audit_id", "sampling_weight"]].values.tolist() == [["A-1", 3.0], ["B-1", 1.0]]
    q = gate.quarantine.iloc[0]
    assert (q["source_file"], q["row_number"], q["rule"]) == ("audits/2026-03/a.csv", 2, "sampling_weight:required")
    # each raw record holds its own file's columns
    assert "sampling_weight" in json.loads(q["raw_record"])
