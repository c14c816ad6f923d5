"""Calibration sessions: do auditors agree with each other and with the policy expert's gold?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qa_pipeline.stats.agreement import agreement

LABELS = {"action": "gold_action", "policy": "gold_policy"}


def _with_gold(ratings: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    return ratings.merge(gold[["session_id", "case_id", *LABELS.values()]],
                         on=["session_id", "case_id"], how="left")


def calibration_agreement(ratings: pd.DataFrame, gold: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.calibration_agreement`: one row per session and label."""
    rated = _with_gold(ratings, gold)
    rows = []
    for (session, queue), group in rated.groupby(["session_id", "queue"], sort=True):
        for label, gold_col in LABELS.items():
            res = agreement(group.rename(columns={label: "value"}))
            with_gold = group[group[gold_col].notna() & group[label].notna()]
            gold_acc = float((with_gold[label] == with_gold[gold_col]).mean()) if len(with_gold) else np.nan
            no_gold = int((group[gold_col].isna() & group[label].notna()).sum())
            rows.append({
                "session_id": session, "month": pd.Timestamp(month), "queue": queue, "label": label,
                "raters": res.raters, "cases": res.cases, "ratings": int(group[label].notna().sum()),
                "percent_agreement": res.percent_agreement, "fleiss_kappa": res.fleiss_kappa,
                "krippendorff_alpha": res.krippendorff_alpha, "gwet_ac1": res.gwet_ac1,
                "gold_accuracy": gold_acc,
                "note": "; ".join(filter(None, [
                    res.note,
                    "no gold answers for this session" if not len(with_gold) else
                    (f"{no_gold} rating(s) on cases without a gold answer are left out of gold_accuracy"
                     if no_gold else ""),
                ])),
            })
    return pd.DataFrame(rows, columns=CALIBRATION_AGREEMENT_COLUMNS)


CALIBRATION_AGREEMENT_COLUMNS = [
    "session_id", "month", "queue", "label", "raters", "cases", "ratings", "percent_agreement",
    "fleiss_kappa", "krippendorff_alpha", "gwet_ac1", "gold_accuracy", "note",
]


def rater_scores(ratings: pd.DataFrame, gold: pd.DataFrame, month, min_gold_accuracy: float) -> pd.DataFrame:
    """`qa_core.calibration_rater_scores`: each rater's accuracy against gold per session.

    A rating is right when both action and policy equal the gold answer; cases without gold do
    not count. `below_threshold` flags raters under `min_gold_accuracy`.
    """
    rated = _with_gold(ratings, gold)
    rated = rated[rated["gold_action"].notna()]
    rated = rated.assign(
        action_ok=(rated["action"] == rated["gold_action"]).fillna(False),
        policy_ok=(rated["policy"] == rated["gold_policy"]).fillna(False),
    )
    rated["both_ok"] = rated["action_ok"] & rated["policy_ok"]
    out = (rated.groupby(["session_id", "rater_id"], sort=True)
           .agg(rater_role=("rater_role", "first"), cases_rated=("case_id", "nunique"),
                action_accuracy=("action_ok", "mean"), policy_accuracy=("policy_ok", "mean"),
                accuracy_vs_gold=("both_ok", "mean"))
           .reset_index())
    out.insert(1, "month", pd.Timestamp(month))
    out["below_threshold"] = out["accuracy_vs_gold"] < min_gold_accuracy
    return out
