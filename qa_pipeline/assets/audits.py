"""`qa_core.audits_clean`: validated audits, enriched, one partition per month."""

import dagster as dg
import pandas as pd

from qa_pipeline.assets.common import (
    monthly_asset,
    partition_month,
    table_metadata,
)
from qa_pipeline.domain.enrich import enrich_audits
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

PREVIEW = ["audit_id", "site", "queue", "moderator_id", "error_type", "policy", "tenure_band",
           "is_error_final"]


@monthly_asset(
    group="audits",
    kinds={"pandas"},
    description=(
        "One row per valid QA audit of the month, with is_error, error_type, is_critical, the "
        "policy at stake, tenure at decision time and the dispute outcome (`is_error_final`). "
        "Restricted: person-level, raw comments."
    ),
)
def audits_clean(context: dg.AssetExecutionContext, validated_audits: pd.DataFrame,
                 roster: pd.DataFrame, disputes: pd.DataFrame, warehouse: Warehouse) -> dg.MaterializeResult:
    month = partition_month(context)
    frame = enrich_audits(validated_audits, roster, month, disputes)
    warehouse.replace_partition("qa_core.audits_clean", frame, month)
    errors = int(frame["is_error_final"].sum())
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_core.audits_clean", frame, PREVIEW,
        audits=len(frame), errors=errors,
        accuracy=1 - errors / len(frame) if len(frame) else None,
        not_on_roster=int(frame["tenure_band"].eq("unknown").sum()),
        overturned_by_dispute=int(frame["dispute_outcome"].eq("overturned").sum()),
    ))


def read_month(warehouse: Warehouse, month) -> pd.DataFrame:
    """The published audits of one month."""
    return warehouse.read_table(wh.audits_clean.fullname, months=[month])
