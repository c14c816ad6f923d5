"""Every input gated, through real Dagster materializations of a month (issue 10, items 4–6).

Done when: a 100 %-malformed disputes file stops the month with a message naming the file; a
calibration session coded P1…P5 is published. And: a problem in one month's disputes folder blocks
that month only; assignments to unknown experiments, a roster whose statuses are all unknown and a
split that loses a row stop the month on a blocking check; files no input reads are logged and
warned about; a dispute of an audit that does not exist is quarantined once its month is loaded.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from qa_pipeline.domain import streaming_gate
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline.runner import _failure_reasons
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.conftest import Pipeline, write_csv

MONTH = "2026-02"
DISPUTE_HEADER = "dispute_id,audit_id,disputed_at,resolved_at,reason,outcome\n"


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
    """Three generated months of 600 audits, every input of the contract (a policy catalogue too)."""
    out = tmp_path_factory.mktemp("small") / "raw"
    generate(SampleSpec(months=["2026-01", "2026-02", "2026-03"], audits_per_month=600, seed=5,
                        with_hatecheck=False), out)
    return out


@pytest.fixture
def run(small_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    yield Pipeline(tmp_path, raw)
    dispose_engines()


def _checks(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _published(pipeline) -> bool:
    return pipeline.warehouse.has_table("qa_core.publications") and len(pipeline.table("qa_core.publications")) > 0


def test_a_100_percent_malformed_disputes_file_stops_the_month_naming_the_file(run):
    rows = "".join(f"D-BAD-{i};A-{i};2026-02-03T00:00:00Z;2026-02-05T00:00:00Z;satire;overturned\n" for i in range(6))
    bad = run.raw_dir / "disputes" / MONTH / "zz_vendor_export.csv"
    bad.write_text(DISPUTE_HEADER + rows)  # `;` where the header has `,`: every line malformed
    result = run.run(MONTH)
    assert not result.success
    check = _checks(result)[("disputes", "quarantined_share_within_limit")]
    assert not check.passed and check.severity.value == "ERROR"
    assert "disputes/2026-02/zz_vendor_export.csv: 6 of 6 (line:malformed 6)" in check.description
    assert _checks(result)[("disputes", "every_row_accounted_for")].passed
    # the CLI's line names the file
    assert any("zz_vendor_export.csv" in r and r.startswith("blocking check disputes:quarantined_share_within_limit")
               for r in _failure_reasons(result))
    assert {"audits_clean", "month_publication"}.isdisjoint(_materialized(result))
    assert not _published(run)
    staged = run.staged("qa_core.audits_quarantine", result)
    mine = staged[staged.source_file == "disputes/2026-02/zz_vendor_export.csv"]
    assert mine.row_number.tolist() == [1, 2, 3, 4, 5, 6] and set(mine.rule) == {"line:malformed"}


def test_a_disputes_file_whose_rows_all_break_rules_stops_the_month_too(run):
    rows = "".join(f"D-BAD-{i},A-{i},yesterday,2026-02-05T00:00:00Z,,maybe\n" for i in range(6))
    (run.raw_dir / "disputes" / MONTH / "zz_bad_values.csv").write_text(DISPUTE_HEADER + rows)
    result = run.run(MONTH)
    assert not result.success
    check = _checks(result)[("disputes", "quarantined_share_within_limit")]
    assert not check.passed
    assert "disputes/2026-02/zz_bad_values.csv: 6 of 6 (disputed_at:iso8601 6)" in check.description


def test_a_problem_in_one_disputes_folder_blocks_that_month_only(run):
    # a file lacking a column in March's folder, and files no input reads
    write_csv(run.raw_dir / "disputes" / "2026-03" / "zz_short.csv",
              [{"dispute_id": "D-S1", "audit_id": "A-1", "disputed_at": "2026-03-01T00:00:00Z",
                "resolved_at": "2026-03-02T00:00:00Z", "reason": "x"}])
    (run.raw_dir / "audits" / MONTH / "notes.txt").write_text("not data")
    write_csv(run.raw_dir / "disputes" / "2026-3" / "d.csv", [{"dispute_id": "D-9"}])
    result = run.run(MONTH)
    assert result.success  # February's run: March's file is reported, not fatal
    checks = _checks(result)
    warn = checks[("disputes", "every_file_read")]
    assert not warn.passed and warn.severity.value == "WARN"
    assert "disputes/2026-03/zz_short.csv: required column(s) missing: outcome" in warn.description
    layout = checks[("validated_audits", "every_file_read")]
    assert not layout.passed and layout.severity.value == "WARN"
    log = run.table("qa_core.ingest_log").set_index("source_file")
    short = log.loc["disputes/2026-03/zz_short.csv"]
    assert (short.status, short.input, str(short.month)[:7]) == ("rejected", "disputes", "2026-03")
    assert "required column(s) missing: outcome" in short.reason
    assert (log.loc["audits/2026-02/notes.txt", "status"], log.loc["audits/2026-02/notes.txt", "input"]) == (
        "ignored", "raw_layout")
    assert log.loc["disputes/2026-3/", "reason"].startswith("not a month folder (YYYY-MM)")
    assert set(log.loc[log.status == "read", "input"]) >= {"audits", "roster", "disputes", "calibration_ratings",
                                                            "calibration_gold", "policy_changes", "experiments",
                                                            "assignments", "policies"}
    assert "D-S1" not in set(run.table("qa_core.disputes").dispute_id)  # its rows are not used
    # March's own run stops on it, naming the file and the column
    march = run.run("2026-03")
    assert not march.success
    reasons = _failure_reasons(march)
    assert any(r.startswith("step disputes failed") and "disputes/2026-03/zz_short.csv: required column(s) "
               "missing: outcome" in r for r in reasons), reasons


def _calibration(folder, policies: list[str]):
    ratings, gold = [], []
    for c, gold_policy in enumerate(policies):
        case = f"case-{c + 1}"
        gold.append({"session_id": "CAL-P", "case_id": case, "gold_action": "remove", "gold_policy": gold_policy})
        for r in range(4):
            ratings.append({"session_id": "CAL-P", "session_date": "2026-02-20", "queue": "Trust & Safety",
                            "case_id": case, "rater_id": f"R{r}", "rater_role": "auditor", "action": "remove",
                            "policy": gold_policy if r else policies[(c + 1) % len(policies)]})
    for f in folder.glob("*"):
        f.unlink()
    write_csv(folder / "ratings.csv", ratings)
    write_csv(folder / "gold.csv", gold)


def test_a_calibration_session_coded_p1_to_p5_is_published(run):
    (run.raw_dir / "policies" / "policies.csv").unlink()  # no catalogue: any non-empty code
    _calibration(run.raw_dir / "calibration" / MONTH, ["P1", "P2", "P3", "P4", "P5"])
    result = run.run(MONTH)
    assert result.success
    checks = _checks(result)
    assert checks[("calibration_agreement", "calibration_ratings_quarantined_share_within_limit")].passed
    agreement = run.table("qa_reporting.calibration_agreement").set_index(["session_id", "label"])
    assert agreement.loc[("CAL-P", "policy"), "cases"] == 5
    assert agreement.loc[("CAL-P", "policy"), "gold_accuracy"] == pytest.approx(15 / 20)
    quarantine = run.table("qa_core.audits_quarantine")
    assert quarantine[quarantine.input.str.startswith("calibration")].empty


def test_a_catalogue_quarantines_codes_it_does_not_hold_and_blocks_the_month(run):
    write_csv(run.raw_dir / "policies" / "policies.csv",
              [{"policy": p, "name": f"policy {p}", "queues": "*"} for p in ["P1", "P2", "P4", "P5"]])
    _calibration(run.raw_dir / "calibration" / MONTH, ["P1", "P2", "P3", "P4", "P5"])
    result = run.run(MONTH)
    assert not result.success
    checks = _checks(result)
    assert not checks[("calibration_agreement", "calibration_gold_quarantined_share_within_limit")].passed
    # the month's audits use the sample's codes (HS.1, …), which this catalogue does not hold either
    assert not checks[("validated_audits", "quarantined_share_within_limit")].passed
    staged = run.staged("qa_core.audits_quarantine", result)
    gold = staged[staged.input == "calibration_gold"]
    assert gold[["row_number", "rule"]].values.tolist() == [[3, "gold_policy:unknown_policy"]]
    assert "policy_moderator:unknown_policy" in set(staged[staged.input == "audits"].rule)


def test_assignments_to_unknown_experiments_block_the_month_unless_their_limit_allows(run, monkeypatch):
    assignments = run.raw_dir / "experiments" / "assignments.csv"
    frame = pd.read_csv(assignments, dtype=str)
    frame.loc[: len(frame) // 10, "experiment_id"] = "EXP-404"  # ~10 % of the rows
    frame.to_csv(assignments, index=False)
    result = run.run(MONTH)
    assert not result.success
    check = _checks(result)[("experiment_readout", "assignments_quarantined_share_within_limit")]
    assert not check.passed and "experiments/assignments.csv" in check.description
    # the readout and what reads it are not published (the month's own figures are: they do not
    # read the experiments)
    assert {"experiment_readout", "cross_month_publication"} & _materialized(result) == {"experiment_readout"}
    assert not run.warehouse.has_table("qa_reporting.experiment_readout") or run.table(
        "qa_reporting.experiment_readout").empty
    monkeypatch.setenv("QA_MAX_INVALID_FRACTION_ASSIGNMENTS", "0.2")
    again = run.run(MONTH)
    assert again.success
    q = run.table("qa_core.audits_quarantine")
    q = q[q.input == "assignments"]
    assert len(q) == len(frame) // 10 + 1 and set(q.rule) == {"experiment_id:unknown_experiment"}


def test_a_roster_whose_statuses_are_all_unknown(run, monkeypatch):
    roster = run.raw_dir / "roster" / "roster.csv"
    frame = pd.read_csv(roster, dtype=str)
    frame["status"] = "on_leave"
    frame.loc[0, ["status", "hire_date"]] = ["active", "2999-01-01"]  # and one hired in the future
    frame.to_csv(roster, index=False)
    result = run.run(MONTH)
    assert not result.success
    check = _checks(result)[("roster", "quarantined_share_within_limit")]
    assert not check.passed and "roster/roster.csv" in check.description
    # with the roster's limit lifted the month is computed without any tenure, and does not crash
    monkeypatch.setenv("QA_MAX_INVALID_FRACTION_ROSTER", "1")
    again = run.run(MONTH)
    assert again.success
    clean = run.table("qa_core.audits_clean")
    assert len(clean) > 500 and set(clean.tenure_band) == {"unknown"} and clean.tenure_days.isna().all()
    q = run.table("qa_core.audits_quarantine")
    q = q[q.input == "roster"].set_index("row_number")
    assert q.loc[1, "rule"] == "hire_date:in_future" and len(q) == len(frame)


def test_a_dispute_of_an_audit_that_does_not_exist_once_its_month_is_loaded(run):
    # resolved in February, disputed in January: January's audits decide
    extra = [{"dispute_id": "D-NOPE", "audit_id": "A-DOES-NOT-EXIST", "disputed_at": "2026-01-30T00:00:00Z",
              "resolved_at": "2026-02-02T00:00:00Z", "reason": "x", "outcome": "overturned"},
             {"dispute_id": "D-LATER", "audit_id": "A-NOT-LOADED-YET", "disputed_at": "2026-02-03T00:00:00Z",
              "resolved_at": "2026-02-04T00:00:00Z", "reason": "x", "outcome": "upheld"}]
    write_csv(run.raw_dir / "disputes" / MONTH / "zz_extra.csv", extra)
    # a fresh warehouse, January first: February's audits are not loaded, so only the dispute made in
    # January can be known — and its audit is not among January's
    first = run.run("2026-01")
    assert first.success  # February's folder does not count towards January's share
    q = run.table("qa_core.audits_quarantine")
    q = q[q.input == "disputes"]
    assert q[["source_file", "row_number", "rule"]].values.tolist() == [
        ["disputes/2026-02/zz_extra.csv", 1, "audit_id:unknown_audit"]]
    disputes = set(run.table("qa_core.disputes").dispute_id)
    assert "D-LATER" in disputes and "D-NOPE" not in disputes
    # every generated dispute of a later month is valid on this first run
    assert len(disputes) == sum(len(pd.read_csv(p)) for p in (run.raw_dir / "disputes").glob("2026-0*/disputes.csv")) + 1
    # February's run knows February's audits: the dispute made in February is checked too
    second = run.run(MONTH)
    assert not second.success
    check = _checks(second)[("disputes", "quarantined_share_within_limit")]
    assert "disputes/2026-02/zz_extra.csv: 2 of 2 (audit_id:unknown_audit 2)" in check.description


def test_the_identity_check_fails_when_the_split_loses_a_row(run, monkeypatch):
    real = streaming_gate._with_lines

    def losing(*args):  # a reader that drops the last row of every CSV file
        batches = list(real(*args))
        return [*batches[:-1], batches[-1].slice(0, batches[-1].num_rows - 1)]

    monkeypatch.setattr(streaming_gate, "_with_lines", losing)
    result = run.run(MONTH)
    assert not result.success
    checks = _checks(result)
    for asset in ("validated_audits", "roster"):  # disputes waits for the audits: it does not run
        check = checks[(asset, "every_row_accounted_for")]
        assert not check.passed, asset
        assert "rows read ≠ clean + quarantined" in check.description
    assert not checks[("calibration_agreement", "calibration_gold_every_row_accounted_for")].passed
    assert "month_publication" not in _materialized(result)
    assert not _published(run)
    # the failed checks are recorded beside the staged rows: the publication refuses them
    from qa_pipeline.assets.publication import MONTH_TABLES

    with pytest.raises(ValueError, match="blocking checks failed on the staged rows"):
        run.attempt(MONTH, result).publish(required=MONTH_TABLES)
