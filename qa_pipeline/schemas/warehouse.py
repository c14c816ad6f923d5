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
    PrimaryKeyConstraint,
    Table,
    Text,
)

metadata = MetaData()

CORE = "qa_core"
REPORTING = "qa_reporting"


def _table(schema: str, name: str, *columns: Column, comment: str, **dialect_options) -> Table:
    return Table(name, metadata, *columns, schema=schema, comment=comment, **dialect_options)


def _key(*columns: str) -> PrimaryKeyConstraint:
    """The table's unique key, enforced by the engine (DuckDB and PostgreSQL): a publication that
    would duplicate it fails inside its transaction and leaves the previous version. On the
    partitioned `audits_clean` PostgreSQL needs the partition column in every unique key, so
    `audit_id`'s uniqueness across months is checked by the publication itself (staging.py)."""
    return PrimaryKeyConstraint(*columns)


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
    _c("dispute_resolved_at", DateTime(timezone=True), "when the latest dispute was resolved"),
    _c("is_error_final", Boolean, "is_error after disputes: an overturned dispute clears it"),
    _key("month", "audit_id"),
    comment="One row per valid QA audit, enriched. Restricted (person-level).",
    # PostgreSQL: one partition per month, loaded in parallel and swapped in (resources/warehouse.py).
    # Kept in `info`, not postgresql_partition_by: duckdb_engine derives from the PostgreSQL dialect.
    info={"postgresql_partition_by": "LIST (month)"},
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
    _c("raw_record", Text, "the row as read, JSON: an object of its cells; for a CSV line the reader could "
                           "not split into the header's fields (line:malformed, line:invalid_utf8), the line's "
                           "text as a JSON string"),
    _key("month", "input", "source_file", "row_number"),
    comment="Rejected raw rows with the rule and the reason. Nothing is dropped silently.",
)

ingest_log = _table(
    CORE,
    "ingest_log",
    _month(),
    _c("input", Text),
    _c("source_file", Text),
    _c("file_sha256", Text),
    _c("rows_read", BigInteger, "data rows counted in the file on their own (CSV records, Parquet num_rows)"),
    _c("rows_clean", BigInteger),
    _c("rows_quarantined", BigInteger),
    _c("status", Text, "read (through the gate), ignored (not part of the raw layout; input raw_layout) or "
                       "rejected (could not be used: unreadable, a column missing)"),
    _c("reason", Text, "why a file was ignored or rejected; empty when read"),
    _key("month", "input", "source_file"),
    comment=("Per raw file and month: rows read = rows clean + rows quarantined (status read); files and "
             "folders not read, with the reason (status ignored or rejected)."),
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
    _key("month", "moderator_id"),
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
    _key("month", "dimension", "segment"),
    comment="Quality per month, dimension and segment. Counts use is_error_final.",
)


calibration_agreement = _table(
    REPORTING,
    "calibration_agreement",
    _c("session_id", Text),
    _month(),
    _c("queue", Text),
    _c("label", Text, "action or policy"),
    _c("raters", BigInteger),
    _c("cases", BigInteger),
    _c("ratings", BigInteger),
    _rate("percent_agreement"),
    _rate("fleiss_kappa", "Fleiss' kappa, Gwet's generalisation to a varying number of raters"),
    _rate("krippendorff_alpha", "nominal, missing data allowed"),
    _rate("gwet_ac1"),
    _rate("gold_accuracy", "share of the session's ratings equal to the gold answer"),
    _c("note", Text, "why a statistic is empty, when it is"),
    _key("month", "session_id", "label"),
    comment="Agreement per calibration session and label.",
)

calibration_rater_scores = _table(
    CORE,
    "calibration_rater_scores",
    _c("session_id", Text),
    _month(),
    _c("rater_id", Text),
    _c("rater_role", Text),
    _c("cases_rated", BigInteger),
    _rate("action_accuracy"),
    _rate("policy_accuracy"),
    _rate("accuracy_vs_gold", "action and policy both equal gold"),
    _c("below_threshold", Boolean, "accuracy_vs_gold below min_gold_accuracy"),
    _key("month", "session_id", "rater_id"),
    comment="Each rater's accuracy against gold per session. Restricted (person-level).",
)

