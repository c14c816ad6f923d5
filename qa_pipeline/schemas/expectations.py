"""Great Expectations suites of the published tables, kept as data.

Each `Suite` lists the invariants of one table: keys, rates in [0, 1], ordered pairs (a ≤ b),
allowed values, and reconciliations (sums that must add up) expressed as derived columns that
must be ~0. `expectations()` turns a suite into `Expectation`s (a GX expectation type with its
arguments); everything is ERROR (critical) except the row-count volume check against the trailing
three months, which is a WARNING.

The same expectations run one of two ways: GX on a pandas batch (small tables; their results feed
the Data Docs), or, for a suite marked `in_engine` (`qa_core.audits_clean`, up to millions of rows
a month), as one SQL query of unexpected counts inside the warehouse
(`resources.quality_gates.validate_in_engine`), which never reads the rows back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import ibis.expr.types as ir
import pandas as pd

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Expectation:
    """One expectation as data: a GX expectation type (`expect_column_values_to_be_unique`), its
    arguments as GX reports them, and its severity (`critical` or `warning`)."""

    type: str
    kwargs: dict
    severity: str = "critical"


@dataclass(frozen=True)
class Suite:
    key: list[str]
    rates: list[str] = field(default_factory=list)
    ordered: list[tuple[str, str]] = field(default_factory=list)  # (a, b): a ≤ b
    non_negative: list[str] = field(default_factory=list)
    not_null: list[str] = field(default_factory=list)
    in_sets: dict[str, list] = field(default_factory=dict)
    no_pattern: dict[str, str] = field(default_factory=dict)
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # GX on pandas: derived columns
    zero_columns: list[str] = field(default_factory=list)  # derived residuals that must be ~0
    true_columns: list[str] = field(default_factory=list)  # derived flags that must be True
    volume: bool = True
    in_engine: bool = False  # checked by SQL counts in the warehouse, not by GX on pandas
    derive_in_engine: Callable[[ir.Table], ir.Table] | None = None  # in_engine: derived columns


def _quality_metrics_reconciliation(df: pd.DataFrame) -> pd.DataFrame:
    overall = df.loc[df["dimension"] == "overall", ["audits", "errors", "critical_errors"]].sum()
    by_dim = df.groupby("dimension")[["audits", "errors", "critical_errors"]].transform("sum")
    return df.assign(
        audits_residual=by_dim["audits"] - overall["audits"],
        errors_residual=by_dim["errors"] - overall["errors"],
        critical_residual=by_dim["critical_errors"] - overall["critical_errors"],
    )


def _pareto_reconciliation(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(share_residual=df.groupby("scope")["share"].transform("sum") - 1.0)


def _drivers_reconciliation(df: pd.DataFrame) -> pd.DataFrame:
    total = df.groupby("dimension")["contribution"].transform("sum")
    return df.assign(decomposition_residual=total - df["overall_change"])


def _trend_consistency(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(alert_is_judged=~df["alert"].astype(bool) | df["judged"].astype(bool),
                     not_alert_and_improved=~(df["alert"].astype(bool) & df["improved"].astype(bool)))


def _audit_consistency(t: ir.Table) -> ir.Table:
    """A final error is an error; an error has a type other than `correct` and only an error has
    one (a missing flag counts as False, a missing type as a type)."""
    is_error = t.is_error.fill_null(False)
    return t.mutate(final_implies_error=~t.is_error_final.fill_null(False) | is_error,
                    error_iff_typed=is_error == (t.error_type != "correct").fill_null(True))


def _dispute_order(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(counts_ordered=(df["overturned"] <= df["resolved"]) & (df["resolved"] <= df["disputed"])
                     & (df["disputed"] <= df["audits"]))


def _impact_interval(df: pd.DataFrame) -> pd.DataFrame:
    inside = df["delta"].isna() | ((df["ci_low"] <= df["delta"] + TOLERANCE) & (df["delta"] <= df["ci_high"] + TOLERANCE))
    return df.assign(delta_inside_interval=inside)


def _warning_consistency(df: pd.DataFrame) -> pd.DataFrame:
    """A chart signalled ⇔ its maximum exceeds its threshold ⇔ it has a first signal date; an
    unmonitored segment (no threshold) never signalled."""
    signalled = df["signalled"].fillna(False).astype(bool)
    above = (df["cusum_max"] > df["threshold"]).fillna(False).astype(bool)
    return df.assign(signal_iff_above_threshold=signalled == above,
                     signal_iff_dated=signalled == df["first_signal_date"].notna())


def _readout_interval(df: pd.DataFrame) -> pd.DataFrame:
    inside = df["diff"].isna() | ((df["ci_low"] <= df["diff"] + TOLERANCE) & (df["diff"] <= df["ci_high"] + TOLERANCE))
    return df.assign(diff_inside_interval=inside)


def _accuracy_corrected_consistency(df: pd.DataFrame) -> pd.DataFrame:
    """Each dimension's audits, errors and own re-audits add up to the overall row's; a missing
    corrected rate always says why."""
    overall = df.loc[df["dimension"] == "overall", ["audits", "errors", "segment_reaudits"]].sum()
    by_dim = df.groupby("dimension")[["audits", "errors", "segment_reaudits"]].transform("sum")
    return df.assign(
        audits_residual=by_dim["audits"] - overall["audits"],
        errors_residual=by_dim["errors"] - overall["errors"],
        reaudits_residual=by_dim["segment_reaudits"] - overall["segment_reaudits"],
        empty_has_note=df["corrected_error_rate"].notna() | df["note"].notna(),
    )


PII_IN_TERMS = r"@|\d{3}[\s.-]?\d{3,4}|https?:|www\."

SUITES: dict[str, Suite] = {
    "qa_core.audits_clean": Suite(
        key=["audit_id"],
        not_null=["audit_id", "audited_at", "moderator_id", "auditor_id", "queue", "site"],
        non_negative=["handle_time_s"],
        in_sets={"error_type": ["correct", "over_enforcement", "under_enforcement", "wrong_action", "wrong_policy"],
                 "tenure_band": ["0-30", "31-90", "91-180", "181-365", "366+", "unknown"]},
        derive_in_engine=_audit_consistency, true_columns=["final_implies_error", "error_iff_typed"],
        in_engine=True,
    ),
    "qa_reporting.quality_metrics": Suite(
        key=["month", "dimension", "segment"],
        rates=["accuracy", "accuracy_ci_low", "accuracy_ci_high", "weighted_accuracy", "critical_error_rate",
               "over_enforcement_rate", "under_enforcement_rate", "precision", "recall"],
        ordered=[("accuracy_ci_low", "accuracy"), ("accuracy", "accuracy_ci_high"), ("errors", "audits"),
                 ("critical_errors", "errors")],
        non_negative=["audits", "errors"],
        derive=_quality_metrics_reconciliation,
        zero_columns=["audits_residual", "errors_residual", "critical_residual"],
    ),
    "qa_reporting.error_trends": Suite(
        key=["month", "dimension", "segment"],
        rates=["error_rate", "prev_error_rate", "p_value", "q_value", "p_chart_center", "p_chart_lcl", "p_chart_ucl"],
        ordered=[("p_chart_lcl", "p_chart_center"), ("p_chart_center", "p_chart_ucl"), ("p_value", "q_value")],
        derive=_trend_consistency, true_columns=["alert_is_judged", "not_alert_and_improved"],
    ),
    "qa_reporting.rca_pareto": Suite(
        key=["month", "scope", "root_cause"],
        rates=["share"], non_negative=["errors"],
        derive=_pareto_reconciliation, zero_columns=["share_residual"],
    ),
    "qa_reporting.rca_drivers": Suite(
        key=["month", "dimension", "segment"],
        rates=["share_prev", "share", "rate_prev", "rate"],
        derive=_drivers_reconciliation, zero_columns=["decomposition_residual"],
    ),
    "qa_core.auditor_consistency": Suite(
        key=["month", "auditor_id"], rates=["flag_rate", "expected_rate", "overturn_rate"],
        ordered=[("flags", "audits"), ("overturned", "disputed")],
    ),
    "qa_reporting.comment_themes": Suite(
        key=["month", "scope", "term"], rates=["share"], ordered=[("errors_with_term", "errors_with_comment")],
        no_pattern={"term": PII_IN_TERMS},
    ),
    "qa_reporting.calibration_agreement": Suite(
        key=["session_id", "label"],
        rates=["percent_agreement", "gold_accuracy"],
        in_sets={"label": ["action", "policy"]},
        ordered=[("fleiss_kappa", "percent_agreement")],
    ),
    "qa_reporting.dispute_metrics": Suite(
        key=["month", "dimension", "segment"], rates=["dispute_rate", "overturn_rate"],
        derive=_dispute_order, true_columns=["counts_ordered"],
    ),
    "qa_reporting.policy_change_impact": Suite(
        key=["change_id"], rates=["error_rate_before", "error_rate_after", "p_value"],
        in_sets={"status": ["complete", "pending"]},
        derive=_impact_interval, true_columns=["delta_inside_interval"], volume=False,
    ),
    "qa_reporting.experiment_readout": Suite(
        key=["experiment_id"], rates=["p_value", "srm_p_value"],
        in_sets={"decision": ["ship", "do_not_ship", "inconclusive", "invalid_srm"],
                 "status": ["complete", "pending"]},
        derive=_readout_interval, true_columns=["diff_inside_interval"], volume=False,
    ),
    "qa_reporting.early_warnings": Suite(
        key=["month", "dimension", "segment"], rates=["baseline_error_rate"],
        ordered=[("errors_to_date", "audits_to_date"), ("cusum", "cusum_max")],
        non_negative=["audits_to_date", "errors_to_date", "cusum", "cusum_max", "threshold"],
        in_sets={"dimension": ["site×queue", "site", "queue"]},
        derive=_warning_consistency, true_columns=["signal_iff_above_threshold", "signal_iff_dated"],
    ),
    "qa_reporting.sampling_plan": Suite(
        key=["month", "site", "queue"], rates=["recent_error_rate"], non_negative=["recommended_audits"],
    ),
    "qa_reporting.accuracy_corrected": Suite(
        key=["month", "dimension", "segment"],
        rates=["observed_error_rate", "sensitivity", "specificity", "corrected_error_rate", "corrected_accuracy",
               "ci_low", "ci_high", "corrected_accuracy_ci_low", "corrected_accuracy_ci_high", "reaudit_error_rate",
               "reaudit_ci_low", "reaudit_ci_high"],
        ordered=[("errors", "audits"), ("ci_low", "ci_high"), ("reaudit_ci_low", "reaudit_error_rate"),
                 ("reaudit_error_rate", "reaudit_ci_high"), ("reaudited_true_errors", "reaudits"),
                 ("segment_reaudits", "reaudits")],
        non_negative=["audits", "errors", "reaudits", "segment_reaudits"],
        in_sets={"dimension": ["overall", "site", "team_type", "queue"]},
        derive=_accuracy_corrected_consistency,
        zero_columns=["audits_residual", "errors_residual", "reaudits_residual"], true_columns=["empty_has_note"],
    ),
}


def expectations(suite: Suite, trailing_rows: list[int]) -> list[Expectation]:
    """The suite's expectations; `trailing_rows` are the row counts of up to three previous
    partitions (the volume check is skipped without history)."""
    out = [Expectation("expect_compound_columns_to_be_unique", {"column_list": suite.key})] if len(suite.key) > 1 \
        else [Expectation("expect_column_values_to_be_unique", {"column": suite.key[0]})]
    out += [Expectation("expect_column_values_to_not_be_null", {"column": c}) for c in suite.not_null]
    out += [Expectation("expect_column_values_to_be_between", {"column": c, "min_value": 0.0, "max_value": 1.0})
            for c in suite.rates]
    out += [Expectation("expect_column_values_to_be_between", {"column": c, "min_value": 0.0})
            for c in suite.non_negative]
    out += [Expectation("expect_column_pair_values_a_to_be_greater_than_b",
                        {"column_A": b, "column_B": a, "or_equal": True, "ignore_row_if": "either_value_is_missing"})
            for a, b in suite.ordered]
    out += [Expectation("expect_column_values_to_be_in_set", {"column": c, "value_set": v})
            for c, v in suite.in_sets.items()]
    out += [Expectation("expect_column_values_to_not_match_regex", {"column": c, "regex": r})
            for c, r in suite.no_pattern.items()]
    out += [Expectation("expect_column_values_to_be_between", {"column": c, "min_value": -TOLERANCE, "max_value": TOLERANCE})
            for c in suite.zero_columns]
    out += [Expectation("expect_column_values_to_be_in_set", {"column": c, "value_set": [True]})
            for c in suite.true_columns]
    if suite.volume and trailing_rows:
        mean = sum(trailing_rows) / len(trailing_rows)
        out.append(Expectation("expect_table_row_count_to_be_between",
                               {"min_value": int(0.5 * mean), "max_value": int(1.5 * mean) + 1}, severity="warning"))
    return out


def prepare(suite: Suite, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame GX validates: the table plus the suite's derived reconciliation columns."""
    return suite.derive(frame) if suite.derive is not None else frame


def prepare_in_engine(suite: Suite, table: ir.Table) -> ir.Table:
    """The table the SQL counts run over: the table plus the suite's derived columns."""
    return suite.derive_in_engine(table) if suite.derive_in_engine is not None else table
