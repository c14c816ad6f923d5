"""The corpus of malformed inputs (`corpus.CASES`) through the gate functions the month's run
calls, one case at a time, on a copy of a warehouse where both base months are published."""

from __future__ import annotations

import shutil

import pytest

from qa_pipeline_tests.faults import corpus
from qa_pipeline_tests.faults.runs import gate_view, judge, record_case


@pytest.mark.parametrize("case", corpus.by_mode("gate"), ids=lambda c: c.name)
def test_case_through_the_gate(case, fault_base, fault_template, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(fault_base, raw)
    built = case.build(raw)
    try:
        view = gate_view(case, raw, tmp_path, fault_template)
        lost = judge(case, built, view, raw, "gate")
    except Exception as exc:
        record_case(case, "gate", False, detail=str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}")
        raise
    record_case(case, "gate", True, lost)
