"""The published tables of the warehouse (data contract §5), as SQLAlchemy Core tables.

One definition serves DuckDB and PostgreSQL: the DDL, the column order of bulk loads, and the
column schema shown in the Dagster UI all come from here.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    MetaData,
    Table,
    Text,
)

metadata = MetaData()

CORE = "qa_core"
REPORTING = "qa_reporting"


def _table(schema: str, name: str, *columns: Column, comment: str) -> Table:
    return Table(name, metadata, *columns, schema=schema, comment=comment)


def _c(name: str, type_, comment: str = "") -> Column:
    return Column(name, type_, comment=comment or None)


def _rate(name: str, comment: str = "") -> Column:
    return Column(name, Double, comment=comment or None)


MONTH = "month"


def _month() -> Column:
    return Column(MONTH, Date, nullable=False, comment="first day of the month")


AUDIT_COLUMNS = [
    _c("audit_id", Text),
    _c("audited_at", DateTime(timezone=True)),
    _c("decision_at", DateTime(timezone=True)),
    _c("content_id", Text),
    _c("content_type", Text),
    _c("queue", Text),
    _c("site", Text),
    _c("team_type", Text),
    _c("market", Text),
    _c("moderator_id", Text),
    _c("auditor_id", Text),
    _c("action_moderator", Text),
    _c("action_auditor", Text),
    _c("policy_moderator", Text),
    _c("policy_auditor", Text),
    _c("error_severity", Text),
    _c("root_cause", Text),
    _c("auditor_comment", Text, "raw auditor text: restricted, may hold personal data"),
    _c("handle_time_s", Double),
    _c("sampling_weight", Double),
]

audits_clean = _table(
    CORE,
    "audits_clean",
    _month(),
    *AUDIT_COLUMNS,
    _c("source_file", Text, "raw file the row came from, relative to QA_RAW_DIR"),
    _c("source_row", BigInteger, "1-based data row number in the source file"),
    _c("is_error", Boolean, "moderator's action or policy differs from the auditor's"),
    _c("error_type", Text),
    _c("is_critical", Boolean),
    _c("policy", Text, "policy at stake: policy_auditor, or policy_moderator when that is NONE"),
    _c("tenure_days", BigInteger),
    _c("tenure_band", Text),
    _c("dispute_outcome", Text, "upheld, overturned, or empty when not disputed"),
    _c("is_error_final", Boolean, "is_error after disputes: an overturned dispute clears it"),
    comment="One row per valid QA audit, enriched. Restricted (person-level).",
)

audits_quarantine = _table(
    CORE,
    "audits_quarantine",
    _month(),
    _c("input", Text, "which raw input: audits, roster, ..."),
    _c("source_file", Text),
    _c("row_number", BigInteger, "1-based among the file's data rows"),
    _c("rule", Text, "first rule the row broke"),
    _c("rules", Text, "every rule the row broke, '; '-separated"),
    _c("reason", Text, "every rule the row broke, readable"),
    _c("raw_record", Text, "the row as read, JSON"),
    comment="Rejected raw rows with the rule and the reason. Nothing is dropped silently.",
)

ingest_log = _table(
    CORE,
    "ingest_log",
    _month(),
    _c("input", Text),
    _c("source_file", Text),
    _c("file_sha256", Text),
    _c("rows_read", BigInteger),
    _c("rows_clean", BigInteger),
    _c("rows_quarantined", BigInteger),
    comment="Per raw file and month: rows read = rows clean + rows quarantined.",
)

moderator_quality = _table(
    CORE,
    "moderator_quality",
    _month(),
    _c("moderator_id", Text),
    _c("site", Text),
    _c("team_type", Text),
    _c("tenure_band", Text),
    _c("audits", BigInteger),
    _c("errors", BigInteger),
    _c("critical_errors", BigInteger),
    _rate("accuracy"),
    _rate("accuracy_ci_low"),
    _rate("accuracy_ci_high"),
    _c("below_target", Boolean, "upper Wilson bound below the target with enough audits"),
    comment="Per moderator and month.",
)

quality_metrics = _table(
    REPORTING,
    "quality_metrics",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _c("audits", BigInteger),
    _c("errors", BigInteger),
    _c("critical_errors", BigInteger),
    _c("over_enforcement_errors", BigInteger),
    _c("under_enforcement_errors", BigInteger),
    _rate("accuracy"),
    _rate("accuracy_ci_low"),
    _rate("accuracy_ci_high"),
    _rate("weighted_accuracy"),
    _rate("critical_error_rate"),
    _rate("over_enforcement_rate"),
    _rate("under_enforcement_rate"),
    _rate("precision", "P(auditor enforces | moderator enforced); empty when the moderator never enforced"),
    _rate("recall", "P(moderator enforced | auditor enforces); empty when the auditor never enforced"),
    _rate("mean_handle_time_s"),
    comment="Quality per month, dimension and segment. Counts use is_error_final.",
)


def table(name: str) -> Table:
    """Look a table up by `schema.name`."""
    return metadata.tables[name]
