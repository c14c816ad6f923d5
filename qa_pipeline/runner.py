"""Run months through Dagster on the persistent instance (`DAGSTER_HOME`), as the CLI does.

Runs go through `execute_job`, so they are recorded in the instance and visible in the UI, and
the executor chosen in `definitions.py` applies (in-process by default, multiprocess on demand).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from qa_pipeline import hygiene
from qa_pipeline.domain.months import month_key, month_start, partition_key
from qa_pipeline.progress import failure_message, is_check_failure
from qa_pipeline.settings import Settings

EMBEDDED_INSTANCE_YAML = """\
# Embedded default: SQLite storage under this folder. See dagster.postgres.yaml in the project
# root for the production instance on PostgreSQL.
telemetry:
  enabled: false
# DuckDB allows one writing process: runs (a schedule tick may request several months) queue
# and go one at a time.
concurrency:
  runs:
    max_concurrent_runs: 1
# Runs launched by the daemon (schedule, sensors, backfills): a run that does not start, or runs
# longer than its `dagster/max_runtime` tag (the monthly job sets it), is marked failed instead of
# staying STARTED. Runs of the CLI are checked by the CLI itself at its next start.
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  poll_interval_seconds: 60
"""


def ensure_dagster_home(settings: Settings) -> Path:
    """Create the instance folder with a minimal dagster.yaml, and point DAGSTER_HOME at it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass
class MonthOutcome:
    month: str
    success: bool
    run_id: str
    failures: list[str] = field(default_factory=list)
    refresh: bool = False
    """A refresh of a later month (only the assets that read the months just run)."""


DEADLINE_CHECKS = {"freshness_check"}
"""Dagster's time-partition freshness check (`operations.freshness`) on the publication assets."""


def _failure_reasons(result) -> list[str]:
    reasons = []
    for event in result.all_events:
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            ev = event.event_specific_data
            if ev.check_name in DEADLINE_CHECKS:
                # the publication deadline is about the latest month, not the month this run computes: a
                # refresh of an old month evaluates it too (Dagster adds an asset's checks to a subset),
                # and its own sensor and alerts tell when it fails
                continue
            if ev.severity.value == "ERROR":
                kind = "blocking check" if ev.blocking is not False else "check (not blocking)"
                reasons.append(f"{kind} {ev.asset_key.to_user_string()}:{ev.check_name} "
                               f"failed: {ev.description or ''}".strip())
        elif kind == "STEP_FAILURE" and not is_check_failure(event):  # a failed check is reported above
            reasons.append(f"step {event.step_key} failed: {failure_message(event)}")
    return reasons


def run_month(month: str, settings: Settings | None = None, progress: bool = True,
              assets: list[str] | None = None, tags: dict[str, str] | None = None) -> MonthOutcome:
    """Materialize the monthly assets for one month (all of them, or `assets`); never raises on a
    failed step."""
    import dagster as dg

    settings = settings or Settings.from_env()
    ensure_dagster_home(settings)
    from qa_pipeline import definitions

    run_config = {"loggers": {"qa_progress": {}}} if progress else {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(definitions.monthly_job),
            instance=instance,
            run_config=run_config,
            tags={"dagster/partition": partition_key(month), "qa/launched_by": "qa-pipeline cli",
                  **hygiene.process_tags(), **(tags or {})},
            asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
        )
        failures = _failure_reasons(result)
        if not result.success:
            failures.append(_unpublished(month, result.run_id, settings))
            from qa_pipeline.operations.alerts import alert_cli_failure

            alert_cli_failure(result, say=failures.append)  # when QA_ALERT_SMTP_HOST / QA_SLACK_WEBHOOK_URL is set
        return MonthOutcome(month=month_key(month_start(month)), success=result.success,
                            run_id=result.run_id, failures=failures, refresh=bool(assets))


def run_months(months: list[str], settings: Settings | None = None, progress: bool = True,
               say=print) -> list[MonthOutcome]:
    """Run `months` in month order, then refresh every later published month that reads one of them
    (declared partition mappings, `qa_pipeline.refresh`), in month order, saying which and why.

    A month whose run failed leaves its previous version published and refreshes nothing: no month is
    computed from a neighbour that failed its gate. Holds the warehouse for the whole time on DuckDB
    (one writing process): a second `qa-pipeline run` says in one line who holds it."""
    settings = settings or Settings.from_env()
    ensure_dagster_home(settings)
    with hygiene.warehouse_hold(settings, f"qa-pipeline run --month {','.join(months)}"):
        for line in hygiene.fail_dead_runs():
            say(line)
        outcomes = []
        for month in sorted(months, key=lambda m: month_start(m)):
            outcomes.append(run_month(month, settings, progress))
            say_outcome(outcomes[-1], say)
        outcomes += refresh_later_months(outcomes, settings, progress, say)
    return outcomes


def say_outcome(outcome: MonthOutcome, say) -> None:
    status = "ok" if outcome.success else "FAILED"
    kind = " (refresh)" if outcome.refresh else ""
    say(f"{outcome.month}{kind}: {status} (run {outcome.run_id[:8]})")
    for reason in outcome.failures:
        say(f"  - {reason}")


def refresh_later_months(outcomes: list[MonthOutcome], settings: Settings, progress: bool, say) -> list[MonthOutcome]:
    """The refresh runs that follow the months just run (only those that published)."""
    from qa_pipeline import definitions
    from qa_pipeline.refresh import published_months, refreshes
    from qa_pipeline.resources.warehouse import Warehouse

    ran = {month_start(o.month) for o in outcomes}
    restated = [month_start(o.month) for o in outcomes if o.success]
    failed = [o.month for o in outcomes if not o.success]
    graph = definitions.defs.resolve_asset_graph()
    warehouse = Warehouse(url=settings.warehouse_url)
    published = published_months(warehouse)
    if failed:
        blocked = refreshes(graph, [month_start(m) for m in failed], published, skip=ran)
        if blocked:
            say(f"not refreshed: {', '.join(month_key(r.month) for r in blocked)} read {', '.join(failed)}, whose run "
                "failed (they keep reading its last published version; re-run it to refresh them)")
    todo = refreshes(graph, restated, published, skip=ran)
    if not todo:
        return []
    say(f"refreshing {len(todo)} later published month(s) that read the month(s) just run:")
    for r in todo:
        say(f"  {r.describe()}")
    done = []
    for r in todo:
        outcome = run_month(month_key(r.month), settings, progress, assets=sorted(r.assets),
                            tags={"qa/refresh_of": ",".join(sorted(r.reasons))})
        say_outcome(outcome, say)
        done.append(outcome)
    return done


def _unpublished(month: str, run_id: str, settings: Settings) -> str:
    """What a failed run left: the published month untouched, its own staged rows to inspect."""
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse

    attempt = Attempt(Warehouse(url=settings.warehouse_url), month_start(month), run_id)
    try:
        if attempt.was_published():
            return (f"{month_key(attempt.month)} was published by this run; what failed came after the "
                    "publication (the report)")
        staged = attempt.staged_tables()
    except Exception:  # the warehouse itself may be what failed
        staged = []
    where = (f"its {len(staged)} staged table(s) stay readable in qa_staging (*__{attempt.month:%Y%m}__{attempt.key})"
             if staged else "it staged nothing")
    return (f"nothing was published for {month_key(attempt.month)}: the previous version stays published; "
            f"{where} until a later run publishes the month")
