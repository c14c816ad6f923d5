"""Values and lines the gate must name (issue 10, item 6): each crafted input has one expected
outcome — the rule, the row number and the raw record, or a clear error naming the file — and the
whole-file gate (`run_gate`) and the streaming gate give exactly the same one."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qa_pipeline.domain import streaming_gate
from qa_pipeline.domain.streaming_gate import scan_csv, stream_gate
from qa_pipeline.domain.validation import (
    ASSIGNMENTS,
    AUDITS,
    CALIBRATION_GOLD,
    CALIBRATION_RATINGS,
    POLICY_CHANGES,
    ROSTER,
    RawInputError,
    Reference,
    run_gate,
)
from qa_pipeline.resources.raw_store import RawStore, read_raw_file
from qa_pipeline_tests.conftest import VALID_AUDIT, audit, enrich_frame, write_csv

MARCH = date(2026, 3, 1)
HEADER = ",".join(VALID_AUDIT)
ERROR_ROW = dict(action_moderator="approve", policy_moderator="NONE", error_severity="major",
                 root_cause="policy_knowledge")


def line(end: str = "\n", **changes) -> str:
    """One audit as a CSV line (quoted where needed), its line end included."""
    out = io.StringIO()
    csv.writer(out, lineterminator=end).writerow(list(audit(**changes).values()))
    return out.getvalue()


def _both(root: Path, paths: list[Path], spec=AUDITS, month=MARCH, chunks=(1, 2, None)):
    """run_gate over the files as `read_raw_file` reads them, and the stream in chunks of 1, 2 and
    whole files: the same clean rows, quarantine and file log (cross-row rules aside, which these
    cases do not trigger)."""
    expected = run_gate([read_raw_file(p, root) for p in paths], spec, month)
    for chunk_rows in chunks:
        stream = stream_gate(paths, root, spec, month, chunk_rows=chunk_rows)
        got = list(stream)
        clean = pa.concat_tables([c.clean for c in got]).to_pandas() if got else None
        quarantined = [c.quarantine for c in got if len(c.quarantine)]
        if clean is not None:
            pd.testing.assert_frame_equal(clean, expected.clean, obj=f"clean, chunks of {chunk_rows}")
        if quarantined:
            pd.testing.assert_frame_equal(pd.concat(quarantined, ignore_index=True), expected.quarantine,
                                          obj=f"quarantine, chunks of {chunk_rows}")
        else:
            assert expected.quarantine.empty
        pd.testing.assert_frame_equal(stream.files, expected.files, obj=f"files, chunks of {chunk_rows}")
    return expected


def _month_file(tmp_path: Path, text: str | bytes, name: str = "a.csv") -> tuple[Path, list[Path]]:
    root = tmp_path / "raw"
    path = root / "audits" / "2026-03" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.lower().endswith(".gz") else data)
    return root, [path]


# -- values -----------------------------------------------------------------------------------

VALUE_CASES = [
    # (the changes to a valid audit, the rules expected in order)
    (dict(handle_time_s="inf"), ["handle_time_s:non_finite"]),
    (dict(handle_time_s="-inf"), ["handle_time_s:non_finite"]),
    (dict(handle_time_s="Infinity"), ["handle_time_s:non_finite"]),
    (dict(handle_time_s="nan"), ["handle_time_s:non_finite"]),
    (dict(sampling_weight="Infinity"), ["sampling_weight:non_finite"]),
    (dict(sampling_weight="NaN"), ["sampling_weight:non_finite"]),
    (dict(sampling_weight="1e999"), ["sampling_weight:non_finite"]),
    (dict(sampling_weight="NULL"), ["sampling_weight:null_literal"]),
    (dict(audit_id="nan"), ["audit_id:null_literal"]),
    (dict(moderator_id="None", auditor_id="N/A"), ["moderator_id:null_literal", "auditor_id:null_literal"]),
    (dict(audited_at="NULL"), ["audited_at:null_literal"]),
    (dict(policy_auditor="null"), ["policy_auditor:null_literal"]),
    (dict(auditor_comment="bad\x00byte"), ["auditor_comment:nul_byte"]),
    (dict(content_id="C\x00-1", market="\x00"), ["content_id:nul_byte", "market:nul_byte"]),
    (dict(site="   "), ["site:non_blank"]),
    (dict(queue=" \t "), ["queue:non_blank"]),
]


@pytest.mark.parametrize(("changes", "rules"), VALUE_CASES, ids=[str(r) + str(i) for i, (_, r) in enumerate(VALUE_CASES)])
def test_a_value_breaks_its_named_rule_in_both_gates(tmp_path, changes, rules):
    rows = [audit(audit_id="A-0"), audit(**{"audit_id": "A-1", **changes}), audit(audit_id="A-2")]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    gate = _both(root, [path])
    assert gate.clean.audit_id.tolist() == ["A-0", "A-2"]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"], q["rules"]) == (2, rules[0], "; ".join(rules))
    record = json.loads(q["raw_record"])
    for column, value in changes.items():
        assert record[column] == value  # the value as it was in the file (untrimmed, with its NUL)


def test_null_placeholders_and_blanks_in_optional_columns_read_as_missing(tmp_path):
    rows = [audit(audit_id="A-1", handle_time_s="NULL", auditor_comment="N/A", root_cause="None"),
            audit(audit_id="A-2", handle_time_s=" ", auditor_comment="   ", root_cause="  "),
            audit(audit_id="A-3", **{**ERROR_ROW, "root_cause": "nan"})]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    gate = _both(root, [path])
    assert gate.clean.audit_id.tolist() == ["A-1", "A-2"]
    assert gate.clean.handle_time_s.isna().all() and gate.clean.auditor_comment.isna().all()
    assert gate.clean.root_cause.isna().all()
    # an error's root cause is required: a placeholder there reads as missing, and the
    # cross-field rule says so
    assert gate.quarantine[["row_number", "rule"]].values.tolist() == [[3, "root_cause_iff_error"]]


def test_the_null_placeholders_are_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_NULL_LITERALS", "-,#N/A")
    rows = [audit(audit_id="A-1", market="N/A"), audit(audit_id="A-2", market="-"), audit(audit_id="A-3", market="#N/A")]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    gate = _both(root, [path])
    assert gate.clean[["audit_id", "market"]].values.tolist() == [["A-1", "N/A"]]
    assert gate.quarantine.rule.tolist() == ["market:null_literal", "market:null_literal"]


def test_text_is_trimmed_so_an_id_with_a_trailing_space_is_a_duplicate(tmp_path):
    rows = [audit(audit_id="X", queue=" hate_speech ", site="Dublin "), audit(audit_id="X ", site="Austin"),
            audit(audit_id="\tY", content_type=" video")]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    gate = run_gate([read_raw_file(path, root)], AUDITS, MARCH)
    assert gate.clean[["audit_id", "queue", "site", "content_type"]].values.tolist() == [
        ["X", "hate_speech", "Dublin", "video"], ["Y", "hate_speech", "Dublin", "video"]]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"]) == (2, "audit_id:duplicate")
    assert json.loads(q["raw_record"])["audit_id"] == "X "
    # the stream hands the cross-row step the same trimmed key
    keys = pa.Table.from_batches([c.keys for c in stream_gate([path], root, AUDITS, MARCH, chunk_rows=1)])
    assert keys["audit_id"].to_pylist() == ["X", "X", "Y"]


def test_the_staged_month_quarantines_the_trailing_space_copy(tmp_path):
    from qa_pipeline.assets.month_gate import stage_month_gate
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines

    root = tmp_path / "raw"
    write_csv(root / "audits" / "2026-03" / "a.csv", [audit(audit_id="X"), audit(audit_id="X ")], list(VALID_AUDIT))
    store = RawStore(raw_dir=str(root))
    warehouse = Warehouse(url=f"duckdb:///{tmp_path}/wh.duckdb")
    attempt = Attempt(warehouse, MARCH, "trim")
    gate = stage_month_gate(attempt, store.month_paths("audits", MARCH), root, AUDITS, chunk_rows=1)
    q = warehouse.execute(attempt.staged("qa_core.audits_quarantine"))
    assert q[["row_number", "rule"]].values.tolist() == [[2, "audit_id:duplicate"]]
    assert gate.files[["rows_read", "rows_clean", "rows_quarantined"]].values.tolist() == [[2, 1, 1]]
    dispose_engines()


def test_policy_codes_are_the_organisations_own(tmp_path):
    rows = [audit(audit_id="A-1", policy_moderator="P1", policy_auditor="P1"),
            audit(audit_id="A-2", policy_moderator="hate_speech.tier2", policy_auditor="hate_speech.tier2"),
            audit(audit_id="A-3", policy_moderator="HS-2", policy_auditor="HS-2"),
            audit(audit_id="A-4", action_moderator="approve", policy_moderator="none", error_severity="minor",
                  root_cause="process")]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    gate = _both(root, [path])
    assert gate.clean.audit_id.tolist() == ["A-1", "A-2", "A-3"]
    # `NONE` (upper case) means none; `none` is a code, so an approval coded `none` breaks the rule
    assert gate.quarantine.rule.tolist() == ["approve_iff_policy_none_moderator"]


def test_with_a_catalogue_unknown_codes_are_quarantined(tmp_path):
    rows = [audit(audit_id="A-1", policy_moderator="P1", policy_auditor="P1"),
            audit(audit_id="A-2", policy_moderator="P9", policy_auditor="P1", error_severity="minor",
                  root_cause="policy_knowledge"),
            audit(audit_id="A-3", policy_moderator="P7", policy_auditor="P8", error_severity="minor",
                  root_cause="policy_knowledge"),
            audit(audit_id="A-4", action_moderator="approve", action_auditor="approve", policy_moderator="NONE",
                  policy_auditor="NONE")]
    root = tmp_path / "raw"
    path = write_csv(root / "audits" / "2026-03" / "a.csv", rows, list(VALID_AUDIT))
    spec = AUDITS.with_context(policies=frozenset({"P1", "P2"}))
    gate = _both(root, [path], spec=spec)
    assert gate.clean.audit_id.tolist() == ["A-1", "A-4"]
    q = gate.quarantine.set_index("row_number")
    assert q.loc[2, "rules"] == "policy_moderator:unknown_policy"
    assert q.loc[3, "rules"] == "policy_moderator:unknown_policy; policy_auditor:unknown_policy"
    assert "'P9' is not in the policy catalogue (policies/policies.csv)" in q.loc[2, "reason"]


@pytest.mark.parametrize("spec, rows, column", [
    (CALIBRATION_RATINGS, [{"session_id": "S", "session_date": "2026-03-02", "queue": "Hate Speech", "case_id": "c1",
                            "rater_id": "r1", "rater_role": "auditor", "action": "remove", "policy": "P3"}], "policy"),
    (CALIBRATION_GOLD, [{"session_id": "S", "case_id": "c1", "gold_action": "remove", "gold_policy": "P3"}],
     "gold_policy"),
    (POLICY_CHANGES, [{"change_id": "C1", "policy": "P3", "effective_date": "2026-03-02", "change_type": "update",
                       "summary": "", "queues": "*"}], "policy"),
])
def test_every_input_with_codes_checks_them_against_the_catalogue(tmp_path, spec, rows, column):
    path = write_csv(tmp_path / "raw" / "x" / "x.csv", rows)
    file = read_raw_file(path, tmp_path / "raw")
    assert run_gate([file], spec, MARCH).quarantine.empty  # no catalogue: any code (and a calibration queue
    # is not held to the audit queue's pattern: the contract states none for it)
    gate = run_gate([file], spec.with_context(policies=frozenset({"P1"})), MARCH)
    assert gate.quarantine.rule.tolist() == [f"{column}:unknown_policy"]


def test_a_policy_change_to_none_is_quarantined(tmp_path):
    rows = [{"change_id": "C1", "policy": "NONE", "effective_date": "2026-03-02", "change_type": "update",
             "summary": "", "queues": "hate_speech;spam"},
            {"change_id": "C2", "policy": "hate_speech.tier2", "effective_date": "2026-03-02", "change_type": "new",
             "summary": "", "queues": "hate_speech; spam"}]
    path = write_csv(tmp_path / "raw" / "policy_changes" / "policy_changes.csv", rows)
    gate = run_gate([read_raw_file(path, tmp_path / "raw")], POLICY_CHANGES, MARCH)
    assert gate.quarantine.set_index("row_number").rule.to_dict() == {1: "policy:not_none", 2: "queues:pattern"}


def test_a_treatment_share_of_one_is_above_its_maximum(tmp_path):
    from qa_pipeline.domain.validation import EXPERIMENTS

    base = {"name": "x", "hypothesis": "", "owner": "", "start_date": "2026-03-01", "end_date": "2026-03-31",
            "primary_metric": "accuracy"}
    rows = [{"experiment_id": "E1", **base, "treatment_share": "1"}, {"experiment_id": "E2", **base, "treatment_share": ""},
            {"experiment_id": "E3", **base, "treatment_share": "Infinity"},
            {"experiment_id": "E4", **base, "treatment_share": "0.3"}]
    path = write_csv(tmp_path / "raw" / "experiments" / "experiments.csv", rows)
    gate = run_gate([read_raw_file(path, tmp_path / "raw")], EXPERIMENTS, MARCH)
    # an optional column present in the file: its cells are required (the default is for a file without it)
    assert gate.quarantine.set_index("row_number").rule.to_dict() == {
        1: "treatment_share:max", 2: "treatment_share:required", 3: "treatment_share:non_finite"}
    assert gate.clean[["experiment_id", "treatment_share"]].values.tolist() == [["E4", 0.3]]
    without = write_csv(tmp_path / "raw2" / "experiments" / "experiments.csv", [{"experiment_id": "E5", **base}])
    assert run_gate([read_raw_file(without, tmp_path / "raw2")], EXPERIMENTS, MARCH).clean.treatment_share.tolist() == [0.5]


def test_a_future_hire_date_is_quarantined(tmp_path):
    rows = [{"moderator_id": "M1", "site": "D", "team_type": "bpo", "hire_date": "2026-03-31", "language": "en",
             "status": "active"},
            {"moderator_id": "M2", "site": "D", "team_type": "bpo", "hire_date": "2026-04-01", "language": "en",
             "status": "active"}]
    path = write_csv(tmp_path / "raw" / "roster" / "roster.csv", rows)
    files = [read_raw_file(path, tmp_path / "raw")]
    gate = run_gate(files, ROSTER.with_context(today=date(2026, 3, 31)), MARCH)
    assert gate.clean.moderator_id.tolist() == ["M1"]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"]) == (2, "hire_date:in_future")
    assert q["reason"] == "hire_date 2026-04-01 is after the run's date 2026-03-31"
    assert run_gate(files, ROSTER, MARCH).quarantine.empty  # without the run's date: not checked


def test_a_decision_before_the_hire_date_has_no_tenure():
    audits = pd.DataFrame({
        "audit_id": ["a", "b", "c"], "moderator_id": ["M", "M", "X"],
        "decision_at": pd.to_datetime(["2026-03-09", "2026-03-10T23:00:00", "2026-03-10"], utc=True, format="ISO8601"),
        "action_moderator": "remove", "action_auditor": "remove", "policy_moderator": "P1", "policy_auditor": "P1",
        "error_severity": "none",
    })
    roster = pd.DataFrame({"moderator_id": ["M"], "hire_date": pd.to_datetime(["2026-03-10"], utc=True)})
    out = enrich_frame(audits, roster, MARCH).set_index("audit_id")
    assert out.tenure_band.tolist() == ["unknown", "0-30", "unknown"]
    assert pd.isna(out.loc["a", "tenure_days"]) and out.loc["b", "tenure_days"] == 0
    assert pd.isna(out.loc["c", "tenure_days"])


def test_a_reference_to_another_input(tmp_path):
    rows = [{"experiment_id": "EXP-1", "moderator_id": "M1", "arm": "control"},
            {"experiment_id": "EXP-9", "moderator_id": "M1", "arm": "treatment"},
            {"experiment_id": " EXP-1 ", "moderator_id": "M2", "arm": "treatment"}]
    path = write_csv(tmp_path / "raw" / "experiments" / "assignments.csv", rows)
    spec = ASSIGNMENTS.with_context(references=(
        Reference("experiment_id", "unknown_experiment", frozenset({"EXP-1"}), "experiments/experiments.csv"),))
    gate = run_gate([read_raw_file(path, tmp_path / "raw")], spec, MARCH)
    assert gate.clean.moderator_id.tolist() == ["M1", "M2"]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"]) == (2, "experiment_id:unknown_experiment")
    assert q["reason"] == "experiment_id 'EXP-9' is not in experiments/experiments.csv"


def test_a_reference_checked_only_before_a_time(tmp_path):
    from qa_pipeline.domain.validation import DISPUTES

    rows = [{"dispute_id": f"D{i}", "audit_id": a, "disputed_at": d, "resolved_at": "2026-03-20T00:00:00Z",
             "reason": "", "outcome": "upheld"} for i, (a, d) in enumerate(
        [("A-1", "2026-02-10T00:00:00Z"), ("A-NOPE", "2026-02-11T00:00:00Z"), ("A-LATER", "2026-03-02T00:00:00Z")])]
    path = write_csv(tmp_path / "raw" / "disputes" / "2026-03" / "d.csv", rows)
    spec = DISPUTES.with_context(references=(Reference("audit_id", "unknown_audit", frozenset({"A-1"}), "the audits",
                                                       when="disputed_at", before=pd.Timestamp("2026-03-01", tz="UTC")),))
    gate = run_gate([read_raw_file(path, tmp_path / "raw")], spec, MARCH)
    assert gate.quarantine[["row_number", "rule"]].values.tolist() == [[2, "audit_id:unknown_audit"]]
    assert gate.clean.audit_id.tolist() == ["A-1", "A-LATER"]


# -- lines ------------------------------------------------------------------------------------

def test_malformed_lines_are_quarantined_in_their_place(tmp_path):
    text = (HEADER + "\n" + line(audit_id="A-1") + "A-2,short\n" + line(audit_id="A-3")
            + line(audit_id="A-4").rstrip("\n") + ",one too many\n" + line(audit_id="A-5"))
    root, paths = _month_file(tmp_path, text)
    gate = _both(root, paths)
    assert gate.clean.audit_id.tolist() == ["A-1", "A-3", "A-5"]
    assert gate.clean.source_row.tolist() == [1, 3, 5]
    q = gate.quarantine
    assert q[["row_number", "rule", "rules"]].values.tolist() == [
        [2, "line:malformed", "line:malformed"], [4, "line:malformed", "line:malformed"]]
    assert json.loads(q.raw_record.iloc[0]) == "A-2,short"
    assert json.loads(q.raw_record.iloc[1]) == line(audit_id="A-4").rstrip("\n") + ",one too many"
    assert q.reason.tolist() == ["the line has 2 field(s), the header 20", "the line has 21 field(s), the header 20"]
    assert gate.files[["rows_read", "rows_clean", "rows_quarantined"]].values.tolist() == [[5, 3, 2]]


def test_a_quote_left_open_swallows_the_rest_of_the_file_into_one_line(tmp_path):
    text = HEADER + "\r\n" + line(audit_id="A-1") + '"A-2,open quote\n' + line(audit_id="A-3")
    root, paths = _month_file(tmp_path, text)
    gate = _both(root, paths)
    assert gate.clean.audit_id.tolist() == ["A-1"]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"]) == (2, "line:malformed")
    assert json.loads(q["raw_record"]) == '"A-2,open quote\n' + line(audit_id="A-3").rstrip("\n")
    assert "runs over 2 lines: a quote left open?" in q["reason"]
    assert gate.files.rows_read.tolist() == [2]  # as Python's csv module counts the records


def test_a_3mb_comment_is_one_row_like_any_other(tmp_path):
    big = "word " * 700_000  # 3.5 MB: three times the reader's default block
    text = HEADER + "\n" + line(audit_id="A-1") + line(audit_id="A-2", auditor_comment=big) + line(audit_id="A-3")
    root, paths = _month_file(tmp_path, text)
    gate = _both(root, paths)
    assert gate.quarantine.empty
    assert gate.clean.audit_id.tolist() == ["A-1", "A-2", "A-3"]
    assert gate.clean.auditor_comment.iloc[1] == big.strip()  # trimmed, like every text value


def test_a_line_that_is_not_utf8_is_quarantined_alone(tmp_path):
    data = (HEADER + "\n" + line(audit_id="A-1") + line(audit_id="A-2", auditor_comment="caf\u00e9")
            + line(audit_id="A-3")).encode("utf-8")
    data = data.replace("caf\u00e9".encode(), b"caf\xe9")  # Latin-1 é in a UTF-8 file
    root, paths = _month_file(tmp_path, data)
    gate = _both(root, paths)
    assert gate.clean.audit_id.tolist() == ["A-1", "A-3"]
    q = gate.quarantine.iloc[0]
    assert (q["row_number"], q["rule"]) == (2, "line:invalid_utf8")
    assert "caf\ufffd" in json.loads(q["raw_record"])


def test_several_invalid_bytes_in_one_line_and_a_utf16_file(tmp_path):
    data = (HEADER + "\n" + line(audit_id="A-1", auditor_comment="\u00e9t\u00e9 \u00e0 No\u00ebl") + line(audit_id="A-2"))
    data = data.encode("utf-8").replace("\u00e9t\u00e9 \u00e0 No\u00ebl".encode(), "\u00e9t\u00e9 \u00e0 No\u00ebl".encode("latin-1"))
    root, paths = _month_file(tmp_path, data)
    gate = _both(root, paths)
    assert gate.quarantine[["row_number", "rule"]].values.tolist() == [[1, "line:invalid_utf8"]]
    assert gate.clean.audit_id.tolist() == ["A-2"]
    root, paths = _month_file(tmp_path / "utf16", (HEADER + "\n" + line(audit_id="A-1")).encode("utf-16"))
    message = r"audits/2026-03/a\.csv: cannot be read as CSV: its header is not UTF-8 text"
    with pytest.raises(RawInputError, match=message):
        read_raw_file(paths[0], root)
    with pytest.raises(RawInputError, match=message):
        list(stream_gate(paths, root, AUDITS, MARCH))


def test_bom_crlf_embedded_quotes_and_newlines_read_as_values(tmp_path):
    comment = 'He said "no",\r\nthen left; 100%'
    text = ("\ufeff" + HEADER + "\r\n" + line(end="\r\n", audit_id="A-1", auditor_comment=comment) + "\r\n"
            + line(end="\r\n", audit_id="A-2"))
    root, paths = _month_file(tmp_path, text)
    gate = _both(root, paths)
    assert gate.quarantine.empty
    assert gate.clean.audit_id.tolist() == ["A-1", "A-2"]  # the BOM is not part of the first column's name
    assert gate.clean.auditor_comment.tolist()[0] == comment
    assert gate.files.rows_read.tolist() == [2]  # the blank line is not a row


def test_a_nul_byte_in_a_csv_value(tmp_path):
    text = HEADER + "\n" + line(audit_id="A-1", auditor_comment="a\x00b") + line(audit_id="A-2")
    root, paths = _month_file(tmp_path, text)
    gate = _both(root, paths)
    assert gate.quarantine[["row_number", "rule"]].values.tolist() == [[1, "auditor_comment:nul_byte"]]
    assert json.loads(gate.quarantine.raw_record.iloc[0])["auditor_comment"] == "a\x00b"


def test_an_empty_file_is_rejected_naming_it_and_a_header_only_file_has_no_rows(tmp_path):
    root, paths = _month_file(tmp_path, b"", name="empty.csv")
    message = r"audits/2026-03/empty\.csv: cannot be read as CSV: No columns to parse from file"
    with pytest.raises(RawInputError, match=message):
        read_raw_file(paths[0], root)
    with pytest.raises(RawInputError, match=message):
        list(stream_gate(paths, root, AUDITS, MARCH))
    for name, text in [("header_nl.csv", HEADER + "\n"), ("header.csv", HEADER), ("header.csv.gz", HEADER + "\r\n")]:
        root, paths = _month_file(tmp_path, text, name=name)
        gate = _both(root, paths)
        assert gate.files[["rows_read", "rows_clean", "rows_quarantined", "status"]].values.tolist() == [
            [0, 0, 0, "read"]], name
        assert gate.clean.empty and gate.quarantine.empty


def test_a_gzipped_csv_reads_like_the_csv(tmp_path):
    text = HEADER + "\n" + line(audit_id="A-1") + "A-2,short\n" + line(audit_id="A-3", queue="?")
    plain_root, plain = _month_file(tmp_path / "plain", text, name="a.csv")
    gz_root, gz = _month_file(tmp_path / "gz", text, name="a.CSV.GZ")
    a, b = _both(plain_root, plain), _both(gz_root, gz)
    pd.testing.assert_frame_equal(a.clean.drop(columns="source_file"), b.clean.drop(columns="source_file"))
    assert a.quarantine.rule.tolist() == b.quarantine.rule.tolist() == ["line:malformed", "queue:pattern"]
    assert b.files.rows_read.tolist() == [3]


def test_a_file_of_mostly_unusable_lines_is_rejected_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming_gate, "MAX_BAD_LINES", 3)
    root, paths = _month_file(tmp_path, HEADER + "\n" + "x,y\n" * 5)
    with pytest.raises(RawInputError, match=r"audits/2026-03/a\.csv: cannot be read as CSV: more than 3 lines"):
        read_raw_file(paths[0], root)


# -- Parquet with other types -------------------------------------------------------------------

def test_parquet_columns_of_another_type_get_a_named_outcome(tmp_path):
    frame = pd.DataFrame([audit(audit_id="7"), audit(audit_id="8"), audit(audit_id="9")])
    frame["audit_id"] = [7, 8, 9]  # integers where text is expected: read as text "7"
    frame["handle_time_s"] = ["12.5", "fast", "inf"]  # text where a number is expected: parsed
    frame["sampling_weight"] = [1.0, 2.0, float("inf")]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    root = tmp_path / "raw"
    (root / "audits" / "2026-03").mkdir(parents=True)
    pq.write_table(table, root / "audits" / "2026-03" / "a.parquet")
    gate = _both(root, [root / "audits" / "2026-03" / "a.parquet"])
    assert gate.clean.audit_id.tolist() == ["7"] and gate.clean.handle_time_s.tolist() == [12.5]
    assert gate.quarantine[["row_number", "rules"]].values.tolist() == [
        [2, "handle_time_s:number"], [3, "handle_time_s:non_finite; sampling_weight:non_finite"]]
    # a time stamp given as an integer, a weight as a boolean
    frame = pd.DataFrame([audit(audit_id="A-1")])
    frame["audited_at"] = [1773144000]
    frame["sampling_weight"] = [True]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / "audits" / "2026-03" / "a.parquet")
    gate = _both(root, [root / "audits" / "2026-03" / "a.parquet"])
    q = gate.quarantine.iloc[0]
    assert q["rules"] == "audited_at:iso8601; sampling_weight:number"
    assert "(a Parquet int64 column)" in q["reason"] and "(a Parquet bool column)" in q["reason"]


def test_an_optional_column_is_optional_per_file_whatever_the_format(tmp_path):
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    without = [c for c in VALID_AUDIT if c != "sampling_weight"]
    write_csv(folder / "a_with.csv", [audit(audit_id="A-1", sampling_weight="3")], list(VALID_AUDIT))
    write_csv(folder / "b_without.csv", [audit(audit_id="B-1"), audit(audit_id="B-2")], without)
    pd.DataFrame([audit(audit_id="C-1")])[without].to_parquet(folder / "c_without.parquet", index=False)
    gz = folder / "d_without.csv.gz"
    gz.write_bytes(gzip.compress(write_csv(tmp_path / "tmp.csv", [audit(audit_id="D-1")], without).read_bytes()))
    paths = RawStore(raw_dir=str(root)).month_paths("audits", MARCH)
    gate = _both(root, paths)
    assert gate.quarantine.empty
    assert gate.clean[["audit_id", "sampling_weight"]].values.tolist() == [
        ["A-1", 3.0], ["B-1", 1.0], ["B-2", 1.0], ["C-1", 1.0], ["D-1", 1.0]]


# -- the independent count ----------------------------------------------------------------------

def test_rows_read_are_counted_by_the_csv_module_not_by_the_split(tmp_path, monkeypatch):
    text = (HEADER + "\n\n" + line(audit_id="A-1") + line(audit_id="A-2", auditor_comment="two\nlines")
            + "broken\n" + line(audit_id="A-3"))
    root, paths = _month_file(tmp_path, text)
    scan = scan_csv(paths[0], "audits/2026-03/a.csv")
    assert scan.records == 4 and [b.index for b in scan.bad_lines] == [2]
    assert scan.header == tuple(VALID_AUDIT)
    # a reader that loses a row cannot make the identity hold: rows read stay the csv module's count
    real = streaming_gate._with_lines

    def losing(*args):
        batches = list(real(*args))
        last = batches[-1]
        return [*batches[:-1], last.slice(0, last.num_rows - 1)]

    monkeypatch.setattr(streaming_gate, "_with_lines", losing)
    for log in (run_gate([read_raw_file(paths[0], root)], AUDITS, MARCH).files,
                (lambda s: (list(s), s.files)[1])(stream_gate(paths, root, AUDITS, MARCH, chunk_rows=2))):
        assert log[["rows_read", "rows_clean", "rows_quarantined"]].values.tolist() == [[4, 2, 1]]


def test_a_parquet_file_s_rows_read_come_from_its_metadata(tmp_path):
    root = tmp_path / "raw"
    (root / "audits" / "2026-03").mkdir(parents=True)
    path = root / "audits" / "2026-03" / "a.Parquet"
    pq.write_table(pa.Table.from_pandas(pd.DataFrame([audit(audit_id=f"A-{i}") for i in range(5)])), path,
                   row_group_size=2)
    assert pq.ParquetFile(path).metadata.num_rows == 5
    gate = _both(root, [path])
    assert gate.files[["rows_read", "rows_clean"]].values.tolist() == [[5, 5]]