disputes = _table(
    CORE,
    "disputes",
    _month(),
    _c("dispute_id", Text),
    _c("audit_id", Text),
    _c("disputed_at", DateTime(timezone=True)),
    _c("resolved_at", DateTime(timezone=True)),
    _c("reason", Text, "moderator's free text: restricted"),
    _c("outcome", Text),
    _c("source_file", Text),
    _key("dispute_id"),
    comment="Validated disputes by the month they were resolved (the folder month).",
)

dispute_metrics = _table(
    REPORTING,
    "dispute_metrics",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _c("audits", BigInteger),
    _c("disputed", BigInteger),
    _c("resolved", BigInteger),
    _c("overturned", BigInteger),
    _c("restated_audits", BigInteger, "overturned by a dispute resolved after the month ended"),
    _rate("dispute_rate"),
    _rate("overturn_rate", "overturned / resolved"),
    _key("month", "dimension", "segment"),
    comment="Disputes of the month's audits per dimension (overall, site, queue); per auditor in qa_core.",
)

auditor_dispute_metrics = _table(
    CORE,
    "auditor_dispute_metrics",
    _month(),
    _c("auditor_id", Text),
    _c("audits", BigInteger),
    _c("disputed", BigInteger),
    _c("resolved", BigInteger),
    _c("overturned", BigInteger),
    _c("restated_audits", BigInteger, "overturned by a dispute resolved after the month ended"),
    _rate("dispute_rate"),
    _rate("overturn_rate", "overturned / resolved"),
    _key("month", "auditor_id"),
    comment="Disputes of the month's audits per auditor (a grader-quality signal). Restricted (person-level).",
)

policy_change_impact = _table(
    REPORTING,
    "policy_change_impact",
    _c("change_id", Text),
    _c("policy", Text),
    _c("effective_date", Date),
    _c("change_type", Text),
    _c("queues", Text),
    _c("status", Text, "complete, or pending until the windows are published"),
    _c("n_before", BigInteger),
    _c("n_after", BigInteger),
    _c("errors_before", BigInteger),
    _c("errors_after", BigInteger),
    _rate("error_rate_before"),
    _rate("error_rate_after"),
    _rate("delta", "after − before"),
    _rate("ci_low", "Newcombe hybrid score 95 % interval of delta"),
    _rate("ci_high"),
    _rate("p_value", "pooled two-proportion z-test"),
    _c("control_n_before", BigInteger),
    _c("control_n_after", BigInteger),
    _rate("control_rate_before"),
    _rate("control_rate_after"),
    _rate("did", "difference in differences against unaffected queues"),
    _rate("did_ci_low"),
    _rate("did_ci_high"),
    _c("flagged", Boolean, "error rate rose significantly"),
    _c("note", Text),
    _key("change_id"),
    comment="Impact of each policy change: 28 days before vs after, recomputed every run.",
)

experiment_readout = _table(
    REPORTING,
    "experiment_readout",
    _c("experiment_id", Text),
    _c("name", Text),
    _c("status", Text),
    _c("metric", Text),
    _c("start_date", Date),
    _c("end_date", Date),
    _c("assigned_control", BigInteger),
    _c("assigned_treatment", BigInteger),
    _c("n_control", BigInteger, "moderators with audits in the window"),
    _c("n_treatment", BigInteger),
    _rate("mean_control"),
    _rate("mean_treatment"),
    _rate("diff", "treatment − control"),
    _rate("ci_low", "Welch 95 % interval"),
    _rate("ci_high"),
    _rate("p_value"),
    _rate("relative_lift"),
    _rate("srm_p_value"),
    _rate("mde", "minimum detectable effect at 80 % power"),
    _c("decision", Text, "ship, do_not_ship, inconclusive, invalid_srm"),
    _c("reason", Text),
    _key("experiment_id"),
    comment="Experiment readouts, recomputed every run from all published audits.",
)

