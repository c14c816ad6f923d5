"""Raw inputs through the validation gate: roster and audits (contract §2, §3)."""

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    empty_frame,
    monthly_asset,
    preview,
    run_attempt,
)
from qa_pipeline.domain.validation import AUDITS, ROSTER, GateResult, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

QUARANTINE_SHARE_CHECK = "quarantined_share_within_limit"
ROWS_ACCOUNTED_CHECK = "every_row_accounted_for"


def gate_snapshot(raw_store: RawStore, attempt: Attempt, spec, relative: str) -> GateResult | None:
    """Validate a snapshot input (`policy_changes/policy_changes.csv`, …) for a month's run and
    stage its quarantine; None when the file is absent (the input is optional)."""
    files = raw_store.read_single(relative, required=False)
    if not files:
        stage_gate(attempt, None, spec.name)
        return None
    gate = run_gate(files, spec, attempt.month)
    stage_gate(attempt, gate, spec.name)
    return gate


def combine_gates(gates: list[GateResult]) -> GateResult | None:
    """One gate result for several folders of an input (disputes: every folder on disk)."""
    if not gates:
        return None
    return GateResult(clean=pd.concat([g.clean for g in gates], ignore_index=True),
                      quarantine=pd.concat([g.quarantine for g in gates], ignore_index=True),
                      files=pd.concat([g.files for g in gates], ignore_index=True))


def stage_gate(attempt: Attempt, gate: GateResult | None, input_name: str, scope: str = "input_month") -> None:
    """Stage the gate's quarantine rows and ingest log for the input (published with the month;
    a failed attempt's rows stay readable in `qa_staging`)."""
    quarantine = gate.quarantine if gate is not None else empty_frame("qa_core.audits_quarantine")
    files = gate.files if gate is not None else empty_frame("qa_core.ingest_log")
    attempt.write("qa_core.audits_quarantine", quarantine, scope=scope, scope_input=input_name)
    attempt.write("qa_core.ingest_log", files, scope=scope, scope_input=input_name)


def _identity_check(gate: GateResult, asset_key: str) -> dg.AssetCheckResult:
    files = gate.files
    broken = files[files.rows_read != files.rows_clean + files.rows_quarantined]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=ROWS_ACCOUNTED_CHECK,
        passed=bool(broken.empty),
        severity=dg.AssetCheckSeverity.ERROR,
        description="rows read = rows clean + rows quarantined, per file",
        metadata={
            "files": dg.MetadataValue.md(files.drop(columns=["month", "file_sha256"]).to_markdown(index=False)),
            "files_out_of_balance": dg.MetadataValue.int(len(broken)),
        },
    )


def _gate_metadata(gate: GateResult) -> dict:
    q = gate.quarantine
    return {
        "rows_read": dg.MetadataValue.int(gate.rows_read),
        "rows_clean": dg.MetadataValue.int(len(gate.clean)),
        "rows_quarantined": dg.MetadataValue.int(len(q)),
        "quarantined_share": dg.MetadataValue.float(gate.quarantined_share),
        "files": dg.MetadataValue.int(len(gate.files)),
        "quarantine_by_rule": dg.MetadataValue.md(gate.rule_counts().to_markdown(index=False)),
        "quarantine_sample": preview(q, rows=10, columns=["source_file", "row_number", "rule", "reason"])
        if len(q) else dg.MetadataValue.text("no row quarantined"),
    }


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    description=(
        "The moderator roster (latest snapshot, `roster/roster.csv`) through its pandera gate. "
        "Rejected rows go to `qa_core.audits_quarantine` with input = roster; the clean roster "
        "gives tenure to the month's audits."
    ),
    check_specs=[dg.AssetCheckSpec(ROWS_ACCOUNTED_CHECK, asset="roster", blocking=True,
                                   description="rows read = rows clean + rows quarantined")],
)
def roster(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse):
    attempt = run_attempt(context, warehouse)
    gate = run_gate(raw_store.read_single("roster/roster.csv"), ROSTER, attempt.month)
    stage_gate(attempt, gate, "roster")
    attempt.write("qa_staging.roster_snapshot", gate.clean, scope="internal")
    yield dg.MaterializeResult(metadata={**_gate_metadata(gate), "dagster/row_count": len(gate.clean)})
    yield _identity_check(gate, "roster")


def published_ids_before(warehouse: Warehouse, month) -> pd.Series:
    """Audit ids already published for months before `month` (the gate quarantines them)."""
    if not warehouse.has_table("qa_core.audits_clean"):
        return pd.Series(dtype="str")
    t = wh.audits_clean
    ids = warehouse.read(sa.select(t.c.audit_id).where(t.c.month < month))
    return ids["audit_id"]


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    description=(
        "The month's raw audit files (`audits/YYYY-MM/*.csv|*.parquet`, in name order) through "
        "the validation gate. Bad rows go to `qa_core.audits_quarantine` with rule, reason, file "
        "and row; duplicates keep the first read. Blocking checks stop the month when the "
        "quarantined share exceeds `max_invalid_fraction` or a row is unaccounted for."
    ),
    check_specs=[
        dg.AssetCheckSpec(QUARANTINE_SHARE_CHECK, asset="validated_audits", blocking=True,
                          description="quarantined share of the month ≤ max_invalid_fraction"),
        dg.AssetCheckSpec(ROWS_ACCOUNTED_CHECK, asset="validated_audits", blocking=True,
                          description="rows read = rows clean + rows quarantined, per file"),
    ],
)
def validated_audits(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                     quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    limit = quality_config.thresholds().max_invalid_fraction
    gate = run_gate(raw_store.read_month("audits", month), AUDITS, month,
                    published_ids=published_ids_before(warehouse, month))
    stage_gate(attempt, gate, "audits")
    attempt.write("qa_staging.validated_audits", gate.clean.assign(month=pd.Timestamp(month)), scope="internal")
    context.log.info(f"{month:%Y-%m}: {gate.rows_read} rows read, {len(gate.clean)} clean, "
                     f"{len(gate.quarantine)} quarantined ({gate.quarantined_share:.2%})")
    yield dg.MaterializeResult(metadata={**_gate_metadata(gate), "dagster/row_count": len(gate.clean)})
    share = gate.quarantined_share
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_SHARE_CHECK,
        passed=bool(share <= limit),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{share:.2%} of {gate.rows_read} rows quarantined "
                     f"({'within' if share <= limit else 'above'} the {limit:.2%} limit)"),
        metadata={
            "quarantined_share": dg.MetadataValue.float(share),
            "max_invalid_fraction": dg.MetadataValue.float(limit),
            "quarantine_by_rule": dg.MetadataValue.md(gate.rule_counts().to_markdown(index=False)),
        },
    )
    yield _identity_check(gate, "validated_audits")
