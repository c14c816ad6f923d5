"""The daily month-to-date early warning: the gate and the warning, nothing else, every morning.

The monthly partitions stop at the last complete month, so the month in progress has no monthly
run: nothing of it can be published early (no `audits_clean`, no monthly figures) and no monthly
publication can take rows staged by a daily run (a daily run stages nothing). This asset is
partitioned by day instead. For day D it

1. reads the raw audit files of D's month delivered so far through the gate's row-local rules
   (`domain.streaming_gate.stream_gate`, the policy catalogue included) and its duplicate rule (the
   first read of an `audit_id` is kept), read-only: the quarantine is written by the monthly run;
2. keeps the audits audited up to the end of D (so that a day re-run later sees what it saw then),
   an error being `is_error` cleared by an overturning dispute published and resolved by then;
3. computes the month's charts (`domain.early_warning`) against the baselines of the published
   months before, and
4. when its two blocking checks pass (the gate's: quarantined share within the limit, every row
   accounted for), replaces the month's month-to-date rows of `qa_reporting.early_warnings` in one
   transaction — never the month's final rows (written by the monthly run) nor a later day's.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.common import (
    QUALITY_TEAM,
    QualityConfig,
    table_metadata,
    warehouse_kind,
)
from qa_pipeline.assets.early_warning import signalled_metadata
from qa_pipeline.assets.ingest import (
    QUARANTINE_SHARE_CHECK,
    ROWS_ACCOUNTED_CHECK,
    limit_for,
)
from qa_pipeline.domain.early_warning import (
    WarningRule,
    early_warnings,
    errors_as_known,
)
from qa_pipeline.domain.months import month_start, months_back
from qa_pipeline.domain.streaming_gate import stream_gate
from qa_pipeline.domain.validation import AUDITS, POLICIES, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import raw as raw_schemas
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import PARTITIONS_START, Settings

ASSET = "early_warning_to_date"
JOB = "early_warning_daily"
daily = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
KEPT = ["audit_id", "audited_at", "decision_at", "site", "queue", "action_moderator", "action_auditor",
        "policy_moderator", "policy_auditor"]


def month_so_far(raw_store: RawStore, day: date, chunk_rows: int) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(the month's clean audits audited up to the end of `day`, the per-file gate counts, the rows
    the duplicate rule quarantines)."""
    month = month_start(day)
    catalogue = raw_store.read_single(raw_schemas.POLICY_CATALOGUE, required=False)
    codes = frozenset(run_gate(catalogue, POLICIES, month).clean["policy"]) if catalogue else None
    stream = stream_gate(raw_store.month_paths("audits", month, required=False), raw_store.root,
                         AUDITS.with_context(policies=codes), month, chunk_rows=chunk_rows)
    parts = [chunk.clean.select(KEPT).to_pandas() for chunk in stream]
    files = stream.files
    clean = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEPT)
    # the gate's duplicate rule: the first read is kept (files in name order, rows in file order)
    duplicate = clean["audit_id"].duplicated(keep="first")
    clean = clean[~duplicate]
    cut = pd.Timestamp(day + timedelta(days=1), tz="UTC")
    clean = clean[pd.to_datetime(clean["audited_at"], utc=True) < cut]
    return clean.reset_index(drop=True), files, int(duplicate.sum())


def overturned_by(warehouse: Warehouse, cut: datetime) -> set:
    """Audit ids whose latest dispute published and resolved before `cut` was overturned."""
    if not warehouse.has_table(wh.disputes.fullname):
        return set()
    d = wh.disputes
    frame = warehouse.read(sa.select(d.c.audit_id, d.c.dispute_id, d.c.resolved_at, d.c.outcome)
                           .where(d.c.resolved_at < sa.bindparam("cut", cut, d.c.resolved_at.type)))
    if frame.empty:
        return set()
    latest = frame.sort_values(["audit_id", "resolved_at", "dispute_id"]).groupby("audit_id").tail(1)
    return set(latest.loc[latest["outcome"] == "overturned", "audit_id"])


def why_not_published(warehouse: Warehouse, month: date, as_of: date) -> str | None:
    """Why month-to-date rows as of `as_of` may not replace the month's published rows: its final
    rows are published, or a later day's are; None when they may."""
    t = wh.early_warnings
    if not warehouse.has_table(t.fullname):
        return None
    have = warehouse.read(sa.select(t.c.final, t.c.as_of).where(t.c.month == sa.bindparam("m", month, sa.Date)))
    if len(have) and have["final"].fillna(False).astype(bool).any():
        return f"the final rows of {month:%Y-%m} are published (by its monthly run): they stay"
    if len(have) and pd.to_datetime(have["as_of"]).max().date() > as_of:
        return f"{month:%Y-%m} is published as of {pd.to_datetime(have['as_of']).max():%Y-%m-%d}, a later day"
    return None


def publish_month_to_date(warehouse: Warehouse, frame: pd.DataFrame, month: date, as_of: date) -> str | None:
    """Replace the month's month-to-date rows in one transaction; None when published, else why not."""
    refused = why_not_published(warehouse, month, as_of)
    if refused:
        return refused
    t = wh.early_warnings
    # a final row published meanwhile keeps its key: the INSERT fails and the transaction rolls back
    warehouse.replace_rows(t.fullname, frame, sa.and_(t.c.month == sa.bindparam("m", month, sa.Date),
                                                      sa.not_(sa.func.coalesce(t.c.final, False))))
    return None