sampling_plan = _table(
    REPORTING,
    "sampling_plan",
    _month(),
    _c("site", Text),
    _c("queue", Text),
    _c("recent_audits", BigInteger),
    _c("recent_errors", BigInteger),
    _rate("recent_error_rate"),
    _rate("estimated_decisions", "monthly decisions estimated as Σ sampling_weight"),
    _c("recommended_audits", BigInteger),
    _key("month", "site", "queue"),
    comment="Audits needed next month per site × queue for a ±margin 95 % interval on accuracy.",
)


error_trends = _table(
    REPORTING,
    "error_trends",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _c("audits", BigInteger),
    _c("errors", BigInteger),
    _c("prev_audits", BigInteger),
    _c("prev_errors", BigInteger),
    _rate("error_rate"),
    _rate("prev_error_rate"),
    _rate("delta", "error_rate − prev_error_rate"),
    _rate("z", "pooled two-proportion z"),
    _rate("p_value"),
    _rate("q_value", "Benjamini–Hochberg across all segments of the month"),
    _c("alert", Boolean, "rose with q < alert_q, Δ ≥ min_alert_delta, ≥ min_n audits in both months"),
    _c("improved", Boolean),
    _c("judged", Boolean, "enough audits in both months to test"),
    _c("reason", Text, "why a segment was not judged"),
    _c("history_months", BigInteger),
    _rate("p_chart_center", "pooled error rate of the previous 6 months"),
    _rate("p_chart_lcl"),
    _rate("p_chart_ucl"),
    _c("out_of_control", Boolean),
    _key("month", "dimension", "segment"),
    comment="Month-over-month change of each segment's error rate, with FDR control and p-charts.",
)

early_warnings = _table(
    REPORTING,
    "early_warnings",
    _month(),
    _c("dimension", Text, "site×queue, site or queue"),
    _c("segment", Text),
    _rate("baseline_error_rate", "(errors + ½)/(audits + 1) over the early_warning_months before the month"),
    _c("baseline_audits", BigInteger, "audits behind the baseline"),
    _c("baseline_source", Text, "segment, or the parent whose baseline a segment without history borrows"),
    _c("expected_audits", BigInteger, "volume the threshold is simulated for"),
    _c("audits_to_date", BigInteger, "audits of the month so far"),
    _c("errors_to_date", BigInteger, "errors (is_error_final as known) of the month so far"),
    _rate("cusum", "the Bernoulli CUSUM after the last audit so far"),
    _rate("cusum_max", "its largest value so far"),
    _rate("threshold", "simulated: any false signal in a month without change ≤ early_warning_family_alpha"),
    _c("first_signal_date", Date, "decision date of the audit at which the CUSUM first exceeded the threshold"),
    _c("signalled", Boolean),
    _c("as_of", Date, "last day covered (audited_at) by the run that wrote the row"),
    _c("final", Boolean, "written by the month's monthly run (else a daily month-to-date run)"),
    _c("note", Text),
    _key("month", "dimension", "segment"),
    comment="Early warning inside the month: a Bernoulli CUSUM per site × queue, site and queue.",
)

rca_pareto = _table(
    REPORTING,
    "rca_pareto",
    _month(),
    _c("scope", Text, "overall, queue:<queue> or site×queue:<site>|<queue>"),
    _c("root_cause", Text),
    _c("errors", BigInteger),
    _rate("share"),
    _rate("cumulative_share"),
    _c("vital_few", Boolean, "among the causes that make up the first 80 % of errors"),
    _c("rank", BigInteger),
    _key("month", "scope", "root_cause"),
    comment="Root causes of the month's errors, largest first.",
)

rca_drivers = _table(
    REPORTING,
    "rca_drivers",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _rate("share_prev"),
    _rate("share"),
    _rate("rate_prev"),
    _rate("rate"),
    _rate("rate_effect", "s̄·(r₁ − r₀)"),
    _rate("mix_effect", "r̄·(s₁ − s₀)"),
    _rate("contribution", "rate_effect + mix_effect; sums to overall_change per dimension"),
    _rate("overall_change"),
    _rate("contribution_share", "contribution / overall_change; empty when |change| < 0.1 pp"),
    _key("month", "dimension", "segment"),
    comment="Exact mix/rate decomposition of the overall error-rate change against the previous month.",
)

