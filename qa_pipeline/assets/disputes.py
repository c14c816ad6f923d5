"""Disputes: validated, folded into audits_clean, and summarised."""

import dagster as dg
import pandas as pd

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    monthly_asset,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.ingest import combine_gates, stage_gate
from qa_pipeline.domain import disputes as dispute_logic
from qa_pipeline.domain.months import month_start
from qa_pipeline.domain.validation import DISPUTES, SOURCE_FILE, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse


def validated_disputes(raw_store: RawStore, attempt: Attempt | None = None) -> pd.DataFrame:
    """Every dispute folder on disk through the gate (each folder against its own month). A
    dispute id already read in an earlier folder is quarantined there, like a repeated audit id.
    With an attempt, the quarantine and ingest log of every folder are staged (input `disputes`)."""
    frames, gates, seen = [], [], pd.Series(dtype="str")
    for folder in raw_store.available_months("disputes"):
        folder_month = month_start(folder)
        gate = run_gate(raw_store.read_month("disputes", folder_month, required=False), DISPUTES, folder_month,
                        published_ids=seen)
        seen = pd.concat([seen, gate.clean["dispute_id"].astype("str")], ignore_index=True)
        gates.append(gate)
        frames.append(gate.clean.assign(month=pd.Timestamp(folder_month)))
    if attempt is not None:
        stage_gate(attempt, combine_gates(gates), DISPUTES.name, scope="input")
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in
                             ["month", "dispute_id", "audit_id", "disputed_at", "resolved_at", "reason",
                              "outcome", SOURCE_FILE]})
    return pd.concat(frames, ignore_index=True)


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    description=(
        "Every resolved dispute known at run time (`disputes/YYYY-MM/*.csv`, folder month = month "
        "of resolved_at), validated folder by folder. Re-running an earlier month therefore picks "
        "up disputes resolved since, which is how a month is restated. Rewrites `qa_core.disputes`."
    ),
)
def disputes(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    frame = validated_disputes(raw_store, attempt)
    attempt.write("qa_core.disputes", frame, scope="whole")
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_core.disputes", frame, ["month", "dispute_id", "audit_id", "outcome"],
        overturned=int(frame["outcome"].eq("overturned").sum()),
    ))


@monthly_asset(
    group="disputes",
    kinds={"sql", "ibis", "pandas"},
    deps=[audits_clean],
    description=(
        "Dispute and overturn rates of the month's audits, overall and per site, queue and auditor "
        "(a high overturn rate is a grader-quality signal), and the audits restated: overturned by "
        "a dispute resolved after the month ended."
    ),
)
def dispute_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    counts = warehouse.execute(dispute_logic.dispute_counts(month_audits(attempt, month), month))
    frame = dispute_logic.dispute_metrics(counts, month)
    attempt.write("qa_reporting.dispute_metrics", frame)
    overall = frame[frame.dimension == "overall"]
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.dispute_metrics", frame,
        ["dimension", "segment", "audits", "disputed", "overturned", "overturn_rate"],
        dispute_rate=float(overall.dispute_rate.iloc[0]) if len(overall) else None,
        overturn_rate=float(overall.overturn_rate.iloc[0]) if len(overall) else None,
        restated_audits=int(overall.restated_audits.iloc[0]) if len(overall) else 0,
    ))
