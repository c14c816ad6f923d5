"""Pandera models of the raw inputs (data contract §2).

The models validate a *parsed* frame: time stamps are UTC `datetime64`, numbers are floats, text
stays text. Values that cannot be parsed at all are caught before the model by
`domain.validation.parse_columns` with their own rule (`<column>:iso8601`, `<column>:number`).
Each check carries a short `name`: it becomes the `rule` of a quarantined row.
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
POLICY_PATTERN = r"^(NONE|[A-Z]{2,4}\.\d{1,3})$"
QUEUE_PATTERN = r"^[a-z0-9_]+$"

UTC = {"unit": "us", "tz": "UTC"}


def _required_text(**kwargs) -> object:
    return pa.Field(nullable=False, **kwargs)


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
    policy_moderator: Series[str] = pa.Field(str_matches=POLICY_PATTERN)
    policy_auditor: Series[str] = pa.Field(str_matches=POLICY_PATTERN)
    error_severity: Series[str] = pa.Field(isin=SEVERITIES)
    root_cause: Series[str] = pa.Field(isin=ROOT_CAUSES, nullable=True)
    auditor_comment: Series[str] = pa.Field(nullable=True)
    handle_time_s: Series[float] = pa.Field(ge=0, nullable=True)
    sampling_weight: Series[float] = pa.Field(gt=0, nullable=False)

    @pa.check("audit_id", "content_id", "site", "market", "moderator_id", "auditor_id",
              name="non_blank", error="must not be blank")
    def _non_blank(cls, s: Series[str]) -> Series[bool]:
        return s.str.strip().str.len() > 0

    @pa.dataframe_check(name="decision_before_audit", error="decision_at is after audited_at")
    def _decision_before_audit(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["decision_at"] <= df["audited_at"]) | df["decision_at"].isna() | df["audited_at"].isna()

    @pa.dataframe_check(name="auditor_not_moderator", error="auditor_id equals moderator_id")
    def _auditor_not_moderator(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["auditor_id"] != df["moderator_id"]).fillna(True)

    @pa.dataframe_check(name="approve_iff_policy_none_moderator",
                        error="action_moderator is approve exactly when policy_moderator is NONE")
    def _approve_none_moderator(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["action_moderator"] == "approve") == (df["policy_moderator"] == "NONE")).fillna(True)

    @pa.dataframe_check(name="approve_iff_policy_none_auditor",
                        error="action_auditor is approve exactly when policy_auditor is NONE")
    def _approve_none_auditor(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["action_auditor"] == "approve") == (df["policy_auditor"] == "NONE")).fillna(True)

    @pa.dataframe_check(name="severity_matches_error",
                        error="error_severity is none exactly when the audit is not an error")
    def _severity_matches_error(cls, df: pd.DataFrame) -> Series[bool]:
        is_error = (df["action_moderator"] != df["action_auditor"]) | (
            df["policy_moderator"] != df["policy_auditor"])
        return ((df["error_severity"] == "none") == ~is_error).fillna(True)

    @pa.dataframe_check(name="root_cause_iff_error",
                        error="root_cause is required for an error and must be empty otherwise")
    def _root_cause_iff_error(cls, df: pd.DataFrame) -> Series[bool]:
        is_error = (df["action_moderator"] != df["action_auditor"]) | (
            df["policy_moderator"] != df["policy_auditor"])
        return (df["root_cause"].notna() == is_error).fillna(True)

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

    @pa.check("moderator_id", "site", name="non_blank", error="must not be blank")
    def _non_blank(cls, s: Series[str]) -> Series[bool]:
        return s.str.strip().str.len() > 0

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
    queue: Series[str] = pa.Field(str_matches=QUEUE_PATTERN)
    case_id: Series[str] = pa.Field(nullable=False)
    rater_id: Series[str] = pa.Field(nullable=False)
    rater_role: Series[str] = pa.Field(isin=["auditor", "moderator"])
    action: Series[str] = pa.Field(isin=ACTIONS, nullable=True)
    policy: Series[str] = pa.Field(str_matches=POLICY_PATTERN, nullable=True)

    class Config:
        strict = False
        coerce = False


class CalibrationGold(pa.DataFrameModel):
    """The policy expert's answer per session case."""

    session_id: Series[str] = pa.Field(nullable=False)
    case_id: Series[str] = pa.Field(nullable=False)
    gold_action: Series[str] = pa.Field(isin=ACTIONS)
    gold_policy: Series[str] = pa.Field(str_matches=POLICY_PATTERN)

    @pa.dataframe_check(name="gold_approve_iff_policy_none",
                        error="gold_action is approve exactly when gold_policy is NONE")
    def _approve_none(cls, df: pd.DataFrame) -> Series[bool]:
        return ((df["gold_action"] == "approve") == (df["gold_policy"] == "NONE")).fillna(True)

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
    change_id: Series[str] = pa.Field(nullable=False)
    policy: Series[str] = pa.Field(str_matches=r"^[A-Z]{2,4}\.\d{1,3}$")
    effective_date: Series[pd.DatetimeTZDtype] = pa.Field(nullable=False, dtype_kwargs=UTC)
    change_type: Series[str] = pa.Field(isin=["new", "update", "clarification", "retirement"])
    summary: Series[str] = pa.Field(nullable=True)
    queues: Series[str] = pa.Field(str_matches=r"^(\*|[a-z0-9_]+(;[a-z0-9_]+)*)$")

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