auditor_consistency = _table(
    CORE,
    "auditor_consistency",
    _month(),
    _c("auditor_id", Text),
    _c("audits", BigInteger),
    _c("flags", BigInteger, "audits the auditor marked as errors"),
    _rate("flag_rate"),
    _rate("expected_rate", "from the other auditors on the same queues"),
    _rate("z_score"),
    _c("drift", Boolean),
    _c("disputed", BigInteger),
    _c("overturned", BigInteger),
    _rate("overturn_rate"),
    _key("month", "auditor_id"),
    comment="Grader bias: each auditor's flag rate against peers. Restricted (person-level).",
)

comment_themes = _table(
    REPORTING,
    "comment_themes",
    _month(),
    _c("scope", Text, "overall, queue:<q> or root_cause:<cause>"),
    _c("term", Text, "word or two-word phrase from PII-redacted comments"),
    _c("errors_with_term", BigInteger),
    _c("errors_with_comment", BigInteger),
    _rate("share", "errors_with_term / errors_with_comment"),
    _rate("z_score", "log-odds ratio with informative Dirichlet prior"),
    _c("rank", BigInteger),
    _key("month", "scope", "term"),
    comment="Terms that distinguish the comments of errors in a scope from the rest.",
)


recommendations = _table(
    REPORTING,
    "recommendations",
    _month(),
    _c("owner", Text, "Training, Product, Workforce Management, Enforcement Operations, Policy, Quality"),
    _c("priority", Text, "P1, P2, P3 by impact"),
    _rate("impact", "excess errors against target (against peers for graders)"),
    _c("rule", Text),
    _c("subject", Text),
    _c("finding", Text),
    _c("evidence", Text, "figures, n and interval behind the finding"),
    _c("action", Text),
    comment=("Findings about segments, policies and processes turned into actions for partner teams, from the "
             "rule set in domain/recommendations.py; findings about a person are in qa_core.person_recommendations."),
)

person_recommendations = _table(
    CORE,
    "person_recommendations",
    _month(),
    _c("owner", Text, "Training or Quality"),
    _c("priority", Text, "P1, P2, P3 by impact"),
    _rate("impact", "excess errors against target (against peers for graders)"),
    _c("rule", Text),
    _c("person_role", Text, "moderator, auditor or rater"),
    _c("person_id", Text),
    _c("finding", Text),
    _c("evidence", Text, "figures, n and interval behind the finding"),
    _c("action", Text),
    _key("month", "rule", "person_id"),
    comment=("Findings about one person (a moderator below target, a drifting or often overturned auditor, a "
             "rater below gold) with their action, from the rule set in domain/recommendations.py. Restricted "
             "(person-level): the Monthly Quality Report shows them, the MBR does not."),
)

report_runs = _table(
    REPORTING,
    "report_runs",
    _month(),
    _c("report_path", Text),
    _c("generated_at", DateTime(timezone=True)),
    _c("sha256", Text, "of quality_report.html"),
    _c("status", Text, "published, or restated when late disputes changed the month"),
    _c("audits", BigInteger),
    _rate("accuracy"),
    _rate("critical_error_rate"),
    _c("alerts", BigInteger),
    _c("recommendations", BigInteger),
    _key("month"),
    comment="One row per month's report, with its headline figures for the report site.",
)


publications = _table(
    CORE,
    "publications",
    _month(),
    _c("run_id", Text, "the Dagster run whose staged tables were published"),
    _c("published_at", DateTime(timezone=True)),
    _c("tables", BigInteger, "tables published in the one transaction"),
    _c("rows", BigInteger, "rows published, all tables together"),
    comment="One row per month publication: every table of a run's month became visible in one transaction.",
)

