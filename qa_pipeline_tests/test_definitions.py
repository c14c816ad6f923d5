"""What a data engineer sees in the Dagster UI: loadable definitions, described assets, schedule."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from qa_pipeline.definitions import MONTHLY_JOB, defs
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_is_described_grouped_owned_and_kinded():
    specs = list(defs.resolve_all_asset_specs())
    assert len(specs) >= 5
    for spec in specs:
        assert spec.description and len(spec.description) > 40, spec.key
        assert spec.group_name and spec.group_name != "default", spec.key
        assert spec.owners, spec.key
        assert spec.kinds, spec.key
        assert spec.partitions_def is not None, spec.key


def test_the_gate_checks_are_blocking():
    graph = defs.resolve_asset_graph()
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert checks["quarantined_share_within_limit"].blocking
    assert checks["every_row_accounted_for"].blocking


@pytest.mark.parametrize(("tick", "partition"), [
    (datetime(2026, 5, 2, 6, 0, tzinfo=UTC), "2026-04-01"),
    (datetime(2027, 1, 2, 6, 0, tzinfo=UTC), "2026-12-01"),
    (datetime(2026, 3, 2, 6, 0, tzinfo=UTC), "2026-02-01"),
])
def test_the_schedule_requests_the_month_just_ended(tmp_path, tick, partition):
    schedule = defs.resolve_schedule_def("monthly_quality_schedule")
    assert schedule.cron_schedule == "0 6 2 * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == MONTHLY_JOB
    resources = {"raw_store": RawStore(raw_dir=str(tmp_path / "raw")),
                 "warehouse": Warehouse(url=f"duckdb:///{tmp_path}/wh.duckdb")}
    with dg.build_schedule_context(scheduled_execution_time=tick, resources=resources,
                                   repository_def=defs.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    keys = [r.partition_key for r in data.run_requests]
    assert keys == [partition]
