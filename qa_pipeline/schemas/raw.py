"""Pandera models of the raw inputs (data contract §2).

The models validate a *parsed* frame: time stamps are UTC `datetime64`, numbers are floats, text
stays text, trimmed of leading and trailing whitespace. Values that cannot be parsed at all are caught
before the model by `domain.validation.parse_columns` with their own rule (`<column>:iso8601`,
`<column>:number`, `<column>:non_finite`, `<column>:nul_byte`, `<column>:null_literal`,
`<column>:non_blank`). Each check carries a short `name`: it becomes the `rule` of a quarantined row.

A policy code is the organisation's own: any non-empty text (`HS.1`, `P4`, `hate_speech.tier2`), or
`NONE` for no policy. The only format rule on codes is the optional catalogue
(`policies/policies.csv`): when present, every code must be in it (`<column>:unknown_policy`, applied
by the gate, which knows the catalogue). Queue names are `[a-z0-9_]+` (data contract §2, audits).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

CONTENT_TYPES = ["video", "live", "comment", "photo", "account"]
TEAM_TYPES = ["in_house", "bpo"]
ACTIONS = ["approve", "restrict", "remove", "escalate"]
SEVERITIES = ["none", "minor", "major", "critical"]
ROOT_CAUSES = [
    "policy_knowledge", "guideline_ambiguity", "tooling", "attention_to_detail", "process",
    "context_missing", "other",
]
NO_POLICY = "NONE"
QUEUE_PATTERN = r"^[a-z0-9_]+$"
QUEUE_LIST_PATTERN = r"^(\*|[a-z0-9_]+(;[a-z0-9_]+)*)$"
POLICY_CATALOGUE = "policies/policies.csv"

UTC = {"unit": "us", "tz": "UTC"}


def _required_text(**kwargs) -> object:
    return pa.Field(nullable=False, **kwargs)


ERROR_COLUMNS = ("action_moderator", "action_auditor", "policy_moderator", "policy_auditor")


def _missing(df: pd.DataFrame, *columns: str) -> pd.Series:
    """Rows where a value a cross-field rule compares is missing: that value's own rule
    (`<column>:required`, …) reports the row, not the cross-field rule."""
    return df[list(columns)].isna().any(axis=1)


class AuditRecord(pa.DataFrameModel):
    """One QA audit. Cross-field rules are the dataframe checks below.

    Uniqueness of `audit_id` is checked by the gate (`InputSpec.unique_key`): pandera reports
    every copy of a duplicate, the contract keeps the first read and quarantines the later ones.
    """

    audit_id: Series[str] = pa.Field(nullable=False)
    audited_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    decision_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    content_id: Series[str] = _required_text()
    content_type: Series[str] = pa.Field(isin=CONTENT_TYPES)
    queue: Series[str] = pa.Field(str_matches=QUEUE_PATTERN)
    site: Series[str] = _required_text()
    team_type: Series[str] = pa.Field(isin=TEAM_TYPES)
    market: Series[str] = _required_text()
    moderator_id: Series[str] = _required_text()
    auditor_id: Series[str] = _required_text()
    action_moderator: Series[str] = pa.Field(isin=ACTIONS)
    action_auditor: Series[str] = pa.Field(isin=ACTIONS)
    policy_moderator: Series[str] = pa.Field(nullable=False)
    policy_auditor: Series[str] = pa.Field(nullable=False)
    error_severity: Series[str] = pa.Field(isin=SEVERITIES)
    root_cause: Series[str] = pa.Field(isin=ROOT_CAUSES, nullable=True)
    auditor_comment: Series[str] = pa.Field(nullable=True)
    handle_time_s: Series[float] = pa.Field(ge=0, nullable=True)
    sampling_weight: Series[float] = pa.Field(gt=0, nullable=False)

    @pa.dataframe_check(name="decision_before_audit", error="decision_at is after audited_at")
    def _decision_before_audit(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["decision_at"] <= df["audited_at"]) | df["decision_at"].isna() | df["audited_at"].isna()

    @pa.dataframe_check(name="auditor_not_moderator", error="auditor_id equals moderator_id")
    def _auditor_not_moderator(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["auditor_id"] != df["moderator_id"]).fillna(True)

    @pa.dataframe_check(name="approve_iff_policy_none_moderator",
                        error="action_moderator is approve exactly when policy_moderator is NONE")
    def _approve_none_moderator(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["action_moderator"] == "approve") == (df["policy_moderator"] == "NONE")) | _missing(
            df, "action_moderator", "policy_moderator")

    @pa.dataframe_check(name="approve_iff_policy_none_auditor",
                        error="action_auditor is approve exactly when policy_auditor is NONE")
    def _approve_none_auditor(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["action_auditor"] == "approve") == (df["policy_auditor"] == "NONE")) | _missing(
            df, "action_auditor", "policy_auditor")

    @pa.dataframe_check(name="severity_matches_error",
                        error="error_severity is none exactly when the audit is not an error")
    def _severity_matches_error(cls, df: pd.DataFrame) -> Series[bool]:
        is_error = (df["action_moderator"] != df["action_auditor"]) | (
            df["policy_moderator"] != df["policy_auditor"])
        return ((df["error_severity"] == "none") == ~is_error) | _missing(df, "error_severity", *ERROR_COLUMNS)

    @pa.dataframe_check(name="root_cause_iff_error",
                        error="root_cause is required for an error and must be empty otherwise")
    def _root_cause_iff_error(cls, df: pd.DataFrame) -> Series[bool]:
        is_error = (df["action_moderator"] != df["action_auditor"]) | (
            df["policy_moderator"] != df["policy_auditor"])
        return (df["root_cause"].notna() == is_error) | _missing(df, *ERROR_COLUMNS)

    class Config:
        strict = False  # extra columns are carried, not rejected
        coerce = False


class RosterRecord(pa.DataFrameModel):
    """One moderator in the latest roster snapshot."""

    moderator_id: Series[str] = pa.Field(nullable=False)
    site: Series[str] = pa.Field(nullable=False)
    team_type: Series[str] = pa.Field(isin=TEAM_TYPES)
    hire_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    language: Series[str] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(isin=["active", "inactive"])

    class Config:
        strict = False
        coerce = False


# Parsing instructions per input: which columns are time stamps, dates and numbers, which are
# optional (with their default), and which are required to be present in the file.
AUDIT_TIMESTAMPS = ["audited_at", "decision_at"]
AUDIT_NUMBERS = ["handle_time_s", "sampling_weight"]
AUDIT_OPTIONAL = {"sampling_weight": "1.0"}
AUDIT_COLUMNS = list(AuditRecord.to_schema().columns)

ROSTER_DATES = ["hire_date"]
ROSTER_COLUMNS = list(RosterRecord.to_schema().columns)


class CalibrationRating(pa.DataFrameModel):
    """One rater's answer on one case of a calibration session."""

    session_id: Series[str] = pa.Field(nullable=False)
    session_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    queue: Series[str] = pa.Field(nullable=False)
    case_id: Series[str] = pa.Field(nullable=False)
    rater_id: Series[str] = pa.Field(nullable=False)
    rater_role: Series[str] = pa.Field(isin=["auditor", "moderator"])
    action: Series[str] = pa.Field(isin=ACTIONS, nullable=True)
    policy: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = False
        coerce = False


