"""The publication deadline: the month just ended must be published by the 3rd at 12:00 UTC.

Dagster's time-partition freshness check on both publication assets (`month_publication`, then
`cross_month_publication`): from the deadline's cron tick (`QA_PUBLISH_DEADLINE_CRON`, default
`0 12 3 * *`, UTC) on, it expects a materialization of the last partition that had ended by then —
on the 3rd at 12:00, the month just ended. It is an ERROR-severity check that blocks nothing: the UI
shows it on both assets, and `check_failure_alerts` tells its failure like a failed run
("publication overdue", with the month).

`publication_deadline_sensor` runs it: when it has never run, once its last pass may have expired
(the next deadline tick), and again after a failure only once the asset was materialized. A run of
the month's job runs it too (it targets the publication assets), so a late publication turns it green.
"""

from __future__ import annotations

import warnings

import dagster as dg

from qa_pipeline.settings import Operations

PUBLICATION_ASSETS = ("month_publication", "cross_month_publication")
SENSOR_NAME = "publication_deadline_sensor"


def publication_deadline_checks() -> list[dg.AssetChecksDefinition]:
    with warnings.catch_warnings():  # superseded by FreshnessPolicy, which is not an asset check (no alert hook)
        warnings.simplefilter("ignore")
        return list(dg.build_time_partition_freshness_checks(
            assets=[dg.AssetKey(a) for a in PUBLICATION_ASSETS],
            deadline_cron=Operations.from_env().publish_deadline_cron,
            timezone="UTC",
            severity=dg.AssetCheckSeverity.ERROR,
        ))


def publication_deadline_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=Operations.from_env().freshness_sensor_interval_seconds,
            name=SENSOR_NAME,
            default_status=dg.DefaultSensorStatus.RUNNING,
            tags={"qa/launched_by": SENSOR_NAME},
        )