table_versions = _table(
    CORE,
    "table_versions",
    _c("table_name", Text),
    _c("scope_input", Text, "the input, for an input's rows (e.g. the disputes quarantine); '' for a whole table"),
    _c("snapshot_at", DateTime(timezone=True), "what the published version was computed from (see staged_tables)"),
    _c("staged_at", DateTime(timezone=True)),
    _c("run_id", Text),
    _c("published_at", DateTime(timezone=True)),
    _key("table_name", "scope_input"),
    comment=("The published version of each whole-table output (disputes, policy_change_impact, "
             "experiment_readout, an input's quarantine): a run publishes its version only when it was "
             "computed from a newer snapshot than the one published, so concurrent runs never bring back "
             "an older one."),
)

# -- the corrections log (domain/corrections.py): written in the publication's transaction --------
publication_history = _table(
    REPORTING,
    "publication_history",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _c("metric", Text, "audits, errors, critical_errors, accuracy, error_rate, critical_error_rate, weighted_accuracy"),
    _rate("value", "the value this publication made visible"),
    _c("published_at", DateTime(timezone=True), "the publication (qa_core.publications.published_at)"),
    _c("run_id", Text),
    _key("month", "published_at", "dimension", "segment", "metric"),
    comment=("Append-only: the headline figures of quality_metrics as each publication of the month made them "
             "visible, every segment and metric at every publication."),
)

publication_fingerprints = _table(
    CORE,
    "publication_fingerprints",
    _month(),
    _c("published_at", DateTime(timezone=True)),
    _c("run_id", Text),
    _c("input_files", Text, "JSON [input, source_file, file_sha256] of the month's audits, roster and policies files"),
    _c("inputs_sha256", Text),
    _c("disputes_sha256", Text, "of audit_id, outcome and resolution time of every disputed audit of the month"),
    _c("disputed_audits", BigInteger),
    _c("overturned_audits", BigInteger),
    _c("settings", Text, "JSON of the settings the figures are computed with (thresholds, null placeholders, limits)"),
    _c("settings_sha256", Text),
    _c("code_version", Text, "qa-pipeline and the figure libraries' versions"),
    _c("code_sha256", Text, "of qa_pipeline's .py files and the versions"),
    _key("month", "published_at"),
    comment="Append-only: what each publication of a month's figures was computed from (the causes of corrections).",
)

corrections = _table(
    REPORTING,
    "corrections",
    _month(),
    _c("dimension", Text),
    _c("segment", Text),
    _c("metric", Text),
    _rate("previous_value", "empty when the previous publication did not have the figure"),
    _rate("new_value", "empty when this publication withdrew the figure"),
    _c("previous_published_at", DateTime(timezone=True)),
    _c("published_at", DateTime(timezone=True)),
    _c("previous_run_id", Text),
    _c("run_id", Text),
    _c("cause", Text, "late_disputes, redelivered_files, settings_changed, code_changed or unattributed"),
    _c("causes", Text, "every cause whose fingerprint changed, comma-separated, in the order of precedence"),
    _c("cause_detail", Text, "what changed: files, disputed audits, settings' names, versions"),
    _key("month", "published_at", "dimension", "segment", "metric"),
    comment=("Append-only: each published figure whose value changed (beyond QA_CORRECTION_TOLERANCE, relative) "
             "between two consecutive publications of its month, with both values and the cause."),
)

reaudits = _table(
    CORE,
    "reaudits",
    _month(),
    _c("reaudit_id", Text),
    _c("audit_id", Text),
    _c("reaudited_at", DateTime(timezone=True)),
    _c("reviewer_id", Text, "the expert who re-reviewed the decision: restricted (a person)"),
    _c("action_reviewer", Text, "the expert's answer: the truth for the decision"),
    _c("policy_reviewer", Text),
    _c("true_error", Boolean, "the expert's answer differs from the moderator's (action or policy)"),
    _c("source_file", Text),
    _c("source_row", BigInteger),
    _key("month", "reaudit_id"),
    comment="Validated expert re-audits by the month of the original audit (the folder month). Restricted.",
)

