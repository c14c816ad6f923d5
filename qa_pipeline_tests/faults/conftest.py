"""Fixtures of the fault suite (the summary line and `results.json`: `summary.py`)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.faults import corpus, summary


def pytest_configure(config):
    # run directly (`pytest qa_pipeline_tests/faults`), the summary plugin comes from here; under
    # `make test` it is already loaded by `-p` (and this conftest only in the xdist workers)
    if not config.pluginmanager.is_registered(summary):
        config.pluginmanager.register(summary, "qa_pipeline_tests.faults.summary")


TEST_TIMEOUT_S = int(os.environ.get("QA_FAULTS_TEST_TIMEOUT", "240"))


@pytest.fixture(autouse=True)
def _time_limit(request):
    """A fault that hangs the pipeline fails its test instead of the session (SIGALRM; the main
    thread only). Kill trials set their own, longer limit through the `faults_long` marker."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return
    limit = TEST_TIMEOUT_S * (8 if request.node.get_closest_marker("faults_long") else 1)

    def expire(signum, frame):
        raise TimeoutError(f"{request.node.name} ran for more than {limit} s (QA_FAULTS_TEST_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_base(tmp_path_factory) -> Path:
    """A small valid raw folder (read only: cases copy it)."""
    return corpus.build_base(tmp_path_factory.mktemp("fault_base") / "raw")


@pytest.fixture(scope="session")
def fault_template(tmp_path_factory, fault_base) -> Path:
    """A DuckDB warehouse with both base months published (cases copy it)."""
    folder = tmp_path_factory.mktemp("fault_template")
    pipeline = Pipeline(folder, fault_base, warehouse_url=f"duckdb:///{folder}/wh.duckdb")
    for month in corpus.BASE_MONTHS:
        result = pipeline.run(month)
        if not result.success:
            failures = [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
            pytest.fail(f"the base month {month} does not publish: {failures[:1]}")
    dispose_engines()
    return folder / "wh.duckdb"
