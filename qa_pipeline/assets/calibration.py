"""Calibration sessions: agreement per session and label, raters against gold."""

import dagster as dg

from qa_pipeline.assets.common import (
    QUALITY_TEAM,
    WAREHOUSE_POOL,
    QualityConfig,
    monthly,
    run_attempt,
    table_metadata,
    warehouse_kind,
)
from qa_pipeline.assets.ingest import (
    gate_check_specs,
    gate_checks,
    limit_for,
    policy_codes,
    stage_gate,
)
from qa_pipeline.domain import calibration
from qa_pipeline.domain.validation import (
    CALIBRATION_GOLD,
    CALIBRATION_RATINGS,
    run_gate,
)
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse

AGREEMENT = dg.AssetSpec(
    "calibration_agreement", group_name="calibration", owners=[QUALITY_TEAM],
    kinds={"pandas", "krippendorff", warehouse_kind()}, partitions_def=monthly,
    description=("Agreement of each calibration session on action and policy: percent agreement, "
                 "Fleiss' kappa (Gwet's form for a varying number of raters), Krippendorff's alpha, "
                 "Gwet's AC1 and accuracy against the gold answer. Sessions come from "
                 "`calibration/YYYY-MM/ratings*.csv` and `gold*.csv`, validated like audits (policy codes "
                 "against the optional catalogue), each with its blocking checks on the quarantined share "
                 "and on every row being accounted for."),
)
RATER_SCORES = dg.AssetSpec(
    "calibration_rater_scores", group_name="calibration", owners=[QUALITY_TEAM],
    kinds={"pandas", warehouse_kind()}, partitions_def=monthly,
    description=("Each rater's accuracy against gold per session (action, policy, both); raters "
                 "under `min_gold_accuracy` are flagged. Restricted (person-level)."),
)


@dg.multi_asset(specs=[AGREEMENT, RATER_SCORES], partitions_def=monthly, pool=WAREHOUSE_POOL,
                check_specs=[*gate_check_specs("calibration_agreement", CALIBRATION_RATINGS.name, prefixed=True),
                             *gate_check_specs("calibration_agreement", CALIBRATION_GOLD.name, prefixed=True)])
def calibration_sessions(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                         quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    codes = policy_codes(raw_store, attempt)  # the optional catalogue: None when there is none
    ratings_gate = run_gate(raw_store.read_month("calibration", month, "ratings", required=False),
                            CALIBRATION_RATINGS.with_context(policies=codes), month)
    gold_gate = run_gate(raw_store.read_month("calibration", month, "gold", required=False),
                         CALIBRATION_GOLD.with_context(policies=codes), month)
    stage_gate(attempt, ratings_gate, CALIBRATION_RATINGS.name)
    stage_gate(attempt, gold_gate, CALIBRATION_GOLD.name)
    agreement = calibration.calibration_agreement(ratings_gate.clean, gold_gate.clean, month)
    scores = calibration.rater_scores(ratings_gate.clean, gold_gate.clean, month,
                                      quality_config.thresholds().min_gold_accuracy)
    attempt.write("qa_reporting.calibration_agreement", agreement)
    attempt.write("qa_core.calibration_rater_scores", scores)
    action = agreement[agreement.label == "action"]
    yield dg.MaterializeResult(asset_key="calibration_agreement", metadata=table_metadata(
        "qa_reporting.calibration_agreement", agreement,
        ["session_id", "label", "raters", "cases", "percent_agreement", "fleiss_kappa", "gwet_ac1"],
        sessions=int(agreement.session_id.nunique()),
        median_action_kappa=float(action.fleiss_kappa.median()) if len(action) else None,
        ratings_quarantined=len(ratings_gate.quarantine),
    ))
    yield dg.MaterializeResult(asset_key="calibration_rater_scores", metadata=table_metadata(
        "qa_core.calibration_rater_scores", scores,
        ["session_id", "rater_id", "cases_rated", "accuracy_vs_gold", "below_threshold"],
        raters_below_threshold=int(scores.below_threshold.sum()),
    ))
    for gate, spec in ((ratings_gate, CALIBRATION_RATINGS), (gold_gate, CALIBRATION_GOLD)):
        yield from gate_checks(input_name=spec.name, asset_key="calibration_agreement", attempt=attempt,
                               staged_table="qa_reporting.calibration_agreement",
                               limit=limit_for(quality_config, spec.name), files=gate.files,
                               quarantine=gate.quarantine, scope=f"calibration/{month:%Y-%m}", prefixed=True)
