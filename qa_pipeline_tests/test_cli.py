"""The README's commands as a user runs them: subprocesses, a persistent instance, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update({
        "QA_RAW_DIR": str(tmp_path / "raw"),
        "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh/qa.duckdb",
        "QA_REPORTS_DIR": str(tmp_path / "reports"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    })
    env.update(extra)
    return env


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa_pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_generate_run_and_validate_from_the_command_line(tmp_path):
    env = _env(tmp_path)
    gen = _cli(env, "generate", "--months", "2026-01..2026-02", "--audits-per-month", "600", "--seed", "3")
    assert gen.returncode == 0, gen.stderr
    assert (tmp_path / "raw" / "audits" / "2026-02").is_dir()

    run = _cli(env, "run", "--month", "2026-01..2026-02")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2026-01: ok" in run.stdout and "2026-02: ok" in run.stdout
    assert "2026-02 · quality_metrics ·" in run.stderr  # progress: month, step, rows

    # the runs are in the persistent instance, so the UI shows them
    import dagster as dg

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert {r.tags["dagster/partition"] for r in runs} == {"2026-01-01", "2026-02-01"}
            assert all(r.is_success for r in runs)
    finally:
        del os.environ["DAGSTER_HOME"]

    val = _cli(env, "validate", "--month", "2026-02")
    assert val.returncode == 0, val.stderr
    assert "quarantined rows by rule:" in val.stdout
    assert "audit_id:published_earlier" not in val.stdout  # Feb's own ids are not "earlier"


def test_a_failed_gate_exits_non_zero_and_says_why(tmp_path):
    env = _env(tmp_path)
    assert _cli(env, "generate", "--months", "2026-03", "--audits-per-month", "400").returncode == 0
    strict = _env(tmp_path, QA_MAX_INVALID_FRACTION="0.0001")
    run = _cli(strict, "run", "--month", "2026-03", "--quiet")
    assert run.returncode == 1
    assert "blocking check validated_audits:quarantined_share_within_limit failed" in run.stdout
    assert "above the 0.01% limit" in run.stdout
    assert "nothing was published for 2026-03: the previous version stays published" in run.stdout
    assert "staged table(s) stay readable in qa_staging (*__202603__" in run.stdout
    val = _cli(strict, "validate", "--month", "2026-03")
    assert val.returncode == 1


def test_a_missing_month_fails_with_the_folder_named(tmp_path):
    env = _env(tmp_path)
    assert _cli(env, "generate", "--months", "2026-03", "--audits-per-month", "300").returncode == 0
    run = _cli(env, "run", "--month", "2026-04", "--quiet")
    assert run.returncode == 1
    assert "no audits file for 2026-04" in run.stdout