class CalibrationGold(pa.DataFrameModel):
    """The policy expert's answer per session case."""

    session_id: Series[str] = pa.Field(nullable=False)
    case_id: Series[str] = pa.Field(nullable=False)
    gold_action: Series[str] = pa.Field(isin=ACTIONS)
    gold_policy: Series[str] = pa.Field(nullable=False)

    @pa.dataframe_check(name="gold_approve_iff_policy_none",
                        error="gold_action is approve exactly when gold_policy is NONE")
    def _approve_none(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["gold_action"] == "approve") == (df["gold_policy"] == "NONE")) | _missing(
            df, "gold_action", "gold_policy")

    class Config:
        strict = False
        coerce = False


class DisputeRecord(pa.DataFrameModel):
    """A moderator's dispute of an audit result, once resolved."""

    dispute_id: Series[str] = pa.Field(nullable=False)
    audit_id: Series[str] = pa.Field(nullable=False)
    disputed_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    resolved_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    reason: Series[str] = pa.Field(nullable=True)
    outcome: Series[str] = pa.Field(isin=["upheld", "overturned"])

    @pa.dataframe_check(name="resolved_after_disputed", error="resolved_at is before disputed_at")
    def _resolved_after(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["resolved_at"] >= df["disputed_at"]) | df["resolved_at"].isna() | df["disputed_at"].isna()

    class Config:
        strict = False
        coerce = False


