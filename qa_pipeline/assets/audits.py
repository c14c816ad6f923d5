"""`qa_core.audits_clean`: validated audits, enriched inside the engine, one partition per month."""

import dagster as dg
import ibis

from qa_pipeline.assets.common import (
    monthly_asset,
    run_attempt,
    table_metadata,
)
from qa_pipeline.domain.enrich import enrich_audits
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse

PREVIEW = ["audit_id", "site", "queue", "moderator_id", "error_type", "policy", "tenure_band",
           "is_error_final"]


@monthly_asset(
    group="audits",
    kinds={"sql", "ibis"},
    deps=["validated_audits", "roster", "disputes"],
    description=(
        "One row per valid QA audit of the month, with is_error, error_type, is_critical, the "
        "policy at stake, tenure at decision time and the dispute outcome (`is_error_final`), "
        "computed in the warehouse (INSERT … SELECT over the staged rows, the roster and the "
        "disputes). Restricted: person-level, raw comments."
    ),
)
def audits_clean(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    rows = enrich_audits(attempt.staged("qa_staging.validated_audits"), attempt.staged("qa_staging.roster_snapshot"),
                         attempt.table("qa_core.disputes"), attempt.month)
    staged = attempt.write_query("qa_core.audits_clean", rows)
    t = attempt.staged("qa_core.audits_clean")
    summary = warehouse.execute(t.aggregate(
        audits=t.count(), errors=t.count(where=t.is_error_final),
        not_on_roster=t.count(where=t.tenure_band == "unknown"),
        overturned_by_dispute=t.count(where=t.dispute_outcome == "overturned"),
    )).iloc[0].fillna(0)
    audits, errors = int(summary.audits), int(summary.errors)
    return dg.MaterializeResult(metadata={
        **table_metadata("qa_core.audits_clean", warehouse.execute(t.select(*PREVIEW).limit(5)), PREVIEW,
                         audits=audits, errors=errors, accuracy=1 - errors / audits if audits else None,
                         not_on_roster=int(summary.not_on_roster),
                         overturned_by_dispute=int(summary.overturned_by_dispute)),
        "dagster/row_count": dg.MetadataValue.int(audits),
        "staged_as": dg.MetadataValue.text(f"{staged.schema}.{staged.name}"),
    })


def month_audits(attempt: Attempt, month) -> ibis.Table:
    """The audits of one month as this run sees them, as an ibis table (nothing is read yet)."""
    t = attempt.table("qa_core.audits_clean")
    return t.filter(t.month == month)
