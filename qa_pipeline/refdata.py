"""Real multi-rater data as calibration sessions: HateCheck (Röttger et al. 2021, CC BY 4.0).

See data/refdata/README.md for the source and the mapping.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from qa_pipeline.settings import PROJECT_ROOT

HATECHECK = PROJECT_ROOT / "data" / "refdata" / "hatecheck_labels.csv"
DECISION = {"hateful": ("remove", "HS.1"), "non-hateful": ("approve", "NONE")}


def hatecheck_sessions(month: date, path: Path = HATECHECK) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, gold) in the raw calibration layout, one session per functional test."""
    raw = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""])
    labels = [c for c in raw.columns if c.startswith("label_") and c != "label_gold"]
    tests = sorted(raw["functionality"].unique())
    day = {t: (month + timedelta(days=i % 27)).isoformat() for i, t in enumerate(tests)}
    long = raw.melt(id_vars=["functionality", "case_id", "label_gold"], value_vars=labels,
                    var_name="annotator", value_name="label").dropna(subset=["label"])
    ratings = pd.DataFrame({
        "session_id": "HC-" + long["functionality"],
        "session_date": long["functionality"].map(day),
        "queue": "hate_speech",
        "case_id": "hc-" + long["case_id"],
        "rater_id": "hatecheck_annotator_" + long["annotator"].str.removeprefix("label_"),
        "rater_role": "auditor",
        "action": long["label"].map(lambda v: DECISION[v][0]),
        "policy": long["label"].map(lambda v: DECISION[v][1]),
    }).sort_values(["session_id", "case_id", "rater_id"], ignore_index=True)
    gold = pd.DataFrame({
        "session_id": "HC-" + raw["functionality"],
        "case_id": "hc-" + raw["case_id"],
        "gold_action": raw["label_gold"].map(lambda v: DECISION[v][0]),
        "gold_policy": raw["label_gold"].map(lambda v: DECISION[v][1]),
    })
    return ratings, gold
