"""Three consecutive runs of a month give identical tables (run-specific columns aside)."""

from __future__ import annotations

from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.faults import corpus, summary, tables
from qa_pipeline_tests.faults.tables import copy_warehouse


def test_three_consecutive_runs_give_identical_tables(fault_base, fault_template, tmp_path):
    url = copy_warehouse(fault_template, tmp_path / "wh")
    db = tmp_path / "wh" / fault_template.name
    pipeline = Pipeline(tmp_path, fault_base, warehouse_url=url)
    snaps, problems = [], []
    try:
        for i in range(3):
            result = pipeline.run(corpus.MONTH)
            dispose_engines()
            if not result.success:
                problems.append(f"run {i + 1} failed")
                break
            snaps.append(tables.canonical(tables.snapshot(db), exact=True))
        for i in range(1, len(snaps)):
            problems += [f"run {i} vs run {i + 1}: {d}" for d in tables.diff(snaps[i - 1], snaps[i])]
        if snaps:
            assert {"qa_core.audits_clean", "qa_reporting.quality_metrics"} <= set(snaps[0])
    finally:
        summary.record("repeat", "three consecutive runs identical", ok=not problems, detail="; ".join(problems)[:2000])
    assert not problems, "\n".join(problems)
