"""The publication deadline (the month just ended published by the 3rd at 12:00 UTC), on Dagster's
test clock: the check passes before the deadline and once the month is published, fails after the
deadline while it is not, and its failure is mailed like a failed run."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from qa_pipeline.operations import alerts
from qa_pipeline.operations.freshness import PUBLICATION_ASSETS
from qa_pipeline_tests.test_alerts import configure, smtp_server  # noqa: F401  (the SMTP server fixture)

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def deadline():
    from qa_pipeline.definitions import defs, publication_deadline, resources

    return defs, publication_deadline, resources


def publish(instance, month: str) -> None:
    for asset in PUBLICATION_ASSETS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=f"{month}-01"))


def evaluate(deadline, instance, now: datetime, tmp_path):
    from qa_pipeline.assets.publication import (
        cross_month_publication,
        month_publication,
    )
    from qa_pipeline.settings import Settings

    _, checks, resources = deadline
    settings = Settings(raw_dir=tmp_path / "raw", warehouse_url=f"duckdb:///{tmp_path}/wh.duckdb",
                        reports_dir=tmp_path / "reports", dagster_home=tmp_path / "home")
    with freeze_time(now):
        result = dg.materialize([month_publication, cross_month_publication, *checks], instance=instance,
                                selection=dg.AssetSelection.checks(*checks), resources=resources(settings))
    return result, {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def test_the_month_just_ended_is_due_on_the_3rd_at_noon(deadline, tmp_path):
    with dg.instance_for_test() as instance:
        publish(instance, "2026-09")
        # 3 November, 11:59: the last deadline passed was 3 October's, for September: published
        _, before = evaluate(deadline, instance, datetime(2026, 11, 3, 11, 59, tzinfo=UTC), tmp_path)
        assert set(before) == set(PUBLICATION_ASSETS) and all(e.passed for e in before.values())
        # 12:01: October is due and not published — both publications fail, with ERROR severity
        result, after = evaluate(deadline, instance, datetime(2026, 11, 3, 12, 1, tzinfo=UTC), tmp_path)
        assert result.success  # the check blocks nothing
        for e in after.values():
            assert not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
            assert "2026-10-01" in e.description
            assert e.metadata["dagster/latest_cron_tick_timestamp"].value == datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp()
        # October published late on the 4th: fresh again until the next deadline (3 December, 12:00)
        publish(instance, "2026-10")
        _, late = evaluate(deadline, instance, datetime(2026, 11, 4, 9, 0, tzinfo=UTC), tmp_path)
        assert all(e.passed for e in late.values())
        assert late["month_publication"].metadata["dagster/fresh_until_timestamp"].value == \
            datetime(2026, 12, 3, 12, tzinfo=UTC).timestamp()


def test_an_overdue_month_is_mailed(deadline, tmp_path, smtp_server, monkeypatch):  # noqa: F811
    mode, port, inbox = smtp_server
    configure(monkeypatch, mode, port)
    with dg.instance_for_test() as instance:
        publish(instance, "2026-09")
        result, _ = evaluate(deadline, instance, datetime(2026, 11, 3, 12, 1, tzinfo=UTC), tmp_path)
        run = instance.get_run_by_id(result.run_id)
        success = next(e for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS))
        context = dg.build_run_status_sensor_context(
            sensor_name="check_failure_alerts", dagster_event=success.dagster_event, dagster_instance=instance,
            dagster_run=run)
        alerts.check_failure_alerts(context)
    assert len(inbox.messages) == 1
    mail = email.message_from_bytes(inbox.messages[0][2], policy=policy.default)
    assert mail["Subject"] == ("[qa-pipeline] 2026-10: publication overdue — "
                               "cross_month_publication:freshness_check, month_publication:freshness_check")
    body = mail.get_content().replace("\r\n", "\n")
    assert "- month_publication:freshness_check (non-blocking): " in body and "2026-10-01" in body
    assert f"/runs/{run.run_id}" in body


def test_the_deadline_is_a_visible_check_run_by_its_own_sensor(deadline):
    defs, checks, _ = deadline
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.asset_check_keys if k.name == "freshness_check"}
    assert {k.asset_key.to_user_string() for k in keys} == set(PUBLICATION_ASSETS)
    # not part of the monthly job: a month's run would tell the state of another month
    job_checks = defs.resolve_job_def("monthly_quality").asset_layer.asset_graph.asset_check_keys
    assert not keys & set(job_checks)
    sensor = defs.resolve_sensor_def("publication_deadline_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        request = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert set(request.asset_check_keys) == keys  # never evaluated: evaluate both