@dg.asset(
    name=ASSET, partitions_def=daily, group_name="trends", owners=[QUALITY_TEAM],
    kinds={"pandas", "numpy", warehouse_kind()}, pool="warehouse",
    description=(
        "Month to date, for the day's month: its raw audit files so far through the gate's rules "
        "(read-only; the monthly run quarantines), the audits audited up to the end of the day, and "
        "the month's early-warning CUSUMs (site × queue, site, queue) against the published baselines "
        "of the months before — published to `qa_reporting.early_warnings` (`final` = false) when the "
        "gate's checks pass, never over the month's final rows. Publishes nothing else."
    ),
    check_specs=[
        dg.AssetCheckSpec(QUARANTINE_SHARE_CHECK, asset=ASSET, blocking=True,
                          description="quarantined share of the month's audit rows so far ≤ its limit"),
        dg.AssetCheckSpec(ROWS_ACCOUNTED_CHECK, asset=ASSET, blocking=True,
                          description="rows read (counted in each file on their own) = rows clean + quarantined"),
    ],
)
def early_warning_to_date(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                          quality_config: QualityConfig):
    day = date.fromisoformat(context.partition_key)
    month = month_start(day)
    t = quality_config.thresholds()
    settled = why_not_published(warehouse, month, day)
    if settled:  # nothing this run could publish: the gate is not read
        context.log.info(f"{month:%Y-%m} as of {day}: nothing to do: {settled}")
        yield dg.MaterializeResult(metadata={"published": dg.MetadataValue.bool(False),
                                             "not_published_because": dg.MetadataValue.text(settled),
                                             "as_of": dg.MetadataValue.text(day.isoformat())})
        for name in (QUARANTINE_SHARE_CHECK, ROWS_ACCOUNTED_CHECK):
            yield dg.AssetCheckResult(check_name=name, passed=True, description=f"not evaluated: {settled}",
                                      metadata={"evaluated": dg.MetadataValue.bool(False)})
        return
    audits, files, duplicates = month_so_far(raw_store, day, Settings.from_env().gate_chunk_rows)
    n_read = int(files["rows_read"].sum()) if len(files) else 0
    n_quarantined = (int(files["rows_quarantined"].sum()) if len(files) else 0) + duplicates
    share = n_quarantined / n_read if n_read else 0.0
    limit = limit_for(quality_config, AUDITS.name)
    counted = files["rows_clean"] + files["rows_quarantined"] if len(files) else pd.Series(dtype="int64")
    broken = files[files["rows_read"] != counted] if len(files) else files
    share_ok, rows_ok = share <= limit, broken.empty

    cut = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    overturned = overturned_by(warehouse, cut)
    audits = audits.assign(is_error=errors_as_known(audits, overturned))
    history = warehouse.read_table("qa_reporting.quality_metrics", months=months_back(month, t.early_warning_months)[1:])
    frame = early_warnings(audits, history, month, WarningRule.from_thresholds(t), as_of=day, final=False)
    if share_ok and rows_ok:
        refused = publish_month_to_date(warehouse, frame, month, day)
    else:
        refused = "a blocking check of the gate failed"
    if refused:
        context.log.warning(f"{month:%Y-%m} as of {day}: not published: {refused}")
    yield dg.MaterializeResult(metadata={
        **table_metadata("qa_reporting.early_warnings", frame,
                         ["dimension", "segment", "audits_to_date", "errors_to_date", "cusum_max", "threshold", "first_signal_date"],
                         signalled=int(frame["signalled"].sum()), audits_so_far=len(audits)),
        **signalled_metadata(frame),
        "published": dg.MetadataValue.bool(refused is None),
        "not_published_because": dg.MetadataValue.text(refused or ""),
        "as_of": dg.MetadataValue.text(day.isoformat()),
    })
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_SHARE_CHECK, passed=bool(share_ok), severity=dg.AssetCheckSeverity.ERROR,
        description=f"audits of {month:%Y-%m} so far: {share:.2%} of {n_read} rows quarantined "
                    f"({'within' if share_ok else 'above'} the {limit:.2%} limit)",
        metadata={"quarantined_share": dg.MetadataValue.float(share), "limit": dg.MetadataValue.float(limit),
                  "rows_read": dg.MetadataValue.int(n_read), "rows_quarantined": dg.MetadataValue.int(n_quarantined)})
    yield dg.AssetCheckResult(
        check_name=ROWS_ACCOUNTED_CHECK, passed=bool(rows_ok), severity=dg.AssetCheckSeverity.ERROR,
        description=("rows read = rows clean + rows quarantined in every file" if rows_ok else
                     "rows read ≠ clean + quarantined in " + ", ".join(broken["source_file"].head(5))),
        metadata={"files": dg.MetadataValue.int(len(files))})


early_warning_daily_job = dg.define_asset_job(
    JOB, selection=[ASSET], partitions_def=daily,
    description="Month to date: the gate (read-only) and the early warning of the day's month; no report.",
)
early_warning_daily_schedule = dg.build_schedule_from_partitioned_job(
    early_warning_daily_job, hour_of_day=7, minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 07:00 UTC: the early warning of the month so far, as of the day before.",
)
assets = [early_warning_to_date]
