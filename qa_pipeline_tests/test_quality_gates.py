"""GX suites as blocking asset checks: a broken expectation stops the downstream asset."""

from __future__ import annotations

import dataclasses

from qa_pipeline.schemas import expectations as gx_suites


def _checks(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_every_published_table_has_a_passing_suite(pipeline):
    result = pipeline.run("2026-02")
    assert result.success
    checks = _checks(result)
    gx = {k: v for k, v in checks.items() if k[1].startswith("gx_")}
    assert len(gx) == 12
    assert all(e.passed for e in gx.values()), [k for k, e in gx.items() if not e.passed]
    assert (pipeline.tmp / "reports" / "data_docs" / "index.html").exists()


def test_a_broken_expectation_fails_its_check_and_blocks_downstream(pipeline, monkeypatch):
    broken = dataclasses.replace(gx_suites.SUITES["qa_reporting.quality_metrics"],
                                 rates=["accuracy", "audits"])  # audits are counts, never within [0, 1]
    monkeypatch.setitem(gx_suites.SUITES, "qa_reporting.quality_metrics", broken)
    result = pipeline.run("2026-02")
    assert not result.success
    check = _checks(result)[("quality_metrics", "gx_quality_metrics")]
    assert not check.passed
    assert "column=audits" in check.metadata["failed_expectations"].value
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "quality_metrics" in materialized
    assert "error_trends" not in materialized  # downstream of the failed blocking check


def test_a_volume_warning_does_not_block(pipeline, monkeypatch):
    assert pipeline.run("2026-01").success
    original = gx_suites.expectations

    def tight_volume(suite, trailing_rows):
        return original(suite, [r * 10 for r in trailing_rows])  # history says 10× the rows

    monkeypatch.setattr(gx_suites, "expectations", tight_volume)
    result = pipeline.run("2026-02")
    assert result.success
    check = _checks(result)[("audits_clean", "gx_audits_clean")]
    assert not check.passed and check.severity.value == "WARN"
    assert "expect_table_row_count_to_be_between" in check.metadata["failed_expectations"].value