class PolicyChange(pa.DataFrameModel):
    """A change to one policy; `queues` the affected queues (`;`-separated) or `*` for all."""

    change_id: Series[str] = pa.Field(nullable=False)
    policy: Series[str] = pa.Field(nullable=False)
    effective_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    change_type: Series[str] = pa.Field(isin=["new", "update", "clarification", "retirement"])
    summary: Series[str] = pa.Field(nullable=True)
    queues: Series[str] = pa.Field(str_matches=QUEUE_LIST_PATTERN)

    @pa.check("policy", name="not_none", error="NONE is not a policy that can change")
    def _not_none(cls, s: Series[str]) -> Series[bool]:
        return s.ne(NO_POLICY)

    class Config:
        strict = False
        coerce = False


class Experiment(pa.DataFrameModel):
    experiment_id: Series[str] = pa.Field(nullable=False)
    name: Series[str] = pa.Field(nullable=False)
    hypothesis: Series[str] = pa.Field(nullable=True)
    owner: Series[str] = pa.Field(nullable=True)
    start_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    end_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    primary_metric: Series[str] = pa.Field(isin=["accuracy", "critical_error_rate", "handle_time_s"])
    treatment_share: Series[float] = pa.Field(gt=0, lt=1)

    @pa.dataframe_check(name="end_after_start", error="end_date is before start_date")
    def _end_after_start(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["end_date"] >= df["start_date"]) | df["end_date"].isna() | df["start_date"].isna()

    class Config:
        strict = False
        coerce = False


class Assignment(pa.DataFrameModel):
    experiment_id: Series[str] = pa.Field(nullable=False)
    moderator_id: Series[str] = pa.Field(nullable=False)
    arm: Series[str] = pa.Field(isin=["control", "treatment"])

    class Config:
        strict = False
        coerce = False


class PolicyCatalogueEntry(pa.DataFrameModel):
    """One policy of the organisation's optional catalogue (`policies/policies.csv`)."""

    policy: Series[str] = pa.Field(nullable=False)
    name: Series[str] = pa.Field(nullable=True)
    queues: Series[str] = pa.Field(str_matches=QUEUE_LIST_PATTERN)

    @pa.check("policy", name="not_none", error="NONE means no policy and is never in the catalogue")
    def _not_none(cls, s: Series[str]) -> Series[bool]:
        return s.ne(NO_POLICY)

    class Config:
        strict = False
        coerce = False


class ReauditRecord(pa.DataFrameModel):
    """An expert's blind re-review of one audited decision (`reaudits/YYYY-MM/`, the folder month
    = the month of the original audit). The reviewer's answer is the truth for that decision. The
    rules that compare a re-audit with its audit (the audit exists in the folder's month, the
    reviewer is neither its moderator nor its auditor, the re-audit comes after the audit) are
    applied by the gate, which knows the month's audits (`domain.accuracy_corrected`)."""

    reaudit_id: Series[str] = pa.Field(nullable=False)
    audit_id: Series[str] = pa.Field(nullable=False)
    reaudited_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    reviewer_id: Series[str] = pa.Field(nullable=False)
    action_reviewer: Series[str] = pa.Field(isin=ACTIONS)
    policy_reviewer: Series[str] = pa.Field(nullable=False)

    @pa.dataframe_check(name="approve_iff_policy_none_reviewer",
                        error="action_reviewer is approve exactly when policy_reviewer is NONE")
    def _approve_none_reviewer(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["action_reviewer"] == "approve") == (df["policy_reviewer"] == "NONE")) | _missing(
            df, "action_reviewer", "policy_reviewer")

    class Config:
        strict = False
        coerce = False
