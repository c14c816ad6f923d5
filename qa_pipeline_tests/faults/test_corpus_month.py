"""A representative subset of the corpus (every input, every outcome class, and the cases whose rule
needs another input or the file listing) through a Dagster materialization of the whole month, on a
copy of a warehouse where both base months are already published: what lands in
`qa_core.audits_quarantine` and `qa_core.ingest_log`, and whether the month publishes."""

from __future__ import annotations

import shutil
from collections import Counter

import pandas as pd
import pytest

from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.faults import corpus
from qa_pipeline_tests.faults.runs import (
    crashed_steps,
    failure_text,
    judge,
    month_view,
    record_case,
)
from qa_pipeline_tests.faults.tables import copy_warehouse

AFTER = {}


def after(name):
    def register(fn):
        AFTER[name] = fn
        return fn
    return register


@after("values_intact")
def _values_intact(case, built, pipeline, result):
    clean = pipeline.table("qa_core.audits_clean")
    for audit_id, value in built.values.items():
        got = clean.loc[clean.audit_id == audit_id, "auditor_comment"]
        assert list(got) == [value], f"{audit_id}: {list(got)!r}"


@after("other_month_blocked")
def _other_month_blocked(case, built, pipeline, result):
    feb = pipeline.run("2026-02")
    assert not feb.success, "February's run publishes although its disputes folder holds a file without `outcome`"
    text = failure_text(feb)
    for pattern in built.error:
        assert pd.Series([text]).str.contains(pattern).iloc[0], f"February's failure does not match {pattern!r}: {text[:600]}"


@after("block_names_file")
def _block_names_file(case, built, pipeline, result):
    text = failure_text(result)
    for pattern in built.error:
        assert pd.Series([text]).str.contains(pattern).iloc[0], (
            f"the month stopped without naming {pattern!r}: {text[:600]}")


@after("pcodes_session_published")
def _pcodes_session(case, built, pipeline, result):
    agreement = pipeline.table("qa_reporting.calibration_agreement")
    assert "FC-PCODES" in set(agreement.session_id), "the session coded P1…P5 is not published"


@after("no_step_crashed")
def _no_crash(case, built, pipeline, result):
    assert crashed_steps(result) == [], failure_text(result)[:1500]


@pytest.mark.parametrize("case", corpus.by_mode("month"), ids=lambda c: c.name)
def test_case_through_a_month_run(case, fault_base, fault_template, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(fault_base, raw)
    built = case.build(raw)
    pipeline = Pipeline(tmp_path, raw, warehouse_url=copy_warehouse(fault_template, tmp_path / "wh"))
    lost = 0
    try:
        before = len(pipeline.table("qa_core.publications"))
        result = pipeline.run(case.month)
        assert result.success == case.publishes, (
            f"{case.name}: the month {'published' if result.success else 'did not publish'}, expected "
            f"{'it to' if case.publishes else 'it not to'}: {failure_text(result)[:1500]}")
        after_pubs = len(pipeline.table("qa_core.publications"))
        if result.success:
            assert after_pubs > before, f"{case.name}: the run succeeded and published nothing"
        elif case.input not in ("policy_changes", "experiments", "assignments"):
            # the month's own figures read these inputs: nothing of the month is published (the other
            # three feed only the figures that read other months, published in a second transaction)
            assert after_pubs == before, f"{case.name}: publications {before} → {after_pubs} although the run failed"
        lost = judge(case, built, month_view(case, pipeline, result), raw, "month")
        if case.outcome != "rejected" and result.success and case.input == "audits":
            clean = pipeline.table("qa_core.audits_clean")
            per_file = Counter(clean.loc[clean.month.astype(str).str[:7] == case.month, "source_file"])
            for rel in built.files:
                log_clean = month_view(case, pipeline, result).clean.get(rel, 0)
                assert per_file.get(rel, 0) == log_clean, f"{rel}: audits_clean {per_file.get(rel, 0)}, log {log_clean}"
        if case.after:
            AFTER[case.after](case, built, pipeline, result)
    except Exception as exc:
        record_case(case, "month", False, lost,
                detail=str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        dispose_engines()
    record_case(case, "month", True, lost)
