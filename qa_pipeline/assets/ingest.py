"""Raw inputs through the validation gate: roster and audits (contract §2, §3)."""

import dagster as dg
import pandas as pd

from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    empty_frame,
    monthly_asset,
    preview,
    run_attempt,
)
from qa_pipeline.assets.month_gate import StagedGate, stage_month_gate
from qa_pipeline.domain.validation import AUDITS, ROSTER, GateResult, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.settings import Settings

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


def _identity_check(gate: GateResult | StagedGate, asset_key: str, attempt: Attempt,
                    staged_table: str) -> dg.AssetCheckResult:
    files = gate.files
    broken = files[files.rows_read != files.rows_clean + files.rows_quarantined]
    attempt.record_check(staged_table, ROWS_ACCOUNTED_CHECK, passed=broken.empty)
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


def _gate_metadata(gate: GateResult | StagedGate) -> dict:
    if isinstance(gate, GateResult):
        gate = StagedGate(files=gate.files, rule_counts=gate.rule_counts(), sample=gate.quarantine.head(10))
    return {
        "rows_read": dg.MetadataValue.int(gate.rows_read),
        "rows_clean": dg.MetadataValue.int(gate.rows_clean),
        "rows_quarantined": dg.MetadataValue.int(gate.rows_quarantined),
        "quarantined_share": dg.MetadataValue.float(gate.quarantined_share),
        "files": dg.MetadataValue.int(len(gate.files)),
        "quarantine_by_rule": dg.MetadataValue.md(gate.rule_counts.to_markdown(index=False)),
        "quarantine_sample": preview(gate.sample, rows=10, columns=["source_file", "row_number", "rule", "reason"])
        if len(gate.sample) else dg.MetadataValue.text("no row quarantined"),
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
    yield _identity_check(gate, "roster", attempt, "qa_staging.roster_snapshot")


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
    gate = stage_month_gate(attempt, raw_store.month_paths("audits", month), raw_store.root, AUDITS,
                            chunk_rows=Settings.from_env().gate_chunk_rows)
    attempt.write("qa_core.ingest_log", gate.files, scope="input_month", scope_input=AUDITS.name)
    context.log.info(f"{month:%Y-%m}: {gate.rows_read} rows read, {gate.rows_clean} clean, "
                     f"{gate.rows_quarantined} quarantined ({gate.quarantined_share:.2%})")
    yield dg.MaterializeResult(metadata={**_gate_metadata(gate), "dagster/row_count": gate.rows_clean})
    share = gate.quarantined_share
    attempt.record_check("qa_staging.validated_audits", QUARANTINE_SHARE_CHECK, passed=share <= limit)
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_SHARE_CHECK,
        passed=bool(share <= limit),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{share:.2%} of {gate.rows_read} rows quarantined "
                     f"({'within' if share <= limit else 'above'} the {limit:.2%} limit)"),
        metadata={
            "quarantined_share": dg.MetadataValue.float(share),
            "max_invalid_fraction": dg.MetadataValue.float(limit),
            "quarantine_by_rule": dg.MetadataValue.md(gate.rule_counts.to_markdown(index=False)),
        },
    )
    yield _identity_check(gate, "validated_audits", attempt, "qa_staging.validated_audits")
