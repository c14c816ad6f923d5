"""Running a corpus case and judging what the gate made of it (`test_corpus_gate.py`,
`test_corpus_month.py`).

- `gate_view`: the case's input through the gate functions the month's run calls (the streamed
  audit gate into a run's staging, `validated_disputes`, `run_gate` for the small inputs);
- `month_view`: what a Dagster materialization of the whole month staged or published in
  `qa_core.audits_quarantine` and `qa_core.ingest_log`;
- `judge`: the case's expected outcome asserted on either, and the rows lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qa_pipeline.domain.months import month_start
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.faults import corpus, summary
from qa_pipeline_tests.faults.tables import copy_warehouse

GATE_CHUNK_ROWS = 64  # several chunks per audit file: the cross-row rules span chunks and files


@dataclass
class View:
    """What the gate made of the month: clean rows per file, quarantine rows, the per-file log."""

    clean: Counter
    quarantine: pd.DataFrame
    log: pd.DataFrame | None
    error: BaseException | str | None = None


# -- the gate, called as the month's run calls it ----------------------------------------------------


def gate_view(case: corpus.Case, raw: Path, tmp: Path, template: Path) -> View:
    """The case's input through the gate as the month's run calls it, on a copy of the warehouse
    where both base months are published (the cross-month rules see them), in one attempt."""
    from datetime import UTC, datetime

    from qa_pipeline.assets import ingest
    from qa_pipeline.assets.month_gate import stage_month_gate
    from qa_pipeline.domain import validation as v
    from qa_pipeline.resources.raw_store import RawStore
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse

    month = month_start(case.month)
    store = RawStore(raw_dir=str(raw))
    warehouse = Warehouse(url=copy_warehouse(template, tmp / "wh"))
    attempt = Attempt(warehouse, month, f"fault-{case.name}")

    def staged(name: str) -> pd.DataFrame:
        return warehouse.execute(attempt.staged(name))

    def audits():  # as validated_audits: the catalogue's codes, then the month's files streamed
        return stage_month_gate(attempt, store.month_paths("audits", month), store.root,
                                ingest.audits_spec(store, attempt), chunk_rows=GATE_CHUNK_ROWS)

    def from_gate(gate) -> View:
        if gate is None:
            return View(Counter(), v.empty_quarantine(), v.ingest_rows([]))
        return View(Counter(gate.clean[v.SOURCE_FILE]), gate.quarantine, gate.files)

    try:
        if case.input == "audits":
            gate = audits()
            clean = staged("qa_staging.validated_audits")
            return View(Counter(clean[v.SOURCE_FILE]), staged("qa_core.audits_quarantine"), gate.files)
        if case.input == "disputes":
            from qa_pipeline.assets.disputes import validated_disputes

            audits()  # the disputes step runs after the audits: their ids are this run's known audits
            result = validated_disputes(store, attempt)
            return View(Counter(result.gate.clean[v.SOURCE_FILE]), result.gate.quarantine,
                        pd.concat([result.gate.files, result.rejected], ignore_index=True))
        if case.input in ("calibration_ratings", "calibration_gold"):  # one step gates both, ratings first
            codes = ingest.policy_codes(store, attempt)
            views = [from_gate(v.run_gate(store.read_month("calibration", month, prefix, required=False),
                                          v.INPUTS[name].with_context(policies=codes), month))
                     for prefix, name in (("ratings", "calibration_ratings"), ("gold", "calibration_gold"))]
            return View(views[0].clean + views[1].clean, pd.concat([x.quarantine for x in views], ignore_index=True),
                        pd.concat([x.log for x in views], ignore_index=True))
        if case.input == "roster":
            spec = v.ROSTER.with_context(today=datetime.now(UTC).date())
            return from_gate(v.run_gate(store.read_single("roster/roster.csv"), spec, month))
        if case.input == "policy_changes":
            return from_gate(ingest.gate_snapshot(store, attempt, v.POLICY_CHANGES, "policy_changes/policy_changes.csv"))
        if case.input in ("experiments", "assignments"):
            experiments, assignments = ingest.gate_experiments(store, attempt)
            return from_gate(experiments if case.input == "experiments" else assignments)
        if case.input == "policies":
            return from_gate(ingest.policy_catalogue(store, attempt))
        raise ValueError(f"no gate for the input {case.input!r}")
    except Exception as exc:  # noqa: BLE001 — a rejection is an outcome; the check judges it
        return View(Counter(), pd.DataFrame(), None, error=exc)
    finally:
        dispose_engines()


# -- the month, through Dagster ---------------------------------------------------------------------


def _error_messages(error) -> str:
    """An error's message and its causes' messages, without the stack traces."""
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return " <- ".join(parts)


def failure_text(result) -> str:
    """Every reason the run gives for failing: step errors, failed checks and their metadata."""
    parts = []
    for event in result.get_step_failure_events():
        parts.append(f"step {event.step_key}: {_error_messages(event.event_specific_data.error)}")
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            parts.append(f"{ev.check_name}: {ev.description or ''}")
            parts += [str(getattr(m, "value", m)) for m in ev.metadata.values()]
    return "\n".join(parts)


def crashed_steps(result) -> list[str]:
    """Steps that failed for another reason than a blocking check."""
    try:
        from qa_pipeline.progress import is_check_failure
    except ImportError:  # pragma: no cover
        def is_check_failure(event):
            return "check" in (event.event_specific_data.error.to_string() or "").lower()
    return [e.step_key for e in result.get_step_failure_events() if not is_check_failure(e)]


def _month_rows(frame: pd.DataFrame, month: str) -> pd.DataFrame:
    if frame is None or frame.empty or "month" not in frame.columns:
        return frame
    return frame[frame["month"].astype(str).str[:7] == month]


def _published_and_staged(pipeline: Pipeline, result, name: str, key: list[str]) -> pd.DataFrame:
    """The run's rows of `name`: staged (a step or check stopped the run before they were published)
    before published (the run published them), one row per key."""
    parts = []
    try:
        parts.append(pipeline.staged(name, result))
    except LookupError:  # published, or never staged
        pass
    parts.append(pipeline.table(name))
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[-1]
    return frame.drop_duplicates(key, keep="first", ignore_index=True)


def month_view(case: corpus.Case, pipeline: Pipeline, result) -> View:
    quarantine = _published_and_staged(pipeline, result, "qa_core.audits_quarantine",
                                       ["month", "input", "source_file", "row_number"])
    log = _published_and_staged(pipeline, result, "qa_core.ingest_log", ["month", "input", "source_file"])
    clean = Counter()
    if log is not None and len(log):
        month_log = _month_rows(log, case.month)
        for f, n in zip(month_log["source_file"], month_log["rows_clean"], strict=True):
            clean[f] = int(n) if pd.notna(n) else 0
    error = None if result.success else failure_text(result)
    return View(clean, quarantine, log, error=error)


# -- judging a view -------------------------------------------------------------------------------


def judge(case: corpus.Case, built: corpus.Built, view: View, raw: Path, mode: str) -> int:
    """Assert the case's outcome on the view; the rows lost (read ≠ clean + quarantined)."""
    if case.outcome == "rejected" and mode == "month" and view.error is None:
        # the run went on (the file belongs to another month): the file is logged as rejected
        for rel in built.files:
            logged = view.log[view.log["source_file"] == rel] if view.log is not None else pd.DataFrame()
            assert len(logged) and set(logged.get("status", pd.Series(dtype=str))) == {"rejected"}, (
                f"{case.name}: {rel} is not logged as rejected: {logged.to_dict('records')}")
            for pattern in built.error:
                assert logged["reason"].astype(str).str.contains(pattern).all(), (
                    f"{case.name}: the logged reason does not match {pattern!r}: {list(logged['reason'])}")
        return 0
    if case.outcome == "rejected":
        assert view.error is not None, f"{case.name}: expected a rejection, the gate accepted the input"
        if mode == "gate":
            from qa_pipeline.domain.validation import RawInputError

            assert isinstance(view.error, RawInputError), f"{case.name}: {type(view.error).__name__}: {view.error}"
        text = str(view.error)
        for pattern in built.error:
            assert pd.Series([text]).str.contains(pattern, regex=True).iloc[0], (
                f"{case.name}: the error does not match {pattern!r}: {text[:600]}")
        return 0
    if mode == "gate" and view.error is not None:
        raise AssertionError(f"{case.name}: the gate failed: {type(view.error).__name__}: {view.error}")
    if case.outcome == "ignored":
        assert view.log is not None and "status" in view.log.columns, (
            f"{case.name}: qa_core.ingest_log has no status column (columns: "
            f"{[] if view.log is None else list(view.log.columns)})")
        for rel in built.ignored:
            logged = view.log["source_file"].astype(str)
            hits = view.log[[rel == f or rel.startswith(f.rstrip("/") + "/") for f in logged]]  # the file or its folder
            assert len(hits), f"{case.name}: {rel} is not in the ingest log"
            assert set(hits["status"]) == {"ignored"}, f"{case.name}: {rel}: {hits.to_dict('records')}"
            assert hits["reason"].fillna("").str.len().gt(0).all(), f"{case.name}: {rel} logged without a reason"
            assert not view.quarantine["source_file"].astype(str).str.endswith(rel).any()
            assert view.clean.get(rel, 0) == 0
        return 0

    lost = 0
    q = view.quarantine
    for rel in built.files:
        n = corpus.count_rows(raw / rel)
        mine = q[q["source_file"] == rel] if len(q) else q
        clean, quarantined = view.clean.get(rel, 0), len(mine)
        lost += abs(n - clean - quarantined)
        assert n == clean + quarantined, (
            f"{case.name}: {rel}: {n} rows in the file, {clean} clean + {quarantined} quarantined")
        if view.log is not None and len(view.log):
            row = view.log[view.log["source_file"] == rel]
            if len(row) > 1:  # a snapshot input is logged by every month's run
                row = _month_rows(row, case.month)
            assert len(row) == 1, f"{case.name}: {rel} has {len(row)} ingest log rows for {case.month}"
            row = row.iloc[0]
            assert (int(row.rows_read), int(row.rows_clean), int(row.rows_quarantined)) == (n, clean, quarantined), (
                f"{case.name}: {rel}: ingest log says read {row.rows_read}, clean {row.rows_clean}, "
                f"quarantined {row.rows_quarantined}; counted {n} = {clean} + {quarantined}")
        if len(mine):
            assert set(mine["input"]) == {corpus.input_of(rel)}, f"{case.name}: input {set(mine['input'])}"
        expected_rows = {row for (f, row) in built.quarantined if f == rel}
        got_rows = set(mine["row_number"].astype(int)) if len(mine) else set()
        assert got_rows == expected_rows, (
            f"{case.name}: {rel}: quarantined rows {sorted(got_rows)}, expected {sorted(expected_rows)}; "
            f"rules: {mine[['row_number', 'rules']].to_dict('records') if len(mine) else []}")
        for (f, row), rules in built.quarantined.items():
            if f != rel:
                continue
            got = mine[mine["row_number"].astype(int) == row].iloc[0]
            assert any(corpus.rule_matches(r, got["rules"]) for r in rules), (
                f"{case.name}: {rel} row {row}: rules {got['rules']!r}, expected one of {rules}")
            assert str(got["reason"]).strip(), f"{case.name}: {rel} row {row} has no reason"
            if (f, row) in built.lines:
                assert corpus.raw_record_holds(got["raw_record"], built.lines[(f, row)]), (
                    f"{case.name}: raw_record {str(got['raw_record'])[:200]!r} is not the line")
    return lost


def record_case(case, mode, ok, lost=0, detail=""):
    detail = detail.split("\nassert ")[0]  # the message, without pytest's explanation of the assert
    summary.record("case", case.name, mode=mode, expected=case.outcome, input=case.input, ok=ok,
                   rows_lost=lost, detail=detail[:2000])