accuracy_corrected = _table(
    REPORTING,
    "accuracy_corrected",
    _month(),
    _c("dimension", Text, "overall, site, team_type or queue"),
    _c("segment", Text),
    _c("audits", BigInteger),
    _c("errors", BigInteger, "audits the audit process counts as errors (is_error_final)"),
    _rate("observed_error_rate", "errors / audits: 1 − the published accuracy"),
    _c("reaudits", BigInteger, "re-audits behind sensitivity and specificity (the whole audit process)"),
    _c("reaudit_months", BigInteger, "months whose re-audits were pooled (1: the month alone)"),
    _c("reaudited_true_errors", BigInteger, "re-audited decisions that are truly errors (sensitivity's n)"),
    _rate("sensitivity", "P(audit verdict error | truly an error), from the re-audits"),
    _rate("specificity", "P(audit verdict correct | truly correct), from the re-audits"),
    _rate("corrected_error_rate", "Rogan–Gladen, clipped to [0, 1]; empty when not estimable (see note)"),
    _rate("corrected_accuracy", "1 − corrected_error_rate"),
    _rate("ci_low", "Lang–Reiczigel 95 % interval of corrected_error_rate (carries the uncertainty of "
                    "sensitivity and specificity)"),
    _rate("ci_high"),
    _rate("corrected_accuracy_ci_low", "1 − ci_high"),
    _rate("corrected_accuracy_ci_high", "1 − ci_low"),
    _c("segment_reaudits", BigInteger, "the segment's own re-audits of the month"),
    _rate("reaudit_error_rate", "plain estimate: truly erroneous / re-audited, the segment's re-audits alone"),
    _rate("reaudit_ci_low", "Wilson 95 %"),
    _rate("reaudit_ci_high"),
    _c("note", Text, "why a figure is empty or clipped"),
    _key("month", "dimension", "segment"),
    comment=("Error rate and accuracy corrected for the audit process's own errors (sensitivity and "
             "specificity against expert re-audits), per month, dimension and segment."),
)

# -- internal staging tables: written by a run, read by its later steps, never published -------
STAGING = "qa_staging"
staging_metadata = MetaData()

validated_audits = Table(
    "validated_audits", staging_metadata, _month(), *[c._copy() for c in AUDIT_COLUMNS],
    _c("source_file", Text), _c("source_row", BigInteger), schema=STAGING,
    comment="The month's audit rows that passed the row-level gate, typed; duplicates still in.",
)
audit_keys = Table(
    "audit_keys", staging_metadata, _c("audit_id", Text), _c("source_file", Text),
    _c("source_row", BigInteger), _c("read_order", BigInteger, "1-based position in the month's read order"),
    _c("is_clean", Boolean), schema=STAGING,
    comment="Every audit row read (clean or not): the cross-row rules (duplicates, published elsewhere) run on it.",
)
audit_rejects = Table(
    "audit_rejects", staging_metadata, _c("source_file", Text), _c("source_row", BigInteger),
    _c("audit_id", Text), _c("is_clean", Boolean), _c("duplicate", Boolean), _c("published_earlier", Boolean),
    _c("published_later", Boolean), _c("held_by", Date, "the published month that already holds the audit_id"),
    schema=STAGING,
    comment="Rows the cross-row rules reject (domain/cross_row_rules.py), before they move to the quarantine.",
)
roster_snapshot = Table(
    "roster_snapshot", staging_metadata, _c("moderator_id", Text), _c("site", Text), _c("team_type", Text),
    _c("hire_date", DateTime(timezone=True)), _c("language", Text), _c("status", Text), schema=STAGING,
    comment="The clean roster the run enriches audits with.",
)
staged_tables = Table(
    "staged_tables", staging_metadata, _c("run_key", Text), _month(), _c("table_name", Text),
    _c("staged_as", Text), _c("scope", Text), _c("scope_input", Text),
    _c("staged_at", DateTime(timezone=True)),
    _c("snapshot_at", DateTime(timezone=True),
       "what a whole-table output was computed from: the latest publication it read (or the time it read raw files)"),
    _c("failed_checks", Text, "blocking checks that failed on these staged rows: publication refuses them"),
    schema=STAGING,
    comment="Registry of staged tables: which run staged what, and which published rows it replaces.",
)


def table(name: str) -> Table:
    """Look a table up by `schema.name` (published or internal staging)."""
    if name in metadata.tables:
        return metadata.tables[name]
    return staging_metadata.tables[name]
